"""The coaching chart: pace per turn against the comfortable band, filler and hedge counts, as one
self-contained SVG written by hand, so the package needs no plotting library. Pure."""

from __future__ import annotations

from xml.sax.saxutils import escape as _xml

from ..clock import clock
from .metrics import SpeakingMetrics

_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"'
_FILLER_COLOUR, _HEDGE_COLOUR, _PACE_COLOUR, _OFF_PACE_COLOUR = "#e07a5f", "#3d85c6", "#2a6f4e", "#c44536"
_STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def _time_step(span: float) -> float:
    """A round tick step (seconds) giving at most eight ticks over the span."""
    return next((s for s in _STEPS if span / s <= 8), _STEPS[-1] * (int(span / (_STEPS[-1] * 8)) + 1))


def _text(x: float, y: float, label: str, *, size: int = 11, anchor: str = "start", fill: str = "#333",
          weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
            f'font-weight="{weight}">{_xml(label)}</text>')


def _pace_panel(m: SpeakingMetrics, width: int, top: int, height: int) -> list[str]:
    left, right, bottom = 48, width - 16, top + height
    low, high = m.thresholds.comfortable_wpm
    out = [_text(left, top - 12, "Pace per turn (words per minute)", size=13, weight="bold")]
    # a turn too short to measure (a fragment, "Yes.") is left out: its arithmetic pace would be a spike
    points = [p for p in m.pace if p.wpm is not None and p.measured]
    short = sum(1 for p in m.pace if p.wpm is not None and not p.measured)
    by_time = all(p.start is not None for p in points)
    xs = [(p.start or 0.0) if by_time else float(p.turn) for p in points]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    y_hi = max([high + 40] + [p.wpm or 0.0 for p in points])
    y_step = 50 if y_hi <= 300 else 100
    y_hi = y_step * -(-y_hi // y_step)

    def px(x: float) -> float:
        return left + 8 + (right - left - 16) * (x - x_lo) / (x_hi - x_lo)

    def py(y: float) -> float:
        return float(bottom - height * y / y_hi)

    out.append(f'<rect class="comfortable" x="{left}" y="{py(high):.1f}" width="{right - left}" '
               f'height="{py(low) - py(high):.1f}" fill="#d8efe1"/>')
    out.append(f'<rect x="{right - 130}" y="{top - 22}" width="10" height="10" fill="#d8efe1" stroke="#9fd3b5"/>')
    out.append(_text(right - 116, top - 12, f"comfortable {low:.0f}–{high:.0f}", size=10, fill="#666"))
    for k in range(0, int(y_hi) + 1, y_step):
        out.append(f'<line x1="{left}" x2="{right}" y1="{py(k):.1f}" y2="{py(k):.1f}" stroke="#e4e4e4"/>')
        out.append(_text(left - 6, py(k) + 4, str(k), size=10, anchor="end", fill="#666"))
    out.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#999"/>')
    if by_time:
        step = _time_step(x_hi - x_lo)
        tick = step * -(-x_lo // step)
        while tick <= x_hi:
            out.append(_text(px(tick), bottom + 14, clock(tick), size=10, anchor="middle", fill="#666"))
            tick += step
    else:
        for p, x in zip(points, xs, strict=True):
            out.append(_text(px(x), bottom + 14, f"#{p.turn}", size=10, anchor="middle", fill="#666"))
    out.append(_text((left + right) / 2, bottom + 28, "time" if by_time else "turn", size=10, anchor="middle",
                     fill="#666"))
    if len(points) > 1:
        path = " ".join(f"{px(x):.1f},{py(p.wpm or 0):.1f}" for p, x in zip(points, xs, strict=True))
        out.append(f'<polyline class="pace-line" points="{path}" fill="none" stroke="{_PACE_COLOUR}" '
                   'stroke-width="2"/>')
    for p, x in zip(points, xs, strict=True):
        tip = f"turn {p.turn} at {clock(p.start)}: {p.wpm:.0f} wpm ({p.words} words)"
        colour = _PACE_COLOUR if low <= (p.wpm or 0) <= high else _OFF_PACE_COLOUR
        out.append(f'<circle class="pace-point" cx="{px(x):.1f}" cy="{py(p.wpm or 0):.1f}" r="4" '
                   f'fill="{colour}"><title>{_xml(tip)}</title></circle>')
    if short:
        out.append(_text(right, bottom + 28, f"{short} short turn{'s' if short > 1 else ''} not plotted", size=10,
                         anchor="end", fill="#666"))
    if not points:
        out.append(_text((left + right) / 2, top + height / 2, "no turn long enough to measure a pace" if short
                         else "no timings to measure pace", anchor="middle"))
    return out


def _count_panel(m: SpeakingMetrics, width: int, top: int, limit: int = 10) -> tuple[list[str], int]:
    """Horizontal bars, one per filler or hedge term (most frequent first); returns the height used."""
    bars = sorted([(t, c, "filler") for t, c in m.filler_counts.items()] +
                  [(t, c, "hedge") for t, c in m.hedge_counts.items()], key=lambda b: (-b[1], b[0].lower()))[:limit]
    out = [_text(48, top, "Fillers and hedges", size=13, weight="bold"),
           f'<rect x="{width - 170}" y="{top - 10}" width="10" height="10" fill="{_FILLER_COLOUR}"/>',
           _text(width - 156, top, "filler", size=10, fill="#666"),
           f'<rect x="{width - 110}" y="{top - 10}" width="10" height="10" fill="{_HEDGE_COLOUR}"/>',
           _text(width - 96, top, "hedge", size=10, fill="#666")]
    if not bars:
        out.append(_text(48, top + 24, "No fillers or hedges found.", fill="#666"))
        return out, 40
    # a floor on the scale, so one "um" is a short bar rather than a full-width one
    left, right, most = 120, width - 48, max([4] + [c for _, c, _ in bars])
    for k, (term, count, kind) in enumerate(bars):
        y = top + 14 + 22 * k
        length = max((right - left) * count / most, 2)
        colour = _FILLER_COLOUR if kind == "filler" else _HEDGE_COLOUR
        out.append(_text(left - 8, y + 12, term, anchor="end"))
        out.append(f'<rect class="bar {kind}" x="{left}" y="{y}" width="{length:.1f}" height="16" rx="2" '
                   f'fill="{colour}"><title>{_xml(f"{term}: {count} ({kind})")}</title></rect>')
        out.append(_text(left + length + 6, y + 12, str(count), fill="#333"))
    return out, 22 * len(bars) + 24


def chart_svg(metrics: SpeakingMetrics, *, width: int = 640) -> str:
    """A self-contained SVG: pace per turn over time against the comfortable band, then filler
    and hedge counts as bars."""
    pace = _pace_panel(metrics, width, 30, 160)
    counts, used = _count_panel(metrics, width, 250)
    height = 250 + used + 8
    body = "\n".join(pace + counts)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" {_FONT}>\n<rect width="100%" height="100%" fill="white"/>\n'
            f"{body}\n</svg>")


__all__ = ["chart_svg"]
