"""Threshold files and the built-in default profile.

A threshold file is TOML: either a standalone file (``--safety-thresholds PATH``) or the
``[tool.safetycheck]`` table of the project's ``pyproject.toml``::

    attack_samples = 1000             # test images attacked per sweep (a seeded random subset)
    samples = 2000                    # optional: all families on a stratified subset (quick gating)
    seed = 0
    checks = ["clean_accuracy", "pgd_linf", "apgd"]   # families to run (default: the default suite)
    epsilons = [0.05, 0.1, 0.2, 0.3]  # Linf radii, pixel units

    [thresholds]                      # bounds for every model
    clean_accuracy = 0.99             # a whole family ...
    "pgd_linf[eps=0.1]" = 0.6         # ... or one check

    [models.lenet.thresholds]         # overrides for the model named "lenet"
    "pgd_linf[eps=0.3]" = 0.0

    [datasets.cifar10.thresholds]     # bounds for every model run on one dataset
    clean_accuracy = 0.85

    [models.lenet.datasets.fashion_mnist.thresholds]   # one model on one dataset (most specific)
    clean_accuracy = 0.88

    [ood]                             # OOD sets and scores (safetycheck.measures.ood)
    sets = ["fmnist", "kmnist"]
    scores = ["msp", "energy"]
    user_sets = { letters = "data/emnist_letters.npy" }   # relative to this file

Every key is validated: an unknown key, a wrong type or an impossible bound is a
:class:`~safetycheck.core.errors.ConfigError` naming the file, the key and the nearest valid key,
because a typo that silently disables a threshold is the classic way a gate passes by mistake.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetycheck.checks import check_id, default_profile, families, validate_families
from safetycheck.core.errors import ConfigError
from safetycheck.core.registry import format_param
from safetycheck.io.profiles import PROFILES, profile

SETTING_KEYS = {
    "samples": int,
    "attack_samples": int,
    "seed": int,
    "epsilons": list,
    "checks": list,
    "dataset": (str, dict),
}
DATASET_KEYS = {
    "name": str,
    "path": str,
    "classes": list,
    "epsilons": list,
    "ood_sets": dict,
    "mean_std": list,  # display only: the normalisation the model applies inside itself
    "corruption_params": str,  # the common corruptions' parameter set: "imagenet" or "cifar"
    "corrupted": str,  # a published corrupted set (CIFAR-10-C or ImageNet-C layout)
}
TOP_LEVEL_KEYS = set(SETTING_KEYS) | {"thresholds", "models", "datasets", "ood"}
OOD_KEYS = {"sets": list, "scores": list, "user_sets": dict}
MODEL_KEYS = {"thresholds", "datasets"}
DATASET_SECTION_KEYS = {"thresholds"}
_CHECK_KEY = re.compile(r"^(?P<family>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<params>[^\]]*)\])?$")


@dataclass(frozen=True)
class Threshold:
    value: float
    # where it came from, for reports: "built-in default",
    # "pyproject.toml: thresholds.clean_accuracy"
    source: str


@dataclass
class SafetyConfig:
    """The validated content of a threshold file (all empty when there is none)."""

    path: Path | None = None
    settings: dict = field(
        default_factory=dict
    )  # samples, attack_samples, seed, epsilons, checks as given
    ood: dict = field(default_factory=dict)  # OODSettings keyword arguments, validated
    thresholds: dict[str, float] = field(default_factory=dict)
    model_thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    dataset_thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    # model -> dataset -> bounds: [models.<model>.datasets.<dataset>.thresholds]
    model_dataset_thresholds: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def threshold(self, model: str, family: str, check: str, dataset: str = "mnist") -> Threshold:
        """The most specific bound: this model's check on this dataset, this model's family on
        this dataset, this model's check, this model's family, the dataset's check, the dataset's
        family, the file's check, the file's family, the built-in check, the built-in family."""
        where = self.path.name if self.path else ""
        built_in = default_profile()
        for table, label in (
            (
                self.model_dataset_thresholds.get(model, {}).get(dataset, {}),
                f"{where}: models.{model}.datasets.{dataset}.thresholds",
            ),
            (self.model_thresholds.get(model, {}), f"{where}: models.{model}.thresholds"),
            (self.dataset_thresholds.get(dataset, {}), f"{where}: datasets.{dataset}.thresholds"),
            (self.thresholds, f"{where}: thresholds"),
            (built_in, "built-in default"),
        ):
            for key in (check, family):
                if key in table:
                    return Threshold(
                        float(table[key]), label if table is built_in else f"{label}.{key}"
                    )
        raise ConfigError(
            f"no threshold for {check} (family {family}) in the file or the built-in profile."
        )


def load_config(
    path: str | Path | None = None, pyproject: str | Path | None = None
) -> SafetyConfig:
    """Read ``path`` (a standalone file) or else the ``[tool.safetycheck]`` table of
    ``pyproject``."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"threshold file {path} not found.")
        table, prefix = standalone_table(_read_toml(path), path)
        return _parse(table, path, prefix=prefix)
    if pyproject is not None and Path(pyproject).is_file():
        table = _read_toml(Path(pyproject)).get("tool", {}).get("safetycheck")
        if table is not None:
            return _parse(table, Path(pyproject), prefix="tool.safetycheck.")
    return SafetyConfig()


