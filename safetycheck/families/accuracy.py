"""Clean accuracy on the whole MNIST test set."""

from ..checks import CheckFamily, Measurement, register
from ..evaluation import ModelEvaluation


def _measure_clean_accuracy(evaluation: ModelEvaluation, params: dict) -> Measurement:
    correct = evaluation.clean_correct
    return Measurement(int(correct.sum()) / max(correct.numel(), 1), int(correct.numel()), "all MNIST test images")


register(CheckFamily(
    name="clean_accuracy",
    metric="clean accuracy",
    bound="min",
    variants=lambda settings: [{}],
    measure=_measure_clean_accuracy,
))
