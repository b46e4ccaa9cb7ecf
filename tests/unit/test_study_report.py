"""The study report: trade-off rows, the article's claims under their decision rules (holds, does
not hold, partly with overlapping intervals read as no difference, not measured), and the written
files (Markdown, standalone SVG plots, self-contained HTML), on synthetic results documents with
the zoo's model names and plausible numbers."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET

import pytest

from safetycheck.study.claims import SATURATED, StudyData, compare
from safetycheck.study.report import Claim, evaluate_claims, tradeoff_rows, write_study

EPS = (0.05, 0.1, 0.2, 0.3)
GROUPS = {
    "lenet": "baseline",
    "lenet_seed1": "ensemble member",
    "ensemble3": "ensemble",
    "ensemble5": "ensemble",
    "lenet_wide": "larger",
    "cutout": "augmentation",
    "mixup": "augmentation",
    "fgsm_at_0.1": "adversarial training",
    "fgsm_at_0.3": "adversarial training",
    "pgd_at_0.1": "adversarial training",
    "pgd_at_0.3": "adversarial training",
    "mixup_then_pgd_at": "ordering",
    "pgd_at_then_mixup": "ordering",
}
# model: (clean, pgd_linf at EPS, mnist_c_mean, auroc fmnist-msp, auroc kmnist-msp, ece)
ZOO = {
    "lenet": (0.993, (0.93, 0.77, 0.04, 0.0), 0.900, 0.992, 0.970, 0.0018),
    "lenet_seed1": (0.992, (0.93, 0.76, 0.04, 0.0), 0.899, 0.991, 0.969, 0.0019),
    "ensemble3": (0.994, (0.955, 0.82, 0.08, 0.0), 0.915, 0.994, 0.975, 0.0012),
    "ensemble5": (0.995, (0.975, 0.87, 0.13, 0.0), 0.925, 0.996, 0.980, 0.0007),
    "lenet_wide": (0.994, (0.95, 0.85, 0.10, 0.0), 0.890, 0.9925, 0.972, 0.0020),
    "cutout": (0.992, (0.90, 0.60, 0.01, 0.0), 0.905, 0.990, 0.9705, 0.0030),
    "mixup": (0.991, (0.905, 0.65, 0.005, 0.0), 0.902, 0.995, 0.975, 0.0150),
    "fgsm_at_0.1": (0.990, (0.97, 0.93, 0.40, 0.05), 0.880, 0.985, 0.960, 0.0040),
    "fgsm_at_0.3": (0.985, (0.97, 0.94, 0.80, 0.60), 0.800, 0.975, 0.950, 0.0060),
    "pgd_at_0.1": (0.990, (0.98, 0.95, 0.50, 0.10), 0.870, 0.984, 0.958, 0.0050),
    "pgd_at_0.3": (0.980, (0.99, 0.97, 0.93, 0.88), 0.750, 0.970, 0.940, 0.0200),
    "pgd_at_then_mixup": (0.989, (0.96, 0.90, 0.30, 0.02), 0.860, 0.980, 0.955, 0.0100),
}


def _record(model, family, params, value, *, ci=0.005, n=1000, bound="min", passed=True, **extra):
    check = family + ("[" + ",".join(f"{k}={v}" for k, v in params.items()) + "]" if params else "")
    record = {
        "model": model,
        "check": check,
        "family": family,
        "params": params,
        "value": value,
        "threshold": 0.0,
        "bound": bound,
        "passed": passed,
        "n": n,
        "metric": "m",
        "ci": None if ci is None or value is None else [max(0.0, value - ci), min(1.0, value + ci)],
        "artifacts": {},
        "skipped": None,
    }
    record.update(extra)
    return record


def _records(model, clean, robust, mnist_c, fmnist, kmnist, ece):
    out = [_record(model, "clean_accuracy", {}, clean, n=10000)]
    out += [_record(model, "pgd_linf", {"eps": e}, v) for e, v in zip(EPS, robust, strict=False)]
    out.append(_record(model, "fgsm", {"eps": 0.1}, min(1.0, robust[1] + 0.03)))
    out.append(_record(model, "apgd", {"eps": 0.1}, max(0.0, robust[1] - 0.02)))
    # No ci: the Wilson interval from n (pooled over the 15 corruptions) stands in.
    out.append(
        _record(
            model,
            "mnist_c_mean",
            {},
            mnist_c,
            ci=None,
            n=150000,
            artifacts={"per_corruption": {"fog": mnist_c - 0.1, "shear": mnist_c + 0.05}},
        )
    )
    out.append(_record(model, "mnist_c", {"corruption": "fog"}, mnist_c - 0.1, n=10000))
    out.append(_record(model, "mnist_c_drop", {}, clean - mnist_c, ci=0.002, bound="max"))
    out.append(
        _record(model, "ood_auroc", {"set": "fmnist", "score": "msp"}, fmnist, ci=0.0005, n=20000)
    )
    out.append(
        _record(model, "ood_auroc", {"set": "kmnist", "score": "msp"}, kmnist, ci=0.0005, n=20000)
    )
    out.append(
        _record(model, "calibration", {"metric": "ece"}, ece, ci=0.0002, n=10000, bound="max")
    )
    out.append(
        _record(model, "calibration", {"metric": "brier"}, ece * 5, ci=0.0005, n=10000, bound="max")
    )
    out.append(_record(model, "attack_trust", {"diagnostic": "gradients"}, 1.0, n=200))
    out.append(_record(model, "attack_trust", {"diagnostic": "black_box"}, 1.0, n=200))
    return out


def make_document(models=ZOO, extra=()) -> dict:
    records = [r for model, numbers in models.items() for r in _records(model, *numbers)]
    metadata = {
        "created": "2026-11-25T19:00:00+00:00",
        "safetycheck": "0.1.0",
        "python": "3.11.9",
        "torch": "2.4.0",
        "torchvision": "0.19.0",
        "numpy": "1.26.4",
        "device": "cpu",
        "seed": 0,
        "attack_samples": 1000,
        "samples": None,
        "epsilons": list(EPS),
        "models": [
            {"name": m, "source": "example_models/zoo.py", "randomized": False} for m in models
        ],
    }
    return {
        "format": "safetycheck-results",
        "format_version": 1,
        "metadata": metadata,
        "results": records + list(extra),
    }


def _claims(document, groups=GROUPS) -> dict[str, Claim]:
    return {c.id: c for c in evaluate_claims(document, groups)}


def test_rows_have_a_column_per_metric_and_none_where_not_measured():
    extra = [
        _record("lenet", "attack_trust", {"diagnostic": "budget"}, 0.0, passed=False, n=200),
        _record(
            "lenet", "ood_auroc", {"set": "fmnist", "score": "knn"}, None, skipped="no features"
        ),
        _record("user", "pgd_l2", {"eps": 1.0}, 0.4),
    ]
    rows = tradeoff_rows(make_document(extra=extra))
    assert [r["model"] for r in rows] == [*ZOO, "user"]
    lenet, user = rows[0], rows[-1]
    assert list(lenet)[:9] == [
        "model",
        "clean",
        "fgsm@0.1",
        "pgd_linf@0.05",
        "pgd_linf@0.1",
        "pgd_linf@0.2",
        "pgd_linf@0.3",
        "apgd@0.1",
        "pgd_l2@1",
    ]
    assert (
        lenet["clean"] == 0.993
        and lenet["pgd_linf@0.1"] == 0.77
        and lenet["fgsm@0.1"] == pytest.approx(0.80)
    )
    assert lenet["mnist_c_mean"] == 0.9 and lenet["mnist_c_drop"] == pytest.approx(0.093)
    assert lenet["auroc:fmnist-msp"] == 0.992 and lenet["ece"] == 0.0018 and lenet["brier"] == 0.009
    assert lenet["trust_ok"] is False and rows[1]["trust_ok"] is True  # one failed diagnostic
    assert "auroc:fmnist-knn" not in lenet  # skipped: no value anywhere
    assert (
        lenet["pgd_l2@1"] is None
        and user["pgd_l2@1"] == 0.4
        and user["clean"] is None
        and user["trust_ok"] is None
    )
    assert all(set(r) == set(lenet) for r in rows)


def test_comparisons_read_overlapping_intervals_as_no_difference():
    data = StudyData(make_document())
    same = compare(data, "lenet_wide", "lenet", "auroc:fmnist-msp", "<")
    assert (
        same.outcome == "no difference"
        and "intervals overlap" in same.text
        and "0.9925" in same.text
    )
    assert compare(data, "ensemble5", "lenet", "ece", "<").outcome == "as claimed"
    assert compare(data, "lenet", "ensemble5", "ece", "<").outcome == "opposite"
    # mnist_c_mean has no ci: the Wilson interval from n=150000 is used, so 0.005 apart differs.
    assert compare(data, "cutout", "lenet", "mnist_c_mean", ">").outcome == "as claimed"
    broken = compare(data, "cutout", "lenet", "pgd_linf@0.3", "<")
    assert broken.saturated and broken.outcome == "no difference" and SATURATED >= 0.0
    assert compare(data, "nobody", "lenet", "ece", "<").outcome == "not measured"


def test_claim_verdicts_follow_their_rules():
    claims = _claims(make_document())
    assert list(claims) == list("abcdefg")
    assert all(
        c.verdict in ("holds", "does not hold", "partly", "not measured") for c in claims.values()
    )
    a = claims["a"]  # pgd_at_0.3 is the most robust model under every attack, apgd included
    assert a.verdict == "holds", a.evidence
    assert (
        "apgd@0.1: pgd_at_0.3" in a.evidence and "autoattack" in a.summary
    )  # not in the results, said
    assert "Rule:" in a.evidence and "95% intervals" in a.evidence
    b = claims[
        "b"
    ]  # cutout 0.90 vs mixup 0.905 at eps 0.05: within the noise; eps 0.2 and 0.3 break both
    assert b.verdict == "partly", b.evidence
    assert "no difference" in b.summary and "left out (the attack breaks both models)" in b.summary
    assert (
        "pgd_linf@0.05: cutout 0.900 [0.895, 0.905] \u2248 mixup 0.905 "
        "[0.900, 0.910]: no difference" in b.evidence
    )
    assert claims["c"].verdict == "holds", claims["c"].evidence
    d = claims[
        "d"
    ]  # more robust and lower MNIST-C as claimed, but Fashion-MNIST AUROC within the noise
    assert (
        d.verdict == "partly"
        and "auroc:fmnist-msp: lenet_wide 0.9925 [0.9920, 0.9930] \u2248 lenet 0.9920" in d.evidence
    )
    assert claims["e"].verdict == "holds", claims["e"].evidence
    f = claims["f"]  # mixup raises AUROC, cutout lowers it or ties: never as claimed
    assert (
        f.verdict == "does not hold"
        and "the opposite of the claim" in f.evidence
        and "no difference" in f.evidence
    )
    g = claims["g"]  # mixup_then_pgd_at was not run; the ensembles part holds
    assert g.verdict == "partly" and "mixup_then_pgd_at not in the results" in g.evidence
    assert "ece: ensemble5 0.0007" in g.evidence and "< lenet 0.0018" in g.evidence


def test_claims_flip_with_the_numbers():
    zoo = dict(
        ZOO, mixup_then_pgd_at=(0.990, (0.96, 0.91, 0.45, 0.08), 0.850, 0.975, 0.950, 0.0500)
    )
    assert _claims(make_document(zoo))["g"].verdict == "holds"
    zoo["lenet_wide"] = ZOO["lenet"]  # identical to lenet: every comparison within the noise
    d = _claims(make_document(zoo))["d"]
    assert d.verdict == "does not hold" and "0 of 7 comparisons as claimed" in d.summary
    zoo = dict(ZOO, ensemble5=ZOO["ensemble3"])  # size no longer helps
    assert _claims(make_document(zoo))["c"].verdict == "partly"
    zoo = dict(ZOO, lenet=(0.993, (0.995, 0.99, 0.99, 0.99), 0.9, 0.992, 0.97, 0.0018))
    assert _claims(make_document(zoo))["a"].verdict == "does not hold"


def test_missing_models_are_not_measured_and_named():
    zoo = {k: v for k, v in ZOO.items() if k not in ("cutout", "mixup", "ensemble3", "ensemble5")}
    claims = _claims(make_document(zoo), {})  # groups from the zoo's names
    assert (
        claims["b"].verdict == "not measured"
        and "cutout and mixup not in the results" in claims["b"].evidence
    )
    assert (
        claims["f"].verdict == "not measured" and "mixup not in the results" in claims["f"].evidence
    )
    assert claims["c"].verdict == "not measured" and "ensemble3" in claims["c"].evidence
    assert (
        claims["g"].verdict == "not measured"
        and "no ensemble in the results" in claims["g"].evidence
    )
    assert claims["a"].verdict == "holds"  # adversarial training found by name without groups
    partial = {k: v for k, v in ZOO.items() if k not in ("fgsm_at_0.3", "pgd_at_0.3")}
    e = _claims(make_document(partial))["e"]
    assert (
        e.verdict == "partly" and "fgsm_at_0.3 and fgsm_at_0.1 not in the results" not in e.evidence
    )
    assert "fgsm_at_0.3 not in the results" in e.evidence


def _svg_root(path):
    root = ET.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def test_write_study_writes_markdown_svgs_and_an_offline_page(tmp_path):
    zoo = dict(ZOO, **{"evil<b>net</b>|x": ZOO["lenet"]})
    manifest = {
        "lenet": {"mnist_test_accuracy": 0.9927, "training_seconds": 189.8},
        "cutout": {
            "family": "augmentation",
            "recipe": "6 epoch(s) cutout (size=12)",
            "mnist_test_accuracy": 0.991,
            "training_seconds": 200.0,
        },
    }
    paths = write_study(
        tmp_path / "out",
        make_document(zoo),
        dict(GROUPS, **{"evil<b>net</b>|x": "mine <i>"}),
        manifest,
    )
    assert set(paths) == {
        "study.md",
        "tradeoffs.html",
        "plots/robust_vs_mnist_c_pgd_linf_0.1.svg",
        "plots/robust_vs_mnist_c_pgd_linf_0.2.svg",
        "plots/auroc_vs_ece.svg",
        "plots/robust_vs_clean.svg",
        "plots/robust_vs_eps.svg",
    }
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    for name, path in paths.items():
        if name.endswith(".svg"):
            root = _svg_root(path)
            texts = "".join(root.itertext())
            assert "evil<b>net</b>|x" in texts and "lenet" in texts  # labels, parsed back unescaped
    eps_texts = "".join(_svg_root(paths["plots/robust_vs_eps.svg"]).itertext())
    assert all(f in eps_texts for f in ("pgd_linf", "fgsm", "apgd"))

    markdown = paths["study.md"].read_text(encoding="utf-8")
    assert "<b>" not in markdown and "evil&lt;b&gt;net&lt;/b&gt;\\|x" in markdown
    assert (
        "![Robust accuracy (pgd_linf@0.1) vs MNIST-C "
        "mean](plots/robust_vs_mnist_c_pgd_linf_0.1.svg)" in markdown
    )
    assert (
        "| test images per check | all (whole test sets) |" in markdown
        and "| seed | 0 |" in markdown
    )
    assert "| L∞ epsilons | 0.05, 0.1, 0.2, 0.3 |" in markdown and "| torch | 2.4.0 |" in markdown
    assert (
        "| lenet | baseline | 0.993 |" in markdown and "**0.0007**" in markdown
    )  # best ECE in bold
    assert "## Training" in markdown and "6 epoch(s) cutout (size=12) | 0.9910 | 200 |" in markdown
    assert "| (a) |" in markdown and "**holds**" in markdown and "*Rule:*" in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| model | group |"))
    assert header.split(" | ")[2:] == [
        "clean",
        "pgd_linf@0.05",
        "pgd_linf@0.1",
        "pgd_linf@0.2",
        "pgd_linf@0.3",
        "fgsm@0.1",
        "apgd@0.1",
        "mnist_c_mean",
        "auroc:fmnist-msp",
        "auroc:kmnist-msp",
        "ece",
        "brier",
        "trust_ok |",
    ]

    page = paths["tradeoffs.html"].read_text(encoding="utf-8")
    assert (
        "<b>net" not in page and "evil&lt;b&gt;net&lt;/b&gt;|x" in page and "mine &lt;i&gt;" in page
    )
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page.lower() and page.count("<svg") >= 5
    assert "xmlns" not in page  # inline SVG needs none
    assert 'class="verdict v-holds"' in page and "Training" in page


def test_write_study_on_a_single_user_model(tmp_path):
    document = make_document({"my_model": ZOO["lenet"]})
    claims = evaluate_claims(document, {"my_model": "user"})
    assert sum(c.verdict == "not measured" for c in claims) >= 6
    assert all(c.evidence for c in claims)
    paths = write_study(tmp_path, document, {"my_model": "user"})
    assert "study.md" in paths and "tradeoffs.html" in paths
    for name, path in paths.items():
        if name.endswith(".svg"):
            _svg_root(path)
    markdown = paths["study.md"].read_text(encoding="utf-8")
    assert "my_model (user)" in markdown and "not measured" in markdown


def test_write_study_survives_an_empty_or_malformed_document(tmp_path):
    paths = write_study(
        tmp_path, {"results": [{"check": "x"}, "junk", {"model": "m", "value": "NaN"}]}, {}
    )
    assert {"study.md", "tradeoffs.html"} <= set(paths)
    assert "not drawn" in paths["study.md"].read_text(encoding="utf-8")
    assert all(c.verdict == "not measured" for c in evaluate_claims(copy.deepcopy({}), None))
    assert tradeoff_rows({}) == []
