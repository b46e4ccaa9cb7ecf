"""The check families, one module per concern, and the registry that finds them.

Every module of this package that defines ``FAMILIES`` (a tuple of
:class:`~safetycheck.core.registry.CheckFamily`) contributes those families, in module-name order;
adding a family is one new module here and nothing else (see CONTRIBUTING.md). A third-party
package adds families the same way from outside, by declaring an entry point::

    [project.entry-points."safetycheck.families"]
    my_family = "my_package.my_module:FAMILY"   # a CheckFamily, a sequence of them, or a module
                                                 # with FAMILIES

:func:`families` collects both with no import side effects: nothing registers itself, so the
registry is the same whichever module was imported first.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

from safetycheck.core.errors import ConfigError
from safetycheck.core.registry import (
    CheckFamily,
    CheckSkipped,
    FamilyDefinitionError,
    Measurement,
    PlannedCheck,
)

if TYPE_CHECKING:
    from safetycheck.checks.evaluation import ModelEvaluation, RunSettings

ENTRY_POINT_GROUP = "safetycheck.families"

__all__ = [
    "ENTRY_POINT_GROUP",
    "CheckFamily",
    "CheckSkipped",
    "Measurement",
    "PlannedCheck",
    "check_id",
    "default_families",
    "default_profile",
    "families",
    "family",
    "plan_checks",
    "validate_families",
]


@cache
def _builtin_module_names() -> tuple[str, ...]:
    return tuple(
        sorted(
            f"{__name__}.{info.name}"
            for info in pkgutil.iter_modules(__path__)
            if not info.name.startswith("_")
        )
    )


@cache
def _entry_points() -> tuple[metadata.EntryPoint, ...]:
    return tuple(sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name))


def _families_of(obj: Any, origin: str) -> list[CheckFamily]:
    if isinstance(obj, ModuleType):
        obj = getattr(obj, "FAMILIES", None)
        if obj is None:
            raise FamilyDefinitionError(f"{origin}: the module defines no FAMILIES.")
    if isinstance(obj, CheckFamily):
        return [obj]
    if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes, Mapping)):
        found = list(obj)
        if found and all(isinstance(item, CheckFamily) for item in found):
            return found
    raise FamilyDefinitionError(
        f"{origin}: expected a safetycheck CheckFamily, a sequence of them or a module with "
        f"FAMILIES, got {type(obj).__name__}."
    )


def _load_entry_point(entry_point: metadata.EntryPoint) -> list[CheckFamily]:
    dist = getattr(entry_point, "dist", None)
    origin = (
        f"entry point {entry_point.name} = {entry_point.value!r} (group {ENTRY_POINT_GROUP}"
        + (f", distribution {dist.name}" if dist is not None else "")
        + ")"
    )
    try:
        obj = entry_point.load()
    except Exception as error:  # a third party's import error, reported as theirs
        raise FamilyDefinitionError(
            f"{origin} failed to load: {type(error).__name__}: {error}"
        ) from error
    return _families_of(obj, origin)


def families() -> dict[str, CheckFamily]:
    """Every known family by name: the built-in ones in module order, then the entry points'.

    Raises :class:`~safetycheck.core.registry.FamilyDefinitionError` when two families share a
    name or an entry point does not load.
    """
    found: dict[str, CheckFamily] = {}
    origins: dict[str, str] = {}
    sources: list[tuple[str, list[CheckFamily]]] = []
    for name in _builtin_module_names():
        module = importlib.import_module(name)
        if hasattr(module, "FAMILIES"):
            sources.append((f"module {name}", _families_of(module, f"module {name}")))
    for entry_point in _entry_points():
        sources.append((f"entry point {entry_point.name}", _load_entry_point(entry_point)))
    for origin, declared in sources:
        for item in declared:
            if item.name in found:
                raise FamilyDefinitionError(
                    f"check family {item.name!r} is declared twice: by {origins[item.name]} and by "
                    f"{origin}; rename one of them."
                )
            found[item.name] = item
            origins[item.name] = origin
    return found


def family(name: str) -> CheckFamily | None:
    """The family called ``name``, None if there is none."""
    return families().get(name)


def _no_variants(settings: RunSettings) -> list[dict]:
    return []


def _no_measurement(evaluation: ModelEvaluation, params: dict) -> Measurement:
    raise TypeError("a stand-in family for an unknown name names checks; it measures nothing")


def check_id(family_name: str, params: Mapping[str, Any]) -> str:
    """The id of one check of ``family_name`` (see :meth:`CheckFamily.check_id`); an unknown
    family gets the keyword form."""
    known = family(family_name)
    if known is None:
        return CheckFamily(family_name, "", "min", _no_variants, _no_measurement).check_id(params)
    return known.check_id(params)


def default_profile() -> dict[str, float]:
    """The built-in thresholds: every family's ``default_bounds``, in registry order."""
    return {
        key: float(value)
        for item in families().values()
        for key, value in item.default_bounds.items()
    }


def default_families() -> list[str]:
    return [name for name, item in families().items() if item.default]


def plan_checks(settings: RunSettings) -> list[PlannedCheck]:
    """Every check the settings ask for: the families in ``settings.checks`` (validated when the
    settings were read), else the default suite, in registry order. An accelerated run always
    includes ``attack_acceleration``, whatever the selection: its attack numbers need the check."""
    registry = families()
    names = (
        [name for name in registry if name in settings.checks]
        if settings.checks
        else [name for name, item in registry.items() if item.default]
    )
    if settings.acceleration.active and "attack_acceleration" not in names:
        names.insert(0, "attack_acceleration")
    return [
        PlannedCheck(registry[name], params)
        for name in names
        for params in registry[name].variants(settings)
    ]


def validate_families(names: Iterable[str], where: str) -> tuple[str, ...]:
    """Raise ConfigError for an unknown family name, suggesting the nearest one."""
    registry = families()
    names = tuple(names)
    for name in names:
        if name not in registry:
            nearest = difflib.get_close_matches(name, list(registry), n=1, cutoff=0.5)
            hint = f"did you mean {nearest[0]!r}? " if nearest else ""
            raise ConfigError(
                f"{where}: unknown check family {name!r}; {hint}valid: {', '.join(registry)}."
            )
    return names


def __getattr__(name: str) -> Any:
    # ``REGISTRY`` was a module-level dict before the families became declared objects.
    if name == "REGISTRY":
        return families()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
