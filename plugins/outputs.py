"""What a run writes besides pass/fail: the JSON results, the HTML report, the updated threshold
file, and the baseline it compares against. Every path and file is checked when pytest starts
(:meth:`Outputs.from_config`), so that a typo fails in a second, not after minutes of attacks; the
files are written once, on the controller, from every worker's records (:meth:`Outputs.write`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from safetycheck.core.errors import ConfigError


@dataclass
class Outputs:
    json_path: Path | None = None
    report_path: Path | None = None
    baseline: object | None = None  # safetycheck.gate.baseline.Baseline
    update_target: Path | None = None  # the threshold file --safety-update-thresholds writes
    update_is_pyproject: bool = False
    margin: float = 0.01
    changes: list = field(default_factory=list)  # ThresholdChange, after writing
    written: list = field(default_factory=list)  # (what, path) pairs, for the terminal summary

    @classmethod
    def from_config(cls, config: pytest.Config) -> Outputs:
        outputs = cls(
            json_path=_writable_file(config.getoption("safety_json"), "--safety-json"),
            report_path=_writable_file(config.getoption("safety_report"), "--safety-report"),
            margin=config.getoption("safety_threshold_margin"),
        )
        baseline = config.getoption("safety_baseline")
        if baseline:
            from safetycheck.gate.baseline import load_baseline

            outputs.baseline = load_baseline(
                Path(baseline), alpha=config.getoption("safety_baseline_alpha")
            )
        elif config.getoption("safety_baseline_alpha") != 0.05:
            from safetycheck.gate.paired import check_alpha

            check_alpha(config.getoption("safety_baseline_alpha"), "--safety-baseline-alpha")
        thresholds = config.getoption("safety_thresholds")
        if config.getoption("safety_update_thresholds"):
            _check_margin(outputs.margin)
            if thresholds:
                outputs.update_target = Path(thresholds)
            elif (Path(config.rootpath) / "pyproject.toml").is_file():
                outputs.update_target, outputs.update_is_pyproject = (
                    Path(config.rootpath) / "pyproject.toml",
                    True,
                )
            else:
                raise ConfigError(
                    "--safety-update-thresholds needs a file to write: give --safety-thresholds "
                    "PATH (created if missing), or run from a project with a pyproject.toml."
                )
            _writable_file(str(outputs.update_target), "the threshold file to update")
        if thresholds and not (outputs.update_target and not Path(thresholds).exists()):
            from safetycheck_pytest.settings import load_threshold_config

            load_threshold_config(
                config
            )  # a missing file or invalid TOML fails now, not at collection
        return outputs

    def write(self, run) -> None:
        """Write every requested output from ``run.records`` (on the controller, at session end)."""
        from safetycheck_pytest import reporting

        document = reporting.results_document(run)
        settings = reporting.run_settings_of(run)
        from safetycheck.run.results import add_gallery

        gallery = add_gallery(
            document,
            settings.data_root,
            seed=settings.seed,
            download=settings.download,
            dataset=settings.dataset,
        )
        if self.json_path:
            from safetycheck.run.results import write_document

            write_document(self.json_path, document)
            self.written.append(("JSON results", self.json_path))
        if self.report_path:
            from safetycheck.report.html import write_html

            write_html(self.report_path, document, gallery=gallery)
            self.written.append(("HTML report", self.report_path))
        if self.update_target:
            from safetycheck.gate.update import update_threshold_file

            self.changes = update_threshold_file(
                self.update_target,
                run.records,
                margin=self.margin,
                pyproject=self.update_is_pyproject,
            )
            self.written.append(("thresholds", self.update_target))


def _writable_file(path: str | None, option: str) -> Path | None:
    """An unwritable output path is an error before any expensive work, not after it."""
    if not path:
        return None
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name inside it.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot create its folder ({exc.strerror}).") from None
    if not os.access(target.parent, os.W_OK) or (
        target.exists() and not os.access(target, os.W_OK)
    ):
        raise ConfigError(f"{option} {path} is not writable; choose another path.")
    return target


def _check_margin(margin: float) -> None:
    if not (margin == margin and 0 <= margin < 1):  # NaN fails the first test
        raise ConfigError(f"--safety-threshold-margin must lie in [0, 1), not {margin}.")
