"""Calibration of the clean MNIST test-set predictions, one check per metric: ``calibration[ece]``.

Every check reads one :class:`~safetycheck.measures.calibration.CalibrationReport` per model,
computed once from the shared clean logits (bootstrap intervals and temperature scaling included)
whichever check asks first. The gated value is the metric on all test images; its bootstrap interval
and its value after temperature scaling go into the details, for reading only.

The maximum calibration error is in the report but not gated: on a model that is right 99% of the
time it is decided by a handful of predictions in the sparse low-confidence bins (the example
LeNet-5 measures 0.39 with a 95% bootstrap interval of [0.20, 0.57]), so a bound on it would pass
or fail by chance.
"""

from __future__ import annotations

import math

from safetycheck.checks.evaluation import ModelEvaluation
from safetycheck.core.registry import CheckFamily, Measurement
from safetycheck.core.stats import BOOTSTRAP_RESAMPLES  # a module global: tests patch it here
from safetycheck.measures.calibration import (
    PER_IMAGE_QUANTITIES,
    CalibrationReport,
    calibration_report,
    per_image_quantities,
)

GATED_METRICS = ("ece", "adaptive_ece", "rms", "brier", "nll")


def calibration_report_for(evaluation: ModelEvaluation) -> CalibrationReport:
    """The model's calibration report on the MNIST test set, computed once per evaluation
    (its ``to_dict()`` carries the reliability-diagram data for the HTML report)."""
    return evaluation.cached(
        "calibration_report",
        lambda ev: calibration_report(
            ev.clean_logits,
            ev.test_set.labels,
            resamples=BOOTSTRAP_RESAMPLES,
            seed=ev.settings.seed,
        ),
    )


def _measure_calibration(evaluation: ModelEvaluation, params: dict) -> Measurement:
    metric = params["metric"]
    report = calibration_report_for(evaluation)
    estimate = report.metrics[metric]
    artifacts = {}
    if metric == "ece":  # one copy of the reliability diagram per model is enough for the reports
        diagram = report.reliability
        artifacts["reliability"] = {
            "bin_lower": diagram.lower,
            "bin_upper": diagram.upper,
            "confidence": diagram.mean_confidence,
            "accuracy": diagram.accuracy,
            "count": diagram.count,
        }
    quantities = evaluation.cached(
        "calibration_per_image",
        lambda ev: per_image_quantities(ev.clean_logits, ev.test_set.labels),
        announce=False,
    )
    # Each image's share of the metric, so that a baseline comparison can pair the two runs.
    per_example = evaluation.per_example(
        quantities["correct"] > 0.5,
        "test",
        values={name: quantities[name] for name in PER_IMAGE_QUANTITIES[metric]},
    )
    return Measurement(
        estimate.value,
        report.n,
        f"{report.describe(metric)}; {evaluation.describe_test_set()}",
        ci=(estimate.interval.low, estimate.interval.high),
        artifacts=artifacts,
        per_example=per_example,
    )


CALIBRATION = CheckFamily(
    name="calibration",
    metric="calibration metric (lower is better)",
    bound="max",
    variants=lambda settings: [{"metric": metric} for metric in GATED_METRICS],
    measure=_measure_calibration,
    value_range=(0.0, math.inf),  # ECE and RMS lie in [0, 1], Brier in [0, 2], NLL in [0, inf)
    param_names=("metric",),
    positional=True,  # calibration[ece]
    param_choices={"metric": GATED_METRICS},
    # Upper bounds several times the example LeNet-5's values (ECE 0.0018, adaptive ECE 0.0015,
    # RMS 0.014, Brier 0.011, NLL 0.020); Brier and NLL loose enough for a model at the
    # clean-accuracy floor of 0.98. MCE is reported but not gated (module docstring).
    default_bounds={
        "calibration[ece]": 0.015,
        "calibration[adaptive_ece]": 0.015,
        "calibration[rms]": 0.05,
        "calibration[brier]": 0.04,
        "calibration[nll]": 0.10,
    },
    note="calibration error (lower is better)",
    plot="calibration",
    study_column=lambda params: str(params["metric"]) if params.get("metric") else None,
    study_rank=4,
)

FAMILIES = (CALIBRATION,)
