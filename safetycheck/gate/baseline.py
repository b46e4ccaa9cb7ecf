"""Compare a run with a previous run's results (``--safety-baseline results.json``).

A fixed threshold catches a model that falls below a floor; a baseline catches one that got worse
than it was, even above the floor. Each measured value is compared with the same check of the
same model in a results document written earlier with ``--safety-json``, and a check regresses
when it is worse than the baseline by more than the two runs' sampling noise could explain.

Noise
-----
Each run's uncertainty is the half-width ``h`` of a 95% interval of its value:

- the record's ``ci`` (a bootstrap percentile interval, Efron & Tibshirani 1993, for the metrics
  that carry one), ``h = (high - low) / 2``;
- otherwise, for a proportion (a metric in [0, 1] measured on ``n`` samples: accuracy, robust
  accuracy), the binomial standard error under the normal approximation (Wald),
  ``h = z * sqrt(p * (1 - p) / n)``; at ``p`` = 0 or 1 it is 0, which is strict;
- otherwise 0, and the comparison says so.

For two independent runs the standard error of the difference is ``sqrt(se1**2 + se2**2)``, so
the noise is ``sqrt(h1**2 + h2**2)`` (half-widths of 95% intervals are rescaled to ``z`` by
``z / 1.96``). The two runs are rarely independent (same seed, same images), which makes this
noise conservative: it flags a regression only when it is clearly there.

Paired
------
Where both runs recorded per-example results (format 2) on the same images, an accuracy-type
check is compared image by image instead, with McNemar's exact test on the discordant images
(:mod:`safetycheck.gate.paired`), one-sided, at the baseline's ``alpha`` Holm-corrected over the
model's paired checks: a check whose p-value is at most ``alpha / m`` (Holm's first step, ``m``
the model's paired checks in the baseline) fails as soon as it is measured, and
:func:`holm_regressions` applies the whole procedure once every check is in (the terminal summary
and the run's exit status). Where the images differ, or a document has no per-example results,
the rule above applies, and the comparison says why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from safetycheck.core.errors import ConfigError
from safetycheck.core.stats import Z_95_ROUNDED
from safetycheck.gate.paired import PairedBootstrap, PairedDeLong, PairedTest

FORMAT = "safetycheck-results"
FORMAT_VERSIONS = (1, 2)  # 2 adds per-example results; 1 is still read, for unpaired comparison
DEFAULT_ALPHA = 0.05
_TOLERANCE = 1e-12  # differences this small are floating-point noise, never a regression
SETTINGS = {  # metadata key -> what a person calls it
    "seed": "seed",
    "attack_samples": "attacked samples",
    "samples": "samples",
    "epsilons": "epsilons",
    "safetycheck": "safetycheck version",
}


@dataclass
class Baseline:
    """A previous run's results document.

    Attributes
    ----------
    path : Path
    metadata : dict
        The document's run metadata (seed, attack_samples, epsilons, versions, ...).
    records : list of dict
        Every record of the document, skipped ones included.
    """

    path: Path
    metadata: dict
    records: list[dict]
    alpha: float = DEFAULT_ALPHA  # family-wise level of the paired tests, per model
    format_version: int = 1
    _index: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._index = {(r["model"], r["check"]): r for r in self.records if not r.get("skipped")}

    def lookup(self, model: str, check: str) -> dict | None:
        """The baseline's record of ``check`` for ``model``; None when it was not measured."""
        return self._index.get((model, check))

    def paired_checks(self, model: str) -> int:
        """How many of ``model``'s measured records carry per-example results: the ``m`` of
        Holm's correction."""
        return sum(
            1 for (name, _), r in self._index.items() if name == model and r.get("per_example")
        )

    def level(self, model: str) -> float:
        """The level at which one paired check of ``model`` is judged as soon as it is measured:
        Holm's first step, ``alpha / m``."""
        from safetycheck.gate.paired import first_step_level

        return first_step_level(self.alpha, self.paired_checks(model))


