"""Hand-written inline SVG charts for the HTML report: no plotting library, no script, no network.

Every function returns one ``<svg>`` element as a string, sized in CSS pixels and scaled down by
the page's CSS on narrow screens (``viewBox``). Text is escaped here; callers pass plain strings.
The ``<svg>`` carries no ``xmlns``: the HTML parser puts it in the SVG namespace by itself.
"""

from __future__ import annotations

import math
from html import escape

# Okabe & Ito (2008), distinguishable under the common colour-vision deficiencies; the yellow is
# last because it reads poorly on white. Series also differ by marker shape, never colour alone.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("circle", "square", "triangle", "diamond", "triangle_down", "cross")
DASHES = ("", "6 3", "2 3", "9 3 2 3")
GRID, AXIS, INK, MUTED = "#e4e7eb", "#9aa1a9", "#1f2933", "#616e7c"


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def marker_shape(index: int) -> str:
    return MARKERS[index % len(MARKERS)]


def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def marker(
    shape: str, x: float, y: float, fill: str, r: float = 3.6, tooltip: str | None = None
) -> str:
    """A filled marker centred on (x, y) pixels, with a native tooltip when given."""
    if shape == "square":
        el = f'<rect x="{_f(x - r)}" y="{_f(y - r)}" width="{_f(2 * r)}" height="{_f(2 * r)}"'
    elif shape in ("triangle", "triangle_down"):
        s = 1 if shape == "triangle" else -1
        pts = [
            (x, y - s * r * 1.25),
            (x - r * 1.15, y + s * r * 0.85),
            (x + r * 1.15, y + s * r * 0.85),
        ]
        el = '<polygon points="' + " ".join(f"{_f(a)},{_f(b)}" for a, b in pts) + '"'
    elif shape == "diamond":
        q = r * 1.3
        el = (
            f'<polygon points="{_f(x)},{_f(y - q)} {_f(x + q)},{_f(y)} '
            f'{_f(x)},{_f(y + q)} {_f(x - q)},{_f(y)}"'
        )
    elif shape == "cross":
        el = (
            f'<path d="M{_f(x - r)},{_f(y - r)}L{_f(x + r)},{_f(y + r)}M{_f(x - r)},{_f(y + r)}'
            f'L{_f(x + r)},{_f(y - r)}" stroke="{fill}" stroke-width="2.2"'
        )
    else:
        el = f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{_f(r)}"'
    el += f' fill="{fill}" stroke="#fff" stroke-width="0.8"/>' if shape != "cross" else "/>"
    return f"<g><title>{escape(tooltip)}</title>{el}</g>" if tooltip else el


def swatch(colour_: str, shape: str, dash: str = "", line: bool = True) -> str:
    """A small legend key: a line segment in the series' dash with its marker on top."""
    seg = (
        (
            f'<line x1="1" y1="7" x2="25" y2="7" stroke="{colour_}" stroke-width="2"'
            + (f' stroke-dasharray="{dash}"' if dash else "")
            + "/>"
        )
        if line
        else ""
    )
    return (
        f'<svg class="key" width="26" height="14" viewBox="0 0 26 14" aria-hidden="true">{seg}'
        f"{marker(shape, 13, 7, colour_)}</svg>"
    )


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, k = [], 0
    while first + k * step <= hi + step * 1e-9:
        ticks.append(round(first + k * step, 10))
        k += 1
    return ticks


