"""Clean accuracy on the evaluated MNIST test images, and the exact accuracy helpers every
accuracy-valued family shares."""

from __future__ import annotations

from safetycheck.checks.evaluation import ModelEvaluation
from safetycheck.core.registry import CheckFamily, Measurement
from safetycheck.core.stats import wilson_interval


def accuracy(correct) -> float:
    """Share of True in a bool tensor, counted exactly (no float32 mean: 9927/10000 stays
    0.9927)."""
    return int(correct.sum()) / max(int(correct.numel()), 1)


def accuracy_measurement(
    correct, details: str, artifacts: dict | None = None, per_example=None
) -> Measurement:
    """Accuracy of a bool tensor, with its sample count and 95% Wilson interval; ``per_example``
    (a :class:`~safetycheck.core.per_example.PerExample` of ``correct``) goes into the record."""
    n = int(correct.numel())
    return Measurement(
        accuracy(correct),
        n,
        details,
        ci=wilson_interval(int(correct.sum()), n),
        artifacts=artifacts or {},
        per_example=per_example,
    )


def _measure_clean_accuracy(evaluation: ModelEvaluation, params: dict) -> Measurement:
    return accuracy_measurement(
        evaluation.clean_correct,
        evaluation.describe_test_set(),
        per_example=evaluation.per_example(evaluation.clean_correct, "test"),
    )


CLEAN_ACCURACY = CheckFamily(
    name="clean_accuracy",
    metric="clean accuracy",
    bound="min",
    variants=lambda settings: [{}],
    measure=_measure_clean_accuracy,
    # A floor that a standard MNIST CNN clears (the example LeNet-5 measures 0.993).
    default_bounds={"clean_accuracy": 0.98},
    note="accuracy on the MNIST test set",
    plot="reference",
    proportion=True,
    study_column=lambda params: "clean",
    study_rank=0,
)

FAMILIES = (CLEAN_ACCURACY,)