@dataclass(frozen=True)
class Comparison:
    """One check against its baseline.

    Attributes
    ----------
    value, base_value : float or None
        The current and the baseline value (None when missing or NaN).
    difference : float or None
        How much worse the current value is, positive = worse (``base - value`` for a lower
        bound, ``value - base`` for an upper bound); None when not comparable.
    noise : float
        The combined half-width, >= 0; a regression is a difference larger than this.
    regressed : bool
    method : str
        Where the noise came from, in words ("from the 95% intervals", ...).
    model, check, bound : str
    compared : bool
        False when the baseline has no usable value (nothing was compared).
    """

    value: float | None
    base_value: float | None
    difference: float | None
    noise: float
    regressed: bool
    method: str
    model: str = ""
    check: str = ""
    bound: str = "min"
    compared: bool = True
    # The paired test, where both runs scored the same images: McNemar's counts and p-value, and
    # the level it was judged at.
    paired: PairedTest | PairedBootstrap | PairedDeLong | None = None
    level: float | None = None

    noise_images: int = 0  # the paired test's image count

    @property
    def improved(self) -> bool:
        """Better than the baseline by more than the noise."""
        return self.difference is not None and -self.difference > self.noise + _TOLERANCE

    def describe(self) -> str:
        """One line, e.g. ``regression vs baseline: 0.7100 < 0.7660 by 0.0560 (noise 0.0260,
        from the 95% intervals)``."""
        if not self.compared:
            return f"not compared with the baseline: {self.method}"
        if self.paired is not None and self.value is not None:
            test = self.paired
            verdict = "regression vs baseline" if self.regressed else "no regression vs baseline"
            relation = "<=" if self.level is not None and test.p_value <= self.level else ">"
            level = "" if self.level is None else f" {relation} {self.level:.3g}"
            if isinstance(test, PairedDeLong):
                return (
                    f"{verdict}: AUROC {self.value:.4f} now vs {self.base_value:.4f} on the same "
                    f"{self.noise_images} images (DeLong's paired test, z = {test.z:.2f}, "
                    f"one-sided p = {test.p_value:.3g}{level}, {self.method})"
                )
            if isinstance(test, PairedBootstrap):
                return (
                    f"{verdict}: {self.value:.4f} now vs {self.base_value:.4f} on the same "
                    f"{self.noise_images} images (paired bootstrap of {test.resamples} "
                    f"resamples, one-sided p = {test.p_value:.3g}{level}, {self.method})"
                )
            return (
                f"{verdict}: {self.value:.4f} now vs {self.base_value:.4f}; on the same "
                f"{self.noise_images} images {test.lost} newly wrong, {test.gained} newly right "
                f"(McNemar's exact test, one-sided p = {test.p_value:.3g}{level}, {self.method})"
            )
        if self.value is None:
            return (
                f"regression vs baseline: no value measured (NaN or missing) where the baseline "
                f"measured {self.base_value:.4f}"
            )
        difference = self.difference
        assert difference is not None, "a compared check with a value has a difference"
        noise = f"noise {self.noise:.4f}, {self.method}"
        worse = "<" if self.bound == "min" else ">"
        better = ">" if self.bound == "min" else "<"
        if self.regressed:
            return (
                f"regression vs baseline: {self.value:.4f} {worse} {self.base_value:.4f} "
                f"by {difference:.4f} ({noise})"
            )
        if self.improved:
            return (
                f"better than baseline: {self.value:.4f} {better} {self.base_value:.4f} "
                f"by {-difference:.4f} ({noise})"
            )
        return (
            f"within noise of baseline: {self.value:.4f} vs {self.base_value:.4f}, "
            f"difference {abs(difference):.4f} <= {noise}"
        )


