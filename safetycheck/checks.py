"""The registry of check families.

A *family* (``pgd_linf``) expands into *checks* (``pgd_linf[eps=0.1]``), one per parameter set
taken from the run settings. Measuring a check reads the model's shared
:class:`~safetycheck.evaluation.ModelEvaluation`, so each expensive result is computed once per
model whichever check asks first. Families live in :mod:`safetycheck.families`, one module per
concern, and register themselves with :func:`register` when that package is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .errors import ConfigError, SafetyCheckError
from .evaluation import ModelEvaluation, RunSettings


class CheckSkipped(SafetyCheckError):
    """A check that cannot be measured for this model (say, a feature-based OOD score on a model
    with no feature layer); ``reason`` says why, and the plugin reports the check as skipped."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Measurement:
    value: float
    n: int  # samples the value was measured on
    details: str  # parameters a person needs to read the value (attack, data, seed)
    # A 95% interval of the value (binomial for accuracies, bootstrap for AUROC and calibration),
    # which baselines use as the metric's sampling noise; None where there is none.
    ci: tuple[float, float] | None = None
    # JSON-serialisable data the reports plot (ROC curve, reliability bins, per-corruption accuracy).
    artifacts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CheckFamily:
    """``bound="min"``: the value must be at least the threshold; ``"max"``: at most.
    Default thresholds live in :data:`safetycheck.config.DEFAULT_PROFILE`."""

    name: str
    metric: str  # what the value is, in words: "clean accuracy", "robust accuracy"
    bound: Literal["min", "max"]
    variants: Callable[[RunSettings], list[dict]]
    measure: Callable[[ModelEvaluation, dict], Measurement]
    value_range: tuple[float, float] = (0.0, 1.0)
    param_names: tuple[str, ...] = field(default=())
    # Positional ids read better where a parameter names a thing: "mnist_c[fog]" rather than
    # "mnist_c[corruption=fog]"; values are then joined with "-" in param_names order.
    positional: bool = False
    param_choices: dict = field(default_factory=dict)  # name -> the valid values, for validation
    # In the default suite; families too costly for a CPU gate (AutoAttack-grade cascades) are
    # opt-in through the ``checks`` setting.
    default: bool = True


REGISTRY: dict[str, CheckFamily] = {}


def register(family: CheckFamily) -> CheckFamily:
    if family.name in REGISTRY:
        raise ValueError(f"check family {family.name!r} is registered twice")
    REGISTRY[family.name] = family
    return family


def check_id(family: str, params: dict) -> str:
    """``pgd_linf[eps=0.1]``, or ``mnist_c[fog]`` for a positional family; a family without
    parameters is its own id."""
    if not params:
        return family
    registered = REGISTRY.get(family)
    if registered is not None and registered.positional:
        return f"{family}[{'-'.join(_format(params[name]) for name in registered.param_names)}]"
    return f"{family}[{','.join(f'{key}={_format(value)}' for key, value in params.items())}]"


def _format(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class PlannedCheck:
    family: CheckFamily
    params: dict

    @property
    def id(self) -> str:
        return check_id(self.family.name, self.params)


def default_families() -> list[str]:
    from . import families as _  # noqa: F401  (registers the built-in families)

    return [name for name, family in REGISTRY.items() if family.default]


def plan_checks(settings: RunSettings) -> list[PlannedCheck]:
    """Every check the settings ask for: the families in ``settings.checks`` (validated when the
    settings were read), else the default suite, in registry order. An accelerated run always
    includes ``attack_acceleration``, whatever the selection: its attack numbers need the check."""
    from . import families as _  # noqa: F401  (registers the built-in families)

    names = (
        [name for name in REGISTRY if name in settings.checks]
        if settings.checks
        else default_families()
    )
    if settings.acceleration.active and "attack_acceleration" not in names:
        names.insert(0, "attack_acceleration")
    return [
        PlannedCheck(REGISTRY[name], params)
        for name in names
        for params in REGISTRY[name].variants(settings)
    ]


def validate_families(names, where: str) -> tuple[str, ...]:
    """Raise ConfigError for an unknown family name, suggesting the nearest one."""
    import difflib

    from . import families as _  # noqa: F401

    for name in names:
        if name not in REGISTRY:
            nearest = difflib.get_close_matches(name, list(REGISTRY), n=1, cutoff=0.5)
            hint = f"did you mean {nearest[0]!r}? " if nearest else ""
            raise ConfigError(
                f"{where}: unknown check family {name!r}; {hint}valid: {', '.join(REGISTRY)}."
            )
    return tuple(names)