# The other top-level tables of a pyproject.toml, which a standalone file copied from one may keep.
PYPROJECT_TABLES = {"project", "build-system", "dependency-groups"}


def standalone_table(document: dict, path: Path) -> tuple[dict, str]:
    """The safetycheck table of a standalone threshold file, and how its keys are spelt in errors.

    The keys may stand at the top level, or under ``[tool.safetycheck]`` as in a pyproject.toml
    (people copy the table from theirs, or pass the pyproject itself); not both at once.
    """
    if "tool" not in document:
        return document, ""
    tool = document["tool"]
    if not isinstance(tool, dict) or "safetycheck" not in tool:
        others = sorted(tool) if isinstance(tool, dict) else []
        raise ConfigError(
            f"{path}: has a [tool] table "
            f"({', '.join(f'tool.{name}' for name in others) or 'empty'}) but no "
            "[tool.safetycheck]; put the thresholds under [tool.safetycheck] or at the top "
            "level of the file."
        )
    mixed = sorted(set(document) - {"tool"} - PYPROJECT_TABLES)
    if mixed:
        raise ConfigError(
            f"{path}: holds both [tool.safetycheck] and top-level safetycheck keys "
            f"({', '.join(mixed)}); keep one: move them under [tool.safetycheck], or drop the "
            "[tool.safetycheck] header."
        )
    table = tool["safetycheck"]
    if not isinstance(table, dict):
        raise ConfigError(
            f"{path}: tool.safetycheck must be a table, e.g. [tool.safetycheck.thresholds]."
        )
    return table, "tool.safetycheck."


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}.") from exc


def _parse(table: dict, path: Path, prefix: str) -> SafetyConfig:
    config = SafetyConfig(path=path)
    for key, value in table.items():
        if key not in TOP_LEVEL_KEYS:
            _unknown(path, f"{prefix}{key}", key, TOP_LEVEL_KEYS)
        if key in SETTING_KEYS:
            config.settings[key] = _setting(path, f"{prefix}{key}", key, value)
    config.thresholds = _thresholds(table.get("thresholds", {}), path, f"{prefix}thresholds")
    config.ood = _ood(table.get("ood", {}), path, f"{prefix}ood")
    config.model_thresholds = _sections(table, "models", path, prefix, MODEL_KEYS)
    config.dataset_thresholds = _sections(table, "datasets", path, prefix, DATASET_SECTION_KEYS)
    for model, section in table.get("models", {}).items():
        where = f"{prefix}models.{model}."
        nested = _sections(section, "datasets", path, where, DATASET_SECTION_KEYS)
        if nested:
            config.model_dataset_thresholds[model] = nested
    return config


def _dataset_section_name(name: str, path: Path, where: str) -> None:
    """A ``datasets.<name>`` section names a built-in profile or a user's dataset (the slug of
    its file or folder name, as results records name it); a near miss of a built-in name is a
    typo that would silently never apply, so it is refused with the nearest name."""
    if name in PROFILES:
        return
    nearest = difflib.get_close_matches(name, list(PROFILES), n=1, cutoff=0.75)
    if nearest or not re.fullmatch(r"[a-z0-9_]+", name):
        hint = f"did you mean {nearest[0]!r}? " if nearest else ""
        raise ConfigError(
            f"{path}: {where}: {name!r} is not a dataset name; {hint}use a built-in profile "
            f"({', '.join(PROFILES)}) or the lower-case name results records give your own "
            "dataset (its file or folder name, e.g. 'defects' for defects.npz)."
        )


def _sections(
    table: dict, kind: str, path: Path, prefix: str, keys: set[str]
) -> dict[str, dict[str, float]]:
    """``[models.<name>.thresholds]``, ``[datasets.<name>.thresholds]`` or, inside a model's
    table, ``[models.<model>.datasets.<name>.thresholds]``, validated."""
    sections = table.get(kind, {})
    if not isinstance(sections, dict):
        raise ConfigError(f"{path}: {prefix}{kind} must be a table of per-{kind[:-1]} sections.")
    parsed = {}
    for name, section in sections.items():
        where = f"{prefix}{kind}.{name}"
        if kind == "datasets":
            _dataset_section_name(name, path, where)
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: {where} must be a table, e.g. [{where}.thresholds].")
        for key in section:
            if key not in keys:
                _unknown(path, f"{where}.{key}", key, keys)
        parsed[name] = _thresholds(section.get("thresholds", {}), path, f"{where}.thresholds")
    return parsed