def load_baseline(path: str | Path, alpha: float = DEFAULT_ALPHA) -> Baseline:
    """Read a results document written by ``--safety-json``; ``alpha`` in (0, 1) is the
    family-wise level of the paired tests (``--safety-baseline-alpha``).

    Raises
    ------
    ConfigError
        When the file is missing or unreadable, is not JSON, is not a safetycheck results
        document, has a ``format_version`` this version does not read, or a record's per-example
        results are damaged (a bitmap whose length does not match its count, say); the message
        names the file, the record and the field, and says to re-run the baseline with
        ``--safety-json``. Also when ``alpha`` is not in (0, 1).
    """
    from safetycheck.gate.paired import check_alpha

    alpha = check_alpha(alpha, "--safety-baseline-alpha")
    path = Path(path)
    redo = f"re-run the baseline with this version of safetycheck and --safety-json {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"baseline {path} not found; {redo}, or check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"baseline {path} cannot be read ({exc}); {redo}.") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"baseline {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); {redo}."
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ConfigError(
            f'baseline {path} is not a safetycheck results document (no "format": '
            f'"{FORMAT}"); {redo}.'
        )
    version = document.get("format_version")
    if isinstance(version, bool) or version not in FORMAT_VERSIONS:
        raise ConfigError(
            f"baseline {path} has format_version {version!r}, which this version of "
            f"safetycheck does not read (it reads {', '.join(map(str, FORMAT_VERSIONS))}); {redo}."
        )
    metadata, records = document.get("metadata", {}), document.get("results")
    if (
        not isinstance(metadata, dict)
        or not isinstance(records, list)
        or not all(
            isinstance(r, dict)
            and isinstance(r.get("model"), str)
            and isinstance(r.get("check"), str)
            for r in records
        )
    ):
        raise ConfigError(
            f'baseline {path} is damaged: "metadata" must be an object and "results" a '
            f'list of records with "model" and "check"; {redo}.'
        )
    from safetycheck.core.per_example import decode, is_ranking

    for record in records:
        if is_ranking(record.get("per_example")) and not record.get("skipped"):
            _check_ranking(record, f"baseline {path}, {record['model']} {record['check']}", redo)
        elif record.get("per_example") is not None and not record.get("skipped"):
            where = f"baseline {path}, {record['model']} {record['check']}"
            try:
                correct, _ = decode(record["per_example"], where)
            except ConfigError as exc:
                raise ConfigError(f"{str(exc).rstrip('.')}; {redo}.") from None
            n = record.get("n")
            if isinstance(n, int) and not isinstance(n, bool) and n != len(correct):
                raise ConfigError(
                    f"{where}: per_example.count is {len(correct)} but the record's n is {n}; "
                    f"the file is damaged; {redo}."
                )
            if _metric_mismatch(record, correct, where):
                raise ConfigError(
                    f"{where}: the value {record.get('value')!r} is not the metric of its "
                    f"per_example values; the file was edited or damaged; {redo}."
                )
            if "values" in record["per_example"]:
                continue
            value = _number(record.get("value"))
            share = float(correct.mean()) if len(correct) else None
            if value is not None and share is not None and abs(value - share) > 1e-9:
                raise ConfigError(
                    f"{where}: the value {value:.6g} is not the share of images its "
                    f"per_example results count as right ({share:.6g}); the file was edited or "
                    f"damaged; {redo}."
                )
    return Baseline(path, metadata, records, alpha=alpha, format_version=int(version))


def _check_ranking(record: dict, where: str, redo: str) -> None:
    """ConfigError, naming ``where``, when an OOD record's ranking is damaged or does not give its
    value (its AUROC, exactly: both are computed from the same order)."""
    from safetycheck.core.per_example import decode_ranking

    try:
        inside, outside, _ = decode_ranking(record["per_example"], where)
    except ConfigError as exc:
        raise ConfigError(f"{str(exc).rstrip('.')}; {redo}.") from None
    n = record.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n != inside.size + outside.size:
        raise ConfigError(
            f"{where}: per_example.count is {inside.size + outside.size} but the record's n is "
            f"{n}; the file is damaged; {redo}."
        )
    value = _number(record.get("value"))
    auroc = 1.0 - float(inside.sum()) / (2.0 * inside.size * outside.size)
    if value is not None and abs(value - auroc) > 1e-9:
        raise ConfigError(
            f"{where}: the value {value:.6g} is not the AUROC of its per_example ranking "
            f"({auroc:.6g}); the file was edited or damaged; {redo}."
        )


