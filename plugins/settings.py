"""The plugin's options and threshold file, turned into the engine's run settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from safetycheck.checks.evaluation import RunSettings
from safetycheck.core.options import PYTEST, engine_values
from safetycheck.gate.thresholds import SafetyConfig, load_config
from safetycheck.io.profiles import DatasetProfile
from safetycheck.run.settings import Options, build_settings


def load_threshold_config(config: pytest.Config) -> SafetyConfig:
    path = config.getoption("safety_thresholds")
    if path and config.getoption("safety_update_thresholds") and not Path(path).exists():
        return (
            SafetyConfig()
        )  # --safety-update-thresholds creates it; until then, the built-in profile
    return load_config(path, pyproject=Path(config.rootpath) / "pyproject.toml")


def run_settings(
    config: pytest.Config, file_config: SafetyConfig, dataset: DatasetProfile | None = None
) -> RunSettings:
    """Command line first, then ``dataset`` (a ``safety_dataset`` fixture's), then the threshold
    file, then the defaults."""
    options = Options(**engine_values(PYTEST, config.getoption))
    return build_settings(options, file_config, given_dataset=dataset)
