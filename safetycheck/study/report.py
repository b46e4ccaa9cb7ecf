"""The model-zoo study's report: trade-offs between robustness, corruption accuracy, OOD detection
and calibration across models, and the article's claims judged against the measured numbers.

    from safetycheck.study.report import write_study
    paths = write_study(
        Path("study"),
        json.load(open("results.json")),
        groups={"lenet": "baseline"},
        manifest=json.load(open("example_models/weights/manifest.json")),
    )

writes ``study.md`` (settings, trade-off matrix, claims, links to the plots, the training table when
``manifest`` is given), ``plots/*.svg`` (standalone SVG files) and ``tradeoffs.html`` (one
self-contained page: no script, no network). The numbers and the claims' decision rules live in
:mod:`safetycheck.study.claims`, the plots in :mod:`safetycheck.study.plots`. Every name from the
document is escaped (HTML in both files, Markdown syntax in ``study.md``).
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from safetycheck.core.files import write_atomic
from safetycheck.report import html as html_report
from safetycheck.study import plots as study_plots
from safetycheck.study.claims import (
    Claim,
    StudyData,
    attack_key,
    decimals,
    evaluate_claims,
    group_of,
    lower_is_better,
    tradeoff_rows,
)

__all__ = ["Claim", "evaluate_claims", "tradeoff_rows", "write_study", "matrix_columns"]

_SETTINGS = (
    ("samples", "test images per check"),
    ("attack_samples", "images attacked per sweep"),
    ("seed", "seed"),
    ("epsilons", "L\u221e epsilons"),
    ("safetycheck", "safetycheck"),
    ("python", "Python"),
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("numpy", "NumPy"),
    ("device", "device"),
    ("platform", "platform"),
    ("created", "created"),
)
_FLAGS = ("trust_ok", "invariants_ok")
_CSS = """
table.study{border-collapse:collapse;font-size:12.5px;font-variant-numeric:tabular-nums}
table.study th,table.study td{padding:4px 9px;border-bottom:1px solid #edf0f3;text-align:right;\
white-space:nowrap}
table.study .l{text-align:left}table.claims td{white-space:normal;min-width:60px;max-width:520px}
table.study thead th{border-bottom:2px solid #c3c9d0}
.verdict{font-weight:700;border-radius:4px;padding:1px 7px;white-space:nowrap}
.v-holds{background:#e7f5ef;color:#00795a}.v-does-not-hold{background:#fdeadf;color:#b8430a}
.v-partly{background:#fff6e0;color:#8a5a00}.v-not-measured{background:#eef0f3;color:#52606d}
ul.details{font-size:12.5px;margin:4px 0 12px}figure.plot.study-plot{max-width:720px}
"""


def matrix_columns(data: StudyData) -> list[str]:
    """The matrix's key metrics that some model has: clean, PGD-Linf at each eps, FGSM at 0.1,
    APGD and AutoAttack at each eps, MNIST-C mean, AUROC fmnist-msp and kmnist-msp, ECE, Brier,
    trust."""
    wanted = [
        "clean",
        *data.attack_keys("pgd_linf"),
        attack_key("fgsm", 0.1),
        *data.attack_keys("apgd"),
        *data.attack_keys("apgd_fast"),
        *data.attack_keys("autoattack"),
        *data.attack_keys("autoattack_fast"),
        "mnist_c_mean",
        "auroc:fmnist-msp",
        "auroc:kmnist-msp",
        "ece",
        "brier",
        "trust_ok",
    ]
    return [
        k for k in dict.fromkeys(wanted) if any(data.cell(m, k) is not None for m in data.models)
    ]


def _format(key: str, value) -> str:
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return f"{value:.{decimals(key)}f}"


def _best(data: StudyData, key: str):
    values = [v for m in data.models if (v := data.cell(m, key)) is not None]
    if key in _FLAGS or len(values) < 2:
        return None
    return min(values) if lower_is_better(key) else max(values)


def _settings(metadata: dict) -> list[tuple[str, str]]:
    rows = []
    for key, label in _SETTINGS:
        if key == "samples":
            value = metadata.get("samples")
            rows.append(
                (
                    label,
                    "all (whole test sets)"
                    if value in (None, False)
                    else f"{value} (stratified subset)",
                )
            )
        elif metadata.get(key) is not None:
            value = metadata[key]
            rows.append(
                (
                    label,
                    ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
                    if isinstance(value, list)
                    else str(value),
                )
            )
    return rows


def _training(manifest: dict | None, groups: dict) -> list[list[str]]:
    if not isinstance(manifest, dict):
        return []
    rows = []
    for model, entry in manifest.items():
        if not isinstance(entry, dict) or entry.get("dataset", "mnist") != "mnist":
            continue  # the study compares MNIST models; other datasets' examples are not in it
        acc, seconds = entry.get("mnist_test_accuracy"), entry.get("training_seconds")
        rows.append(
            [
                str(model),
                str(entry.get("family") or group_of(str(model), groups)),
                str(entry.get("recipe") or ""),
                f"{acc:.4f}" if isinstance(acc, (int, float)) else "\u2013",
                f"{seconds:.0f}" if isinstance(seconds, (int, float)) else "\u2013",
            ]
        )
    return rows


_TRAINING_HEAD = ["model", "family", "recipe", "MNIST test accuracy", "training time (s)"]

# --- Markdown ---------------------------------------------------------------------------------


def md(text) -> str:
    """Text safe in a Markdown table cell: HTML escaped, Markdown punctuation backslash-escaped."""
    return re.sub(r"([\\`*\[\]|])", r"\\\1", escape(str(text), quote=False)).replace("\n", " ")


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def render_markdown(
    data: StudyData,
    claims: list[Claim],
    groups: dict,
    plots: list,
    missing_plots: list[str],
    manifest: dict | None = None,
) -> str:
    out = [
        f"# Safety study: trade-offs across {len(data.models)} "
        f"model{'s' * (len(data.models) != 1)}",
        "",
    ]
    out += [
        "Models: " + ", ".join(f"{md(m)} ({md(group_of(m, groups))})" for m in data.models) + ".",
        "",
        "## Run settings",
        "",
        _md_table(["setting", "value"], [[md(a), md(b)] for a, b in _settings(data.metadata)]),
        "",
        "## Trade-off matrix",
        "",
    ]
    columns = matrix_columns(data)
    if columns:
        rows = []
        for m in data.models:
            row = [md(m), md(group_of(m, groups))]
            for k in columns:
                v, text = data.cell(m, k), _format(k, data.cell(m, k))
                row.append(f"**{text}**" if v is not None and v == _best(data, k) else text)
            rows.append(row)
        out += [
            _md_table(["model", "group", *map(md, columns)], rows),
            "",
            "Bold: the best value in its column (highest; lowest for ECE and Brier); \u2013: not "
            "measured. `<attack>@<eps>`: robust accuracy; `auroc:<set>-<score>`: OOD detection "
            "AUROC against MNIST; trust_ok: every gradient-masking diagnostic passed.",
            "",
        ]
    else:
        out += ["No metric was measured.", ""]
    out += [
        "## Claims",
        "",
        _md_table(
            ["", "claim", "verdict", "result"],
            [[f"({c.id})", md(c.text), f"**{c.verdict}**", md(c.summary)] for c in claims],
        ),
        "",
    ]
    for c in claims:
        out += [f"### ({c.id}) {md(c.verdict)}", "", md(c.text), "", f"*Rule:* {md(c.rule)}", ""]
        out += [f"- {md(d)}" for d in c.details] + [""]
    out += ["## Plots", ""]
    for name, caption, _ in plots:
        out += [f"![{md(caption)}](plots/{name})", ""]
    out += [f"- not drawn: {md(why)}" for why in missing_plots] + ([""] if missing_plots else [])
    training = _training(manifest, groups)
    if training:
        out += [
            "## Training",
            "",
            _md_table(_TRAINING_HEAD, [[md(x) for x in r] for r in training]),
            "",
        ]
    return "\n".join(out)


# --- HTML -------------------------------------------------------------------------------------


def _html_table(head: list[str], rows: list[list[str]], left: int = 2, cls: str = "") -> str:
    """A table whose first ``left`` columns are text (left-aligned) and the rest numbers."""
    text = ' class="l"'

    def row(cells, tag):
        return (
            "<tr>"
            + "".join(f"<{tag}{text if i < left else ''}>{c}</{tag}>" for i, c in enumerate(cells))
            + "</tr>"
        )

    return (
        f'<div class="matrix-wrap"><table class="study {cls}"><thead>'
        + row(head, "th")
        + "</thead><tbody>"
        + "".join(row(r, "td") for r in rows)
        + "</tbody></table></div>"
    )


def _verdict_html(verdict: str) -> str:
    return f'<span class="verdict v-{verdict.replace(" ", "-")}">{escape(verdict)}</span>'


def render_page(
    data: StudyData,
    claims: list[Claim],
    groups: dict,
    plots: list,
    missing_plots: list[str],
    manifest: dict | None = None,
) -> str:
    css = getattr(html_report, "_CSS", "") + _CSS
    settings = "".join(
        f"<tr><th>{escape(a)}</th><td>{escape(b)}</td></tr>" for a, b in _settings(data.metadata)
    )
    columns = matrix_columns(data)
    rows = []
    for m in data.models:
        cells = [escape(m), escape(group_of(m, groups))]
        for k in columns:
            v, text = data.cell(m, k), escape(_format(k, data.cell(m, k)))
            cells.append(
                f"<strong>{text}</strong>" if v is not None and v == _best(data, k) else text
            )
        rows.append(cells)
    matrix = (
        _html_table(["model", "group", *map(escape, columns)], rows)
        if columns
        else '<p class="note">No metric was measured.</p>'
    )
    claim_rows = [
        [f"({c.id})", escape(c.text), _verdict_html(c.verdict), escape(c.summary)] for c in claims
    ]
    details = "".join(
        f'<h3 id="claim-{c.id}">({c.id}) {_verdict_html(c.verdict)}</h3><p>{escape(c.text)}</p>'
        f'<p class="note"><strong>Rule:</strong> {escape(c.rule)}</p><ul class="details">'
        + "".join(f"<li>{escape(d)}</li>" for d in c.details)
        + "</ul>"
        for c in claims
    )
    figures = "".join(
        '<figure class="plot study-plot">'
        f"<figcaption>{escape(caption)}</figcaption>{element}</figure>"
        for _, caption, element in plots
    )
    figures += "".join(f'<p class="note">Not drawn: {escape(why)}</p>' for why in missing_plots)
    training = _training(manifest, groups)
    training_html = (
        (
            '<section class="card" id="training"><h2>Training</h2>'
            + _html_table(_TRAINING_HEAD, [[escape(x) for x in r] for r in training], left=3)
            + "</section>"
        )
        if training
        else ""
    )
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>Safety study: trade-offs</title><style>{css}</style></head><body><main>",
            f'<header><h1>Safety study: trade-offs</h1><p class="subtitle">{len(data.models)} '
            f"models: {escape(', '.join(data.models))}</p></header>",
            '<section class="card" id="settings"><h2>Run settings</h2>'
            f'<table class="meta">{settings}</table></section>',
            f'<section class="card" id="matrix"><h2>Trade-off matrix</h2>{matrix}'
            '<p class="note">Bold: the best value in its column (highest; lowest for ECE and '
            "Brier); \u2013: not measured.</p></section>",
            '<section class="card" id="claims"><h2>Claims</h2>'
            + _html_table(["", "claim", "verdict", "result"], claim_rows, left=4, cls="claims")
            + details
            + "</section>",
            '<section class="card" id="plots"><h2>Plots</h2>'
            f'<div class="plots">{figures}</div></section>',
            training_html,
            "<footer>safetycheck study \u00b7 self-contained page: no scripts, no network</footer>"
            "</main></body></html>\n",
        ]
    )


def write_study(
    out_dir: Path, document: dict, groups: dict | None, manifest: dict | None = None
) -> dict[str, Path]:
    """Write ``study.md``, ``plots/*.svg`` and ``tradeoffs.html`` under ``out_dir``; return
    {path relative to ``out_dir``: path written}."""
    out_dir, groups = Path(out_dir), dict(groups or {})
    data = StudyData(document)
    claims = evaluate_claims(document, groups)
    plots, missing = study_plots.build(data, groups)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, _, element in plots:
        path = out_dir / "plots" / name
        write_atomic(path, study_plots.standalone(element))
        written[f"plots/{name}"] = path
    for name, text in (
        ("study.md", render_markdown(data, claims, groups, plots, missing, manifest)),
        ("tradeoffs.html", render_page(data, claims, groups, plots, missing, manifest)),
    ):
        path = out_dir / name
        write_atomic(path, text)
        written[name] = path
    return written
