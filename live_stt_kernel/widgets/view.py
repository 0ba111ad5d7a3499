"""What the live panel shows, as plain data: built from a session's snapshots, compared between
frames so the UI thread re-sends only what changed. Pure: no widgets, no threads, no clock.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..clock import clock
from ..language.translation import Translation, latest_translations
from ..transcript import Transcript, TurnRecord

MAX_ROWS = 200  # rows kept on screen: a 3-hour session must not grow the page without bound


@dataclass(frozen=True, slots=True)
class Status:
    """The session's state in plain words."""

    engine: str  # "local" or "cloud" or the server's host
    session_id: str | None
    elapsed_s: float
    state: str  # "ready", "connecting", "streaming", "stopped", "failed"
    error: str | None = None
    reconnects: int = 0


@dataclass(frozen=True, slots=True)
class TurnView:
    """One finished turn on screen: its key (session id, ``turn_order``) and its HTML."""

    key: tuple[str, int]
    html: str  # the row: time, text, and each translation under it


@dataclass(frozen=True, slots=True)
class PanelView:
    """One frame of the panel: the status line and the turns as HTML, the escaped live line and the meter level."""

    status: str
    partial: str
    turns: tuple[TurnView, ...]
    level: float  # 0..1 for the meter
    hidden_rows: int = 0  # older rows not shown


def status_line(status: Status) -> str:
    """The status as one line of HTML: state, engine, elapsed time, session id, reconnects and any error."""
    parts = [f"<b>{html.escape(status.state)}</b>", html.escape(status.engine), clock(status.elapsed_s)]
    if status.session_id:
        parts.append(f"session {html.escape(status.session_id[:8])}")
    if status.reconnects:
        parts.append(f"{status.reconnects} reconnect{'s' if status.reconnects != 1 else ''}")
    line = " · ".join(parts)
    if status.error:
        line += f' · <span style="color:var(--jp-error-color1,#b00020)">{html.escape(status.error)}</span>'
    return line


# colours follow JupyterLab's theme variables (readable in dark themes), with light-theme fallbacks
_TURN_STYLE = "line-height:1.45;margin:3px 0"
_TIME_STYLE = "color:var(--jp-ui-font-color2,#888)"
_TRANSLATION_STYLE = "color:var(--jp-success-color1,#2a6f4e);margin-left:3.2em"
_FAILED_STYLE = "color:var(--jp-error-color1,#b00020);margin-left:3.2em"


def turn_html(row: TurnRecord, translations: Mapping[str, Translation]) -> str:
    """One finished turn: its time, its text, and each translation (or why there is none) under it."""
    lines = [(f'<div class="lsk-turn" style="{_TURN_STYLE}"><span style="{_TIME_STYLE}">{clock(row.start)}</span> '
              f'<span class="lsk-text">{html.escape(row.text)}</span>')]
    for target, item in sorted(translations.items()):
        if item.text is not None:
            lines.append(f'<div class="lsk-translation" style="{_TRANSLATION_STYLE}">{html.escape(target)}: '
                         f'{html.escape(item.text)}</div>')
        else:
            lines.append(f'<div class="lsk-translation lsk-failed" style="{_FAILED_STYLE}">{html.escape(target)}: '
                         f'not translated ({html.escape(item.error or "")})</div>')
    return "".join(lines) + "</div>"


def level_of(dbfs: float | None, floor: float = -60.0) -> float:
    """A meter position 0..1 from a level in dBFS (``floor`` and below: empty)."""
    if dbfs is None or math.isnan(dbfs):
        return 0.0
    return max(0.0, min(1.0, (dbfs - floor) / -floor))


def build_view(transcript: Transcript, translations: Iterable[Translation], status: Status, *,
               level_dbfs: float | None = None, max_rows: int = MAX_ROWS) -> PanelView:
    """The panel's next frame: the last ``max_rows`` turns with their latest translations, the live line and the meter."""
    latest = latest_translations(translations)
    by_turn: dict[tuple[str, int], dict[str, Translation]] = {}
    for (key, target), item in latest.items():
        by_turn.setdefault(key, {})[target] = item
    rows = transcript.rows[-max_rows:]
    turns = tuple(TurnView(row.key, turn_html(row, by_turn.get(row.key, {}))) for row in rows)
    return PanelView(status=status_line(status), partial=html.escape(transcript.partial), turns=turns,
                     level=level_of(level_dbfs), hidden_rows=len(transcript.rows) - len(rows))


@dataclass(frozen=True, slots=True)
class Changes:
    """What to send: the status, partial and level if they changed, rows to update in place (by
    position), rows to append, and whether the rows must be rebuilt (older ones scrolled off)."""

    status: str | None
    partial: str | None
    level: float | None
    updated: tuple[tuple[int, str], ...]
    appended: tuple[str, ...]
    rebuild: bool

    @property
    def empty(self) -> bool:
        """Whether there is nothing to send."""
        return (self.status is None and self.partial is None and self.level is None and not self.updated
                and not self.appended and not self.rebuild)


def changes(before: PanelView | None, after: PanelView, *, level_step: float = 0.02) -> Changes:
    """What to send to go from frame ``before`` to ``after`` (None: everything); the level only if it moved ``level_step`` or more."""
    if before is None:
        return Changes(after.status, after.partial, after.level, (), tuple(t.html for t in after.turns), False)
    old_keys = [t.key for t in before.turns]
    new_keys = [t.key for t in after.turns]
    rebuild = new_keys[: len(old_keys)] != old_keys
    updated: tuple[tuple[int, str], ...] = ()
    appended: tuple[str, ...] = ()
    if rebuild:
        appended = tuple(t.html for t in after.turns)
    else:
        updated = tuple((i, new.html) for i, (old, new) in enumerate(zip(before.turns, after.turns, strict=False))
                        if old.html != new.html)
        appended = tuple(t.html for t in after.turns[len(before.turns):])
    return Changes(
        status=after.status if after.status != before.status else None,
        partial=after.partial if after.partial != before.partial else None,
        level=after.level if abs(after.level - before.level) >= level_step else None,
        updated=updated,
        appended=appended,
        rebuild=rebuild,
    )


__all__ = ["MAX_ROWS", "Changes", "PanelView", "Status", "TurnView", "build_view", "changes", "level_of", "status_line"]
