"""A self-contained HTML report of a safetycheck results document (what ``--safety-json`` writes).

One file that works offline: inline CSS, hand-written inline SVG (:mod:`safetycheck.report.svg`),
images as data URIs, no script and no network reference. Every piece of text from the document
(model names, details, paths) is escaped. The page holds, in order: the verdict with its notices
(failures, subset runs, randomised models, baseline), the pass/fail matrix, the plots
(:mod:`safetycheck.report.plots`) and the run metadata.

    from safetycheck.report.html import write_html
    write_html("report.html", json.load(open("results.json")), gallery=gallery(images))
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from safetycheck.checks import families as registered_families
from safetycheck.core.files import write_atomic
from safetycheck.report import plots, svg
from safetycheck.report.plots import family, num

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f5f8;color:#1f2933;\
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1320px;margin:0 auto;padding:24px 28px 40px}
h1{font-size:26px;margin:0 0 2px}h2{font-size:18px;margin:0 0 6px}h3{font-size:15px;\
margin:18px 0 4px}
.subtitle,.intro,.note,.sub{color:#616e7c}.intro{margin:0 0 12px;max-width:900px}\
.note{font-size:12.5px}
.sub{font-size:11.5px;font-weight:400}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
.card{background:#fff;border:1px solid #dde2e8;border-radius:8px;padding:18px 22px;margin:18px 0;
box-shadow:0 1px 2px rgba(15,23,42,.04)}
.banner{border-radius:8px;padding:14px 20px;margin:16px 0 10px;color:#fff;font-size:15px}
.banner .big{font-size:20px;font-weight:700;margin-right:14px}
.banner.failed{background:#b8430a}.banner.passed{background:#00795a}\
.banner.empty{background:#616e7c}
.banner ul{margin:8px 0 0;padding-left:20px;font-size:13px}.banner a{color:#fff}
.notice{border-left:5px solid;border-radius:6px;padding:10px 16px;margin:8px 0;background:#fff}
.notice.notice-subset{border-color:#E69F00;background:#fff6e0;font-size:15px}
.notice.notice-randomized{border-color:#CC79A7;background:#fbeef6}
.notice.notice-baseline{border-color:#0072B2;background:#e8f2fa}
nav.toc{font-size:13px;margin:6px 0}nav.toc a{margin-right:16px;color:#0b5d99;text-decoration:none}
.matrix-wrap{overflow-x:auto}
table.matrix{border-collapse:separate;border-spacing:0;font-size:12.5px;min-width:55%}
.matrix th,.matrix td{padding:4px 10px;border-bottom:1px solid #edf0f3;text-align:left;\
vertical-align:top}
.matrix thead th{position:sticky;top:0;background:#fff;border-bottom:2px solid #c3c9d0;z-index:1}
.matrix th.model{min-width:190px}.matrix th.check-col{min-width:220px}
.matrix tr.family th{background:#f5f7fa;font-size:13px;padding-top:9px;\
border-bottom:1px solid #dde2e8}
.matrix th.check{font-weight:500;white-space:nowrap}
.cell{border-left:4px solid transparent;white-space:nowrap;font-variant-numeric:tabular-nums}
.cell .sym{font-weight:700;margin-right:4px}.cell .n,.cell .base,.cell .why{color:#616e7c;\
font-size:11px;
margin-left:6px}
.cell.pass{background:#e7f5ef;border-left-color:#009E73}.cell.pass .sym{color:#00795a}
.cell.fail{background:#fdeadf;border-left-color:#D55E00;font-weight:600}\
.cell.fail .sym{color:#b8430a}
.cell.skip{background:#eef0f3;border-left-color:#9aa1a9;color:#52606d}
.cell.absent{color:#9aa1a9;background:repeating-linear-gradient(135deg,#fff 0 6px,#f5f7fa 6px 12px)}
.cell .regr{color:#b8430a;font-weight:700;margin-left:6px;font-size:11px}\
.cell.regressed{outline:2px dashed #D55E00;
outline-offset:-3px}
.cell .rnd{color:#a3487c;font-size:11px;margin-left:6px}
.key-row{font-size:12px;color:#616e7c;margin:8px 0 0}.key-row span{margin-right:14px}
.plots{display:flex;flex-wrap:wrap;gap:18px 22px;align-items:flex-start}
figure{margin:0}figure.plot{max-width:540px}figure.plot.wide{max-width:680px}\
figure.plot figcaption{font-weight:600;font-size:13px;margin-bottom:4px}
figure.plot.small{width:270px}figure.plot.small figcaption{white-space:nowrap;overflow:hidden;
text-overflow:ellipsis}figure.plot.small .note{margin:2px 0 0}
svg.chart{max-width:100%;height:auto;display:block}svg.chart text{fill:#52606d}
svg.chart .axis-label{fill:#1f2933;font-size:11.5px}svg.key{vertical-align:middle;margin-right:5px}
ul.legend{list-style:none;padding:0;margin:6px 0 0;font-size:12px;display:flex;flex-wrap:wrap;\
gap:2px 16px}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
.thumb{width:96px;text-align:center;font-size:11.5px}
.thumb img{image-rendering:pixelated;border:1px solid #c3c9d0;border-radius:3px;display:block;\
margin:0 auto 3px}
.thumb .acc{display:block;color:#616e7c;font-size:10.5px}
table.meta{border-collapse:collapse;font-size:13px}
.meta th,.meta td{padding:4px 14px 4px 0;text-align:left;vertical-align:top;\
border-bottom:1px solid #edf0f3}
.meta th{color:#616e7c;font-weight:500;white-space:nowrap}
footer{color:#9aa1a9;font-size:12px;text-align:center;margin-top:24px}
@media print{body{background:#fff}.card{box-shadow:none;break-inside:avoid}\
.matrix thead th{position:static}}
"""

