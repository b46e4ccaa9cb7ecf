"""The generated tests: one collector per model (``safety[lenet]``), one item per check."""

from __future__ import annotations

import math

import pytest

from safetycheck.checks import CheckSkipped, PlannedCheck
from safetycheck.config import SafetyConfig
from safetycheck.errors import SafetyCheckError
from safetycheck.evaluation import ModelEvaluation
from safetycheck.results import CheckResult, compare


class SafetyCheckFailed(AssertionError):
    """A measured value on the wrong side of its threshold, or a regression against the baseline."""


class SafetySuite(pytest.Collector):
    """All checks of one model; its children are created by the plugin at collection time."""

    def collect(self):
        return []


class SafetyCheckItem(pytest.Item):
    """Measures one check, compares it with its threshold (and the baseline, if any), and leaves
    the record in ``safety_record`` for the report hooks (which carry it to the xdist controller)."""

    def __init__(self, *, planned: PlannedCheck, evaluation: ModelEvaluation, file_config: SafetyConfig,
                 baseline=None, **kwargs):
        super().__init__(**kwargs)
        self.planned = planned
        self.evaluation = evaluation
        self.file_config = file_config
        self.baseline = baseline
        self.safety_record: dict | None = None

    def runtest(self) -> None:
        family, model = self.planned.family, self.evaluation.mut.name
        threshold = self.file_config.threshold(model, family.name, self.planned.id)
        common = dict(model=model, check=self.planned.id, family=family.name, params=self.planned.params,
                      threshold=threshold.value, threshold_source=threshold.source, bound=family.bound,
                      metric=family.metric, randomized=self.evaluation.mut.randomized)
        try:
            measurement = family.measure(self.evaluation, self.planned.params)
        except CheckSkipped as skipped:
            self.safety_record = CheckResult(value=math.nan, passed=False, n=0, details="", skipped=skipped.reason,
                                             **common).record()
            pytest.skip(f"{model} {self.planned.id}: {skipped.reason}")
        result = CheckResult(value=measurement.value, passed=compare(measurement.value, threshold.value, family.bound),
                             n=measurement.n, details=measurement.details, ci=measurement.ci,
                             artifacts=measurement.artifacts, **common)
        record = result.record()
        failures = [] if result.passed else [result.message()]
        comparison = self._compare_with_baseline(record)
        if comparison is not None:
            record["baseline"] = comparison
            if comparison["regressed"]:
                failures.append(f"{model} {self.planned.id}: {comparison['message']}")
        self.safety_record = record
        for name in ("value", "threshold", "bound", "passed", "n", "metric", "ci", "threshold_source"):
            self.user_properties.append((f"safetycheck.{name}", record[name]))
        for name, value in self.planned.params.items():
            self.user_properties.append((f"safetycheck.param.{name}", value))
        if failures:
            raise SafetyCheckFailed("\n".join(failures))

    def _compare_with_baseline(self, record: dict) -> dict | None:
        if self.baseline is None:
            return None
        base = self.baseline.lookup(record["model"], record["check"])
        if base is None:
            return {"value": None, "regressed": False, "message": "not in the baseline"}
        from safetycheck.baseline import compare as compare_to_baseline

        comparison = compare_to_baseline(record, base)
        return {"value": comparison.base_value, "regressed": comparison.regressed, "noise": comparison.noise,
                "difference": comparison.difference, "method": comparison.method, "message": comparison.describe()}

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (SafetyCheckFailed, SafetyCheckError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, self.nodeid
