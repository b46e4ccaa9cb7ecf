"""The study's trade-off plots: scatter plots (one point per model, coloured and shaped by its
group, labelled with its name, 95% intervals as whiskers) and robust accuracy vs eps per attack
family.

Built on :mod:`safetycheck.report.svg` (frame, ticks, markers, line chart, legend keys). Each plot
is an inline ``<svg>`` element for the HTML page; :func:`standalone` turns one into an SVG file that
renders as an image on its own (``xmlns``, a font, a white background).
"""

from __future__ import annotations

from html import escape
from typing import Any

from safetycheck.report import svg
from safetycheck.report.plots import attack_families
from safetycheck.study.claims import KNOWN_GROUPS, Measure, StudyData, attack_key, group_of

XMLNS = "http://www.w3.org/2000/svg"
FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"
# Fixed colours for the zoo's groups (Okabe-Ito indices), so that a group looks the same in every
# study.
_GROUP_COLOUR = {
    "baseline": 0,
    "ensemble member": 5,
    "ensemble": 2,
    "larger": 6,
    "augmentation": 1,
    "adversarial training": 4,
    "ordering": 3,
}
_CHAR = 6.2  # approximate width of one character at font-size 11


def standalone(element: str) -> str:
    """An inline ``<svg>`` element as a standalone SVG document."""
    head_end = element.index(">") + 1
    head = element[:head_end].replace("<svg ", f'<svg xmlns="{XMLNS}" font-family="{FONT}" ', 1)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + head
        + '<rect width="100%" height="100%" fill="#ffffff"/>'
        + element[head_end:]
        + "\n"
    )


def group_styles(models: list[str], groups: dict) -> dict[str, tuple[str, str]]:
    """{group: (colour, marker)} for the groups of ``models``: the zoo's groups in fixed colours,
    other groups in the colours left over."""
    present = list(dict.fromkeys(group_of(m, groups) for m in models))
    present.sort(key=lambda g: KNOWN_GROUPS.index(g) if g in KNOWN_GROUPS else len(KNOWN_GROUPS))
    used = {_GROUP_COLOUR[g] for g in present if g in _GROUP_COLOUR}
    free = [i for i in range(len(svg.PALETTE)) if i not in used] or list(range(len(svg.PALETTE)))
    out, k = {}, 0
    for i, g in enumerate(present):
        if g in _GROUP_COLOUR:
            index = _GROUP_COLOUR[g]
        else:
            index, k = free[k % len(free)], k + 1
        out[g] = (svg.colour(index), svg.marker_shape(i))
    return out


def _domain(values: list[float], unit: bool) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 if hi > lo else max(abs(hi) * 0.05, 0.01)
    lo, hi = lo - pad, hi + pad
    if unit:  # a proportion: stay within [0, 1]
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return lo, hi


def _overlap(a: tuple, b: tuple) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _place_labels(
    points: list[tuple[str, float, float]], bounds: tuple
) -> list[tuple[float, float, str, bool]]:
    """Greedy label placement: for each point (in order) the first of sixteen positions around it
    that overlaps the least with the labels placed so far, the markers and the plot's edges;
    (x, y, text-anchor, needs a leader line) per point."""
    taken = [(x - 5, y - 5, x + 5, y + 5) for _, x, y in points]
    placed = []
    near = (
        (7, 4, "start"),
        (-7, 4, "end"),
        (0, -9, "middle"),
        (0, 16, "middle"),
        (6, -7, "start"),
        (6, 14, "start"),
        (-6, -7, "end"),
        (-6, 14, "end"),
    )
    # A second ring, further out, drawn with a leader line to its point.
    far = (
        (16, -16, "start"),
        (-16, -16, "end"),
        (16, 24, "start"),
        (-16, 24, "end"),
        (0, -24, "middle"),
        (0, 32, "middle"),
        (24, 4, "start"),
        (-24, 4, "end"),
    )
    candidates = near + far
    for name, x, y in points:
        w = len(name) * _CHAR
        best = None
        for dx, dy, anchor in candidates:
            left = x + dx - (w if anchor == "end" else w / 2 if anchor == "middle" else 0)
            box = (left, y + dy - 10, left + w, y + dy + 2)
            cost = sum(_overlap(box, t) for t in taken)
            cost += 1000 * (
                box[0] < bounds[0] or box[2] > bounds[2] or box[1] < bounds[1] or box[3] > bounds[3]
            )
            if best is None or cost < best[0] - 1e-9:
                best = (cost, x + dx, y + dy, anchor, box, (dx, dy, anchor) in far)
            if cost == 0:
                break
        assert best is not None, "there is always a candidate position"
        taken.append(best[4])
        placed.append(best[1:4] + best[5:])
    return placed


