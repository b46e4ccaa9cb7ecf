"""Rewrite a threshold file from measured results (``--safety-update-thresholds``).

The convention of syrupy's ``--snapshot-update`` and pytest-regressions' ``--force-regen``: run
the suite once with the option, review the diff of the threshold file, commit it. Every measured
check (a record that was not skipped and has a finite value) becomes the most specific bound
there is, the key ``"<check id>" = <bound>`` in that model's table::

    [models.lenet.thresholds]                 # a standalone --safety-thresholds file
    "pgd_linf[eps=0.1]" = 0.756

    [tool.safetycheck.models.lenet.thresholds]   # the same in pyproject.toml

A model's bounds belong to the dataset it was measured on. Records of the dataset the file
selects (its ``dataset`` setting; MNIST when it names none) go into the model's table as above;
records of another dataset (``--safety-dataset``, a ``safety_dataset`` fixture) go into that
model's table for that dataset, so that they never apply to the model's runs on the file's
dataset::

    [models.lenet.datasets.fashion_mnist.thresholds]
    clean_accuracy = 0.8991

and a model that already has a table for the record's dataset is written there, whichever
dataset the file selects. The shared ``[datasets.<name>.thresholds]`` tables are policy for every
model of a dataset and are never written from one model's measurements.

The new bound is the measured value less ``margin`` for a lower bound (``bound="min"``), plus
``margin`` for an upper bound (``"max"``), kept inside the metric's range (``value_range`` of the
check family: 0 is the floor of every accuracy) and rounded *outwards* to 4 decimals (down for a
lower bound, up for an upper bound), so that the run that wrote it passes it.

The file is edited with tomlkit, so comments, formatting, key order and every other setting
survive; an existing key is updated in place (its trailing comment kept), a key written
differently but naming the same check (``"pgd_linf[eps=0.10]"``) is updated rather than doubled.
The new text replaces the file atomically (a temporary file in the same folder, then
:func:`safetycheck.core.files.write_atomic`), so an interrupted run never leaves half a file.

A standalone file that does not exist yet is created (its folder must exist: a mistyped folder
would otherwise produce a file nobody reads). A ``pyproject.toml`` that does not exist is refused:
creating one would make the folder look like a Python project to pip and pytest; pass
``--safety-thresholds FILE`` for a standalone file instead.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import tomlkit
from tomlkit.exceptions import ParseError, TOMLKitError
from tomlkit.items import InlineTable, SingleKey

from safetycheck.core.errors import ConfigError
from safetycheck.core.files import write_atomic
from safetycheck.io.profiles import DEFAULT_PROFILE, dataset_name

MARGIN_OPTION = "--safety-threshold-margin"
DECIMALS = 4
_QUANTUM = Decimal(1).scaleb(-DECIMALS)  # 0.0001
_NEW_FILE_HEADER = (
    "# safetycheck thresholds, written by --safety-update-thresholds.\n"
    "# Each bound is a measured value less (for an upper bound: plus) the margin; "
    "review the diff.\n"
)


@dataclass(frozen=True)
class ThresholdChange:
    """One bound written to the file.

    Attributes
    ----------
    model, check : str
        The model's name and the check id, e.g. ``"lenet"``, ``"pgd_linf[eps=0.1]"``.
    old : float or None
        The bound before: the key's previous value when the model's table had it, else the bound
        the run applied (the record's ``threshold``, inherited from a less specific key or the
        built-in profile), None when neither is known.
    new : float
        The bound written, on 4 decimals.
    value : float
        The measured value the bound was derived from.
    bound : {"min", "max"}
        ``"min"``: the value must be at least the bound; ``"max"``: at most.
    margin : float, default=0.0
        The margin subtracted (``"min"``) or added (``"max"``).
    added : bool, default=False
        The model's table had no key for this check before.
    dataset : str or None, default=None
        The dataset of ``[models.<model>.datasets.<dataset>.thresholds]`` when the bound went
        there; None for the model's own table.
    """

    model: str
    check: str
    old: float | None
    new: float
    value: float
    bound: str
    margin: float = 0.0
    added: bool = False
    dataset: str | None = None

    @property
    def table(self) -> tuple[str, ...]:
        """The key path of the table written, below the file's base table."""
        if self.dataset is None:
            return ("models", self.model, "thresholds")
        return ("models", self.model, "datasets", self.dataset, "thresholds")

    def describe(self) -> str:
        """One line, e.g. ``lenet pgd_linf[eps=0.1]: 0.7200 -> 0.7560 (measured 0.7660, margin
        0.01)``; ``lenet on fashion_mnist clean_accuracy: ...`` for a per-dataset table."""
        old = "(none)" if self.old is None else f"{self.old:.4f}"
        note = "; new key" if self.added else ""
        where = self.model if self.dataset is None else f"{self.model} on {self.dataset}"
        return (
            f"{where} {self.check}: {old} -> {self.new:.4f} "
            f"(measured {self.value:.4f}, margin {self.margin:g}{note})"
        )


