"""Run settings from options: the command line first, then the threshold file, then the defaults.

Shared by the pytest plugin (``--safety-samples``...) and ``safetycheck study`` (``--samples``...);
``prefix`` is how the caller spells its options, so that errors name the option the user typed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from safetycheck.checks import validate_families
from safetycheck.checks.evaluation import RunSettings
from safetycheck.core.errors import ConfigError
from safetycheck.core.options import default as option_default
from safetycheck.gate.thresholds import SafetyConfig
from safetycheck.io.data import resolve_data_root
from safetycheck.io.models import resolve_device
from safetycheck.io.profiles import DatasetProfile, resolve_profile
from safetycheck.measures.acceleration import PRECISIONS, Acceleration
from safetycheck.measures.ood import OODSettings


@dataclass(frozen=True)
class Options:
    """What the user typed; None means not given. One field per ``engine`` option of
    :data:`safetycheck.core.options.OPTIONS`, whose defaults these are."""

    samples: int | None = option_default("samples")
    attack_samples: int | None = option_default("attack_samples")
    seed: int | None = option_default("seed")
    eps: str | None = option_default("eps")  # "0.05,0.1"
    checks: str | None = option_default("checks")  # "pgd_linf,ood_auroc"
    dataset: str | None = option_default("dataset")
    data: str | None = option_default("data")
    download: bool = option_default("download")
    device: str = option_default("device")
    allow_randomized: bool = option_default("allow_randomized")
    mnist_c: str = option_default("mnist_c")
    corruption_baseline: str | None = option_default("corruption_baseline")
    precision: str = option_default("precision")
    channels_last: bool = option_default("channels_last")
    compile: bool = option_default("compile")
    early_stop: str = option_default("early_stop")
    early_stop_alpha: float = option_default("early_stop_alpha")


def build_settings(
    options: Options,
    file_config: SafetyConfig,
    prefix: str = "--safety-",
    given_dataset: DatasetProfile | None = None,
) -> RunSettings:
    """``given_dataset``: a profile the caller built (the plugin's ``safety_dataset`` fixture);
    the ``dataset`` option still wins over it, and it wins over the threshold file's."""
    defaults = RunSettings.__dataclass_fields__
    samples = _first(options.samples, file_config.settings.get("samples"))
    if samples is not None and samples < 1:
        raise ConfigError(f"{prefix}samples must be at least 1, not {samples}.")
    attack_samples = _first(
        options.attack_samples,
        file_config.settings.get("attack_samples"),
        defaults["attack_samples"].default,
    )
    if attack_samples < 1:
        raise ConfigError(f"{prefix}attack-samples must be at least 1, not {attack_samples}.")
    if samples is not None:
        # Quick mode attacks half its subset unless told otherwise: an attacked image costs 40-odd
        # passes where every other family's image costs one, so this keeps quick mode near a fifth
        # of the full gate (docs/PERFORMANCE.md).
        share = samples if options.attack_samples is not None else max(1, samples // 2)
        attack_samples = min(attack_samples, share)
    seed = _first(options.seed, file_config.settings.get("seed"), 0)
    if seed < 0:
        raise ConfigError(f"{prefix}seed must be non-negative, not {seed}.")
    device = resolve_device(options.device)
    dataset = _dataset(options.dataset, file_config, given_dataset)
    return RunSettings(
        device=device,
        # CPU: batches of 250-500 run fastest (docs/PERFORMANCE.md); a GPU wants large batches
        # (untimed here: no GPU was lent to the sessions so far).
        batch_size=500 if device.type == "cpu" else 4096,
        seed=seed,
        attack_samples=attack_samples,
        samples=samples,
        epsilons=tuple(
            _epsilons(options.eps, prefix)
            or file_config.settings.get("epsilons")
            or dataset.epsilons["linf"]
        ),
        dataset=dataset,
        data_root=resolve_data_root(options.data),
        download=options.download,
        allow_randomized=options.allow_randomized,
        mnist_c_source=options.mnist_c,
        acceleration=_acceleration(options, prefix),
        ood=_ood(dataset, file_config),
        checks=_families(options.checks, prefix) or tuple(file_config.settings.get("checks", ())),
        corruption_baseline=_corruption_baseline(options.corruption_baseline, dataset),
        early_stop_alpha=_early_stop(options, samples, prefix),
    )


def _early_stop(options: Options, samples: int | None, prefix: str) -> float | None:
    """The early-stopping level, or None where sweeps run every image: ``auto`` stops early in
    quick mode (``samples``) only."""
    if options.early_stop not in ("auto", "on", "off"):
        raise ConfigError(
            f"{prefix}early-stop must be auto, on or off; got {options.early_stop!r}."
        )
    from safetycheck.gate.paired import check_alpha

    alpha = check_alpha(options.early_stop_alpha, f"{prefix}early-stop-alpha")
    on = options.early_stop == "on" or (options.early_stop == "auto" and samples is not None)
    return alpha if on else None


def _corruption_baseline(path: str | None, dataset: DatasetProfile):
    """The baseline model's corruption errors, read now so that a bad file fails before any
    model runs."""
    if not path:
        return None
    from safetycheck.checks.common_corruptions import load_corruption_baseline

    return load_corruption_baseline(path, dataset.name)


def _dataset(
    option: str | None, file_config: SafetyConfig, given: DatasetProfile | None = None
) -> DatasetProfile:
    """The option (a name, or a path read from the working directory), else ``given``, else the
    threshold file's ``dataset`` (validated there; paths already resolved against its folder),
    else MNIST."""
    if option:
        return resolve_profile(option, base=Path.cwd())
    if given is not None:
        return given
    spec = file_config.settings.get("dataset")
    if not spec:
        return resolve_profile("mnist")
    chosen = resolve_profile(
        spec.get("name") or spec["path"], classes=spec["classes"] or None, epsilons=spec["epsilons"]
    )
    changes = {
        key: spec[key]
        for key in ("mean_std", "corruption_params", "corrupted")
        if spec.get(key) is not None
    }
    return dataclasses.replace(chosen, **changes) if changes else chosen


def _ood(dataset: DatasetProfile, file_config: SafetyConfig) -> OODSettings:
    """The profile's OOD sets and the ``[dataset]`` table's own (``ood_sets``), unless the file's
    ``[ood]`` table names the sets itself."""
    spec = file_config.settings.get("dataset") or {}
    extra = tuple(spec.get("ood_sets", ()))
    options = dict(file_config.ood)
    options["user_sets"] = tuple(options.get("user_sets", ())) + extra
    options.setdefault("sets", dataset.ood_sets + tuple(name for name, _ in extra))
    return OODSettings(**options)


def _acceleration(options: Options, prefix: str) -> Acceleration:
    if options.precision not in PRECISIONS:
        raise ConfigError(
            f"{prefix}precision {options.precision!r} is not one of {', '.join(PRECISIONS)}."
        )
    return Acceleration(options.precision, options.channels_last, options.compile)


def _first(*values):
    """The first value that is not None (0 is a value, and an invalid one the caller reports)."""
    return next((value for value in values if value is not None), None)


def _families(text: str | None, prefix: str) -> tuple[str, ...]:
    if not text:
        return ()
    return validate_families(
        [part.strip() for part in text.split(",") if part.strip()], f"{prefix}checks"
    )


def _epsilons(text: str | None, prefix: str) -> list[float] | None:
    if not text:
        return None
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"{prefix}eps {text!r}: give comma-separated numbers, e.g. 0.1,0.3."
        ) from None
    bad = [v for v in values if not 0 < v <= 1]
    if not values or bad:
        raise ConfigError(
            f"{prefix}eps {text!r}: Linf epsilons lie in (0, 1] (pixel units); got {bad or 'none'}."
        )
    return values
