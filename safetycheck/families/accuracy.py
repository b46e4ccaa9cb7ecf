"""Clean accuracy on the evaluated MNIST test images, and the exact accuracy helpers every
accuracy-valued family shares."""

from __future__ import annotations

import math

from ..checks import CheckFamily, Measurement, register
from ..evaluation import ModelEvaluation

Z_95 = 1.959963984540054  # the standard normal quantile of a two-sided 95% interval


def accuracy(correct) -> float:
    """Share of True in a bool tensor, counted exactly (no float32 mean: 9927/10000 stays 0.9927)."""
    return int(correct.sum()) / max(int(correct.numel()), 1)


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a binomial proportion (Wilson 1927; Brown, Cai & DasGupta 2001),
    in [0, 1]; unlike the normal approximation it keeps a width at 0% and 100%. None when n is 0."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_measurement(correct, details: str, artifacts: dict | None = None) -> Measurement:
    """Accuracy of a bool tensor, with its sample count and 95% Wilson interval."""
    n = int(correct.numel())
    return Measurement(accuracy(correct), n, details, ci=wilson_interval(int(correct.sum()), n),
                       artifacts=artifacts or {})


def _measure_clean_accuracy(evaluation: ModelEvaluation, params: dict) -> Measurement:
    return accuracy_measurement(evaluation.clean_correct, evaluation.describe_test_set())


register(CheckFamily(
    name="clean_accuracy",
    metric="clean accuracy",
    bound="min",
    variants=lambda settings: [{}],
    measure=_measure_clean_accuracy,
))
