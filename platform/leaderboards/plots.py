"""Small hand-written SVG charts for method pages.

Why not matplotlib: these render on a page view (method pages are not snapshot-cached), and a
few rects and circles cost microseconds; text stays selectable, no JavaScript, no CDN.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

BLUE = "#0072B2"
ORANGE = "#D55E00"


def bar_chart(items: Sequence[dict], *, key: str = "dsc", label: str = "DSC per organ") -> str:
    """Horizontal bars of items[i][key] in [0, 1], one row per item (by item['name'])."""
    if not items:
        return ""
    h = 22 * len(items) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 460 {h}" role="img" '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
    ]
    for i, o in enumerate(items):
        y = 6 + i * 22
        v = o.get(key)
        name = escape(str(o["name"]))
        parts.append(f'<text x="110" y="{y + 14}" text-anchor="end" font-size="13">{name}</text>')
        if v is None:
            parts.append(f'<text x="118" y="{y + 14}" font-size="12">no data</text>')
            continue
        w = 300 * max(0.0, min(1.0, float(v)))
        parts.append(
            f'<rect x="115" y="{y + 3}" width="{w:.1f}" height="15" fill="{BLUE}">'
            f"<title>{name}: {v:.3f}</title></rect>"
            f'<text x="{120 + w:.1f}" y="{y + 14}" font-size="11">{v:.3f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def strip_plot(values: Sequence[float], *, label: str = "Mean DSC per subject") -> str:
    """Distribution of per-subject scores on [0, 1]: one dot per subject, median tick.

    Subjects are not named: the plot shows the spread without identifying test subjects."""
    vals = sorted(float(v) for v in values if v is not None)
    if not vals:
        return ""
    n = len(vals)
    med = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
    x0, w = 30, 400

    def x(v: float) -> float:
        return x0 + w * max(0.0, min(1.0, v))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 460 90" role="img" '
        f'aria-label="{escape(label)}: {n} subjects, median {med:.3f}, range {vals[0]:.3f} to '
        f'{vals[-1]:.3f}"><title>{escape(label)}</title>',
        f'<line x1="{x0}" y1="60" x2="{x0 + w}" y2="60" stroke="#555"/>',
    ]
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{x(t):.1f}" y1="60" x2="{x(t):.1f}" y2="65" stroke="#555"/>'
            f'<text x="{x(t):.1f}" y="78" font-size="11" text-anchor="middle">{t:g}</text>'
        )
    seen: dict[int, int] = {}
    for v in vals:  # stack coincident dots so every subject stays visible
        px = round(x(v) / 6)
        lvl = seen.get(px, 0)
        seen[px] = lvl + 1
        parts.append(
            f'<circle cx="{x(v):.1f}" cy="{50 - 7 * lvl}" r="4" fill="{BLUE}" '
            f'fill-opacity="0.75"><title>{v:.3f}</title></circle>'
        )
    parts.append(
        f'<line x1="{x(med):.1f}" y1="12" x2="{x(med):.1f}" y2="58" stroke="{ORANGE}" '
        f'stroke-width="2"><title>median {med:.3f}</title></line>'
        f'<text x="{x(med) + 4:.1f}" y="14" font-size="11">median {med:.3f}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
