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

import numpy as np
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


# The common corruptions (Hendrycks & Dietterich 2019): corruptions_mean, corruptions[...],
# corruptions_drop, corruptions_mce, and their gallery ---------------------------------------

COMMON_MODELS = ("resnet", XSS)


def _common_accuracy(model_index: int, k: int, severity: int) -> float:
    return round(0.93 - 0.025 * severity * (1 + k / 19) - 0.04 * model_index, 6)


def make_common_document(json_keys: bool = True) -> dict:
    """Records shaped like the common-corruption families write them (as read back from JSON:
    ``by_severity`` keys are strings when ``json_keys``)."""
    from safetycheck.measures.common_corruptions import BENCHMARK, NAMES, SEVERITIES

    records = []
    for i, model in enumerate(COMMON_MODELS):
        own = [_record(model, "clean_accuracy", {}, 0.95 - i * 0.04, 0.9, n=10000)]
        means = {}
        for k, name in enumerate(NAMES):
            by = {s: _common_accuracy(i, k, s) for s in SEVERITIES}
            means[name] = sum(by.values()) / 5
            own.append(
                _record(
                    model,
                    "corruptions",
                    {"corruption": name},
                    means[name],
                    0.3,
                    n=50000,
                    artifacts={
                        "by_severity": {str(s) if json_keys else s: v for s, v in by.items()}
                    },
                )
            )
        for k, name in enumerate(NAMES):
            for s in SEVERITIES:
                own.append(
                    _record(
                        model,
                        "corruptions",
                        {"corruption": name, "severity": s},
                        _common_accuracy(i, k, s),
                        0.3,
                        n=10000,
                    )
                )
        per = {name: means[name] for name in BENCHMARK}
        mean = sum(per.values()) / len(per)
        own.insert(
            1,  # the families' order: clean_accuracy, corruptions_mean, corruptions, ...
            _record(
                model,
                "corruptions_mean",
                {},
                mean,
                0.5,
                n=750000,
                artifacts={"per_corruption": per},
            ),
        )
        own.append(
            _record(model, "corruptions_drop", {}, 0.95 - i * 0.04 - mean, 0.25, bound="max")
        )
        own.append(_record(model, "corruptions_mce", {}, 0.9 + i / 10, 1.0, bound="max"))
        records += own
    document = make_document()
    document["results"] = records
    document["metadata"]["models"] = [
        {"name": m, "source": f"{m}.py", "randomized": False} for m in COMMON_MODELS
    ]
    document["metadata"]["dataset"] = {
        "name": "cifar10",
        "title": "CIFAR-10",
        "input_shape": [3, 32, 32],
        "classes": [str(k) for k in range(10)],
    }
    return document


