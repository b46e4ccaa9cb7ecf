"""Command-line options, and turning them (plus the threshold file) into run settings."""

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


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("safetycheck", "safety tests for image classifiers")
    group.addoption("--safety-model", action="append", default=[], metavar="PATH", dest="safety_model",
                    help="model to safety-test: a .py file with safety_model()/build_model()/model, or a "
                         "TorchScript file; repeatable.")
    group.addoption("--safety-data", metavar="DIR", default=None,
                    help="data root with MNIST/, FashionMNIST/, KMNIST/ in torchvision's raw layout "
                         "(default: $SAFETYCHECK_DATA, then ~/.cache/safetycheck/data).")
    group.addoption("--safety-download", action="store_true", default=False,
                    help="allow torchvision to download missing datasets into the data root.")
    group.addoption("--safety-device", default="cpu", metavar="DEVICE", help="cpu (default), cuda or cuda:N.")
    group.addoption("--safety-samples", type=int, default=None, metavar="N",
                    help="evaluate every family on a stratified, seeded subset of N MNIST test images (and N "
                         "images per OOD set), for quick pull-request gating; reports say so (default: whole sets).")
    group.addoption("--safety-attack-samples", type=int, default=None, metavar="N",
                    help="MNIST test images attacked per sweep, a seeded random subset (default 1000, or the "
                         "threshold file's attack_samples; at most --safety-samples).")
    group.addoption("--safety-seed", type=int, default=None, metavar="SEED",
                    help="seed for the attacked subset and random starts (default 0).")
    group.addoption("--safety-eps", default=None, metavar="E1,E2,...",
                    help="Linf epsilons to test, comma-separated (default 0.05,0.1,0.2,0.3).")
    group.addoption("--safety-checks", default=None, metavar="F1,F2,...",
                    help="check families to run, comma-separated (default: the threshold file's checks, "
                         "else the default suite).")
    group.addoption("--safety-thresholds", default=None, metavar="PATH",
                    help="threshold file (TOML); default: [tool.safetycheck] in the rootdir's pyproject.toml, "
                         "else the built-in profile.")
    group.addoption("--safety-json", default=None, metavar="PATH", help="write every measured check to PATH as JSON.")
    group.addoption("--safety-report", default=None, metavar="PATH",
                    help="write a self-contained HTML report (pass/fail matrix, plots, run metadata) to PATH.")
    group.addoption("--safety-baseline", default=None, metavar="PATH",
                    help="a previous run's --safety-json file: fail any check that regressed by more than its "
                         "sampling noise.")
    group.addoption("--safety-update-thresholds", action="store_true", default=False,
                    help="write the measured values (less --safety-threshold-margin) into the threshold file "
                         "(--safety-thresholds, else pyproject.toml), keeping its comments; report the changes.")
    group.addoption("--safety-threshold-margin", type=float, default=0.01, metavar="M",
                    help="margin left below (or above, for upper bounds) each measured value by "
                         "--safety-update-thresholds (default 0.01).")
    group.addoption("--safety-mnist-c", choices=("generated", "official"), default="generated",
                    help="MNIST-C images: generated here (seeded, cached; default) or the official static set "
                         "under <data root>/mnist_c/.")
    group.addoption("--safety-allow-randomized", action="store_true", default=False,
                    help="evaluate models whose eval-mode outputs are random (reports say so).")


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
        attack_samples = min(attack_samples, samples)
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
