"""The self-contained HTML report: structure, escaping, offline-ness, plots and robustness to
missing or malformed artifacts, on a synthetic results document shaped like ``--safety-json``'s."""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safetycheck.report.html import render_html, status, write_html

REPO = Path(__file__).resolve().parents[2]
XSS = 'evil<script>alert("x")</script>&net'
CORRUPTIONS = (
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
    "canny_edges",
)
PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a49444154789c6360000000020001e221bc330000000049454e44ae426082"
)


def _record(
    model, family, params, value, threshold, *, bound="min", n=1000, artifacts=None, **extra
):
    keyed = family in ("pgd_linf", "fgsm", "pgd_l2")
    label = (
        ",".join(f"{k}={v}" for k, v in params.items())
        if keyed
        else "-".join(map(str, params.values()))
    )
    check = f"{family}[{label}]" if params else family
    passed = value is not None and (value >= threshold if bound == "min" else value <= threshold)
    record = {
        "model": model,
        "check": check,
        "family": family,
        "params": params,
        "value": value,
        "threshold": threshold,
        "threshold_source": f"pyproject.toml [tool.safetycheck] {check}",
        "bound": bound,
        "passed": passed,
        "n": n,
        "metric": "accuracy",
        "details": f"{check} on <MNIST>",
        "randomized": False,
        "ci": None if value is None else [value - 0.01, value + 0.01],
        "artifacts": artifacts or {},
    }
    record.update(extra)
    return record


def _reliability(scale):
    lower = [i / 15 for i in range(15)]
    count = [0] * 10 + [3, 10, 25, 80, 9882]
    return {
        "bin_lower": lower,
        "bin_upper": [x + 1 / 15 for x in lower],
        "confidence": [None if c == 0 else b + 0.03 for c, b in zip(count, lower, strict=True)],
        "accuracy": [
            None if c == 0 else min(1.0, (b + 0.02) * scale)
            for c, b in zip(count, lower, strict=True)
        ],
        "count": count,
    }


def make_document(samples=None) -> dict:
    records = []
    for i, model in enumerate(("lenet", XSS)):
        records.append(_record(model, "clean_accuracy", {}, 0.99 - i / 100, 0.98, n=10000))
        for family, drop in (("pgd_linf", 1.0), ("fgsm", 0.6)):
            for eps in (0.05, 0.1, 0.2, 0.3):
                value = max(0.0, 0.99 - drop * eps * 3 - i * 0.1)
                records.append(
                    _record(
                        model,
                        family,
                        {"eps": eps},
                        value,
                        0.0 if eps > 0.1 else 0.5,
                        artifacts={"broken_by": {family: 12}},
                    )
                )
        records.append(_record(model, "pgd_l2", {"eps": 1.0}, 0.4, 0.1))
        per = {name: 0.95 - 0.03 * k - 0.05 * i for k, name in enumerate(CORRUPTIONS)}
        records.append(
            _record(
                model,
                "mnist_c_mean",
                {},
                sum(per.values()) / 15,
                0.85,
                n=150000,
                artifacts={"per_corruption": per},
            )
        )
        records.append(_record(model, "mnist_c", {"corruption": "fog"}, per["fog"], 0.3, n=10000))
        for ood_set in ("fmnist", "kmnist"):
            fpr = [k / 50 for k in range(51)]
            roc = {"fpr": fpr, "tpr": [min(1.0, math.sqrt(x) + 0.3 - 0.1 * i) for x in fpr]}
            records.append(
                _record(
                    model,
                    "ood_auroc",
                    {"set": ood_set, "score": "msp"},
                    0.97 - i * 0.05,
                    0.95,
                    n=20000,
                    artifacts={"roc": roc},
                )
            )
        for metric in ("ece", "brier", "nll"):
            records.append(
                _record(
                    model,
                    "calibration",
                    {"metric": metric},
                    0.002 + i * 0.03,
                    0.015,
                    bound="max",
                    n=10000,
                    artifacts={"reliability": _reliability(1 - i / 10)} if metric == "ece" else {},
                )
            )
        records.append(_record(model, "attack_trust", {"diagnostic": "gradients"}, 1.0, 1.0, n=200))
    # A NaN (null) value, a skipped record and a baseline regression.
    records.append(_record("lenet", "attack_invariants", {"invariant": "seeded"}, None, 1.0, n=8))
    records.append(
        {
            "model": XSS,
            "check": "ood_auroc[fmnist-knn]",
            "family": "ood_auroc",
            "params": {"set": "fmnist", "score": "knn"},
            "value": None,
            "skipped": "no <feature> layer",
        }
    )
    records[1]["baseline"] = {"value": 0.99, "regressed": True, "noise": 0.02}
    records[2]["baseline"] = {"value": 0.80, "regressed": False, "noise": 0.02}
    metadata = {
        "created": "2025-01-01T00:00:00+00:00",
        "safetycheck": "0.1.0",
        "python": "3.11.7",
        "torch": "2.3.0",
        "torchvision": "0.18.0",
        "numpy": "1.26.4",
        "platform": "Linux",
        "device": "cpu",
        "seed": 0,
        "attack_samples": 1000,
        "epsilons": [0.05, 0.1, 0.2, 0.3],
        "data_root": "/data/<root>",
        "data_root_source": "SAFETYCHECK_DATA",
        "models": [
            {"name": "lenet", "source": "example_models/lenet.py", "randomized": False},
            {"name": XSS, "source": "evil.py", "randomized": True},
        ],
        "samples": samples,
        "data_checksums": {"mnist/test": "ab" * 32},
        "baseline": {"path": "baseline.json", "created": "2024-12-01"},
    }
    return {
        "format": "safetycheck-results",
        "format_version": 1,
        "metadata": metadata,
        "results": records,
    }


