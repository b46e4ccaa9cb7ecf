"""The generated tests: one collector per model (``safety[lenet]``), one item per check."""

from __future__ import annotations

import pytest
import torch

from safetycheck.checks.evaluation import ModelEvaluation
from safetycheck.core.errors import SafetyCheckError
from safetycheck.core.registry import PlannedCheck
from safetycheck.gate.thresholds import SafetyConfig


class SafetyCheckFailed(AssertionError):
    """A measured value on the wrong side of its threshold, or a regression against the baseline."""


class SafetySuite(pytest.Collector):
    """All checks of one model; its children are created by the plugin at collection time."""

    def collect(self):
        return []


class SafetyCheckItem(pytest.Item):
    """Measures one check, compares it with its threshold (and the baseline, if any), and leaves
    the record in ``safety_record`` for the report hooks (which carry it to the xdist
    controller)."""

    def __init__(
        self,
        *,
        planned: PlannedCheck,
        evaluation: ModelEvaluation,
        file_config: SafetyConfig,
        baseline=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.planned = planned
        self.evaluation = evaluation
        self.file_config = file_config
        self.baseline = baseline
        self.safety_record: dict | None = None

    def runtest(self) -> None:
        from safetycheck.run.runner import run_check

        result = run_check(self.evaluation, self.planned, self.file_config, self.baseline)
        self.safety_record = record = result.record()
        if result.skipped:
            pytest.skip(f"{result.model} {result.check}: {result.skipped}")
        for name in (
            "model",
            "check",
            "value",
            "threshold",
            "bound",
            "passed",
            "n",
            "metric",
            "ci",
            "threshold_source",
            "dataset",
        ):
            self.user_properties.append((f"safetycheck.{name}", record[name]))
        for name, value in (record["params"] or self.planned.params).items():
            self.user_properties.append((f"safetycheck.param.{name}", value))
        point = (record.get("artifacts") or {}).get("operating_point")
        if isinstance(point, dict):  # ood_fpr95: the detector's score threshold
            for name in ("threshold", "tpr"):
                self.user_properties.append((f"safetycheck.operating_point.{name}", point[name]))
        # Where it ran: with `-n N --dist loadgroup` every check of a model names the same worker.
        self.user_properties.append(
            ("safetycheck.worker", getattr(self.config, "workerinput", {}).get("workerid", "main"))
        )
        self.user_properties.append(("safetycheck.torch_threads", torch.get_num_threads()))
        failures = [] if result.passed else [result.message()]
        if result.baseline and result.baseline["regressed"]:
            failures.append(f"{result.model} {result.check}: {result.baseline['message']}")
        if failures:
            raise SafetyCheckFailed("\n".join(failures))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (SafetyCheckFailed, SafetyCheckError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, self.nodeid