def _legend(
    items: list[tuple[str, str, str, str]],
    x: float,
    y: float,
    columns: int,
    column_width: float,
    line: bool,
) -> str:
    """Legend keys (:func:`html_svg.swatch`) with their text, in rows of ``columns``."""
    out = []
    for i, (text, c, m, dash) in enumerate(items):
        px, py = x + (i % columns) * column_width, y + (i // columns) * 18
        key = svg.swatch(c, m, dash, line=line).replace(
            "<svg ", f'<svg x="{svg._f(px)}" y="{svg._f(py - 10)}" ', 1
        )
        out.append(f'{key}<text x="{svg._f(px + 30)}" y="{svg._f(py + 1)}">{escape(text)}</text>')
    return "".join(out)


def scatter(
    points: list[tuple[str, str, Measure, Measure]],
    styles: dict[str, tuple[str, str]],
    *,
    x_label: str,
    y_label: str,
    title: str,
    unit_x: bool = True,
    unit_y: bool = True,
    width: int = 700,
    height: int = 470,
) -> str:
    """``points``: (model, group, x, y). One marker per model with its name beside it and its 95%
    intervals as whiskers; the legend names the groups."""
    legend_w = 170
    xs = [v for _, _, mx, _ in points for v in (mx.value, *(mx.ci or ()))]
    ys = [v for _, _, _, my in points for v in (my.value, *(my.ci or ()))]
    fr = svg.Frame(
        width, height, _domain(xs, unit_x), _domain(ys, unit_y), margin=(60, legend_w, 34, 44)
    )
    out = [
        svg.svg_open(width, height, title),
        f'<text x="{fr.left}" y="18" font-size="13" font-weight="600">{escape(title)}</text>',
        fr.axes(svg.nice_ticks(fr.x0, fr.x1), svg.nice_ticks(fr.y0, fr.y1), x_label, y_label),
    ]
    pixels = []
    for model, group, mx, my in points:
        colour, shape = styles[group]
        px, py = fr.x(mx.value), fr.y(my.value)
        for ci, horizontal in ((mx.ci, True), (my.ci, False)):
            if ci:
                a, b = (fr.x(ci[0]), fr.x(ci[1])) if horizontal else (fr.y(ci[0]), fr.y(ci[1]))
                d = (
                    f"M{svg._f(a)},{svg._f(py)}H{svg._f(b)}"
                    if horizontal
                    else f"M{svg._f(px)},{svg._f(a)}V{svg._f(b)}"
                )
                out.append(
                    f'<path d="{d}" stroke="{colour}" stroke-opacity="0.55" stroke-width="1.3"/>'
                )
        tip = f"{model} ({group}): {x_label} {mx.value:.4f}, {y_label} {my.value:.4f}"
        out.append(svg.marker(shape, px, py, colour, r=4.6, tooltip=tip))
        pixels.append((model, px, py))
    bounds = (fr.left, fr.top, width - legend_w, height - fr.bottom)
    for (model, px, py), (lx, ly, anchor, leader) in zip(
        pixels, _place_labels(pixels, bounds), strict=True
    ):
        if leader:
            out.append(
                f'<line x1="{svg._f(px)}" y1="{svg._f(py)}" x2="{svg._f(lx)}" '
                f'y2="{svg._f(ly - 4)}" stroke="{svg.MUTED}" stroke-width="0.7"/>'
            )
        out.append(
            f'<text x="{svg._f(lx)}" y="{svg._f(ly)}" text-anchor="{anchor}" fill="{svg.INK}">'
            f"{escape(model)}</text>"
        )
    groups = list(dict.fromkeys(g for _, g, _, _ in points))
    items = [(g, *styles[g], "") for g in styles if g in groups]
    out.append(f'<text x="{width - legend_w + 16}" y="{fr.top + 4}" font-weight="600">group</text>')
    out.append(_legend(items, width - legend_w + 16, fr.top + 24, 1, legend_w, line=False))
    out.append("</svg>")
    return "".join(out)


def eps_panels(data: StudyData, groups: dict, width: int = 700) -> str | None:
    """Robust accuracy vs eps, one panel per attack family present, one line per model (colour:
    group; marker and dash: the model within its group); eps 0 is the clean accuracy."""
    families = [f for f in attack_families() if data.attack_keys(f)]
    if not families:
        return None
    styles = group_styles(data.models, groups)
    within: dict[str, int] = {}
    model_style = {}
    for m in data.models:
        g = group_of(m, groups)
        j = within[g] = within.get(g, -1) + 1
        model_style[m] = (styles[g][0], svg.marker_shape(j), svg.DASHES[j % len(svg.DASHES)])
    columns = 1 if len(families) == 1 else 2
    panel_w, panel_h = width // columns, 270
    out, drawn = [], set()
    for i, fam in enumerate(families):
        series: list[dict[str, Any]] = []
        for m in data.models:
            points = [
                (float(k.split("@")[1]), measure.value)
                for k in data.attack_keys(fam)
                if (measure := data.get(m, k))
            ]
            if not points:
                continue
            clean = data.get(m, "clean")
            if clean and points[0][0] > 0:
                points.insert(0, (0.0, clean.value))
            c, shape, dash = model_style[m]
            series.append(
                {"label": m, "points": points, "colour": c, "marker": shape, "dash": dash}
            )
            drawn.add(m)
        eps = sorted({x for s in series for x, _ in s["points"]})
        chart = svg.line_chart(
            series,
            x_domain=(0.0, max(eps[-1], 1e-9)),
            y_domain=(0.0, 1.0),
            x_label="eps (L2)" if fam == "pgd_l2" else "eps (L\u221e)",
            y_label="robust accuracy",
            label=f"{fam}: robust accuracy vs eps",
            x_ticks=eps if len(eps) <= 8 else None,
            width=panel_w - 10,
            height=panel_h,
        )
        x, y = (i % columns) * panel_w, 50 + (i // columns) * (panel_h + 26)
        out.append(
            f'<text x="{x + 46}" y="{y - 6}" font-size="13" font-weight="600">{escape(fam)}</text>'
        )
        out.append(chart.replace("<svg ", f'<svg x="{x}" y="{y}" ', 1))
    rows = (len(families) + columns - 1) // columns
    legend_y = 50 + rows * (panel_h + 26) + 8
    items = [(m, *model_style[m]) for m in data.models if m in drawn]
    height = legend_y + ((len(items) + 3) // 4) * 18 + 12
    title = "Robust accuracy vs eps, per attack"
    return (
        svg.svg_open(width, height, title)
        + f'<text x="8" y="16" font-size="13" font-weight="600">{escape(title)}</text>'
        + "".join(out)
        + _legend(items, 12, legend_y + 10, 4, (width - 12) / 4, line=True)
        + "</svg>"
    )


def _primary_attack(data: StudyData) -> str | None:
    return next(
        (
            f
            for f in ("pgd_linf", "apgd", "apgd_fast", "autoattack", "autoattack_fast", "fgsm")
            if data.attack_keys(f)
        ),
        None,
    )


def robust_keys(data: StudyData) -> list[str]:
    """The robust-accuracy columns the scatter plots use: PGD-Linf (else another Linf attack) at
    eps 0.1 (else the eps nearest it) and at 0.2 (else the largest eps)."""
    fam = _primary_attack(data)
    if fam is None:
        return []
    eps = sorted(float(k.split("@")[1]) for k in data.attack_keys(fam))
    first = min(eps, key=lambda e: abs(e - 0.1))
    second = 0.2 if 0.2 in eps else eps[-1]
    return list(dict.fromkeys([attack_key(fam, first), attack_key(fam, second)]))


def build(data: StudyData, groups: dict) -> tuple[list[tuple[str, str, str]], list[str]]:
    """([(file name, caption, inline svg)], [why a plot was not drawn])."""
    styles = group_styles(data.models, groups)
    plots, missing = [], []

    def add(name: str, x_key: str, y_key: str, x_label: str, y_label: str, title: str, unit_x=True):
        points = [
            (m, group_of(m, groups), x_measure, y_measure)
            for m in data.models
            if (x_measure := data.get(m, x_key)) and (y_measure := data.get(m, y_key))
        ]
        if not points:
            missing.append(f"{title}: no model has both {x_key} and {y_key}")
            return
        plots.append(
            (
                name,
                title,
                scatter(
                    points, styles, x_label=x_label, y_label=y_label, title=title, unit_x=unit_x
                ),
            )
        )

    keys = robust_keys(data)
    if not keys:
        missing.append("robust accuracy plots: no Linf attack in the results")
    for key in keys:
        add(
            f"robust_vs_mnist_c_{key.replace('@', '_')}.svg",
            "mnist_c_mean",
            key,
            "MNIST-C mean accuracy",
            f"robust accuracy ({key})",
            f"Robust accuracy ({key}) vs MNIST-C mean",
        )
    add(
        "auroc_vs_ece.svg",
        "ece",
        "auroc:fmnist-msp",
        "ECE (lower is better)",
        "AUROC Fashion-MNIST (MSP)",
        "OOD AUROC (fmnist, MSP) vs ECE",
        unit_x=False,
    )
    if keys:
        add(
            "robust_vs_clean.svg",
            "clean",
            keys[0],
            "clean accuracy",
            f"robust accuracy ({keys[0]})",
            f"Robust accuracy ({keys[0]}) vs clean accuracy",
        )
    lines = eps_panels(data, groups)
    if lines:
        plots.append(("robust_vs_eps.svg", "Robust accuracy vs eps, per attack", lines))
    return plots, missing
