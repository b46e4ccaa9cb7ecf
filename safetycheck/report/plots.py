"""The plot sections of the HTML report, built from result records (see
:mod:`safetycheck.report.html`).

Every artifact is optional: a section draws what the records carry and says what is missing,
and a malformed artifact (wrong type, unequal lengths, non-numbers) is skipped, never fatal.
Artifact keys read: ``per_corruption`` (``mnist_c_mean``, ``corruptions_mean``), ``by_severity``
(``corruptions``), ``roc.fpr``/``roc.tpr`` (``ood_auroc``),
``reliability.bin_lower/bin_upper/confidence/accuracy/count`` (``calibration``).
"""

from __future__ import annotations

import base64
import math
from html import escape
from typing import Any

from safetycheck.checks import families as registered_families
from safetycheck.report import svg

_ATTACK_PLOTS = (("L\u221e attacks", "linf_attacks"), ("L2 attacks", "l2_attacks"))


def plot_families(plot: str) -> tuple[str, ...]:
    """The families that join report plot ``plot`` (see ``CheckFamily.plot``), in plot order."""
    members = [item for item in registered_families().values() if item.plot == plot]
    return tuple(item.name for item in sorted(members, key=lambda item: item.plot_rank))


def attack_families() -> tuple[str, ...]:
    """Every attack family, L-infinity ones first: ``fgsm, pgd_linf, apgd, autoattack, pgd_l2``."""
    return tuple(name for _, plot in _ATTACK_PLOTS for name in plot_families(plot))