def _ood(table, path: Path, where: str) -> dict:
    """Keyword arguments for :class:`safetycheck.measures.ood.OODSettings`; user set paths are
    relative to the file."""
    from safetycheck.measures.ood import OODSettings

    if not isinstance(table, dict):
        raise ConfigError(
            f"{path}: {where} must be a table with keys {', '.join(sorted(OOD_KEYS))}."
        )
    options: dict[str, Any] = {}
    for key, value in table.items():
        if key not in OOD_KEYS:
            _unknown(path, f"{where}.{key}", key, OOD_KEYS)
        if not isinstance(value, OOD_KEYS[key]) or (
            key != "user_sets" and not all(isinstance(v, str) for v in value)
        ):
            raise ConfigError(
                f"{path}: {where}.{key} must be a "
                f"{'table of name = path' if key == 'user_sets' else 'list of names'}."
            )
        if key == "user_sets":
            options[key] = tuple(
                (str(name), str((path.parent / str(file)).resolve()))
                for name, file in value.items()
            )
        else:
            options[key] = tuple(value)
    try:
        OODSettings(**options)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {where}: {exc}") from None
    return options


def _mean_std(path: Path, where: str, value) -> tuple | None:
    """``[mean, std]`` numbers or ``[[means...], [stds...]]`` per channel; shown in reports only."""
    if value is None:
        return None
    parts = [v if isinstance(v, list) else [v] for v in value] if len(value) == 2 else []
    numbers = [x for part in parts for x in part]
    if (
        not parts
        or len(parts[0]) != len(parts[1])
        or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in numbers)
        or any(x <= 0 for x in parts[1])
    ):
        raise ConfigError(
            f"{path}: {where} must be [mean, std] or [[means], [stds]] per channel, stds > 0."
        )
    return (tuple(float(x) for x in parts[0]), tuple(float(x) for x in parts[1]))


def _corruption_params(path: Path, where: str, value) -> str | None:
    if value is None or value in ("imagenet", "cifar"):
        return value
    nearest = difflib.get_close_matches(str(value), ["imagenet", "cifar"], n=1, cutoff=0.3)
    hint = f"did you mean {nearest[0]!r}? " if nearest else ""
    raise ConfigError(
        f'{path}: {where}.corruption_params = {value!r}; {hint}use "imagenet" (ImageNet-C\'s '
        'parameters) or "cifar" (CIFAR-10-C\'s).'
    )


def _dataset(path: Path, where: str, value) -> dict:
    """``dataset = "cifar10"`` or ``"data/mine.npz"``, or a ``[dataset]`` table with ``name`` or
    ``path`` and optional ``classes`` and ``epsilons``; paths resolve against the file's folder.
    Returns {"name" or "path", "classes", "epsilons"}."""
    table = {"name": value} if isinstance(value, str) else value
    if not isinstance(table, dict) or not table:
        raise ConfigError(
            f"{path}: {where} must be a dataset name or path, or a table with name or path."
        )
    for key, item in table.items():
        if key not in DATASET_KEYS:
            _unknown(path, f"{where}.{key}", key, DATASET_KEYS)
        if not isinstance(item, DATASET_KEYS[key]) or not item:
            raise ConfigError(
                f"{path}: {where}.{key} must be a non-empty {DATASET_KEYS[key].__name__}."
            )
    if ("name" in table) == ("path" in table):
        raise ConfigError(f"{path}: {where} needs exactly one of name (built-in) and path (yours).")
    ood_sets = table.get("ood_sets", {})
    for set_name, file in ood_sets.items():
        if not isinstance(file, str):
            raise ConfigError(f"{path}: {where}.ood_sets.{set_name} must be a path (a string).")
    spec: dict = {
        # extra OOD sets of this dataset, name -> path (a folder of images or an .npy file)
        "ood_sets": tuple(
            (str(n), str((path.resolve().parent / f).resolve())) for n, f in ood_sets.items()
        ),
        "classes": tuple(str(c) for c in table.get("classes", ())),
        "mean_std": _mean_std(path, f"{where}.mean_std", table.get("mean_std")),
        "epsilons": tuple(_setting(path, f"{where}.epsilons", "epsilons", table["epsilons"]))
        if "epsilons" in table
        else (),
        "corruption_params": _corruption_params(path, where, table.get("corruption_params")),
        "corrupted": (
            str((path.resolve().parent / table["corrupted"]).resolve())
            if "corrupted" in table
            else None
        ),
    }
    name = table.get("name")
    if name is not None and name in PROFILES:
        return {"name": name, **spec}
    target = Path(str(table.get("path") or name)).expanduser()
    target = target if target.is_absolute() else path.resolve().parent / target
    if not (target.is_dir() or (target.suffix == ".npz" and target.is_file())):
        if name is not None and "/" not in name and not name.endswith(".npz"):
            try:
                profile(name)
            except ConfigError as error:
                raise ConfigError(f"{path}: {where}: {error}") from None
        raise ConfigError(
            f"{path}: {where}: {target} is not an .npz file or an image folder (relative paths "
            f"are read from {path.parent})."
        )
    return {"path": str(target), **spec}