def validate_margin(margin) -> float:
    """Return ``margin`` as a float after checking it lies in [0, 1).

    Raises
    ------
    ConfigError
        When the margin is not a finite number in [0, 1); the message names
        ``--safety-threshold-margin``.
    """
    if (
        isinstance(margin, bool)
        or not isinstance(margin, (int, float))
        or not math.isfinite(margin)
    ):
        raise ConfigError(f"{MARGIN_OPTION} must be a finite number in [0, 1), not {margin!r}.")
    if not 0 <= margin < 1:
        raise ConfigError(
            f"{MARGIN_OPTION} must lie in [0, 1) (a distance in metric units, e.g. 0.01), "
            f"not {margin!r}."
        )
    return float(margin)


def new_threshold(
    value: float, bound: str, margin: float, value_range: tuple[float, float] = (0.0, math.inf)
) -> float:
    """The bound for a measured ``value``: ``value - margin`` (``"min"``) or ``value + margin``
    (``"max"``), clamped to ``value_range`` and rounded outwards to 4 decimals.

    The arithmetic is decimal, on the shortest representation of each float (so 0.766 - 0.01 is
    0.756, not 0.7559), and rounding a decimal to the nearest float is monotone, so a value inside
    ``value_range`` always passes the bound derived from it.

    Parameters
    ----------
    value : float
        The measured value, finite.
    bound : {"min", "max"}
    margin : float
        In [0, 1); see :func:`validate_margin`.
    value_range : tuple of float, default=(0.0, inf)
        The metric's range (the check family's ``value_range``).

    Raises
    ------
    ValueError
        When ``value`` is not finite or ``bound`` is neither "min" nor "max".
    """
    if bound not in ("min", "max"):
        raise ValueError(f"bound must be 'min' or 'max', not {bound!r}")
    if not math.isfinite(value):
        raise ValueError(f"cannot derive a threshold from the non-finite value {value!r}")
    low, high = value_range
    exact = Decimal(repr(float(value))) + (-1 if bound == "min" else 1) * Decimal(
        repr(float(margin))
    )
    rounded = exact.quantize(_QUANTUM, rounding=ROUND_FLOOR if bound == "min" else ROUND_CEILING)
    result = float(rounded)
    return min(max(result, low), high) + 0.0  # + 0.0 turns -0.0 into 0.0


