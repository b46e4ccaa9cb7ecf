"""Clean accuracy on the whole MNIST test set."""

from ..checks import CheckFamily, Measurement, register
from ..evaluation import ModelEvaluation


def accuracy(correct) -> float:
    """Share of True in a bool tensor, counted exactly (no float32 mean: 9927/10000 stays 0.9927)."""
    return int(correct.sum()) / max(int(correct.numel()), 1)


def _measure_clean_accuracy(evaluation: ModelEvaluation, params: dict) -> Measurement:
    correct = evaluation.clean_correct
    return Measurement(accuracy(correct), int(correct.numel()), "all MNIST test images")


register(CheckFamily(
    name="clean_accuracy",
    metric="clean accuracy",
    bound="min",
    variants=lambda settings: [{}],
    measure=_measure_clean_accuracy,
))