class _Collector(HTMLParser):
    """Tags with their attributes, the cells of the matrix, and nesting errors."""

    VOID = {"meta", "img", "br", "hr", "input", "link", "col", "wbr", "source", "area", "base"}
    SVG_LEAVES = {"line", "rect", "circle", "polygon", "path", "polyline"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.stack, self.errors, self.cells = [], [], [], {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "td" and "data-model" in attrs:
            self.cells[(attrs["data-model"], attrs["data-check"])] = attrs["class"].split()
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]!r}")
        else:
            self.stack.pop()


def parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    collector.close()
    return collector


@pytest.fixture(scope="module")
def document():
    return make_document()


@pytest.fixture(scope="module")
def gallery():
    return {name: PNG_1x1 + name.encode() for name in ("fog", "identity", "shot_noise")}


@pytest.fixture(scope="module")
def page(document, gallery):
    return render_html(document, gallery)


def test_parses_with_balanced_tags(page):
    collector = parse(page)
    assert not collector.errors
    assert collector.stack == []
    assert page.startswith("<!DOCTYPE html>")


def test_offline_no_network_reference_and_no_script(page):
    collector = parse(page)
    for tag, attrs in collector.tags:
        for key in ("src", "href", "xlink:href", "action", "poster", "data"):
            value = (attrs.get(key) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//", "javascript:")), (tag, key, value)
            if value and key in ("src", "href"):
                assert value.startswith(("data:", "#")), (tag, key, value)
    assert not any(tag == "script" for tag, _ in collector.tags)
    assert "<script src" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page


def test_every_record_is_a_matrix_cell_with_its_status(document, page):
    cells = parse(page).cells
    records = document["results"]
    for record in records:
        classes = cells[(record["model"], record["check"])]
        assert "cell" in classes and status(record) in classes
    expected = {"pass", "fail", "skip"}
    assert {status(r) for r in records} == expected  # the fixture exercises every state
    # Checks a model did not run are shown as absent, never as pass or fail.
    models = {r["model"] for r in records}
    checks = {r["check"] for r in records}
    present = {(r["model"], r["check"]) for r in records}
    for key in {(m, c) for m in models for c in checks} - present:
        assert "absent" in cells[key]
    assert len(cells) == len(models) * len(checks)


def test_cells_state_value_threshold_and_symbol(page):
    assert "0.990 \u2265 0.980" in page  # lenet clean accuracy, passing
    assert "0.920 &lt; 0.950" in page  # the second model's failing AUROC (a lower bound)
    assert "0.0320 &gt; 0.0150" in page  # and its failing ECE (an upper bound)
    assert "0.0020 \u2264 0.0150" in page
    assert "\u2713" in page and "\u2717" in page
    assert "NaN" in page  # the null value
    assert "base 0.990" in page and "regressed" in page
    assert "no &lt;feature&gt; layer" in page


def test_verdict_counts_and_failure_banner(document, page):
    states = [status(r) for r in document["results"]]
    counts = (
        f"{states.count('pass')} passed, {states.count('fail')} failed, "
        f"{states.count('skip')} skipped"
    )
    assert counts in page
    assert 'class="banner failed"' in page
    passing = copy.deepcopy(document)
    passing["results"] = [r for r in passing["results"] if status(r) == "pass"]
    assert 'class="banner passed"' in render_html(passing) and "banner failed" not in render_html(
        passing
    )


def test_user_text_is_escaped(page):
    assert "<script>" not in page
    assert "evil&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;net" in page
    assert "/data/&lt;root&gt;" in page


@pytest.mark.parametrize("samples", [None, 500])
def test_subset_notice_iff_samples_set(samples):
    page = render_html(make_document(samples=samples))
    notices = [a for _, a in parse(page).tags if "notice-subset" in (a.get("class") or "").split()]
    assert len(notices) == (samples is not None)
    if samples is not None:
        assert "subset of <strong>500</strong> MNIST" in page


def test_randomized_and_baseline_notices(page):
    assert 'class="notice notice-randomized"' in page
    assert 'class="notice notice-baseline"' in page and "1 regression</strong>" in page


@pytest.mark.parametrize("section", ["robustness", "corruptions", "ood", "calibration"])
def test_each_plot_section_draws_svg(page, section):
    match = re.search(rf'<section class="card" id="{section}">(.*?)</section>', page, re.DOTALL)
    assert match, section
    assert "<svg" in match.group(1)


def test_plots_carry_their_data(page):
    ood = re.search(r'id="ood">(.*?)</section>', page, re.DOTALL).group(1)
    assert ood.count('<svg class="chart"') == 2  # one chart per (set, score) with a curve
    assert "AUROC 0.9700" in ood
    calibration = re.search(r'id="calibration">(.*?)</section>', page, re.DOTALL).group(1)
    assert calibration.count('<svg class="chart"') == 2  # one reliability diagram per model
    assert "of the 10,000 samples" in calibration
    robustness = re.search(r'id="robustness">(.*?)</section>', page, re.DOTALL).group(1)
    assert robustness.count('<svg class="chart"') == 2  # Linf and L2
    assert "lenet \u00b7 pgd_linf" in robustness


def test_gallery_embedded_as_data_uris(page, gallery):
    import base64

    images = [attrs for tag, attrs in parse(page).tags if tag == "img"]
    assert len(images) == len(gallery)
    assert images[0]["alt"] == "identity (clean)"  # identity first
    for data in gallery.values():
        assert f"data:image/png;base64,{base64.b64encode(data).decode()}" in page


def test_metadata_section(page):
    meta = re.search(r'id="metadata">(.*?)</section>', page, re.DOTALL).group(1)
    for text in (
        "2.3.0",
        "0.18.0",
        "1.26.4",
        "example_models/lenet.py",
        "ab" * 32,
        "SAFETYCHECK_DATA",
        "images attacked per sweep",
        "baseline.json",
    ):
        assert text in meta


def _strip(document, *keys):
    document = copy.deepcopy(document)
    for record in document["results"]:
        for key in keys:
            record.pop(key, None)
    return document


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: _strip(d, "artifacts"),
        lambda d: _strip(
            d, "artifacts", "ci", "baseline", "threshold_source", "details", "n", "metric", "family"
        ),
        lambda d: {**d, "metadata": {}},
        lambda d: {"results": d["results"][:1]},
        lambda d: {},
        lambda d: {"metadata": None, "results": [None, 3, {"check": "x"}, {"model": "m"}]},
    ],
    ids=["no-artifacts", "bare-records", "no-metadata", "one-record", "empty", "junk"],
)
def test_missing_parts_never_crash(document, mutate):
    page = render_html(mutate(document))
    assert not parse(page).errors
    assert "Pass/fail matrix" in page