def update_threshold_file(
    path: Path, records: list[dict], *, margin: float, pyproject: bool
) -> list[ThresholdChange]:
    """Write a bound for every measured record into ``path``; return what changed.

    Parameters
    ----------
    path : Path
        A standalone threshold file (created when missing) or, with ``pyproject=True``, a
        ``pyproject.toml`` (which must exist; the bounds go under ``[tool.safetycheck]``).
    records : list of dict
        Results records (``model``, ``check``, ``family``, ``value``, ``bound``, optionally
        ``dataset``, ``threshold``, ``skipped``). Skipped records and records whose value is None
        or not finite are ignored. When one (model, dataset, check) appears more than once, the
        worst value is used, so that every one of them passes. A record without ``dataset`` was
        measured on MNIST (results files before dataset profiles).
    margin : float
        In [0, 1), in the metric's units.
    pyproject : bool
        Whether ``path`` is a ``pyproject.toml``.

    Returns
    -------
    changes : list of ThresholdChange
        In record order; keys that already held the new bound are not listed. The file is not
        rewritten when nothing changed.

    Raises
    ------
    ConfigError
        On an invalid margin; a missing ``pyproject.toml`` or folder; a file that is not valid
        TOML (naming the line and column) or whose tables have the wrong shape.
    """
    margin = validate_margin(margin)
    path = Path(path)
    measured = _worst_values(records)
    text = _read_existing(path, pyproject)
    try:
        document = tomlkit.parse(text)
    except ParseError as exc:
        raise ConfigError(_parse_error_message(path, exc)) from None
    except TOMLKitError as exc:
        raise ConfigError(
            f"{path} is not valid TOML ({exc}); fix it and re-run; the file was not changed."
        ) from None

    created: list[tuple] = []  # the key paths of the tables with a header this update creates
    # A standalone file may hold its bounds under [tool.safetycheck] too (config.standalone_table).
    in_tool_table = "safetycheck" in document.get("tool", {})
    base = ("tool", "safetycheck") if pyproject or in_tool_table else ()
    root = _table(document, base, path)
    home = _file_dataset(root, path, base)
    changes = []
    for (model, dataset, check), (value, bound, family, applied) in measured.items():
        own = _own_table(root, model, dataset, home)
        keys = ("models", model, "thresholds") if own is None else own
        table = _table(root, keys, path, base, created)
        key = _existing_key(table, check)
        new = new_threshold(value, bound, margin, _value_range(family))
        if key is not None:
            old = table[key]
            if not isinstance(old, bool) and isinstance(old, (int, float)) and float(old) == new:
                continue
            old = (
                float(old) if isinstance(old, (int, float)) and not isinstance(old, bool) else None
            )
            table[key] = new
        else:
            old = applied
            table[check] = new
        changes.append(
            ThresholdChange(
                model,
                check,
                old,
                new,
                value,
                bound,
                margin,
                added=key is None,
                dataset=None if own is None else dataset,
            )
        )
    if changes:
        result = _separate_new_tables(tomlkit.dumps(document), created)
        if "\r\n" in text and not re.search(r"(?<!\r)\n", text):  # a CRLF file stays CRLF
            result = re.sub(r"(?<!\r)\n", "\r\n", result)
        _verify(result, path, base, changes)
        write_atomic(path, result)
    return changes


def format_changes(changes: list[ThresholdChange], path: Path | str | None = None) -> str:
    """A terminal summary: counts, then one line per change (:meth:`ThresholdChange.describe`)."""
    where = f" in {path}" if path is not None else ""
    if not changes:
        return f"thresholds{where}: no change (every bound already matches the measured values)."
    added = sum(change.added for change in changes)
    counts = f"{len(changes) - added} updated, {added} added"
    lowered = sum(
        1
        for c in changes
        if c.old is not None and (c.new < c.old if c.bound == "min" else c.new > c.old)
    )
    if lowered:
        counts += f", {lowered} loosened (review these)"
    lines = [f"thresholds{where}: {counts}"]
    lines += [f"  {change.describe()}" for change in changes]
    return "\n".join(lines)


def _file_dataset(root, path: Path, base: tuple) -> str:
    """The name of the dataset the file selects (its ``dataset`` setting), MNIST when none."""
    spec = root.get("dataset")
    if isinstance(spec, dict):
        spec = spec.get("name") or spec.get("path")
    if spec is None:
        return DEFAULT_PROFILE.name
    if not isinstance(spec, str):
        where = ".".join((*base, "dataset"))
        raise ConfigError(f"{path}: {where} must be a dataset name or path; fix it and re-run.")
    return dataset_name(spec)


def _own_table(root, model: str, dataset: str, home: str) -> tuple[str, ...] | None:
    """The key path of the per-dataset table a (model, dataset) bound belongs in, None for the
    model's own table (the dataset the file selects, and no per-dataset table for it yet)."""
    nested = ("models", model, "datasets", dataset, "thresholds")
    container = root
    for key in nested[:-1]:
        container = container.get(key) if isinstance(container, dict) else None
        if container is None:
            break
    if container is None and dataset == home:
        return None
    return nested


def _worst_values(records: list[dict]) -> dict:
    """(model, dataset, check) -> (worst finite value, bound, family, threshold the run
    applied)."""
    measured: dict = {}
    for record in records:
        if record.get("skipped"):
            continue
        value = record.get("value")
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            continue
        model, check, bound = record["model"], record["check"], record["bound"]
        dataset = record.get("dataset") or DEFAULT_PROFILE.name  # files before profiles: MNIST
        family = record.get("family") or check.partition("[")[0]
        applied = record.get("threshold")
        applied = (
            float(applied) if isinstance(applied, (int, float)) and math.isfinite(applied) else None
        )
        previous = measured.get((model, dataset, check))
        if previous is not None:
            worse = min if bound == "min" else max
            value = worse(value, previous[0])
        measured[(model, dataset, check)] = (float(value), bound, family, applied)
    return measured