def _metric_mismatch(record: dict, correct: np.ndarray, where: str) -> bool:
    """Whether a record with per-image quantities has a value its quantities do not give (within
    1e-4: they are stored as float32); validates the quantities on the way."""
    from safetycheck.core.per_example import decode_values
    from safetycheck.measures.calibration import PER_IMAGE_QUANTITIES, metric_from_quantities

    quantities = decode_values(record["per_example"], where)
    metric = (record.get("params") or {}).get("metric")
    value = _number(record.get("value"))
    if not quantities or metric not in PER_IMAGE_QUANTITIES or value is None or not len(correct):
        return False
    if not set(PER_IMAGE_QUANTITIES[metric]) <= set(quantities):
        return True
    recomputed = metric_from_quantities(metric, {**quantities, "correct": correct.astype(float)})
    return abs(recomputed - value) > 1e-4


def compare(
    record: dict, base: dict, z: float = Z_95_ROUNDED, level: float | None = None
) -> Comparison:
    """Compare a current record with its baseline record.

    Parameters
    ----------
    record, base : dict
        Results records of the same check (``value``, ``bound``, ``n``, optionally ``ci`` as
        ``[low, high]``, ``family``). The current record's ``bound`` decides the direction:
        ``"min"`` (higher is better) or ``"max"`` (lower is better).
    z : float, default=1.96
        The normal quantile of the noise band (1.96: 95%); must be finite and positive.
    level : float, optional
        Where both records carry per-example results on the same images, the level of the
        paired test (McNemar's, one-sided): a regression when its p-value is at most ``level``.
        None: the unpaired rule only.

    Returns
    -------
    Comparison
        ``regressed`` is True when the current value is worse than the baseline's by more than the
        noise, and when the current value is None or NaN (nothing measured cannot match a
        baseline); never for equal values. A baseline value that is None or NaN gives
        ``compared=False``.

    Raises
    ------
    ValueError
        When ``z`` is not a finite positive number or ``bound`` is neither "min" nor "max".
    """
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or z <= 0:
        raise ValueError(f"z must be a finite positive number, not {z!r}")
    bound = record.get("bound", base.get("bound"))
    if bound not in ("min", "max"):
        raise ValueError(f"bound must be 'min' or 'max', not {bound!r}")
    label = {"model": record.get("model", ""), "check": record.get("check", ""), "bound": bound}
    value, base_value = _number(record.get("value")), _number(base.get("value"))
    if base_value is None:
        return Comparison(
            value,
            None,
            None,
            0.0,
            False,
            "the baseline value is NaN or missing",
            compared=False,
            **label,
        )
    if value is None:
        return Comparison(None, base_value, None, 0.0, True, "no value measured", **label)
    difference = base_value - value if bound == "min" else value - base_value
    from safetycheck.core.per_example import is_ranking

    if is_ranking(record.get("per_example")) or is_ranking(base.get("per_example")):
        delong, why_not = _delong(record, base)
        if delong is not None and level is not None:
            return Comparison(
                value,
                base_value,
                difference + 0.0,
                0.0,
                delong.p_value <= level,
                "Holm-corrected over the model's paired checks",
                paired=delong,
                level=level,
                noise_images=int(record["n"]),
                **label,
            )
        pairing = None
    else:
        pairing, why_not = _pairing(record, base)
    if pairing is not None and level is not None and _has_values(record, base):
        bootstrap = _bootstrap(record, base, bound)
        if bootstrap is None:
            why_not = "the two runs kept different per-image quantities"
        else:
            return Comparison(
                value,
                base_value,
                difference + 0.0,
                0.0,
                bootstrap.p_value <= level,
                "Holm-corrected over the model's paired checks",
                paired=bootstrap,
                level=level,
                noise_images=len(pairing[0]),
                **label,
            )
    elif pairing is not None and level is not None:
        from safetycheck.gate.paired import mcnemar_regression

        base_correct, correct = pairing
        if bound == "max":  # an upper-bounded share: a regression is more images flagged
            base_correct, correct = ~base_correct, ~correct
        test = mcnemar_regression(base_correct, correct)
        return Comparison(
            value,
            base_value,
            difference + 0.0,
            0.0,
            test.p_value <= level,
            "Holm-corrected over the model's paired checks",
            paired=test,
            level=level,
            noise_images=len(correct),
            **label,
        )
    h_current, how_current = _half_width(record, value, z)
    h_base, how_base = _half_width(base, base_value, z)
    noise = math.hypot(h_current, h_base)
    method = _method(how_current, how_base)
    if why_not and level is not None:
        method += f"; unpaired: {why_not}"
    regressed = difference > noise + _TOLERANCE
    return Comparison(value, base_value, difference + 0.0, noise, regressed, method, **label)