def _fake_png(key: str) -> bytes:
    """A valid 8x4 grayscale PNG whose bytes differ by ``key`` (a trailing chunk-less tail)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (8, 4), color=len(key) % 256).save(buffer, format="PNG")
    return buffer.getvalue() + key.encode()


@pytest.fixture(scope="module")
def common_pictures():
    """A gallery as :func:`common_gallery` makes it, frost left out (unavailable)."""
    from safetycheck.measures.common_corruptions import NAMES

    keys = ["clean"] + [f"{n}@{s}" for n in NAMES if n != "frost" for s in (1, 3, 5)]
    return {key: _fake_png(key) for key in keys}


@pytest.fixture(scope="module")
def common_page(common_pictures):
    return render_html(make_common_document(), common_gallery=common_pictures)


def _section_of(page: str, anchor: str) -> str:
    match = re.search(rf'<section class="card" id="{anchor}">(.*?)</section>', page, re.DOTALL)
    assert match, anchor
    return match.group(1)


def test_common_section_shows_every_corruption_row_and_curve(common_page):
    from safetycheck.measures.common_corruptions import HELD_OUT, NAMES

    collector = parse(common_page)
    assert not collector.errors and collector.stack == []
    assert '<a href="#common-corruptions">Common corruptions</a>' in common_page
    section = _section_of(common_page, "common-corruptions")
    charts = re.findall(r'<svg class="chart".*?</svg>', section, re.DOTALL)
    assert len(charts) == 1 + len(NAMES)  # the dot rows, then one curve per corruption
    rows = charts[0]
    assert "clean (none)" in rows
    assert rows.index("clean (none)") < rows.index(">gaussian_noise<")  # clean on top
    for name in NAMES:
        shown = f"{name} (held out)" if name in HELD_OUT else name
        assert f">{shown}<" in rows, name
    # Each row carries both models' mean over the severities (one tooltip per model).
    fog = NAMES.index("fog")
    fog_mean = sum(_common_accuracy(0, fog, s) for s in range(1, 6)) / 5
    assert f"resnet \u00b7 fog: {fog_mean:.4f}" in rows
    assert "resnet \u2014 mean" in section  # the legend gives the headline mean
    # The curves: one small multiple per corruption, x = 0 (clean) then severities 1..5.
    captions = re.findall(r'<figure class="plot mini"><figcaption>(.*?)</figcaption>', section)
    assert captions == list(NAMES)
    curve = next(c for c in charts[1:] if "accuracy vs severity, fog" in c)
    assert "resnet: severity (0: clean) 0 \u2192 0.9500" in curve
    for s in range(1, 6):
        assert f"resnet: severity (0: clean) {s} \u2192 {_common_accuracy(0, fog, s):.4f}" in curve
    assert curve.count("<title>") == 1 + 2 * 6  # the chart's title, 6 points x 2 models
    # The summary line: mean, drop and mCE per model.
    assert "mCE 0.900" in section and "drop from clean" in section


def test_common_section_gallery_table(common_page, common_pictures):
    import base64

    from safetycheck.measures.common_corruptions import NAMES

    section = _section_of(common_page, "common-corruptions")
    table = re.search(r'<table class="cgallery">(.*?)</table>', section, re.DOTALL).group(1)
    head = re.findall(r'<th scope="col">(.*?)</th>', table)
    assert head == ["corruption", "clean", "severity 1", "severity 3", "severity 5"]
    rows = re.findall(r'<tr><th scope="row">(.*?)</th>(.*?)</tr>', table, re.DOTALL)
    assert [name for name, _ in rows] == [n for n in NAMES if n != "frost"]
    clean_uri = base64.b64encode(common_pictures["clean"]).decode()
    for name, cells in rows:
        assert cells.count("<img ") == 4
        assert f"data:image/png;base64,{clean_uri}" in cells
        for s in (1, 3, 5):
            data = base64.b64encode(common_pictures[f"{name}@{s}"]).decode()
            assert f'src="data:image/png;base64,{data}" alt="{name}, severity {s}"' in cells
    # The picture keeps its aspect ratio (8x4 PNG at 80 px wide) and, with two models, each
    # model's accuracy at that severity is written beneath it.
    assert 'width="80" height="40"' in table
    fog = NAMES.index("fog")
    fog_row = dict(rows)["fog"]
    assert f'<span class="acc">resnet {_common_accuracy(0, fog, 5):.3f}</span>' in fog_row
    assert '<span class="acc">resnet 0.950</span>' in fog_row  # clean accuracy under clean


def test_common_gallery_is_read_from_the_document(common_pictures):
    import base64

    document = make_common_document()
    document["common_gallery"] = {
        key: base64.b64encode(png).decode("ascii") for key, png in common_pictures.items()
    }
    document["common_gallery"]["fog@3"] = "not base64!"  # a damaged picture is left out
    page = render_html(document)
    assert page.count("<img ") == 4 * 18 - 1
    assert '<td class="none">' in page
    assert page == render_html(
        document, common_gallery={k: v for k, v in common_pictures.items() if k != "fog@3"}
    )


def test_common_section_from_severity_records_or_artifacts_alone():
    document = make_common_document(json_keys=False)
    only_records = copy.deepcopy(document)
    for record in only_records["results"]:
        record["artifacts"] = {}
    only_artifacts = copy.deepcopy(document)
    only_artifacts["results"] = [
        r for r in only_artifacts["results"] if "severity" not in (r.get("params") or {})
    ]
    for variant in (document, only_records, only_artifacts):
        section = _section_of(render_html(variant), "common-corruptions")
        assert section.count('<figure class="plot mini">') == 19
        assert "resnet: severity (0: clean) 5 \u2192" in section
    # The mean alone (no per-corruption records): the dot rows from its artifact, no curves.
    headline = copy.deepcopy(document)
    headline["results"] = [r for r in headline["results"] if r["family"] != "corruptions"]
    section = _section_of(render_html(headline), "common-corruptions")
    assert '<figure class="plot mini">' not in section and ">fog<" in section
    assert "(held out)" not in section  # only the 15 of the mean are known


def test_common_section_absent_without_measured_records(page, document):
    assert 'id="common-corruptions"' not in page and "cgallery" not in page
    assert "Common corruptions" not in page
    skipped = copy.deepcopy(document)
    skipped["results"].append(
        {
            "model": "lenet",
            "check": "corruptions[fog]",
            "family": "corruptions",
            "params": {"corruption": "fog"},
            "value": None,
            "skipped": "not applicable: MNIST-C applies",
        }
    )
    assert 'id="common-corruptions"' not in render_html(skipped)


def test_common_section_leaves_the_rest_of_the_page_alone(document, gallery, page):
    """Adding common-corruption records changes nothing outside their section, the matrix and the
    verdict: the MNIST-C section, the other plots and the head are as before."""
    mixed = copy.deepcopy(document)
    common = make_common_document()
    mixed["results"] += [
        {**r, "model": "lenet"}
        for r in common["results"]
        if r["model"] == "resnet" and r["family"].startswith("corruptions")
    ]
    mixed_page = render_html(mixed, gallery)
    for anchor in ("robustness", "corruptions", "ood", "calibration"):
        assert _section_of(mixed_page, anchor) == _section_of(page, anchor)
    style = re.search(r"<style>(.*?)</style>", page, re.DOTALL).group(1)
    mixed_style = re.search(r"<style>(.*?)</style>", mixed_page, re.DOTALL).group(1)
    assert mixed_style.startswith(style) and "cgallery" in mixed_style[len(style) :]
    toc = re.search(r'<nav class="toc">(.*?)</nav>', mixed_page).group(1)
    assert toc.index("MNIST-C") < toc.index("Common corruptions") < toc.index("OOD")
    assert mixed_page.index('id="corruptions"') < mixed_page.index('id="common-corruptions"')


def test_common_section_escapes_names():
    document = make_common_document()
    for record in document["results"]:
        if record["params"].get("corruption") == "fog":
            record["params"]["corruption"] = XSS
    pictures = {"clean": _fake_png("clean"), f"{XSS}@3": _fake_png("x"), "<b>@1": b"\x89PNG"}
    page = render_html(document, common_gallery=pictures)
    collector = parse(page)
    assert not collector.errors and collector.stack == []
    assert not any(tag == "script" for tag, _ in collector.tags)
    section = _section_of(page, "common-corruptions")
    assert "<script>" not in section and "<b>" not in section
    escaped = "evil&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;net"
    assert f"<figcaption>{escaped}</figcaption>" in section  # its curve
    assert f'<th scope="row">{escaped}</th>' in section  # its gallery row
    assert '<th scope="row">&lt;b&gt;</th>' in section


@pytest.mark.parametrize(
    "junk",
    [
        {"by_severity": {"0": 0.5, "6": 0.1, "x": "y", "1.0": 0.2, True: 0.3}},
        {"by_severity": [0.1, 0.2]},
        {"per_corruption": "fog"},
    ],
)
def test_common_section_malformed_artifacts_are_skipped(junk):
    document = make_common_document()
    for record in document["results"]:
        record["artifacts"] = dict(junk)
        if record["params"].get("severity"):
            record["value"] = None
    page = render_html(document, common_gallery={"clean": b"", "fog@1": None, "fog@9": b"x"})
    assert not parse(page).errors
    section = _section_of(page, "common-corruptions")
    assert "<img" not in section
    assert '<figure class="plot mini">' not in section  # no severity is known anywhere


# The gallery itself and how the results document carries it -------------------------------


def _fake_corrupt(calls):
    def corrupt(images, name, severity, seed=0, params="imagenet", indices=None):
        calls.append((name, severity, seed, params, tuple(indices.tolist())))
        return (images * (1 - severity / 10)).clamp(0, 1)

    return corrupt


def test_common_gallery_pictures_every_corruption_at_1_3_5(monkeypatch):
    import io

    import torch
    from PIL import Image

    from safetycheck.measures.common_corruptions import NAMES
    from safetycheck.measures.common_corruptions import gallery as module

    calls: list = []
    monkeypatch.setattr(module, "corrupt", _fake_corrupt(calls))
    original = module.get_corruption

    class Unavailable:
        def unavailable(self):
            return "no photographs"

    monkeypatch.setattr(
        module,
        "get_corruption",
        lambda name: Unavailable() if name == "frost" else original(name),
    )
    image = torch.linspace(0, 1, 3 * 20 * 24).reshape(3, 20, 24)
    pictures = module.common_gallery(image, "cifar", seed=4, index=17)
    expected = ["clean"] + [f"{n}@{s}" for n in NAMES if n != "frost" for s in (1, 3, 5)]
    assert list(pictures) == expected
    assert {c[2:] for c in calls} == {(4, "cifar", (17,))}  # seed, params, the image's index
    clean = Image.open(io.BytesIO(pictures["clean"]))
    assert clean.mode == "RGB" and clean.size == (4 * 24, 4 * 20)  # enlarged to >= 64 a side
    pixels = torch.from_numpy(np.array(clean))  # (80, 96, 3)
    quantised = (image * 255).round().to(torch.uint8).permute(1, 2, 0)
    assert torch.equal(pixels[::4, ::4], quantised)  # nearest-neighbour, quantised as the sets
    gray = module.common_gallery(torch.rand(1, 64, 320), "imagenet")
    shown = Image.open(io.BytesIO(gray["fog@5"]))
    assert shown.mode == "L" and shown.size == (256, 51)  # large ones reduced


def test_common_gallery_of_real_corruptions_is_what_the_set_holds():
    import io

    import torch
    from PIL import Image

    from safetycheck.measures.common_corruptions import corrupt, get_corruption
    from safetycheck.measures.common_corruptions.dataset import to_uint8
    from safetycheck.measures.common_corruptions.gallery import common_gallery

    torch.manual_seed(0)
    images = torch.rand(3, 3, 16, 16)
    pictures = common_gallery(images[2], "cifar", seed=1, index=2)
    available = [n for n in ("gaussian_noise", "glass_blur", "frost") if f"{n}@5" in pictures]
    assert "gaussian_noise" in available
    for name in available:
        whole = to_uint8(corrupt(images, name, 5, seed=1, params="cifar"))[2]
        shown = Image.open(io.BytesIO(pictures[f"{name}@5"]))
        assert shown.size == (64, 64)
        pixels = torch.from_numpy(np.array(shown))  # (64, 64, 3)
        assert torch.equal(pixels[::4, ::4], whole.permute(1, 2, 0)), name
    assert ("frost@1" in pictures) == (get_corruption("frost").unavailable() is None)


def _common_profile(channels=3, side=32):
    import torch

    from safetycheck.io.data import LabelledImages
    from safetycheck.io.profiles import profile_from_data

    torch.manual_seed(0)
    data = LabelledImages(
        torch.rand(6, channels, side, side), torch.tensor([0, 1, 0, 1, 0, 1]), "mine"
    )
    return data, profile_from_data(data, "mine", "mine (test)")


def test_add_gallery_stores_the_common_gallery_of_the_profiles_first_image(monkeypatch):
    import base64

    from safetycheck.measures.common_corruptions import gallery as module
    from safetycheck.run.results import add_gallery

    seen = []
    monkeypatch.setattr(
        module,
        "common_gallery",
        lambda image, params, seed=0, index=0: (
            seen.append((image, params, seed, index))
            or {"clean": b"png-clean", "fog@3": b"png-fog"}
        ),
    )
    data, profile = _common_profile()
    document = make_common_document()
    returned = add_gallery(document, None, seed=3, dataset=profile)
    assert returned is None  # the MNIST-C pictures only: none here
    assert "gallery" not in document
    assert document["common_gallery"] == {
        "clean": base64.b64encode(b"png-clean").decode(),
        "fog@3": base64.b64encode(b"png-fog").decode(),
    }
    ((image, params, seed, index),) = seen
    assert image.equal(data.images[0]) and (params, seed, index) == (
        profile.corruption_params,
        3,
        0,
    )
    # Skipped records only, or a profile the common corruptions do not apply to: no gallery.
    skipped = {"results": [{**r, "skipped": "not applicable"} for r in document["results"]]}
    assert add_gallery(skipped, None, dataset=profile) is None
    elsewhere = {"results": copy.deepcopy(document["results"])}
    assert add_gallery(elsewhere, None, dataset="mnist") is None
    assert "common_gallery" not in skipped and "common_gallery" not in elsewhere
    assert len(seen) == 1


def test_add_gallery_keeps_the_mnist_gallery_as_before(monkeypatch):
    """An MNIST-C document gets the ``"gallery"`` of the same call as before (the dataset's name),
    whether the profile or its name is passed, and no common gallery."""
    import base64
    import importlib

    from safetycheck.io.profiles import profile
    from safetycheck.measures.common_corruptions import gallery as common
    from safetycheck.run.results import add_gallery

    # The package re-exports the function gallery(), which hides the module of that name.
    mnist_c = importlib.import_module("safetycheck.measures.corruptions.gallery")
    calls = []

    def test_set_gallery(root, seed=0, download=False, batch=16, dataset="mnist"):
        calls.append((root, seed, download, batch, dataset))
        return {"identity": b"png-identity", "fog": b"png-fog"}

    monkeypatch.setattr(mnist_c, "test_set_gallery", test_set_gallery)
    monkeypatch.setattr(common, "common_gallery", lambda *a, **k: pytest.fail("not MNIST-C"))
    document = make_document()
    by_name, by_profile = copy.deepcopy(document), copy.deepcopy(document)
    pictures = add_gallery(by_name, "root", seed=2, download=True, dataset="kmnist")
    assert add_gallery(by_profile, "root", seed=2, download=True, dataset=profile("kmnist")) == (
        pictures
    )
    assert pictures == {"identity": b"png-identity", "fog": b"png-fog"}
    assert calls == [("root", 2, True, 16, "kmnist")] * 2
    assert by_name == by_profile and set(by_name) == set(document) | {"gallery"}
    assert by_name["gallery"] == {
        "identity": base64.b64encode(b"png-identity").decode(),
        "fog": base64.b64encode(b"png-fog").decode(),
    }
