"""What one check family is: a :class:`CheckFamily`, declared once, and the results it measures.

A *family* (``pgd_linf``) expands into *checks* (``pgd_linf[eps=0.1]``), one per parameter set
taken from the run settings. A family object carries everything the rest of the package needs to
know about it: how it expands and measures, which way its bound points, its built-in default
bounds, the note the HTML report shows, the report plot it joins and the study column each of its
records fills. The threshold files, the reports and the study read these fields; none of them
lists families by hand.

This module holds the types only. The families themselves are found by
:func:`safetycheck.checks.families`: the ``FAMILIES`` of every module of :mod:`safetycheck.checks`,
then those of third-party packages that declare the ``safetycheck.families`` entry-point group.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from safetycheck.core.errors import SafetyCheckError

if TYPE_CHECKING:  # type-only: the evaluation layer sits above this one
    from safetycheck.checks.evaluation import ModelEvaluation, RunSettings

# The report's plot sections a family can join (see :mod:`safetycheck.report.plots`);
# "reference" is the clean accuracy drawn at eps 0 and above the corruptions.
PLOTS = (
    "reference",
    "linf_attacks",
    "l2_attacks",
    "corruptions",
    "common_corruptions",
    "ood",
    "calibration",
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CheckSkipped(SafetyCheckError):
    """A check that cannot be measured for this model (say, a feature-based OOD score on a model
    with no feature layer); ``reason`` says why, and the plugin reports the check as skipped."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class FamilyDefinitionError(SafetyCheckError):
    """A :class:`CheckFamily` declared with inconsistent fields (a bug in the family's module)."""


@dataclass(frozen=True)
class Measurement:
    value: float
    n: int  # samples the value was measured on
    details: str  # parameters a person needs to read the value (attack, data, seed)
    # A 95% interval of the value (binomial for accuracies, bootstrap for AUROC and calibration),
    # which baselines use as the metric's sampling noise; None where there is none.
    ci: tuple[float, float] | None = None
    # JSON-serialisable data the reports plot (ROC curve, reliability bins, per-corruption
    # accuracy).
    artifacts: dict = field(default_factory=dict)
    # What else shaped the value (an attack family's cascade, budget and device): recorded in the
    # result's params beside the check id's own, without changing the id.
    params: dict = field(default_factory=dict)
    # For an accuracy-type value: which scored images were right (a PerExample), so that a later
    # run on the same images can be compared image by image (issue #21's paired test).
    per_example: Any = None


def format_param(value: object) -> str:
    """A parameter value as it appears in a check id: floats in ``%g`` form (``0.1``, ``2``)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class CheckFamily:
    """One family of checks, declared once in its module.

    ``bound="min"``: a value must be at least its threshold; ``"max"``: at most.
    ``default_bounds`` holds the built-in thresholds: the key ``name`` bounds every check of the
    family, a check id (``"pgd_linf[eps=0.1]"``) one check; a threshold file overrides them.
    """

    name: str
    metric: str  # what the value is, in words: "clean accuracy", "robust accuracy"
    bound: Literal["min", "max"]
    variants: Callable[[RunSettings], list[dict]]
    measure: Callable[[ModelEvaluation, dict], Measurement]
    value_range: tuple[float, float] = (0.0, 1.0)
    param_names: tuple[str, ...] = ()
    # Positional ids read better where a parameter names a thing: "mnist_c[fog]" rather than
    # "mnist_c[corruption=fog]"; values are then joined with "-" in param_names order.
    positional: bool = False
    # Optional parameters of a positional family, written name=value after the positional values:
    # "corruptions[fog]" and "corruptions[fog,severity=5]" are two checks of one family.
    keyword_params: tuple[str, ...] = ()
    param_choices: Mapping[str, tuple] = field(default_factory=dict)  # name -> the valid values
    # In the default suite; families too costly for a CPU gate (AutoAttack-grade cascades) are
    # opt-in through the ``checks`` setting.
    default: bool = True
    default_bounds: Mapping[str, float] = field(default_factory=dict)
    note: str = ""  # the HTML report's one-line description of the family; "" reads ``metric``
    plot: str | None = None  # the report plot section it joins (one of PLOTS), None: none
    plot_rank: int = 0  # order among the families of that plot (series, columns)
    # The value is a share of ``n`` samples, so a 95% Wilson interval applies where no ``ci`` was
    # recorded (the study's comparisons, baselines).
    proportion: bool = False
    # The study's column for one of this family's records (its ``params``), None: not in the study;
    # ``study_rank`` orders the study's column groups (clean 0, attacks 1, corruptions 2, ...).
    study_column: Callable[[Mapping[str, Any]], str | None] | None = None
    study_rank: int = 9

    def __post_init__(self) -> None:
        where = f"check family {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise FamilyDefinitionError(
                f"{where}: a family name is an identifier (letters, digits, _)."
            )
        if self.bound not in ("min", "max"):
            raise FamilyDefinitionError(
                f'{where}: bound must be "min" or "max", not {self.bound!r}.'
            )
        if not (callable(self.variants) and callable(self.measure)):
            raise FamilyDefinitionError(f"{where}: variants and measure must be callables.")
        low, high = self.value_range
        if not low < high:
            raise FamilyDefinitionError(f"{where}: value_range {self.value_range} is empty.")
        if not set(self.keyword_params) <= set(self.param_names) or (
            self.keyword_params and not self.positional
        ):
            raise FamilyDefinitionError(
                f"{where}: keyword_params must be parameters (param_names) of a positional family."
            )
        if self.plot is not None and self.plot not in PLOTS:
            raise FamilyDefinitionError(
                f"{where}: plot {self.plot!r} is not one of {', '.join(PLOTS)}."
            )
        for key, value in self.default_bounds.items():
            if key != self.name and not key.startswith(f"{self.name}["):
                raise FamilyDefinitionError(
                    f"{where}: default bound {key!r} is not {self.name!r} or one of its check ids."
                )
            number = float(value)
            if math.isnan(number) or not low <= number <= high:
                raise FamilyDefinitionError(
                    f"{where}: default bound {key} = {value!r} lies outside {self.value_range}."
                )

    def check_id(self, params: Mapping[str, Any]) -> str:
        """``pgd_linf[eps=0.1]``, or ``mnist_c[fog]`` for a positional family; a family without
        parameters is its own id."""
        if not params:
            return self.name
        if self.positional:
            named = [n for n in self.param_names if n not in self.keyword_params]
            parts = ["-".join(format_param(params[n]) for n in named)]
            parts += [f"{k}={format_param(params[k])}" for k in self.keyword_params if k in params]
            return f"{self.name}[{','.join(parts)}]"
        return f"{self.name}[{','.join(f'{k}={format_param(v)}' for k, v in params.items())}]"

    @property
    def description(self) -> str:
        """The report's note: ``note``, else ``metric``."""
        return self.note or self.metric


@dataclass(frozen=True)
class PlannedCheck:
    family: CheckFamily
    params: dict

    @property
    def id(self) -> str:
        return self.family.check_id(self.params)