def _has_values(record: dict, base: dict) -> bool:
    return any("values" in (r.get("per_example") or {}) for r in (record, base))


def _bootstrap(record: dict, base: dict, bound: str) -> PairedBootstrap | None:
    """The paired bootstrap of a calibration record against its baseline; None where the two do
    not keep the quantities its metric needs."""
    from safetycheck.core.per_example import decode, decode_values
    from safetycheck.gate.paired import bootstrap_regression
    from safetycheck.measures.calibration import PER_IMAGE_QUANTITIES

    metric = (record.get("params") or {}).get("metric")
    if metric not in PER_IMAGE_QUANTITIES:
        return None
    runs = []
    for which in (base, record):
        where = f"{which.get('model')} {which.get('check')}"
        correct, _ = decode(which["per_example"], where)
        quantities = decode_values(which["per_example"], where)
        if not set(PER_IMAGE_QUANTITIES[metric]) <= set(quantities):
            return None
        runs.append({**quantities, "correct": correct.astype(float)})
    return bootstrap_regression(metric, runs[0], runs[1], bound)


def _delong(record: dict, base: dict) -> tuple[PairedDeLong | None, str]:
    """DeLong's paired test of an OOD AUROC record against its baseline, or None and why not."""
    from safetycheck.core.per_example import decode_ranking, is_ranking
    from safetycheck.gate.paired import delong_regression

    mine, theirs = record.get("per_example"), base.get("per_example")
    if not is_ranking(theirs):
        return None, "the baseline has no per-image ranking (an older format or another check)"
    if not is_ranking(mine):
        return None, "this run has no per-image ranking for the check"
    inside, outside, images = decode_ranking(mine, f"{record.get('model')} {record.get('check')}")
    base_in, base_out, base_images = decode_ranking(
        theirs, f"baseline {base.get('model')} {base.get('check')}"
    )
    if images != base_images or (inside.size, outside.size) != (base_in.size, base_out.size):
        return None, "the two runs scored different images (another subset, seed or dataset)"
    if min(inside.size, outside.size) < 2:
        return None, "a set has fewer than 2 images"
    return delong_regression(base_in, base_out, inside, outside), ""


def _pairing(record: dict, base: dict) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """The two runs' per-example verdicts on the same images, or None and why not ("" where
    neither run is of a kind that could be paired)."""
    from safetycheck.core.per_example import decode

    mine, theirs = record.get("per_example"), base.get("per_example")
    if mine is None and theirs is None:
        return None, ""
    if theirs is None:
        return None, "the baseline has no per-example results (an older format or another check)"
    if mine is None:
        return None, "this run has no per-example results for the check"
    correct, images = decode(mine, f"{record.get('model')} {record.get('check')}")
    base_correct, base_images = decode(theirs, f"baseline {base.get('model')} {base.get('check')}")
    if images != base_images or len(correct) != len(base_correct):
        return None, "the two runs scored different images (another subset, seed or dataset)"
    return (base_correct, correct), ""


