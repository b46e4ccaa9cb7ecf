"""The plugin's options and threshold file, turned into the engine's run settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from safetycheck.checks.evaluation import RunSettings
from safetycheck.gate.thresholds import SafetyConfig, load_config
from safetycheck.run.settings import Options, build_settings


def load_threshold_config(config: pytest.Config) -> SafetyConfig:
    path = config.getoption("safety_thresholds")
    if path and config.getoption("safety_update_thresholds") and not Path(path).exists():
        return (
            SafetyConfig()
        )  # --safety-update-thresholds creates it; until then, the built-in profile
    return load_config(path, pyproject=Path(config.rootpath) / "pyproject.toml")


def run_settings(config: pytest.Config, file_config: SafetyConfig) -> RunSettings:
    """Command line first, then the threshold file, then the defaults."""
    option = config.getoption
    return build_settings(
        Options(
            samples=option("safety_samples"),
            attack_samples=option("safety_attack_samples"),
            seed=option("safety_seed"),
            eps=option("safety_eps"),
            checks=option("safety_checks"),
            data=option("safety_data"),
            download=option("safety_download"),
            device=option("safety_device"),
            allow_randomized=option("safety_allow_randomized"),
            mnist_c=option("safety_mnist_c"),
            precision=option("safety_precision"),
            channels_last=option("safety_channels_last"),
            compile=option("safety_compile"),
        ),
        file_config,
    )
