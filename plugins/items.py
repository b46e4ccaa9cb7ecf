"""The generated tests: one collector per model (``safety[lenet]``), one item per check."""

from __future__ import annotations

import json

import pytest

from safetycheck.checks import CheckSkipped, PlannedCheck
from safetycheck.config import SafetyConfig
from safetycheck.errors import SafetyCheckError
from safetycheck.evaluation import ModelEvaluation
from safetycheck.results import CheckResult, compare

RECORD_PROPERTY = "safetycheck"


class SafetyCheckFailed(AssertionError):
    """A measured value on the wrong side of its threshold."""


class SafetySuite(pytest.Collector):
    """All checks of one model; its children are created by the plugin at collection time."""

    def collect(self):
        return []


class SafetyCheckItem(pytest.Item):
    def __init__(self, *, planned: PlannedCheck, evaluation: ModelEvaluation, file_config: SafetyConfig, **kwargs):
        super().__init__(**kwargs)
        self.planned = planned
        self.evaluation = evaluation
        self.file_config = file_config

    def runtest(self) -> None:
        family, model = self.planned.family, self.evaluation.mut.name
        threshold = self.file_config.threshold(model, family.name, self.planned.id)
        try:
            measurement = family.measure(self.evaluation, self.planned.params)
        except CheckSkipped as skipped:
            pytest.skip(f"{model} {self.planned.id}: {skipped.reason}")
        result = CheckResult(
            model=model, check=self.planned.id, family=family.name, params=self.planned.params,
            value=measurement.value, threshold=threshold.value, threshold_source=threshold.source,
            bound=family.bound, passed=compare(measurement.value, threshold.value, family.bound),
            n=measurement.n, metric=family.metric, details=measurement.details,
            randomized=self.evaluation.mut.randomized,
        )
        self.user_properties.append((RECORD_PROPERTY, json.dumps(result.record())))
        if not result.passed:
            raise SafetyCheckFailed(result.message())

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (SafetyCheckFailed, SafetyCheckError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, self.nodeid