def compare_all(
    records: list[dict], baseline: Baseline, z: float = Z_95_ROUNDED
) -> list[Comparison]:
    """:func:`compare` every measured record that the baseline also measured, in record order,
    the paired ones with Holm's procedure over each model's paired checks
    (:func:`holm_regressions`). Skipped records and checks absent from the baseline are left
    out."""
    comparisons = []
    for record in records:
        if record.get("skipped"):
            continue
        base = baseline.lookup(record["model"], record["check"])
        if base is not None:
            level = baseline.level(record["model"])
            comparisons.append(compare(record, base, z, level=level))
    return holm_regressions(comparisons, baseline.alpha)


def holm_regressions(comparisons: list[Comparison], alpha: float) -> list[Comparison]:
    """The comparisons with each model's paired checks judged by Holm's whole step-down procedure
    at ``alpha`` (each was judged alone at its first step, ``alpha / m``, when measured; Holm may
    flag more once every p-value is known). Unpaired comparisons are returned as they are."""
    import dataclasses

    from safetycheck.gate.paired import holm

    judged = list(comparisons)
    for model in dict.fromkeys(c.model for c in comparisons):
        paired = [i for i, c in enumerate(comparisons) if c.model == model and c.paired is not None]
        if not paired:
            continue
        rejected = holm([comparisons[i].paired.p_value for i in paired], alpha)  # type: ignore[union-attr]
        for index, reject in zip(paired, rejected, strict=True):
            if reject and not judged[index].regressed:
                judged[index] = dataclasses.replace(
                    judged[index],
                    regressed=True,
                    method="Holm's step-down over the model's paired checks",
                )
    return judged


def baseline_dataset(baseline: Baseline) -> str:
    """The dataset profile the baseline was measured on (documents from before profiles: MNIST)."""
    described = baseline.metadata.get("dataset")
    name = described.get("name") if isinstance(described, dict) else None
    return str(name) if name else "mnist"


def refuse_other_dataset(baseline: Baseline, dataset: str) -> None:
    """ConfigError when ``baseline`` was measured on another dataset than this run's: its values
    say nothing about regressions here."""
    theirs = baseline_dataset(baseline)
    if theirs != dataset:
        raise ConfigError(
            f"baseline {baseline.path} was measured on the {theirs} dataset and this run tests "
            f"{dataset}; compare with a baseline of the same dataset (or drop --safety-baseline)."
        )


def refuse_other_models(baseline: Baseline, models: Sequence[str]) -> None:
    """ConfigError when none of this run's ``models`` is in the baseline: every comparison would
    be "not in the baseline", a silent pass of the whole regression gate."""
    theirs = sorted({str(r.get("model")) for r in baseline.records})
    if models and not set(models) & set(theirs):
        raise ConfigError(
            f"baseline {baseline.path} has results for the models {', '.join(theirs) or 'none'} "
            f"and this run tests {', '.join(models)}; give the baseline of these models (a "
            "model's name is its safety_model's .name, else its file name)."
        )


def settings_mismatch(current_metadata: dict, baseline_metadata: dict) -> list[str]:
    """Warnings, one sentence each, for the run settings that differ from the baseline's.

    Compares seed, attack_samples, samples, epsilons and the safetycheck version, where both
    documents record them: values measured under other settings differ for reasons other than the
    model, so such a comparison is suspect.
    """
    warnings = []
    for key, name in SETTINGS.items():
        if key not in current_metadata or key not in baseline_metadata:
            continue
        now, then = current_metadata[key], baseline_metadata[key]
        if _same(now, then):
            continue
        warnings.append(
            f"the baseline was measured with {name} {_show(then)}, this run with {_show(now)}; "
            "differences may come from the settings rather than the model."
        )
    return warnings


