"""The model-zoo study's numbers and the article's claims, read from a results document (the JSON
that ``--safety-json`` writes). No torch, no pytest: plain data in, plain data out.

:func:`tradeoff_rows` gives one row per model with a column per metric; :func:`evaluate_claims`
judges the article's claims (a) to (g) against those numbers. Every claim is a list of pairwise
comparisons of one metric between two models, and every comparison follows one rule:

- the 95% interval of each value is the record's ``ci``, else (accuracies only) the Wilson
  interval from ``n``; when the two intervals overlap the comparison is **no difference** (the
  gap is within the sampling noise), otherwise the order of the values decides; without an
  interval on either side the values are compared exactly, and the evidence says so;
- a robust-accuracy comparison where the attack breaks both models (both at most
  :data:`SATURATED`) says nothing about which is more robust: it is left out of the verdict when
  any other comparison of the claim is informative, and listed as left out;
- the claim **holds** when every comparison is as claimed, **does not hold** when none is,
  **partly** otherwise (including when all measured comparisons are as claimed but some needed
  data are missing), and is **not measured** when no comparison could be made.

The claim-specific rule (which models, metrics and direction) is stated in each claim's evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from safetycheck.checks import families as registered_families
from safetycheck.core.stats import wilson_interval
from safetycheck.report.plots import attack_families, family, num, params

SATURATED = 0.01
KNOWN_GROUPS = (
    "baseline",
    "ensemble member",
    "ensemble",
    "larger",
    "augmentation",
    "adversarial training",
    "ordering",
)
_ZOO_GROUPS = {
    "lenet": "baseline",
    "lenet_wide": "larger",
    "ensemble3": "ensemble",
    "ensemble5": "ensemble",
    "cutout": "augmentation",
    "mixup": "augmentation",
    "mixup_then_pgd_at": "ordering",
    "pgd_at_then_mixup": "ordering",
    **{f"lenet_seed{i}": "ensemble member" for i in range(1, 5)},
}
_AT_NAME = re.compile(r"^(fgsm|pgd)_at_(\d+(?:\.\d+)?)$")
_ZOO_AT = ("fgsm_at_0.1", "fgsm_at_0.3", "pgd_at_0.1", "pgd_at_0.3")


def group_of(model: str, groups: dict | None) -> str:
    """The model's group from ``groups``, else the zoo's family for a zoo name, else "other"."""
    given = (groups or {}).get(model)
    if given:
        return str(given)
    if _AT_NAME.match(model):
        return "adversarial training"
    return _ZOO_GROUPS.get(model, "other")


def attack_key(fam: str, eps: float) -> str:
    return f"{fam}@{eps:g}"


def is_attack(key: str) -> bool:
    return "@" in key


# Which family each study column came from, as the records read so far say (``_key``).
_COLUMN_OWNER: dict[str, str] = {}


def _owner(key: str):
    name = _COLUMN_OWNER.get(key)
    return registered_families().get(name) if name else None


def lower_is_better(key: str) -> bool:
    """Whether a smaller value is better: the column's family has an upper bound (calibration
    errors, the MNIST-C drop)."""
    owner = _owner(key)
    return owner is not None and owner.bound == "max"


@dataclass(frozen=True)
class Measure:
    value: float
    ci: tuple[float, float] | None
    n: int | None


def wilson(p: float, n: int) -> tuple[float, float] | None:
    """The 95% Wilson interval of a proportion ``p`` measured on ``n`` samples (None when n is
    0)."""
    return wilson_interval(round(p * n), n)


def _key(record: dict) -> str | None:
    """The study column of a record, as its family declares (``CheckFamily.study_column``)."""
    declared = registered_families().get(family(record))
    if declared is None or declared.study_column is None:
        return None
    key = declared.study_column(params(record))
    if key is not None:
        _COLUMN_OWNER.setdefault(key, declared.name)
    return key


def _is_proportion(name: str) -> bool:
    declared = registered_families().get(name)
    return declared is not None and declared.proportion


def _interval(record: dict, value: float) -> tuple[float, float] | None:
    ci = record.get("ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        lo, hi = num(ci[0]), num(ci[1])
        if lo is not None and hi is not None:
            return (min(lo, hi), max(lo, hi))
    n = num(record.get("n"))
    if _is_proportion(family(record)) and n and n > 0 and 0 <= value <= 1:
        return wilson(value, int(n))
    return None


def _column_order(key: str) -> tuple:
    """Columns by their family's ``study_rank`` (clean, attacks, corruptions, AUROC, calibration);
    attacks by family then eps, a family's named parameter values in declared order, AUROC in
    first-seen order."""
    owner = _owner(key)
    if owner is None:
        return (5, key)
    if is_attack(key):
        fam, eps = key.split("@")
        return (owner.study_rank, attack_families().index(fam), float(eps))
    for choices in owner.param_choices.values():
        if key in choices:
            return (owner.study_rank, tuple(choices).index(key))
    return (owner.study_rank,) if owner.param_names else (owner.study_rank, key)


class StudyData:
    """The document's measured values as {(model, column): Measure}; skipped and NaN records are
    not measured. The first record of a (model, column) wins."""

    def __init__(self, document: dict):
        document = document if isinstance(document, dict) else {}
        meta = document.get("metadata")
        self.metadata = meta if isinstance(meta, dict) else {}
        results = document.get("results")
        records = [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []
        listed = [
            str(m["name"])
            for m in self.metadata.get("models") or []
            if isinstance(m, dict) and m.get("name")
        ]
        self.models = list(
            dict.fromkeys([str(r["model"]) for r in records if "model" in r] + listed)
        )
        self.table: dict[tuple[str, str], Measure] = {}
        self.flags: dict[tuple[str, str], list[bool]] = {}
        keys: list[str] = []
        for r in records:
            if "model" not in r or r.get("skipped"):
                continue
            model, fam = str(r["model"]), family(r)
            if fam in ("attack_trust", "attack_invariants"):
                column = "trust_ok" if fam == "attack_trust" else "invariants_ok"
                self.flags.setdefault((model, column), []).append(r.get("passed") is True)
                continue
            key, value = _key(r), num(r.get("value"))
            if key is None or value is None or (model, key) in self.table:
                continue
            n = num(r.get("n"))
            self.table[(model, key)] = Measure(
                value, _interval(r, value), None if n is None else int(n)
            )
            keys.append(key)
        self.keys = sorted(dict.fromkeys(keys), key=_column_order)
        self.keys += [
            c for c in ("trust_ok", "invariants_ok") if any(k[1] == c for k in self.flags)
        ]

    def get(self, model: str, key: str) -> Measure | None:
        return self.table.get((model, key))

    def flag(self, model: str, key: str) -> bool | None:
        values = self.flags.get((model, key))
        return None if not values else all(values)

    def cell(self, model: str, key: str):
        if key in ("trust_ok", "invariants_ok"):
            return self.flag(model, key)
        m = self.get(model, key)
        return None if m is None else m.value

    def attack_keys(self, fam: str | None = None) -> list[str]:
        return [k for k in self.keys if is_attack(k) and (fam is None or k.split("@")[0] == fam)]


def tradeoff_rows(document: dict) -> list[dict]:
    """One row per model (first-seen order): ``model`` and a column per metric present anywhere
    (``clean``, ``<attack>@<eps>``, ``mnist_c_mean``, ``mnist_c_drop``, ``auroc:<set>-<score>``,
    the calibration metrics, ``trust_ok``, ``invariants_ok``), None where not measured."""
    data = StudyData(document)
    return [{"model": m, **{k: data.cell(m, k) for k in data.keys}} for m in data.models]


@dataclass(frozen=True)
class Claim:
    id: str  # "a".."g"
    text: str
    verdict: str  # "holds" | "does not hold" | "partly" | "not measured"
    evidence: str  # the rule, the result and every comparison with its numbers
    rule: str = ""
    summary: str = ""
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    outcome: str  # "as claimed" | "opposite" | "no difference" | "not measured"
    text: str
    saturated: bool = False


def decimals(key: str) -> int:
    """4 for AUROC and calibration (values crowd near 1 or 0), 3 for accuracies."""
    owner = _owner(key)
    return 4 if owner is not None and not owner.proportion else 3


def _show(model: str, m: Measure, key: str) -> str:
    d = decimals(key)
    ci = f" [{m.ci[0]:.{d}f}, {m.ci[1]:.{d}f}]" if m.ci else ""
    return f"{model} {m.value:.{d}f}{ci}"


def not_measured(text: str) -> Comparison:
    return Comparison("not measured", f"not measured: {text}")


def compare(data: StudyData, a: str, b: str, key: str, expect: str) -> Comparison:
    """Is ``a``'s ``key`` ``expect`` (">" or "<") ``b``'s, beyond the sampling noise?"""
    missing = [m for m in (a, b) if m not in data.models]
    if missing:
        return not_measured(f"{key}: {' and '.join(missing)} not in the results")
    ma, mb = data.get(a, key), data.get(b, key)
    if ma is None or mb is None:
        return not_measured(
            f"{key}: no value for {' and '.join(m for m, x in ((a, ma), (b, mb)) if x is None)}"
        )
    if ma.ci and mb.ci:
        same, why = ma.ci[0] <= mb.ci[1] and mb.ci[0] <= ma.ci[1], "95% intervals overlap"
    else:
        same, why = ma.value == mb.value, "equal"
    relation = "\u2248" if same else (">" if ma.value > mb.value else "<")
    outcome = "no difference" if same else ("as claimed" if relation == expect else "opposite")
    said = {
        "as claimed": "as claimed",
        "opposite": "the opposite of the claim",
        "no difference": f"no difference ({why})",
    }[outcome]
    note = "" if ma.ci and mb.ci else " (no interval recorded: compared exactly)"
    saturated = is_attack(key) and max(ma.value, mb.value) <= SATURATED
    return Comparison(
        outcome,
        f"{key}: {_show(a, ma, key)} {relation} {_show(b, mb, key)}: {said}{note}",
        saturated,
    )


def attack_comparisons(data: StudyData, a: str, b: str, expect: str) -> list[Comparison]:
    """``compare`` on every attack and eps measured for both models."""
    missing = [m for m in (a, b) if m not in data.models]
    if missing:
        return [not_measured(f"adversarial accuracy: {' and '.join(missing)} not in the results")]
    keys = [k for k in data.attack_keys() if data.get(a, k) and data.get(b, k)]
    if not keys:
        return [not_measured(f"adversarial accuracy: no attack measured for both {a} and {b}")]
    return [compare(data, a, b, k, expect) for k in keys]


def _judge(comparisons: list[Comparison]) -> tuple[str, str]:
    measured = [c for c in comparisons if c.outcome != "not measured"]
    unmeasured = len(comparisons) - len(measured)
    if not measured:
        return "not measured", "nothing could be compared"
    informative = [c for c in measured if not c.saturated] or measured
    count = {
        o: sum(c.outcome == o for c in informative)
        for o in ("as claimed", "no difference", "opposite")
    }
    if count["as claimed"] == 0:
        verdict = "does not hold"
    elif count["as claimed"] == len(informative) and not unmeasured:
        verdict = "holds"
    else:
        verdict = "partly"
    parts = [f"{count['as claimed']} of {len(informative)} comparisons as claimed"]
    if count["no difference"]:
        parts.append(
            f"{count['no difference']} no difference (overlapping 95% intervals: within the "
            "sampling noise)"
        )
    if count["opposite"]:
        parts.append(f"{count['opposite']} the opposite")
    if len(measured) > len(informative):
        parts.append(f"{len(measured) - len(informative)} left out (the attack breaks both models)")
    if unmeasured:
        parts.append(f"{unmeasured} not measured")
    return verdict, "; ".join(parts)


def _claim(
    id_: str, text: str, rule: str, comparisons: list[Comparison], notes: tuple[str, ...] = ()
) -> Claim:
    verdict, summary = _judge(comparisons)
    summary = "; ".join((summary, *notes))
    details = tuple(
        c.text + (" [left out: attack breaks both]" if c.saturated else "") for c in comparisons
    )
    evidence = f"Rule: {rule} Result: {verdict}: {summary}. Numbers: {'; '.join(details)}."
    return Claim(id_, text, verdict, evidence, rule, summary, details)


def _best(data: StudyData, models: list[str], key: str, highest: bool) -> str | None:
    values = {m: measure.value for m in models if (measure := data.get(m, key)) is not None}
    if not values:
        return None
    pick = max if highest else min
    return pick(values, key=values.__getitem__)


def _best_versus_rest(
    data: StudyData, group: list[str], rest: list[str], key: str, highest: bool, what: str
) -> Comparison:
    a, b = _best(data, group, key, highest), _best(data, rest, key, highest)
    if a is None or b is None:
        return not_measured(f"{key}: no {what if a is None else 'other model'} with a value")
    return compare(data, a, b, key, ">" if highest else "<")


_NOISE = (
    "Differences count only where the 95% intervals do not overlap (overlap: no difference); "
    "holds if every comparison is as claimed, does not hold if none is, partly otherwise."
)
TEXTS = {
    "a": (
        "Adversarial training gives the best adversarial accuracy, under every attack and eps, "
        "including attacks it was not trained with (APGD, AutoAttack)."
    ),
    "b": (
        "CutOut and MixUp models are less adversarially robust than the baseline, CutOut even less "
        "than MixUp (cutout < mixup < lenet)."
    ),
    "c": (
        "Ensembles beat the baseline on adversarial accuracy, MNIST-C mean, OOD AUROC "
        "(Fashion-MNIST and KMNIST, MSP) and calibration (lower ECE), more so with more members "
        "(ensemble5 over ensemble3)."
    ),
    "d": (
        "The larger model (lenet_wide) is more adversarially robust than lenet, but worse on "
        "MNIST-C mean and on Fashion-MNIST AUROC (MSP)."
    ),
    "e": (
        "Adversarial training lowers mean MNIST-C accuracy, more so with a larger training eps "
        "(FGSM and PGD training at 0.3 below 0.1 below the baseline)."
    ),
    "f": (
        "MixUp lowers OOD AUROC and CutOut raises it (against lenet, MSP on Fashion-MNIST and "
        "KMNIST)."
    ),
    "g": (
        "MixUp-then-adversarial training (mixup_then_pgd_at) is the worst calibrated model "
        "(highest ECE), the ensembles the best (lowest ECE)."
    ),
}
_OOD = ("auroc:fmnist-msp", "auroc:kmnist-msp")


def evaluate_claims(document: dict, groups: dict | None) -> list[Claim]:
    """The article's claims (a)-(g), each judged by the rule stated in its evidence."""
    data, groups = StudyData(document), dict(groups or {})
    models = data.models
    claims = []

    adversarial = [m for m in models if group_of(m, groups) == "adversarial training"]
    others = [m for m in models if m not in adversarial]
    comps = (
        [
            _best_versus_rest(data, adversarial, others, k, True, "adversarially trained model")
            for k in data.attack_keys()
        ]
        if adversarial and others
        else []
    )
    if not comps:
        comps = [
            not_measured(
                "adversarial accuracy: "
                + (
                    "no adversarially trained model (group 'adversarial training') in the results"
                    if not adversarial
                    else "no attack measured, or no other model"
                )
            )
        ]
    absent = [
        f
        for f in ("apgd", "autoattack")
        if not (data.attack_keys(f) or data.attack_keys(f"{f}_fast"))
    ]
    claims.append(
        _claim(
            "a",
            TEXTS["a"],
            "per attack family and eps, the most robust adversarially trained "
            "model (group 'adversarial training') against the most robust other model (the "
            "orderings included); AT must be higher. " + _NOISE,
            comps,
            (f"not in the results: {', '.join(absent)}",) if absent else (),
        )
    )

    comps = (
        attack_comparisons(data, "cutout", "lenet", "<")
        + attack_comparisons(data, "mixup", "lenet", "<")
        + attack_comparisons(data, "cutout", "mixup", "<")
    )
    claims.append(
        _claim(
            "b",
            TEXTS["b"],
            "per attack and eps: cutout < lenet, mixup < lenet and cutout < "
            "mixup in robust accuracy. " + _NOISE,
            comps,
        )
    )

    comps = []
    for a, b in (("ensemble3", "lenet"), ("ensemble5", "lenet"), ("ensemble5", "ensemble3")):
        comps += attack_comparisons(data, a, b, ">")
        comps += [compare(data, a, b, k, ">") for k in ("mnist_c_mean", *_OOD)] + [
            compare(data, a, b, "ece", "<")
        ]
    claims.append(
        _claim(
            "c",
            TEXTS["c"],
            "ensemble3 and ensemble5 each against lenet, and ensemble5 against "
            "ensemble3: higher robust accuracy (every attack and eps), MNIST-C mean and AUROC "
            "fmnist-msp and kmnist-msp, lower ECE. " + _NOISE,
            comps,
        )
    )

    comps = attack_comparisons(data, "lenet_wide", "lenet", ">") + [
        compare(data, "lenet_wide", "lenet", k, "<") for k in ("mnist_c_mean", "auroc:fmnist-msp")
    ]
    claims.append(
        _claim(
            "d",
            TEXTS["d"],
            "lenet_wide against lenet: higher robust accuracy (every attack and "
            "eps), lower MNIST-C mean, lower AUROC fmnist-msp. " + _NOISE,
            comps,
        )
    )

    chains: dict[str, list[tuple[float, str]]] = {}
    for name in dict.fromkeys([*_ZOO_AT, *models]):
        if match := _AT_NAME.match(name):
            chains.setdefault(match.group(1), []).append((float(match.group(2)), name))
    comps = []
    for members in chains.values():
        previous = "lenet"
        for _, name in sorted(members):
            comps.append(compare(data, name, previous, "mnist_c_mean", "<"))
            previous = name if name in models else previous
    claims.append(
        _claim(
            "e",
            TEXTS["e"],
            "MNIST-C mean along each chain lenet > X_at_<smaller eps> > "
            "X_at_<larger eps> (X = fgsm, pgd): each model against the previous one present. "
            + _NOISE,
            comps,
        )
    )

    comps = [compare(data, "mixup", "lenet", k, "<") for k in _OOD] + [
        compare(data, "cutout", "lenet", k, ">") for k in _OOD
    ]
    claims.append(
        _claim(
            "f",
            TEXTS["f"],
            "AUROC (MSP) on fmnist and kmnist: mixup < lenet and cutout > lenet. " + _NOISE,
            comps,
        )
    )

    worst = "mixup_then_pgd_at"
    if worst in models:
        rest = [m for m in models if m != worst and data.get(m, "ece")]
        runner = _best(data, rest, "ece", highest=True)
        comps = [
            compare(data, worst, runner, "ece", ">")
            if runner
            else not_measured("ece: no other model")
        ]
    else:
        comps = [not_measured(f"ece: {worst} not in the results")]
    ensembles = [m for m in models if group_of(m, groups) == "ensemble"]
    comps.append(
        _best_versus_rest(
            data, ensembles, [m for m in models if m not in ensembles], "ece", False, "ensemble"
        )
        if ensembles
        else not_measured("ece: no ensemble in the results")
    )
    claims.append(
        _claim(
            "g",
            TEXTS["g"],
            "ECE: mixup_then_pgd_at against the highest-ECE other model (must "
            "be higher), and the lowest-ECE ensemble (group 'ensemble') against the lowest-ECE "
            "non-ensemble (must be lower). " + _NOISE,
            comps,
        )
    )
    return claims
