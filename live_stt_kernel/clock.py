"""The one way a time on the recording's clock is shown to people (panel, reports, charts, Markdown)."""

from __future__ import annotations


def clock(seconds: float | None) -> str:
    """``75.4`` -> ``"1:15"``; an hour or more -> ``"1:02:03"``; unknown (None) -> ``"–"``."""
    if seconds is None:
        return "–"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


__all__ = ["clock"]
