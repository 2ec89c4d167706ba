"""Server-side SVG for the dataset page's charts: no chart library, no CDN, no script, and every text
escaped (markupsafe). Each chart is `role="img"` with a <title> and <desc> (what it shows, its range),
and the page puts the same figures in a data table beside it (gateway/templates/portal/dataset.html).
Colours meet WCAG 2.1 non-text contrast (≥ 3:1 on white)."""

from __future__ import annotations

from markupsafe import Markup, escape

from gateway.portal.charts import Point

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40
INK = "#1d2733"
GRID = "#c9d1da"
LINE = "#1f5fa8"  # 6.2:1 on white
BAR = "#1f5fa8"


def _fmt(v: float) -> str:
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:,.1f}"


def _ticks(top: float, n: int = 4) -> list[float]:
    if top <= 0:
        return [0.0]
    raw = top / n
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1.0
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(n + 1) if step * i <= top * 1.0001 + step]


def line_chart(points: list[Point], ident: str, title: str, desc: str) -> Markup:
    """A line over time (one point per period) with a y axis from 0."""
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [p.value for p in points]
    ticks = _ticks(max(values, default=0.0))
    top = ticks[-1] or 1.0
    n = len(points)

    def x(i: int) -> float:
        return LEFT + (inner_w * i / (n - 1) if n > 1 else inner_w / 2)

    def y(v: float) -> float:
        return TOP + inner_h - inner_h * v / top

    parts = [
        f'<svg class="chart" id="{escape(ident)}" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'aria-labelledby="{escape(ident)}-title {escape(ident)}-desc" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{escape(ident)}-title">{escape(title)}</title>',
        f'<desc id="{escape(ident)}-desc">{escape(desc)}</desc>',
    ]
    for t in ticks:
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="{GRID}"/>'
            f'<text x="{LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="12" fill="{INK}">'
            f"{escape(_fmt(t))}</text>"
        )
    if n:
        for i in sorted({0, n // 2, n - 1}):
            anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
            parts.append(
                f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 18}" text-anchor="{anchor}" font-size="12" '
                f'fill="{INK}">{escape(points[i].label)}</text>'
            )
        coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{LINE}" stroke-width="2" points="{coords}"/>')
        if n <= 60:
            parts.extend(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{LINE}"/>' for i, v in enumerate(values)
            )
    parts.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + inner_h}" y2="{TOP + inner_h}" '
        f'stroke="{INK}"/></svg>'
    )
    return Markup("".join(parts))  # noqa: S704 (every text and attribute value above is escaped)


def bar_chart(points: list[Point], ident: str, title: str, desc: str) -> Markup:
    """Horizontal bars, one per group, largest first, each labelled with its value."""
    label_w, row_h = 150, 24
    height = TOP + row_h * max(len(points), 1) + 8
    inner_w = WIDTH - label_w - 80
    top = max((p.value for p in points), default=0.0) or 1.0
    parts = [
        f'<svg class="chart" id="{escape(ident)}" role="img" viewBox="0 0 {WIDTH} {height}" '
        f'aria-labelledby="{escape(ident)}-title {escape(ident)}-desc" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{escape(ident)}-title">{escape(title)}</title>',
        f'<desc id="{escape(ident)}-desc">{escape(desc)}</desc>',
    ]
    for i, p in enumerate(points):
        y = TOP + i * row_h
        w = max(1.0, inner_w * p.value / top)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" font-size="13" fill="{INK}">'
            f"{escape(p.label)}</text>"
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{BAR}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}" font-size="12" fill="{INK}">'
            f"{escape(_fmt(p.value))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text and attribute value above is escaped)
