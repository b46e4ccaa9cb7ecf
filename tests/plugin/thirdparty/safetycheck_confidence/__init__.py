"""A third-party check family, installed through the ``safetycheck.families`` entry point.

``confident_coverage[threshold=0.9]``: the share of the evaluated MNIST test images that the model
predicts with a top softmax probability of at least the threshold (the coverage of a selective
classifier, Geifman & El-Yaniv 2017). It reads the run's shared clean logits, as a built-in family
does, so it costs one softmax.
"""

from __future__ import annotations

import torch

from safetycheck.core.registry import CheckFamily, Measurement
from safetycheck.core.stats import wilson_interval

THRESHOLDS = (0.9, 0.99)


def _measure(evaluation, params: dict) -> Measurement:
    confidence = torch.softmax(evaluation.clean_logits.double(), dim=1).max(dim=1).values
    covered = int((confidence >= params["threshold"]).sum())
    n = int(confidence.numel())
    return Measurement(
        covered / n,
        n,
        f"top softmax probability at least {params['threshold']:g}; "
        f"{evaluation.describe_test_set()}",
        ci=wilson_interval(covered, n),
    )


FAMILY = CheckFamily(
    name="confident_coverage",
    metric="share of images predicted confidently",
    bound="min",
    variants=lambda settings: [{"threshold": t} for t in THRESHOLDS],
    measure=_measure,
    param_names=("threshold",),
    param_choices={"threshold": THRESHOLDS},
    default=False,
    default_bounds={"confident_coverage": 0.5, "confident_coverage[threshold=0.99]": 0.4},
    note="coverage of confident predictions (a third-party family)",
    proportion=True,
)