# Added to the page only with the common-corruption section, so that a page without it is the
# same as before that section existed.
_COMMON_CSS = """
figure.plot.mini{width:220px}figure.plot.mini figcaption{white-space:nowrap;overflow:hidden;
text-overflow:ellipsis;font-weight:500}
.plots.minis{gap:10px 14px}
.cgallery-wrap{overflow-x:auto}
table.cgallery{border-collapse:collapse;font-size:12px}
.cgallery th,.cgallery td{padding:4px 10px;border-bottom:1px solid #edf0f3;text-align:center;\
vertical-align:top}
.cgallery thead th{border-bottom:2px solid #c3c9d0}
.cgallery th[scope=row]{text-align:left;font-weight:500;white-space:nowrap;vertical-align:middle}
.cgallery img{image-rendering:pixelated;border:1px solid #c3c9d0;border-radius:3px;display:block;\
margin:0 auto 3px}
.cgallery .acc{display:block;color:#616e7c;font-size:10.5px}.cgallery td.none{color:#9aa1a9}
"""

_YES = "yes \u26a0"
_SYMBOL = {"pass": "\u2713", "fail": "\u2717", "skip": "\u2013", "absent": "\u00b7"}


def status(record: dict) -> str:
    """``"skip"``, ``"pass"`` or ``"fail"`` (anything not explicitly passed fails)."""
    if record.get("skipped"):
        return "skip"
    return "pass" if record.get("passed") is True else "fail"


def _models(metadata: dict, records: list[dict]) -> list[str]:
    names = [
        str(m.get("name"))
        for m in metadata.get("models") or []
        if isinstance(m, dict) and m.get("name")
    ]
    return list(dict.fromkeys(names + [str(r["model"]) for r in records if "model" in r]))


def _decimals(records: list[dict]) -> int:
    """3 decimals, or 4 where any value or threshold among ``records`` is below 0.1 (ECE, Brier)."""
    numbers = [num(r.get(k)) for r in records for k in ("value", "threshold")]
    return 4 if any(x is not None and 0 < abs(x) < 0.1 for x in numbers) else 3


def _pair(value: float | None, threshold: float | None, decimals: int = 3) -> tuple[str, str]:
    """Value and threshold to ``decimals``, or more where needed to tell unequal numbers apart."""
    if value is None or threshold is None:
        return (
            "NaN" if value is None else f"{value:.{decimals}f}",
            "" if threshold is None else f"{threshold:.{decimals}f}",
        )
    for places in range(decimals, 8):
        a, b = f"{value:.{places}f}", f"{threshold:.{places}f}"
        if (a != b) == (value != threshold):
            break
    return a, b