def _setting(path: Path, where: str, key: str, value):
    if key == "dataset":
        return _dataset(path, where, value)
    if key == "checks":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: {where} must be a non-empty list of check family names.")
        return list(validate_families(value, f"{path}: {where}"))
    if key in ("samples", "attack_samples", "seed"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: {where} must be an integer, not {value!r}.")
        if key != "seed" and value < 1:
            raise ConfigError(f"{path}: {where} must be at least 1, not {value}.")
        if key == "seed" and value < 0:
            raise ConfigError(f"{path}: {where} must be non-negative, not {value}.")
        return value
    if (
        not isinstance(value, list)
        or not value
        or any(isinstance(e, bool) or not isinstance(e, (int, float)) for e in value)
    ):
        raise ConfigError(f"{path}: {where} must be a non-empty list of numbers, not {value!r}.")
    for eps in value:
        if not 0 < eps <= 1:
            raise ConfigError(
                f"{path}: {where} holds {eps}; Linf epsilons lie in (0, 1] (pixel units)."
            )
    return [float(e) for e in value]


def _thresholds(table, path: Path, where: str) -> dict[str, float]:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table of check = bound.")
    bounds = {}
    for key, value in table.items():
        family, canonical = parse_check_key(key, path, f"{where}.{key}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: {where}.{key} must be a number, not {value!r}.")
        registered = families()[family]
        low, high = registered.value_range
        if not low <= value <= high:
            raise ConfigError(
                f"{path}: {where}.{key} = {value} is impossible: a {registered.metric} lies in "
                f"[{low}, {high}]."
            )
        bounds[canonical] = float(value)
    return bounds


def parse_check_key(key: str, path: Path | str, where: str) -> tuple[str, str]:
    """Validate ``clean_accuracy`` or ``pgd_linf[eps=0.1]``; return (family, canonical check id)."""
    match = _CHECK_KEY.match(key.strip())
    if not match:
        raise ConfigError(
            f"{path}: {where}: {key!r} is neither a check family nor a check id like "
            "pgd_linf[eps=0.1]."
        )
    family_name = match["family"]
    registry = families()
    if family_name not in registry:
        _unknown(path, where, family_name, registry)
    family = registry[family_name]
    if match["params"] is None:
        return family_name, family_name
    params: dict = {}
    parts = [p.strip() for p in match["params"].split(",")]
    if family.positional:
        named = [n for n in family.param_names if n not in family.keyword_params]
        head, parts = parts[0], parts[1:]
        values = head.split("-") if len(named) > 1 else [head]
        if len(values) != len(named):
            raise ConfigError(
                f"{path}: {where}: {key!r} needs {len(named)} values joined by '-' "
                f"({', '.join(named)})."
            )
        params = {name: value.strip() for name, value in zip(named, values, strict=True)}
        for name, value in params.items():
            if name in family.param_choices and value not in family.param_choices[name]:
                _unknown(path, where, value, family.param_choices[name])
    allowed = family.keyword_params if family.positional else family.param_names
    for part in filter(None, parts):
        name, _, raw = part.partition("=")
        name = name.strip()
        if name not in allowed:
            _unknown(path, where, name, allowed or ["(none: this family takes no parameters)"])
        raw = raw.strip()
        if name in family.param_choices:
            # Choices may be numbers (a third party's thresholds): match them as ids print them.
            choices = {format_param(choice): choice for choice in family.param_choices[name]}
            spelled = raw
            try:
                spelled = format_param(float(raw))
            except ValueError:
                pass
            if raw not in choices and spelled not in choices:
                _unknown(path, where, raw, list(choices))
            params[name] = choices.get(raw, choices.get(spelled))
            continue
        try:
            params[name] = float(raw)
        except ValueError:
            raise ConfigError(f"{path}: {where}: {name}={raw!r} is not a number.") from None
    return family_name, check_id(family_name, params)


def _unknown(path, where: str, key: str, valid) -> None:
    valid = sorted(valid)
    nearest = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"did you mean {nearest[0]!r}? " if nearest else ""
    raise ConfigError(f"{path}: unknown key {where!r}; {hint}valid keys here: {', '.join(valid)}.")


def __getattr__(name: str):
    # DEFAULT_PROFILE was a dict here before each family declared its own default bounds.
    if name == "DEFAULT_PROFILE":
        return default_profile()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