def test_malformed_artifacts_are_skipped(document):
    broken = copy.deepcopy(document)
    for record in broken["results"]:
        artifacts = record.get("artifacts", {})
        if "roc" in artifacts:
            artifacts["roc"] = {"fpr": [0.0, "x", None], "tpr": [0.0]}
        if "reliability" in artifacts:
            artifacts["reliability"] = {
                "bin_lower": [0.0, 0.5],
                "bin_upper": [0.5],
                "count": "many",
            }
        if "per_corruption" in artifacts:
            artifacts["per_corruption"] = {"fog": float("nan"), "shear": None}
    page = render_html(broken, {"fog": "not bytes", "identity": b""})
    assert not parse(page).errors
    assert "<img" not in page
    assert "No reliability bins recorded" in page


def test_write_html_creates_folder_and_leaves_the_document_alone(tmp_path, document):
    before = copy.deepcopy(document)
    target = tmp_path / "nested" / "deeper" / "report.html"
    write_html(target, document)
    assert target.read_text(encoding="utf-8") == render_html(document)
    assert document == before


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_value = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "model": _text,
                "check": _text,
                "family": st.sampled_from(["pgd_linf", "ood_auroc", "calibration", "zz"]),
                "value": _value,
                "threshold": _value,
                "passed": st.booleans(),
                "bound": st.sampled_from(["min", "max"]),
                "params": st.fixed_dictionaries(
                    {"eps": _value, "set": _text, "score": _text, "metric": _text}
                ),
                "details": _text,
                "skipped": st.one_of(st.none(), _text),
            }
        ),
        max_size=6,
    )
)
def test_arbitrary_records_render_escaped_and_balanced(records):
    page = render_html({"metadata": {}, "results": records})
    collector = parse(page)
    assert not collector.errors and collector.stack == []
    assert not any(tag == "script" for tag, _ in collector.tags)
    for record in records:
        assert "cell" in collector.cells[(record["model"], record["check"])]


@pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="/usr/bin/chromium is not installed"
)
def test_screenshot_script_writes_png(tmp_path, document, gallery):
    report = tmp_path / "report.html"
    write_html(report, document, gallery)
    png = tmp_path / "shot" / "report.png"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "screenshot_report.py"),
            str(report),
            "-o",
            str(png),
            "--width",
            "1000",
            "--height",
            "1400",
            "--timeout",
            "40",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0 and "did not finish" in done.stderr:
        pytest.skip(f"Chromium too slow on this machine: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # a rendered page, not a blank image
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1000, 1400)