def _relation(record: dict, passed: bool) -> str:
    if record.get("bound") == "max":
        return "\u2264" if passed else "&gt;"
    return "\u2265" if passed else "&lt;"


def _tooltip(record: dict, state: str) -> str:
    model, check = record.get("model", "?"), record.get("check", "?")
    lines = [f"{model} \u00b7 {check}"]
    if state == "skip":
        return "\n".join(lines + [f"skipped: {record.get('skipped')}"])
    value, threshold = num(record.get("value")), num(record.get("threshold"))
    verb = "at most" if record.get("bound") == "max" else "at least"
    shown = "NaN" if value is None else f"{value:.4f}"
    need = f"required {verb} {threshold:.4f}" if threshold is not None else "no threshold"
    lines.append(f"{state.upper()}: {record.get('metric') or 'value'} {shown}, {need}")
    if record.get("n") is not None:
        lines.append(f"n = {record.get('n')}")
    ci = record.get("ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(num(c) is not None for c in ci):
        lines.append(f"95% interval [{num(ci[0]):.4f}, {num(ci[1]):.4f}]")
    if record.get("threshold_source"):
        lines.append(f"threshold from: {record['threshold_source']}")
    broken = plots.artifacts(record).get("broken_by")
    if isinstance(broken, dict) and broken:
        lines.append("broken by: " + ", ".join(f"{k} {v}" for k, v in broken.items()))
    base = record.get("baseline")
    if isinstance(base, dict):
        bv, noise = num(base.get("value")), num(base.get("noise"))
        lines.append(
            "baseline "
            + ("n/a" if bv is None else f"{bv:.4f}")
            + (f" (noise \u00b1{noise:.4f})" if noise is not None else "")
            + (": REGRESSED" if base.get("regressed") else "")
        )
    if record.get("randomized"):
        lines.append("randomised model: attack results may overstate robustness")
    if record.get("details"):
        lines.append(f"details: {record['details']}")
    return "\n".join(lines)


def _cell(model: str, check: str, record: dict | None, decimals: int = 3) -> str:
    attrs = f'data-model="{escape(model)}" data-check="{escape(check)}"'
    if record is None:
        return (
            f'<td class="cell absent" {attrs} title="not run for this model">'
            f'<span class="sym">{_SYMBOL["absent"]}</span>not run</td>'
        )
    state = status(record)
    title = escape(_tooltip(record, state))
    if state == "skip":
        reason = str(record.get("skipped"))
        short = reason if len(reason) <= 34 else reason[:33] + "\u2026"
        return (
            f'<td class="cell skip" {attrs} title="{title}">'
            f'<span class="sym">{_SYMBOL["skip"]}</span>SKIP'
            f'<span class="why">{escape(short)}</span></td>'
        )
    value, threshold = num(record.get("value")), num(record.get("threshold"))
    a, b = _pair(value, threshold, decimals)
    main = (
        escape(a)
        if threshold is None
        else f"{escape(a)} {_relation(record, state == 'pass')} {escape(b)}"
    )
    extra, classes = "", f"cell {state}"
    if record.get("n") is not None:
        extra += f'<span class="n">n={escape(str(record["n"]))}</span>'
    base = record.get("baseline")
    if isinstance(base, dict):
        bv = num(base.get("value"))
        extra += (
            f'<span class="base">base {"n/a" if bv is None else _pair(bv, bv, decimals)[0]}</span>'
        )
        if base.get("regressed"):
            extra += '<span class="regr">\u25bc regressed</span>'
            classes += " regressed"
    if record.get("randomized"):
        extra += '<span class="rnd">\u26a0 randomised</span>'
    return (
        f'<td class="{classes}" {attrs} title="{title}"><span class="sym">{_SYMBOL[state]}</span>'
        f"{main}{extra}</td>"
    )


def _matrix(records: list[dict], models: list[str]) -> str:
    cells: dict[tuple[str, str], dict] = {}
    by_family: dict[str, list[str]] = {}
    metric: dict[str, str] = {}
    for r in records:
        check = str(r.get("check") or family(r))
        cells[(str(r.get("model", "?")), check)] = r
        checks = by_family.setdefault(family(r), [])
        if check not in checks:
            checks.append(check)
        if r.get("metric"):
            metric.setdefault(check, str(r["metric"]))
    head = ['<th class="check-col">check</th>']
    for m in models:
        states = [status(r) for (model, _), r in cells.items() if model == m]
        counts = " \u00b7 ".join(
            f"{states.count(s)} {_SYMBOL[s]}" for s in ("pass", "fail", "skip") if states.count(s)
        )
        head.append(
            f'<th class="model" scope="col">{escape(m)}<div class="sub">{counts}</div></th>'
        )
    rows, row_id = [], 0
    for fam, checks in by_family.items():
        members = [r for r in records if family(r) == fam]
        first_metric = next((str(r["metric"]) for r in members if r.get("metric")), "")
        declared = registered_families().get(fam)
        note = (declared.note if declared else "") or first_metric
        decimals = _decimals(members)
        rows.append(
            f'<tr class="family"><th colspan="{len(models) + 1}">{escape(fam)} '
            f'<span class="sub">{escape(note)}</span></th></tr>'
        )
        for check in checks:
            row_id += 1
            own = metric.get(check, first_metric)
            label = escape(check) + (
                f' <span class="sub">{escape(own)}</span>' if own != first_metric else ""
            )
            rows.append(
                f'<tr id="row-{row_id}"><th scope="row" class="check">{label}</th>'
                + "".join(_cell(m, check, cells.get((m, check)), decimals) for m in models)
                + "</tr>"
            )
    key = (
        '<p class="key-row"><span>\u2713 pass</span><span>\u2717 fail</span>'
        "<span>\u2013 skipped</span>"
        "<span>\u00b7 not run</span><span>\u25bc regressed against the baseline</span>"
        "<span>hover a cell for details, threshold source and interval</span></p>"
    )
    return (
        '<section class="card" id="matrix"><h2>Pass/fail matrix</h2><div class="matrix-wrap">'
        '<table class="matrix"><thead><tr>'
        + "".join(head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
        + key
        + "</section>"
    )


def _verdict(records: list[dict], metadata: dict, models: list[str]) -> str:
    states = [status(r) for r in records]
    passed, failed, skipped = states.count("pass"), states.count("fail"), states.count("skip")
    counts = f"{passed} passed, {failed} failed, {skipped} skipped"
    if failed:
        items = []
        for r in [r for r in records if status(r) == "fail"][:12]:
            a, b = _pair(num(r.get("value")), num(r.get("threshold")), _decimals([r]))
            items.append(
                f"<li><strong>{escape(str(r.get('model')))}</strong> "
                f"{escape(str(r.get('check')))}: {escape(a)} {_relation(r, False)} {escape(b)}</li>"
            )
        if failed > 12:
            items.append(f"<li>and {failed - 12} more in the matrix below</li>")
        out = (
            '<div class="banner failed" role="alert">'
            f'<span class="big">\u2717 FAILED</span>{counts}'
            f"<ul>{''.join(items)}</ul></div>"
        )
    elif passed:
        out = f'<div class="banner passed"><span class="big">\u2713 PASSED</span>{counts}</div>'
    else:
        out = f'<div class="banner empty"><span class="big">No measured checks</span>{counts}</div>'
    samples = metadata.get("samples")
    if samples is not None and samples is not False:
        seed = metadata.get("seed")
        out += (
            '<div class="notice notice-subset"><strong>\u26a0 Subset run.</strong> Every check was '
            f"evaluated on a stratified, seeded subset of <strong>{escape(str(samples))}</strong> "
            f"MNIST test images{f' (seed {escape(str(seed))})' if seed is not None else ''}, not "
            "on the whole test set. The values are estimates with wider uncertainty than a full "
            "run's; do not read them as the model's full-test-set figures.</div>"
        )
    randomized = [
        str(m.get("name"))
        for m in metadata.get("models") or []
        if isinstance(m, dict) and m.get("randomized")
    ]
    randomized = list(
        dict.fromkeys(randomized + [str(r.get("model")) for r in records if r.get("randomized")])
    )
    if randomized:
        out += (
            '<div class="notice notice-randomized"><strong>\u26a0 Randomised model'
            f"{'s' if len(randomized) > 1 else ''}: {escape(', '.join(randomized))}.</strong> "
            "Outputs differ between identical calls in eval mode; attack results may overstate "
            "robustness (randomness can mask gradients). Evaluated only because randomised models "
            "were explicitly allowed.</div>"
        )
    base = metadata.get("baseline")
    if isinstance(base, dict):
        regressed = sum(
            1
            for r in records
            if isinstance(r.get("baseline"), dict) and r["baseline"].get("regressed")
        )
        created = f" (created {escape(str(base['created']))})" if base.get("created") else ""
        out += (
            f'<div class="notice notice-baseline">Compared with the baseline <code>'
            f"{escape(str(base.get('path', '?')))}</code>{created}: "
            f"<strong>{regressed} regression{'' if regressed == 1 else 's'}</strong>.</div>"
        )
    return out


_META_LABELS = (
    ("created", "created"),
    ("safetycheck", "safetycheck"),
    ("python", "Python"),
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("numpy", "NumPy"),
    ("platform", "platform"),
    ("device", "device"),
    ("seed", "seed"),
    ("attack_samples", "images attacked per sweep"),
    ("epsilons", "L\u221e epsilons"),
    ("samples", "subset of the test set"),
    ("data_root", "data root"),
    ("data_root_source", "data root from"),
)


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _metadata(metadata: dict, records: list[dict]) -> str:
    rows = []
    for key, label in _META_LABELS:
        if key == "samples":
            value = metadata.get("samples")
            shown = (
                "none: every check used the whole test set"
                if value in (None, False)
                else f"{value} images"
            )
        elif key in metadata:
            shown = _text(metadata[key])
        else:
            continue
        rows.append(f"<tr><th>{escape(label)}</th><td>{escape(shown)}</td></tr>")
    base = metadata.get("baseline")
    if isinstance(base, dict):
        rows.append(
            f"<tr><th>baseline</th><td><code>{escape(str(base.get('path', '?')))}</code> "
            f"{escape(str(base.get('created', '')))}</td></tr>"
        )
    sizes = sorted({int(n) for r in records if (n := num(r.get("n"))) is not None})
    if sizes:
        rows.append(
            "<tr><th>sample counts (n)</th>"
            f"<td>{escape(', '.join(f'{n:,}' for n in sizes))}</td></tr>"
        )
    dataset = metadata.get("dataset")
    if isinstance(dataset, dict) and dataset.get("name"):
        shape = "x".join(str(d) for d in dataset.get("input_shape") or [])
        classes = dataset.get("classes") or []
        shown = f"{dataset.get('title', dataset['name'])} ({dataset['name']}), {shape}"
        shown += f", {len(classes)} classes" + (
            f"; {dataset['note']}" if dataset.get("note") else ""
        )
        rows.insert(0, f"<tr><th>dataset</th><td>{escape(shown)}</td></tr>")
    known = {k for k, _ in _META_LABELS} | {"models", "data_checksums", "baseline", "dataset"}
    for key in metadata:
        if key not in known:
            rows.append(
                f"<tr><th>{escape(str(key))}</th><td>{escape(_text(metadata[key]))}</td></tr>"
            )
    out = (
        '<section class="card" id="metadata"><h2>Run metadata</h2><table class="meta">'
        + "".join(rows)
        + "</table>"
    )
    models = [m for m in metadata.get("models") or [] if isinstance(m, dict)]
    if models:
        out += (
            '<h3>Models</h3><table class="meta"><tr><th>name</th><th>source</th><th>randomised</th>'
            "<th>note</th></tr>"
            + "".join(
                f"<tr><td>{escape(str(m.get('name', '?')))}</td>"
                f"<td><code>{escape(str(m.get('source', '')))}</code></td>"
                f"<td>{_YES if m.get('randomized') else 'no'}</td>"
                f"<td>{escape(str(m.get('warning', '')))}</td></tr>"
                for m in models
            )
            + "</table>"
        )
    sums = metadata.get("data_checksums")
    if isinstance(sums, dict) and sums:
        out += (
            '<h3>Data checksums (SHA-256)</h3><table class="meta">'
            + "".join(
                f'<tr><th>{escape(str(k))}</th><td class="mono">{escape(_text(v))}</td></tr>'
                for k, v in sums.items()
            )
            + "</table>"
        )
    return out + "</section>"


def _decoded_gallery(encoded: dict) -> dict[str, bytes]:
    import base64
    import binascii

    pictures = {}
    for name, text in encoded.items():
        try:
            pictures[str(name)] = base64.b64decode(text, validate=True)
        except (binascii.Error, TypeError, ValueError):
            continue  # a damaged picture is left out, as any malformed part
    return pictures


def render_html(
    document: dict,
    gallery: dict[str, bytes] | None = None,
    common_gallery: dict[str, bytes] | None = None,
) -> str:
    """The whole report as one HTML string. ``gallery``: ``{corruption name: PNG bytes}`` shown
    with the MNIST-C plot (``identity`` first), by default the document's own ``"gallery"``
    (base64 PNGs, as the JSON results carry it); ``common_gallery``: ``{"clean": PNG,
    "<corruption>@<severity>": PNG}`` shown with the common corruptions, by default the
    document's ``"common_gallery"``; missing or malformed parts are left out."""
    document = document if isinstance(document, dict) else {}
    if gallery is None and isinstance(document.get("gallery"), dict):
        gallery = _decoded_gallery(document["gallery"])
    if common_gallery is None and isinstance(document.get("common_gallery"), dict):
        common_gallery = _decoded_gallery(document["common_gallery"])
    raw_metadata, raw_results = document.get("metadata"), document.get("results")
    metadata: dict = raw_metadata if isinstance(raw_metadata, dict) else {}
    results: list = raw_results if isinstance(raw_results, list) else []
    records = [r for r in results if isinstance(r, dict)]
    models = _models(metadata, records)
    styles = {m: (svg.colour(i), svg.marker_shape(i)) for i, m in enumerate(models)}
    sections = [
        plots.robustness_section(records, styles),
        plots.corruption_section(records, styles, gallery),
        plots.common_corruption_section(records, styles, common_gallery),
        plots.ood_section(records, styles),
        plots.calibration_section(records, styles),
    ]
    css = _CSS + (_COMMON_CSS if sections[2] else "")
    anchors = (
        [("matrix", "Matrix")]
        + [
            (a, t)
            for a, t, s in zip(
                ("robustness", "corruptions", "common-corruptions", "ood", "calibration"),
                ("Robustness", "MNIST-C", "Common corruptions", "OOD", "Calibration"),
                sections,
                strict=True,
            )
            if s
        ]
        + [("metadata", "Metadata")]
    )
    subtitle = " \u00b7 ".join(
        x
        for x in (
            f"{len(models)} model{'' if len(models) == 1 else 's'}: {', '.join(models)}"
            if models
            else "",
            f"created {metadata['created']}" if metadata.get("created") else "",
            f"safetycheck {metadata['safetycheck']}" if metadata.get("safetycheck") else "",
            f"device {metadata['device']}" if metadata.get("device") else "",
        )
        if x
    )
    title = "Safety report" + (f": {', '.join(models)}" if models else "")
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title><style>{css}</style></head><body><main>",
            f'<header><h1>Safety report</h1><p class="subtitle">{escape(subtitle)}</p></header>',
            _verdict(records, metadata, models),
            '<nav class="toc">' + "".join(f'<a href="#{a}">{t}</a>' for a, t in anchors) + "</nav>",
            _matrix(records, models),
            *[s for s in sections if s],
            _metadata(metadata, records),
            "<footer>safetycheck results format "
            f"{escape(str(document.get('format_version', '?')))} \u00b7 self-contained report: no "
            "scripts, no network</footer></main></body></html>\n",
        ]
    )


def write_html(
    path: str | Path,
    document: dict,
    gallery: dict[str, bytes] | None = None,
    common_gallery: dict[str, bytes] | None = None,
) -> None:
    """Render :func:`render_html` to ``path`` (UTF-8), creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, render_html(document, gallery, common_gallery))