def __getattr__(name: str):
    # The attack lists were constants here before the families declared their plots.
    lists = {"LINF_ATTACKS": "linf_attacks", "L2_ATTACKS": "l2_attacks"}
    if name in lists:
        return plot_families(lists[name])
    if name == "ATTACK_FAMILIES":
        return attack_families()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def num(value) -> float | None:
    """A finite real number as float, else None (JSON null, NaN, bools, strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def params(record: dict) -> dict:
    p = record.get("params")
    return p if isinstance(p, dict) else {}


def artifacts(record: dict) -> dict:
    a = record.get("artifacts")
    return a if isinstance(a, dict) else {}


def family(record: dict) -> str:
    return str(record.get("family") or str(record.get("check") or "?").split("[")[0])


def measured(records: list[dict], *families: str) -> list[dict]:
    """The records of these families that were measured (not skipped) and name a model."""
    return [r for r in records if family(r) in families and not r.get("skipped") and "model" in r]


def plot_records(records: list[dict], plot: str) -> list[dict]:
    """The measured records of the families that join report plot ``plot``."""
    return measured(records, *plot_families(plot))


def _clean_accuracy(records: list[dict]) -> dict[str, float | None]:
    """{model: clean accuracy}, the reference drawn at eps 0 and above the corruptions."""
    return {str(r["model"]): num(r.get("value")) for r in plot_records(records, "reference")}


def legend(items: list[tuple[str, str, str, str]]) -> str:
    """``items``: (text, colour, marker, dash)."""
    return (
        '<ul class="legend">'
        + "".join(f"<li>{svg.swatch(c, m, d)}{escape(text)}</li>" for text, c, m, d in items)
        + "</ul>"
    )


def _section(anchor: str, title: str, intro: str, body: str) -> str:
    return (
        f'<section class="card" id="{anchor}"><h2>{escape(title)}</h2>'
        f'<p class="intro">{intro}</p>{body}</section>'
    )


def _eps_ticks(xs: list[float]) -> list[float] | None:
    return sorted(set(xs)) if len(set(xs)) <= 8 else None


def robustness_section(records: list[dict], styles: dict[str, tuple[str, str]]) -> str:
    clean = _clean_accuracy(records)
    charts = []
    for title, families in ((title, plot_families(plot)) for title, plot in _ATTACK_PLOTS):
        lines: dict[tuple[str, str], list[tuple[float, float | None]]] = {}
        for r in measured(records, *families):
            eps = num(params(r).get("eps"))
            if eps is not None:
                lines.setdefault((str(r["model"]), family(r)), []).append(
                    (eps, num(r.get("value")))
                )
        if not lines:
            continue
        fams = list(dict.fromkeys(f for _, f in lines))
        one_model = len({m for m, _ in lines}) == 1
        series: list[dict[str, Any]] = []
        keys: list[tuple[str, str, str, str]] = []
        for (model, fam), points in lines.items():
            points = sorted(points, key=lambda p: p[0])
            if clean.get(model) is not None and points[0][0] > 0:
                points.insert(0, (0.0, clean[model]))
            k = fams.index(fam)
            c, m = (svg.colour(k), svg.marker_shape(k)) if one_model else styles[model]
            dash = "" if one_model else svg.DASHES[k % len(svg.DASHES)]
            text = fam if one_model else f"{model} \u00b7 {fam}"
            series.append({"label": text, "points": points, "colour": c, "marker": m, "dash": dash})
            keys.append((text, c, m, dash))
        xs = [x for s in series for x, _ in s["points"]]
        x_hi = max(xs) if max(xs) > 0 else 1.0
        chart = svg.line_chart(
            series,
            x_domain=(0.0, x_hi),
            y_domain=(0.0, 1.0),
            x_label="eps",
            y_label="robust accuracy",
            label=f"robust accuracy vs eps, {title}",
            x_ticks=_eps_ticks(xs),
            width=520,
            height=320,
        )
        charts.append(
            f'<figure class="plot"><figcaption>{escape(title)}</figcaption>{chart}'
            f"{legend(keys)}</figure>"
        )
    if not charts:
        return ""
    return _section(
        "robustness",
        "Robust accuracy vs eps",
        "Share of the attacked images still classified correctly (worst case over the "
        "attack's iterates and restarts) at each radius. Eps 0 is the clean accuracy on "
        "the whole test set; attacks run on the seeded subset given in the metadata.",
        '<div class="plots">' + "".join(charts) + "</div>",
    )


def _per_corruption(records: list[dict]) -> dict[str, dict[str, float | None]]:
    """{model: {corruption: accuracy}} from a ``per_corruption`` artifact (``mnist_c_mean``), else
    from the per-corruption checks (``mnist_c[fog]``: a ``corruption`` parameter)."""
    out: dict[str, dict[str, float | None]] = {}
    corruption_records = plot_records(records, "corruptions")
    for r in corruption_records:
        per = artifacts(r).get("per_corruption")
        if isinstance(per, dict) and per:
            out.setdefault(str(r["model"]), {str(k): num(v) for k, v in per.items()})
    fallback: dict[str, dict[str, float | None]] = {}
    for r in corruption_records:
        name = params(r).get("corruption")
        if name is not None:
            fallback.setdefault(str(r["model"]), {})[str(name)] = num(r.get("value"))
    for model, values in fallback.items():
        out.setdefault(model, values)
    return out


def _image_mime(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"GIF8":
        return "image/gif"
    return "image/png"


def gallery_html(gallery: dict | None, per: dict[str, dict[str, float | None]]) -> str:
    if not isinstance(gallery, dict):
        return ""
    names = sorted(gallery, key=lambda n: n != "identity")  # stable: identity first, then as given
    figures = []
    for name in names:
        data = gallery[name]
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes) or not data:
            continue
        uri = f"data:{_image_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"
        scores = (
            "".join(
                f'<span class="acc">{escape(m)} {v:.3f}</span>'
                for m, vals in per.items()
                if (v := vals.get(str(name))) is not None
            )
            if len(per) <= 3
            else ""
        )
        caption = "identity (clean)" if name == "identity" else str(name)
        figures.append(
            f'<figure class="thumb"><img src="{uri}" alt="{escape(caption)}" width="84" '
            f'height="84"><figcaption>{escape(caption)}{scores}</figcaption></figure>'
        )
    if not figures:
        return ""
    return (
        '<h3>Corruption gallery</h3><p class="intro">One test image under each corruption, as the '
        'models saw it.</p><div class="gallery">' + "".join(figures) + "</div>"
    )


def corruption_section(
    records: list[dict], styles: dict[str, tuple[str, str]], gallery: dict | None
) -> str:
    per = _per_corruption(records)
    pictures = gallery_html(gallery, per)
    if not per and not pictures:
        return ""
    body = ""
    if per:
        clean = _clean_accuracy(records)
        categories = list(dict.fromkeys(c for values in per.values() for c in values))
        has_clean = any(clean.get(m) is not None for m in per)
        series, keys = [], []
        for model, values in per.items():
            c, m = styles[model]
            present = [v for v in values.values() if v is not None]
            mean = f" \u2014 mean {sum(present) / len(present):.3f}" if present else ""
            vals = dict(values, **({"clean (none)": clean.get(model)} if has_clean else {}))
            series.append({"label": model, "values": vals, "colour": c, "marker": m})
            keys.append((model + mean, c, m, ""))
        rows = (["clean (none)"] if has_clean else []) + categories
        body = (
            '<figure class="plot wide">'
            + svg.dot_rows_chart(
                rows, series, x_label="accuracy", label="MNIST-C accuracy per corruption", width=640
            )
            + legend(keys)
            + "</figure>"
        )
    elif plot_records(records, "corruptions"):
        body = '<p class="note">No per-corruption accuracies were recorded.</p>'
    return _section(
        "corruptions",
        "MNIST-C: accuracy per corruption",
        "Accuracy on the whole test set under each of the MNIST-C corruptions (Mu &amp; "
        "Gilmer 2019); the top row is the uncorrupted accuracy for reference.",
        body + pictures,
    )


# Common corruptions (Hendrycks & Dietterich 2019) ---------------------------------------------

_COMMON_SEVERITIES = (1, 2, 3, 4, 5)
_GALLERY_SEVERITIES = (1, 3, 5)
_COMMON_SUMMARY = (
    ("corruptions_mean", "mean"),
    ("corruptions_drop", "drop from clean"),
    ("corruptions_mce", "mCE"),
    ("corruptions_relative_mce", "relative mCE"),
)


def _severity(value) -> int | None:
    """A severity 1..5 from a record parameter or an artifact key (JSON makes keys strings)."""
    if isinstance(value, bool):
        return None
    try:
        severity = int(value)
    except (TypeError, ValueError):
        return None
    return severity if severity in _COMMON_SEVERITIES and str(severity) == str(value) else None


def _common_accuracies(
    records: list[dict],
) -> tuple[dict[str, dict[str, float | None]], dict[str, dict[str, dict[int, float | None]]]]:
    """({model: {corruption: mean accuracy over severities}}, {model: {corruption: {severity:
    accuracy}}}), corruptions in the order the records first name them. The mean is the
    ``corruptions[fog]`` value, else the ``per_corruption`` artifact of ``corruptions_mean``,
    else the mean of the five ``corruptions[fog,severity=s]``; the severities are those records,
    else the ``by_severity`` artifact of ``corruptions[fog]``."""
    order: dict[str, None] = {}
    means: dict[str, dict[str, float | None]] = {}
    curves: dict[str, dict[str, dict[int, float | None]]] = {}
    fallback: dict[str, dict[str, float | None]] = {}
    for r in plot_records(records, "common_corruptions"):
        model, p = str(r["model"]), params(r)
        if family(r) == "corruptions_mean":
            per = artifacts(r).get("per_corruption")
            if isinstance(per, dict):
                for key, value in per.items():
                    order.setdefault(str(key))
                    fallback.setdefault(model, {}).setdefault(str(key), num(value))
            continue
        if family(r) != "corruptions" or p.get("corruption") is None:
            continue
        name = str(p["corruption"])
        order.setdefault(name)
        curve = curves.setdefault(model, {}).setdefault(name, {})
        if "severity" in p:
            severity = _severity(p["severity"])
            if severity is not None:
                curve[severity] = num(r.get("value"))  # the record itself wins
            continue
        means.setdefault(model, {})[name] = num(r.get("value"))
        by_severity = artifacts(r).get("by_severity")
        if isinstance(by_severity, dict):
            for key, value in by_severity.items():
                severity = _severity(key)
                if severity is not None:
                    curve.setdefault(severity, num(value))
    for model, values in fallback.items():
        for name, value in values.items():
            means.setdefault(model, {}).setdefault(name, value)
    for model, named in curves.items():
        for name, curve in named.items():
            present = [v for s in _COMMON_SEVERITIES if (v := curve.get(s)) is not None]
            if name not in means.get(model, {}) and len(present) == len(_COMMON_SEVERITIES):
                means.setdefault(model, {})[name] = sum(present) / len(present)
    ordered = {m: {n: v[n] for n in order if n in v} for m, v in means.items()}
    return ordered, curves


def _common_gallery_names(gallery: dict) -> list[str]:
    """The corruptions a ``{"clean": PNG, "fog@3": PNG, ...}`` gallery shows, in its order."""
    names = []
    for key in gallery:
        name, _, severity = str(key).rpartition("@")
        if name and _severity(severity) is not None:
            names.append(name)
    return list(dict.fromkeys(names))


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, None for anything else."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 24:
        return None
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return (width, height) if width > 0 and height > 0 else None


def _picture(data, alt: str, scores: str, width: int = 80) -> str:
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes) or not data:
        return '<td class="none">\u2013</td>'
    uri = f"data:{_image_mime(data)};base64,{base64.b64encode(data).decode('ascii')}"
    size = _png_size(data)
    height = f' height="{max(1, round(width * size[1] / size[0]))}"' if size is not None else ""
    return f'<td><img src="{uri}" alt="{escape(alt)}" width="{width}"{height}>{scores}</td>'


def common_gallery_html(
    gallery: dict | None,
    curves: dict[str, dict[str, dict[int, float | None]]],
    clean: dict[str, float | None],
) -> str:
    """The gallery as a table: a row per corruption, columns clean and severities 1, 3, 5, each
    picture captioned with the models' accuracy there (up to three models)."""
    if not isinstance(gallery, dict):
        return ""
    names = _common_gallery_names(gallery)
    if not names:
        return ""
    show = len(curves) <= 3

    def scores(values: dict[str, float | None]) -> str:
        if not show:
            return ""
        return "".join(
            f'<span class="acc">{escape(m)} {v:.3f}</span>'
            for m, v in values.items()
            if v is not None
        )

    clean_scores = scores({m: clean.get(m) for m in curves})
    rows = []
    for name in names:
        cells = [_picture(gallery.get("clean"), "clean", clean_scores)]
        for severity in _GALLERY_SEVERITIES:
            at = {m: named.get(name, {}).get(severity) for m, named in curves.items()}
            cells.append(
                _picture(
                    gallery.get(f"{name}@{severity}"),
                    f"{name}, severity {severity}",
                    scores(at),
                )
            )
        rows.append(f'<tr><th scope="row">{escape(name)}</th>{"".join(cells)}</tr>')
    head = "".join(
        f'<th scope="col">{escape(text)}</th>'
        for text in ("corruption", "clean", *(f"severity {s}" for s in _GALLERY_SEVERITIES))
    )
    return (
        '<h3>Corruption gallery</h3><p class="intro">The first test image, clean and under each '
        "corruption at severities 1, 3 and 5, exactly as the models saw it (same seed and image "
        "index as the generated sets)"
        + ("; beneath each picture, each model's accuracy on the whole set there" if show else "")
        + '.</p><div class="cgallery-wrap"><table class="cgallery"><thead><tr>'
        + head
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


def _common_summary(records: list[dict]) -> str:
    """One line per model: its corruption mean, drop, mCE and relative mCE, where measured."""
    lines = []
    found: dict[str, list[str]] = {}
    for fam, text in _COMMON_SUMMARY:
        for r in measured(records, fam):
            value = num(r.get("value"))
            if value is not None:
                found.setdefault(str(r["model"]), []).append(f"{text} {value:.3f}")
    for model, parts in found.items():
        lines.append(f"<strong>{escape(model)}</strong>: " + escape(" \u00b7 ".join(parts)))
    return '<p class="note">' + "<br>".join(lines) + "</p>" if lines else ""


def common_corruption_section(
    records: list[dict], styles: dict[str, tuple[str, str]], gallery: dict | None
) -> str:
    """The common corruptions: accuracy per corruption (mean over severities, clean on top), the
    accuracy-by-severity curve of each corruption, and the gallery."""
    means, curves = _common_accuracies(records)
    clean = _clean_accuracy(records)
    pictures = common_gallery_html(gallery, curves, clean)
    summary = _common_summary(records)
    if not means and not curves and not pictures and not summary:
        return ""
    body = summary
    if means:
        benchmark = next(
            (
                set(map(str, per))
                for r in measured(records, "corruptions_mean")
                if isinstance(per := artifacts(r).get("per_corruption"), dict) and per
            ),
            None,
        )
        categories = list(dict.fromkeys(c for values in means.values() for c in values))
        labels = {
            c: f"{c} (held out)" if benchmark is not None and c not in benchmark else c
            for c in categories
        }
        has_clean = any(clean.get(m) is not None for m in means)
        series, keys = [], []
        headline = {
            str(r["model"]): num(r.get("value")) for r in measured(records, "corruptions_mean")
        }
        for model, values in means.items():
            c, m = styles[model]
            mean = headline.get(model)
            text = model + (f" \u2014 mean {mean:.3f}" if mean is not None else "")
            vals = {labels[k]: v for k, v in values.items()}
            if has_clean:
                vals["clean (none)"] = clean.get(model)
            series.append({"label": model, "values": vals, "colour": c, "marker": m})
            keys.append((text, c, m, ""))
        rows = (["clean (none)"] if has_clean else []) + [labels[c] for c in categories]
        body += (
            '<figure class="plot wide">'
            + svg.dot_rows_chart(
                rows,
                series,
                x_label="accuracy (mean over severities 1\u20135)",
                label="accuracy per common corruption",
                width=640,
            )
            + legend(keys)
            + "</figure>"
        )
    names = list(dict.fromkeys(n for named in curves.values() for n in named))
    charts = []
    for name in names:
        lines: list[dict[str, Any]] = []
        for model, named in curves.items():
            curve = named.get(name)
            if not curve or all(v is None for v in curve.values()):
                continue
            c, m = styles[model]
            points: list[tuple[float, float | None]] = [
                (float(s), curve.get(s)) for s in _COMMON_SEVERITIES
            ]
            if clean.get(model) is not None:
                points.insert(0, (0.0, clean[model]))
            lines.append({"label": model, "points": points, "colour": c, "marker": m, "dash": ""})
        if not lines:
            continue
        chart = svg.line_chart(
            lines,
            x_domain=(0.0, 5.0),
            y_domain=(0.0, 1.0),
            x_label="severity (0: clean)",
            y_label="accuracy",
            label=f"accuracy vs severity, {name}",
            x_ticks=[0, 1, 2, 3, 4, 5],
            y_ticks=[0, 0.25, 0.5, 0.75, 1],
            width=220,
            height=180,
        )
        charts.append(
            f'<figure class="plot mini"><figcaption>{escape(name)}</figcaption>{chart}</figure>'
        )
    if charts:
        keys = [(model, *styles[model], "") for model in curves]
        body += (
            "<h3>Accuracy by severity</h3>"
            '<div class="plots minis">' + "".join(charts) + "</div>" + legend(keys)
        )
    if not means and not charts and plot_records(records, "common_corruptions"):
        body += '<p class="note">No per-corruption accuracies were recorded.</p>'
    return _section(
        "common-corruptions",
        "Common corruptions: accuracy per corruption and severity",
        "Accuracy under the 19 common corruptions of Hendrycks &amp; Dietterich (2019): the 15 of "
        "the ImageNet-C / CIFAR-10-C benchmark, whose mean is the headline, and 4 held out; five "
        "severities each. The top row is the uncorrupted accuracy for reference; in the curves, "
        "severity 0 is the clean accuracy.",
        body + pictures,
    )


def _roc(record: dict) -> list[tuple[float, float]] | None:
    roc = artifacts(record).get("roc")
    if (
        not isinstance(roc, dict)
        or not isinstance(roc.get("fpr"), list)
        or not isinstance(roc.get("tpr"), list)
    ):
        return None
    points = [
        (x, y)
        for x, y in zip(map(num, roc["fpr"]), map(num, roc["tpr"]), strict=False)
        if x is not None and y is not None
    ]
    return points or None


def _operating_points(
    records: list[dict],
) -> dict[tuple[str, str, str], tuple[float, float, float]]:
    """(model, set, score) -> (fpr, tpr, threshold) of the ``ood_fpr95`` records, for the ROC
    charts' markers."""
    found = {}
    for r in measured(records, "ood_fpr95"):
        point, p = artifacts(r).get("operating_point"), params(r)
        if not isinstance(point, dict):
            continue
        fpr, tpr, threshold = (num(point.get(k)) for k in ("fpr", "tpr", "threshold"))
        if fpr is not None and tpr is not None and threshold is not None:
            found[(str(r["model"]), str(p.get("set")), str(p.get("score")))] = (fpr, tpr, threshold)
    return found


def ood_section(records: list[dict], styles: dict[str, tuple[str, str]]) -> str:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in plot_records(records, "ood"):
        p = params(r)
        groups.setdefault((str(p.get("set", "?")), str(p.get("score", "?"))), []).append(r)
    if not groups:
        return ""
    points_at_95 = _operating_points(records)
    charts, missing = [], []
    for (ood_set, score), rs in groups.items():
        series, keys = [], []
        for r in rs:
            points = _roc(r)
            if points is None:
                missing.append(f"{r['model']} {ood_set}/{score}")
                continue
            model = str(r["model"])
            c, m = styles[model]
            auroc = num(r.get("value"))
            text = (
                f"{model} \u2014 AUROC {auroc:.4f}"
                if auroc is not None
                else f"{model} \u2014 AUROC n/a"
            )
            point = points_at_95.get((model, ood_set, score))
            marks = []
            if point is not None:
                fpr, tpr, threshold = point
                text += f", FPR95 {fpr:.4f} (score \u2265 {threshold:.4g})"
                marks.append(
                    (fpr, tpr, f"{model}: FPR {fpr:.4f} at TPR {tpr:.4f}, score >= {threshold:.6g}")
                )
            series.append(
                {
                    "label": model,
                    "points": points,
                    "colour": c,
                    "marker": m,
                    "dash": "",
                    "marks": marks,
                }
            )
            keys.append((text, c, m, ""))
        if series:
            chart = svg.line_chart(
                series,
                x_domain=(0.0, 1.0),
                y_domain=(0.0, 1.0),
                x_label="false positive rate",
                y_label="true positive rate",
                label=f"ROC, {ood_set} vs MNIST, score {score}",
                diagonal=True,
                markers=False,
                width=270,
                height=240,
            )
            charts.append(
                f'<figure class="plot small"><figcaption>{escape(ood_set)} \u00b7 '
                f"{escape(score)}</figcaption>{chart}{legend(keys)}</figure>"
            )
    note = (
        f'<p class="note">No ROC curve recorded for: {escape(", ".join(missing))}.</p>'
        if missing
        else ""
    )
    return _section(
        "ood",
        "Out-of-distribution detection: ROC curves",
        "MNIST test images are the positives (in-distribution), the named set the "
        "negatives; one chart per OOD set and score. The dashed diagonal is chance"
        + (
            "; a marker shows the operating point at 95% TPR (ood_fpr95) and the legend its "
            "score threshold."
            if points_at_95
            else "."
        ),
        '<div class="plots">' + "".join(charts) + "</div>" + note,
    )


def _bins(record: dict) -> list[dict] | None:
    rel = artifacts(record).get("reliability")
    if not isinstance(rel, dict):
        return None

    def column(key):
        values = rel.get(key)
        return values if isinstance(values, list) else []

    lower, upper, count = column("bin_lower"), column("bin_upper"), column("count")
    conf, acc = column("confidence"), column("accuracy")
    bins = []
    for i in range(min(len(lower), len(upper), len(count))):
        lo, hi, n = num(lower[i]), num(upper[i]), num(count[i])
        if lo is None or hi is None:
            continue
        bins.append(
            {
                "lower": lo,
                "upper": hi,
                "count": int(n) if n and n > 0 else 0,
                "confidence": num(conf[i]) if i < len(conf) else None,
                "accuracy": num(acc[i]) if i < len(acc) else None,
            }
        )
    return bins or None


def _concentration(bins: list[dict]) -> str:
    total = sum(b["count"] for b in bins)
    if not total:
        return ""
    top = max(bins, key=lambda b: b["count"])
    text = (
        f"{top['count'] / total:.1%} of the {total:,} samples have confidence in "
        f"[{top['lower']:.3f}, {top['upper']:.3f}]"
    )
    if top["accuracy"] is not None and top["confidence"] is not None:
        text += f": accuracy {top['accuracy']:.4f} vs mean confidence {top['confidence']:.4f} there"
    return text + "."


def calibration_section(records: list[dict], styles: dict[str, tuple[str, str]]) -> str:
    calibration = plot_records(records, "calibration")
    if not calibration:
        return ""
    charts, seen = [], set()
    for r in sorted(calibration, key=lambda r: params(r).get("metric") != "ece"):
        model = str(r["model"])
        bins = _bins(r) if model not in seen else None
        if bins is None:
            continue
        seen.add(model)
        ece = next(
            (
                num(x.get("value"))
                for x in calibration
                if str(x["model"]) == model and params(x).get("metric") == "ece"
            ),
            None,
        )
        chart = svg.reliability_chart(
            bins, label=f"reliability diagram, {model}", colour_=styles[model][0], width=270
        )
        head = escape(model) + (
            f' <span class="sub">ECE {ece:.4f}</span>' if ece is not None else ""
        )
        charts.append(
            f'<figure class="plot small"><figcaption>{head}</figcaption>{chart}'
            f'<p class="note">{escape(_concentration(bins))}</p></figure>'
        )
    missing = sorted({str(r["model"]) for r in calibration} - seen)
    note = (
        f'<p class="note">No reliability bins recorded for: {escape(", ".join(missing))}.</p>'
        if missing
        else ""
    )
    return _section(
        "calibration",
        "Calibration: reliability diagrams",
        "Accuracy per confidence bin (bars) against perfect calibration (dashed); the "
        "outlined band is the gap to the bin's mean confidence (tinted above a bar: "
        "over-confident; lightened inside it: under-confident). The strip beneath counts "
        "the samples per bin on a log scale: an MNIST model is so confident that nearly "
        "every sample lands in the top bin, so read that bin's numbers in the note.",
        '<div class="plots">' + "".join(charts) + "</div>" + note,
    )