def _read_existing(path: Path, pyproject: bool) -> str:
    if path.is_file():
        with open(path, encoding="utf-8", newline="") as handle:  # newline="": keep \r\n as written
            return handle.read()
    if path.exists():
        raise ConfigError(f"{path} is not a file; give --safety-thresholds a TOML file path.")
    if pyproject:
        raise ConfigError(
            f"{path} not found: --safety-update-thresholds writes to [tool.safetycheck] of an "
            "existing pyproject.toml; create it, or pass --safety-thresholds FILE to write a "
            "standalone threshold file."
        )
    if not path.parent.is_dir():
        raise ConfigError(
            f"cannot create the threshold file {path}: the folder {path.parent} does not exist."
        )
    return _NEW_FILE_HEADER


def _parse_error_message(path: Path, exc: ParseError) -> str:
    reason = str(exc).rsplit(" at line ", 1)[0]
    return (
        f"{path}:{exc.line}:{exc.col + 1}: not valid TOML ({reason}); fix line {exc.line} and "
        "re-run "
        '(check ids must be quoted, e.g. "pgd_linf[eps=0.1]" = 0.72); the file was not changed.'
    )


def _table(container, keys: tuple, path: Path, base: tuple = (), created: list | None = None):
    """The table at ``container[keys[0]][keys[1]]...``, created where missing: a ``thresholds``
    table with a header, the levels above it as header-less super tables (so that only
    ``[a.b.c]`` appears), and inline tables inside an inline table. The key path (``base`` +
    ``keys``) of each table created with a header is appended to ``created``."""
    for depth, key in enumerate(keys):
        if key not in container:
            if isinstance(container, InlineTable):
                container[key] = tomlkit.inline_table()
            else:
                header = depth == len(keys) - 1 and key == "thresholds"
                container[key] = tomlkit.table(is_super_table=not header)
                if header and created is not None:
                    created.append(base + keys)
        container = container[key]
        if not isinstance(container, dict):
            where = ".".join(base + keys[: depth + 1])
            raise ConfigError(
                f"{path}: {where} must be a table, not {container!r}; fix it and re-run."
            )
    return container


def _separate_new_tables(text: str, created: list[tuple]) -> str:
    """Put a blank line between each table this update created and a table header that follows
    it (tomlkit separates a new table from what precedes it, not from what follows)."""
    if not created:
        return text
    headers = {"[" + ".".join(SingleKey(key).as_string() for key in keys) + "]" for keys in created}
    lines = text.splitlines(keepends=True)
    output: list[str] = []
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            if inside and output and output[-1].strip():
                output.append("\r\n" if output[-1].endswith("\r\n") else "\n")
            inside = stripped in headers
        output.append(line)
    return "".join(output)


def _existing_key(table, check: str) -> str | None:
    """The key of ``table`` that names ``check``: itself, or a spelling the config reads as it."""
    if check in table:
        return check
    from safetycheck.gate.thresholds import parse_check_key

    for key in table:
        try:
            if parse_check_key(key, "", key)[1] == check:
                return key
        except ConfigError:
            continue
    return None


def _value_range(family: str) -> tuple[float, float]:
    from safetycheck.checks import families

    registered = families().get(family)
    return registered.value_range if registered is not None else (0.0, math.inf)


def _verify(text: str, path: Path, base: tuple, changes: list[ThresholdChange]) -> None:
    """Parse the new text as the config loader will, and check every bound reads back."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # would be a tomlkit bug; never write such a file
        raise ConfigError(
            f"updating {path} would produce invalid TOML ({exc}); the file was not changed."
        ) from None
    for key in base:
        data = data[key]
    for change in changes:
        written = data
        for key in change.table:
            written = written[key]
        key = _existing_key(written, change.check)
        if key is None or float(written[key]) != change.new:
            raise ConfigError(
                f"updating {path}: {change.model} {change.check} did not read back as "
                f"{change.new}; the file was not changed."
            )