def regression_summary(comparisons: list[Comparison], warnings: Sequence[str] = ()) -> str:
    """A terminal section: counts, then one line per regression, per check not compared and per
    settings warning. Checks within noise or better are counted, not listed."""
    regressed = [c for c in comparisons if c.regressed]
    skipped = [c for c in comparisons if not c.compared]
    improved = [c for c in comparisons if c.compared and c.improved]
    within = len(comparisons) - len(regressed) - len(skipped) - len(improved)
    lines = [
        f"baseline: {len(comparisons) - len(skipped)} compared, {len(regressed)} regressed, "
        f"{within} within noise, {len(improved)} better"
        + (f", {len(skipped)} not compared" if skipped else "")
    ]
    lines += [f"  REGRESSED  {c.model} {c.check}: {c.describe()}" for c in regressed]
    lines += [f"  SKIPPED    {c.model} {c.check}: {c.describe()}" for c in skipped]
    lines += [f"  warning: {warning}" for warning in warnings]
    return "\n".join(lines)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _half_width(record: dict, value: float, z: float) -> tuple[float, str]:
    """(half-width at ``z``, "interval" | "binomial" | "none") for one record."""
    ci = record.get("ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        low, high = _number(ci[0]), _number(ci[1])
        if low is not None and high is not None and low <= high:
            return (high - low) / 2 * z / Z_95_ROUNDED, "interval"  # a `ci` is a 95% interval
    n = record.get("n")
    if (
        not isinstance(n, bool)
        and isinstance(n, int)
        and n > 0
        and 0.0 <= value <= 1.0
        and _is_proportion(record.get("family"))
    ):
        return z * math.sqrt(value * (1 - value) / n), "binomial"
    return 0.0, "none"


_METHODS = {
    "interval": ("95% intervals", "95% interval"),
    "binomial": ("binomial standard errors", "binomial standard error"),
}


def _method(current: str, base: str) -> str:
    """Where the noise came from, in words, for the two runs' kinds of half-width."""
    if current == base:
        return (
            f"from the {_METHODS[current][0]}"
            if current != "none"
            else "no uncertainty known for either run (no interval, not a proportion)"
        )
    known = [
        f"the {_METHODS[kind][1]} ({run})"
        for kind, run in ((current, "current"), (base, "baseline"))
        if kind != "none"
    ]
    missing = [
        run for kind, run in ((current, "current run"), (base, "baseline")) if kind == "none"
    ]
    return (
        "from "
        + " and ".join(known)
        + (f"; no uncertainty known for the {missing[0]}" if missing else "")
    )


def _is_proportion(family) -> bool:
    """Whether the family's metric lies in [0, 1] (an unknown family is judged by its value)."""
    try:
        from safetycheck.checks import families
    except ImportError:  # pragma: no cover - the engine without torch
        return True
    registered = families().get(family) if isinstance(family, str) else None
    return registered is None or tuple(registered.value_range) == (0.0, 1.0)


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _show(value) -> str:
    if value is None:
        return "the default"
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def holm_on_records(records: list[dict]) -> list[dict]:
    """Apply Holm's whole procedure to a run's records, model by model, once every check is in:
    a paired check that Holm rejects but its first step did not (its record's ``baseline`` has
    ``p_value`` and ``alpha``) is marked regressed, with the reason. Returns the records newly
    marked (the run then fails)."""
    from safetycheck.gate.paired import holm

    newly = []
    for model in dict.fromkeys(r.get("model") for r in records):
        paired = [
            r
            for r in records
            if r.get("model") == model and (r.get("baseline") or {}).get("p_value") is not None
        ]
        if not paired:
            continue
        alpha = float(paired[0]["baseline"]["alpha"])
        rejected = holm([float(r["baseline"]["p_value"]) for r in paired], alpha)
        for record, reject in zip(paired, rejected, strict=True):
            base = record["baseline"]
            if reject and not base["regressed"]:
                base["regressed"] = True
                if "lost" in base:
                    evidence = f"{base['lost']} images newly wrong, {base['gained']} newly right"
                elif base.get("test") == "DeLong":
                    z = base.get("z")
                    evidence = "DeLong's paired test, " + (
                        f"z = {float(z):.2f}" if z is not None else "every image ranked worse"
                    )
                else:
                    evidence = f"paired bootstrap of {base.get('resamples')} resamples"
                base["message"] = (
                    f"regression vs baseline by Holm's step-down at {alpha:g} over the "
                    f"{len(paired)} paired checks of {model}: {evidence}, one-sided p = "
                    f"{float(base['p_value']):.3g}"
                )
                newly.append(record)
    return newly