def tick_label(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class Frame:
    """Maps data coordinates to pixels inside a plot area with margins (left, right, top,
    bottom)."""

    def __init__(self, width: int, height: int, x_domain, y_domain, margin=(46, 14, 12, 40)):
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = margin
        self.x0, self.x1 = x_domain
        self.y0, self.y1 = y_domain

    def x(self, v: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (v - self.x0) / span * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return (
            self.height
            - self.bottom
            - (v - self.y0) / span * (self.height - self.top - self.bottom)
        )

    def axes(self, x_ticks, y_ticks, x_label: str, y_label: str) -> str:
        out = []
        xa, xb, ya, yb = self.x(self.x0), self.x(self.x1), self.y(self.y0), self.y(self.y1)
        for t in y_ticks:
            py = self.y(t)
            out.append(
                f'<line x1="{_f(xa)}" y1="{_f(py)}" x2="{_f(xb)}" y2="{_f(py)}" stroke="{GRID}"/>'
                f'<text x="{_f(xa - 5)}" y="{_f(py + 3.5)}" '
                f'text-anchor="end">{tick_label(t)}</text>'
            )
        for t in x_ticks:
            px = self.x(t)
            out.append(
                f'<line x1="{_f(px)}" y1="{_f(yb)}" x2="{_f(px)}" y2="{_f(ya)}" stroke="{GRID}"/>'
                f'<text x="{_f(px)}" y="{_f(ya + 14)}" text-anchor="middle">{tick_label(t)}</text>'
            )
        out.append(f'<path d="M{_f(xa)},{_f(yb)}V{_f(ya)}H{_f(xb)}" fill="none" stroke="{AXIS}"/>')
        out.append(
            f'<text x="{_f((xa + xb) / 2)}" y="{_f(self.height - 6)}" text-anchor="middle" '
            f'class="axis-label">{escape(x_label)}</text>'
        )
        cy = (ya + yb) / 2
        out.append(
            f'<text transform="translate(12,{_f(cy)}) rotate(-90)" text-anchor="middle" '
            f'class="axis-label">{escape(y_label)}</text>'
        )
        return "".join(out)


def svg_open(width: int, height: int, label: str, cls: str = "chart") -> str:
    return (
        f'<svg class="{cls}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}" font-size="11" fill="{INK}">'
        f"<title>{escape(label)}</title>"
    )


def _clamp(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo), hi)


def line_chart(
    series: list[dict],
    *,
    x_domain,
    y_domain,
    x_label: str,
    y_label: str,
    label: str,
    x_ticks=None,
    y_ticks=None,
    diagonal: bool = False,
    markers: bool = True,
    width: int = 460,
    height: int = 300,
) -> str:
    """Lines through points; ``series``: dicts with ``label``, ``points`` [(x, y or None)],
    ``colour``, ``marker`` and ``dash``. A None y breaks the line; points outside the domain are
    clamped to its edge."""
    fr = Frame(width, height, x_domain, y_domain)
    out = [
        svg_open(width, height, label),
        fr.axes(
            x_ticks if x_ticks is not None else nice_ticks(*x_domain),
            y_ticks if y_ticks is not None else nice_ticks(*y_domain),
            x_label,
            y_label,
        ),
    ]
    if diagonal:
        out.append(
            f'<line x1="{_f(fr.x(0))}" y1="{_f(fr.y(0))}" x2="{_f(fr.x(1))}" y2="{_f(fr.y(1))}" '
            f'stroke="{AXIS}" stroke-dasharray="4 4"><title>chance</title></line>'
        )
    for s in series:
        runs: list[list[tuple[float, float, float, float]]] = []
        run: list[tuple[float, float, float, float]] = []
        for x, y in s["points"]:
            if y is None:
                if run:
                    runs.append(run)
                run = []
            else:
                run.append((fr.x(_clamp(x, *x_domain)), fr.y(_clamp(y, *y_domain)), x, y))
        if run:
            runs.append(run)
        dash = f' stroke-dasharray="{s["dash"]}"' if s.get("dash") else ""
        for run in runs:
            d = "M" + "L".join(f"{_f(px)},{_f(py)}" for px, py, _, _ in run)
            out.append(
                f'<path d="{d}" fill="none" stroke="{s["colour"]}" stroke-width="2"{dash} '
                f'stroke-linejoin="round"/>'
            )
        if markers:
            for run in runs:
                for px, py, x, y in run:
                    tip = f"{s['label']}: {x_label} {tick_label(x)} \u2192 {y:.4f}"
                    out.append(marker(s.get("marker", "circle"), px, py, s["colour"], tooltip=tip))
        # Marked points (an operating point on a ROC curve), drawn whatever ``markers`` says.
        for x, y, tip in s.get("marks", ()):
            px, py = fr.x(_clamp(x, *x_domain)), fr.y(_clamp(y, *y_domain))
            out.append(marker(s.get("marker", "circle"), px, py, s["colour"], tooltip=tip))
    out.append("</svg>")
    return "".join(out)


def dot_rows_chart(
    categories: list[str],
    series: list[dict],
    *,
    x_domain=(0.0, 1.0),
    x_label: str,
    label: str,
    width: int = 560,
    row_height: int = 20,
) -> str:
    """A horizontal dot plot: one row per category, one marker per series (``label``, ``values``
    {category: value or None}, ``colour``, ``marker``); a grey bar spans the series' range."""
    left = 16 + max([len(c) for c in categories] + [4]) * 6.4
    height = 20 + row_height * len(categories) + 40
    fr = Frame(width, height, x_domain, (0, len(categories)), margin=(int(left), 16, 12, 40))
    out = [svg_open(width, height, label)]
    ticks = nice_ticks(*x_domain)
    xa, xb = fr.x(x_domain[0]), fr.x(x_domain[1])
    for t in ticks:
        px = fr.x(t)
        out.append(
            f'<line x1="{_f(px)}" y1="{fr.top}" x2="{_f(px)}" y2="{_f(fr.y(0))}" stroke="{GRID}"/>'
            f'<text x="{_f(px)}" y="{_f(fr.y(0) + 14)}" text-anchor="middle">{tick_label(t)}</text>'
        )
    out.append(
        f'<line x1="{_f(xa)}" y1="{_f(fr.y(0))}" x2="{_f(xb)}" y2="{_f(fr.y(0))}" stroke="{AXIS}"/>'
        f'<text x="{_f((xa + xb) / 2)}" y="{height - 6}" text-anchor="middle" class="axis-label">'
        f"{escape(x_label)}</text>"
    )
    for i, cat in enumerate(categories):
        cy = fr.y(len(categories) - i - 0.5)
        if i % 2 == 0:
            out.append(
                f'<rect x="{_f(xa)}" y="{_f(cy - row_height / 2)}" width="{_f(xb - xa)}" '
                f'height="{row_height}" fill="#f5f7fa"/>'
            )
        out.append(
            f'<text x="{_f(xa - 8)}" y="{_f(cy + 3.5)}" text-anchor="end">{escape(cat)}</text>'
        )
        values = [s["values"].get(cat) for s in series]
        present = [_clamp(v, *x_domain) for v in values if v is not None]
        if len(present) > 1:
            out.append(
                f'<line x1="{_f(fr.x(min(present)))}" y1="{_f(cy)}" x2="{_f(fr.x(max(present)))}" '
                f'y2="{_f(cy)}" stroke="#c3c9d0" stroke-width="4" stroke-linecap="round"/>'
            )
        for s, v in zip(series, values, strict=True):
            if v is not None:
                out.append(
                    marker(
                        s["marker"],
                        fr.x(_clamp(v, *x_domain)),
                        cy,
                        s["colour"],
                        r=4.2,
                        tooltip=f"{s['label']} \u00b7 {cat}: {v:.4f}",
                    )
                )
    out.append("</svg>")
    return "".join(out)


def reliability_chart(bins: list[dict], *, label: str, colour_: str, width: int = 330) -> str:
    """A reliability diagram: accuracy per confidence bin as bars, the gap to the bin's mean
    confidence shaded, the diagonal of perfect calibration; beneath it the number of samples per
    bin on a log scale (a confident MNIST model puts nearly all of them in the top bin). ``bins``:
    dicts with ``lower``, ``upper``, ``confidence``, ``accuracy`` (None when empty), ``count``."""
    plot_h, strip_h = width - 60, 44
    height = plot_h + strip_h + 52
    fr = Frame(width, plot_h + 8, (0, 1), (0, 1), margin=(46, 12, 8, 8))
    out = [svg_open(width, height, label), fr.axes([], nice_ticks(0, 1), "", "accuracy")]
    for b in bins:
        if b["accuracy"] is None or not b["count"]:
            continue
        x0, x1 = fr.x(_clamp(b["lower"], 0, 1)), fr.x(_clamp(b["upper"], 0, 1))
        acc, conf = _clamp(b["accuracy"], 0, 1), b["confidence"]
        tip = (
            f"confidence [{b['lower']:.3f}, {b['upper']:.3f}): {b['count']} samples, "
            f"accuracy {acc:.4f}" + (f", mean confidence {conf:.4f}" if conf is not None else "")
        )
        out.append(
            f'<g><title>{escape(tip)}</title><rect x="{_f(x0 + 0.5)}" y="{_f(fr.y(acc))}" '
            f'width="{_f(max(x1 - x0 - 1, 0.5))}" height="{_f(fr.y(0) - fr.y(acc))}" '
            f'fill="{colour_}"/>'
        )
        if conf is not None:
            # Over-confident: the gap is empty space above the bar, tinted; under-confident: it is
            # the top of the bar, lightened. Outlined either way.
            top, bottom = sorted((fr.y(acc), fr.y(_clamp(conf, 0, 1))))
            fill = '#D55E00" fill-opacity="0.3' if conf > acc else '#fff" fill-opacity="0.55'
            out.append(
                f'<rect x="{_f(x0 + 0.5)}" y="{_f(top)}" width="{_f(max(x1 - x0 - 1, 0.5))}" '
                f'height="{_f(max(bottom - top, 0.6))}" fill="{fill}" stroke="#D55E00" '
                'stroke-width="0.9"/>'
            )
        out.append("</g>")
    out.append(
        f'<line x1="{_f(fr.x(0))}" y1="{_f(fr.y(0))}" x2="{_f(fr.x(1))}" y2="{_f(fr.y(1))}" '
        f'stroke="{INK}" stroke-dasharray="4 3" stroke-width="1"/>'
    )
    # The count strip, sharing the x axis.
    s_top, s_bottom = plot_h + 14, plot_h + 14 + strip_h
    peak = math.log10(max([b["count"] or 0 for b in bins] + [1]) + 1)
    out.append(
        f'<rect x="{_f(fr.x(0))}" y="{s_top}" width="{_f(fr.x(1) - fr.x(0))}" height="{strip_h}" '
        f'fill="#f5f7fa"/>'
    )
    for b in bins:
        if not b["count"]:
            continue
        h = strip_h * math.log10(b["count"] + 1) / peak
        x0, x1 = fr.x(_clamp(b["lower"], 0, 1)), fr.x(_clamp(b["upper"], 0, 1))
        out.append(
            f'<rect x="{_f(x0 + 0.5)}" y="{_f(s_bottom - h)}" width="{_f(max(x1 - x0 - 1, 0.5))}" '
            f'height="{_f(h)}" fill="{MUTED}"><title>{b["count"]} samples</title></rect>'
        )
    out.append(
        f'<text x="{_f(fr.x(0) - 5)}" y="{_f(s_top + strip_h / 2 + 3.5)}" text-anchor="end" '
        f'class="axis-label">n (log)</text>'
    )
    for t in nice_ticks(0, 1):
        out.append(
            f'<text x="{_f(fr.x(t))}" y="{s_bottom + 14}" '
            f'text-anchor="middle">{tick_label(t)}</text>'
        )
    out.append(
        f'<text x="{_f((fr.x(0) + fr.x(1)) / 2)}" y="{height - 6}" text-anchor="middle" '
        f'class="axis-label">confidence</text></svg>'
    )
    return "".join(out)
