"""Measuring one planned check into a :class:`~safetycheck.run.results.CheckResult`: the one path
from a model's evaluation to a record, shared by the pytest items and ``safetycheck study``."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from safetycheck.checks.evaluation import ModelEvaluation
from safetycheck.core.registry import CheckSkipped, PlannedCheck
from safetycheck.gate.thresholds import SafetyConfig
from safetycheck.run.results import CheckResult, compare


def run_check(
    evaluation: ModelEvaluation, planned: PlannedCheck, file_config: SafetyConfig, baseline=None
) -> CheckResult:
    """Measure ``planned`` on the evaluation's model and judge it against its threshold (the most
    specific one in ``file_config``) and, when a :class:`~safetycheck.gate.baseline.Baseline` is
    given, against the baseline's value. A check that cannot be measured gives a record with
    ``skipped`` set (and a NaN value); every other error propagates."""
    family, model = planned.family, evaluation.mut.name
    dataset = evaluation.settings.dataset.name
    threshold = file_config.threshold(model, family.name, planned.id, dataset)
    if evaluation.threshold_of is None:
        evaluation.threshold_of = lambda family_name, check_id: (
            file_config.threshold(model, family_name, check_id, dataset).value
        )
    common: dict[str, Any] = dict(
        model=model,
        check=planned.id,
        family=family.name,
        params=planned.params,
        threshold=threshold.value,
        threshold_source=threshold.source,
        bound=family.bound,
        metric=family.metric,
        randomized=evaluation.mut.randomized,
        dataset=dataset,
    )
    try:
        measurement = family.measure(evaluation, planned.params)
    except CheckSkipped as skipped:
        return CheckResult(
            value=math.nan, passed=False, n=0, details="", skipped=skipped.reason, **common
        )
    if measurement.params:
        common["params"] = {**planned.params, **measurement.params}
    result = CheckResult(
        value=measurement.value,
        passed=compare(measurement.value, threshold.value, family.bound),
        n=measurement.n,
        details=measurement.details,
        ci=measurement.ci,
        artifacts=measurement.artifacts,
        per_example=None if measurement.per_example is None else measurement.per_example.encode(),
        **common,
    )
    if baseline is None:
        return result
    return dataclasses.replace(result, baseline=baseline_comparison(result.record(), baseline))


def baseline_comparison(record: dict, baseline) -> dict:
    """The record's comparison with ``baseline`` as JSON-ready data (``regressed``,
    ``message``...)."""
    from safetycheck.gate.baseline import compare as compare_to_baseline
    from safetycheck.gate.paired import PairedBootstrap, PairedDeLong

    base = baseline.lookup(record["model"], record["check"])
    if base is None:
        return {"value": None, "regressed": False, "message": "not in the baseline"}
    comparison = compare_to_baseline(record, base, level=baseline.level(record["model"]))
    compared = {
        "value": comparison.base_value,
        "regressed": comparison.regressed,
        "noise": comparison.noise,
        "difference": comparison.difference,
        "method": comparison.method,
        "message": comparison.describe(),
        "paired": comparison.paired is not None,
    }
    test = comparison.paired
    if isinstance(test, PairedBootstrap):
        compared.update(test="paired bootstrap", resamples=test.resamples)
    elif isinstance(test, PairedDeLong):
        # JSON has no infinity: a zero-variance loss (every image ranked worse alike) has none.
        compared.update(test="DeLong", z=test.z if math.isfinite(test.z) else None)
    elif test is not None:
        compared.update(test="McNemar exact", lost=test.lost, gained=test.gained)
    if test is not None:
        compared.update(
            p_value=test.p_value,
            level=comparison.level,
            alpha=baseline.alpha,
        )
    return compared
