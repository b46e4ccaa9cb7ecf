"""Turning the command line (plus the threshold file) into run settings: command line first, then
the threshold file, then the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from safetycheck.checks import validate_families
from safetycheck.config import SafetyConfig, load_config
from safetycheck.data import resolve_data_root
from safetycheck.errors import ConfigError
from safetycheck.evaluation import RunSettings
from safetycheck.models import resolve_device
from safetycheck.ood import OODSettings


def load_threshold_config(config: pytest.Config) -> SafetyConfig:
    path = config.getoption("safety_thresholds")
    if path and config.getoption("safety_update_thresholds") and not Path(path).exists():
        return SafetyConfig()  # --safety-update-thresholds creates it; until then, the built-in profile
    return load_config(path, pyproject=Path(config.rootpath) / "pyproject.toml")


def run_settings(config: pytest.Config, file_config: SafetyConfig) -> RunSettings:
    """Command line first, then the threshold file, then the defaults."""
    defaults = RunSettings.__dataclass_fields__
    samples = _first(config.getoption("safety_samples"), file_config.settings.get("samples"))
    if samples is not None and samples < 1:
        raise ConfigError(f"--safety-samples must be at least 1, not {samples}.")
    attack_samples = _first(config.getoption("safety_attack_samples"), file_config.settings.get("attack_samples"),
                            defaults["attack_samples"].default)
    if attack_samples < 1:
        raise ConfigError(f"--safety-attack-samples must be at least 1, not {attack_samples}.")
    if samples is not None:
        # Quick mode attacks half its subset unless told otherwise: an attacked image costs 40-odd
        # passes where every other family's image costs one, so this keeps quick mode near a fifth
        # of the full gate (docs/PERFORMANCE.md).
        share = samples if config.getoption("safety_attack_samples") is not None else max(1, samples // 2)
        attack_samples = min(attack_samples, share)
    seed = config.getoption("safety_seed")
    seed = seed if seed is not None else file_config.settings.get("seed", 0)
    if seed < 0:
        raise ConfigError(f"--safety-seed must be non-negative, not {seed}.")
    return RunSettings(
        device=resolve_device(config.getoption("safety_device")),
        seed=seed,
        attack_samples=attack_samples,
        samples=samples,
        epsilons=tuple(_epsilons(config.getoption("safety_eps")) or file_config.settings.get("epsilons")
                       or defaults["epsilons"].default),
        data_root=resolve_data_root(config.getoption("safety_data")),
        download=config.getoption("safety_download"),
        allow_randomized=config.getoption("safety_allow_randomized"),
        mnist_c_source=config.getoption("safety_mnist_c"),
        ood=OODSettings(**file_config.ood),
        checks=_families(config.getoption("safety_checks")) or tuple(file_config.settings.get("checks", ())),
    )


def _first(*values):
    """The first value that is not None (0 is a value, and an invalid one the caller reports)."""
    return next((value for value in values if value is not None), None)


def _families(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return validate_families([part.strip() for part in text.split(",") if part.strip()], "--safety-checks")


def _epsilons(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--safety-eps {text!r}: give comma-separated numbers, e.g. 0.1,0.3.") from None
    bad = [v for v in values if not 0 < v <= 1]
    if not values or bad:
        raise ConfigError(f"--safety-eps {text!r}: Linf epsilons lie in (0, 1] (pixel units); got {bad or 'none'}.")
    return values
