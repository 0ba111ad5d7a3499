"""What the live panel shows, as plain data: built from a session's snapshots, compared between
frames so the UI thread re-sends only what changed. Pure: no widgets, no threads, no clock.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
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
    warning: str | None = None  # the server's, e.g. that it is behind


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
    """The status as one line of HTML: state, engine, elapsed time, session id, reconnects, a server warning and any
    error."""
    parts = [f"<b>{html.escape(status.state)}</b>", html.escape(status.engine), clock(status.elapsed_s)]
    if status.session_id:
        parts.append(f"session {html.escape(status.session_id[:8])}")
    if status.reconnects:
        parts.append(f"{status.reconnects} reconnect{'s' if status.reconnects != 1 else ''}")
    line = " · ".join(parts)
    if status.warning:
        line += f' · <span style="color:var(--jp-warn-color1,#8a5a00)">⚠ {html.escape(status.warning)}</span>'
    if status.error:
        line += f' · <span style="color:var(--jp-error-color1,#b00020)">{html.escape(status.error)}</span>'
    return line


# Colours follow JupyterLab's theme variables (light, dark and high-contrast themes), with light-theme
# fallbacks; sizes live in the stylesheet so that large text can change them. The inline styles are what
# remains readable where the stylesheet is not loaded (a front-end without anywidget).
_TIME_STYLE = "color:var(--jp-content-font-color2,#666)"
_LINE_STYLE = "margin-left:2.4em"

# Large text: each element of a turn and the live line, in px. A projector at the back of a room needs 28 px
# or more; the turn's own words are the largest.
LARGE_TEXT_PX = {"lsk-turn": 32, "lsk-translation": 28, "lsk-pending": 28, "lsk-unverified": 28, "lsk-live": 30}
_NORMAL_TEXT_PX = {"lsk-turn": 15, "lsk-translation": 14, "lsk-pending": 14, "lsk-unverified": 14, "lsk-live": 15}


def _sizes(prefix: str, sizes: Mapping[str, int]) -> str:
    return "\n".join(f"{prefix} .{name} {{ font-size: {px}px; }}" for name, px in sizes.items())


STYLESHEET = f"""
.lsk-panel {{ color: var(--jp-content-font-color0, #111); }}
.lsk-panel .lsk-turns {{ border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 4px; padding: 2px 10px;
  background: var(--jp-layout-color0, #fff); overscroll-behavior: contain; }}
{_sizes(".lsk-panel", _NORMAL_TEXT_PX)}
.lsk-turn {{ line-height: 1.4; margin: 0.35em 0; color: var(--jp-content-font-color0, #111); }}
.lsk-time {{ color: var(--jp-content-font-color2, #666); font-size: 0.75em; font-variant-numeric: tabular-nums;
  margin-right: 0.3em; }}
.lsk-translation, .lsk-pending, .lsk-unverified {{ margin-left: 2.4em; padding-left: 0.5em; line-height: 1.35;
  border-left: 3px solid var(--jp-brand-color1, #1976d2); color: var(--jp-content-font-color1, #222); }}
.lsk-lang {{ font-weight: 600; color: var(--jp-brand-color0, #0d47a1); }}
.lsk-pending {{ border-left-style: dashed; font-style: italic; color: var(--jp-content-font-color2, #555); }}
.lsk-note {{ font-style: normal; font-size: 0.8em; font-weight: 600; color: var(--jp-warn-color0, #e65100); }}
.lsk-unverified {{ border-left-color: var(--jp-warn-color1, #f57c00); color: var(--jp-content-font-color2, #555); }}
.lsk-updating {{ color: var(--jp-content-font-color2, #555); }}
.lsk-failed {{ border-left-color: var(--jp-error-color1, #d32f2f); color: var(--jp-error-color1, #d32f2f); }}
.lsk-live {{ min-height: 1.45em; line-height: 1.45; padding: 0.25em 0.6em; margin-top: 4px;
  border: 2px dashed var(--jp-brand-color1, #1976d2); border-radius: 6px;
  background: var(--jp-layout-color2, #eee); color: var(--jp-content-font-color0, #111); }}
.lsk-live:empty::before {{ content: "\\00a0"; }}
.lsk-tentative {{ color: var(--jp-content-font-color2, #555); }}
.lsk-panel.lsk-large .lsk-tentative {{ display: none; }}
body[data-jp-theme-light="false"] .lsk-lang {{ color: var(--jp-brand-color2, #64b5f6); }}
body[data-jp-theme-light="false"] .lsk-translation, body[data-jp-theme-light="false"] .lsk-pending,
body[data-jp-theme-light="false"] .lsk-live {{ border-color: var(--jp-brand-color2, #64b5f6); }}
body[data-jp-theme-light="false"] .lsk-note {{ color: var(--jp-warn-color2, #ffb74d); }}
{_sizes(".lsk-panel.lsk-large", LARGE_TEXT_PX)}
.lsk-panel.lsk-large .lsk-turns {{ max-height: 58vh !important; }}
.lsk-panel.lsk-large .lsk-status {{ font-size: 18px; }}
.lsk-panel:fullscreen, .lsk-panel.lsk-fullpage {{ background: var(--jp-layout-color0, #fff); padding: 20px 28px;
  box-sizing: border-box; overflow: hidden; }}
.lsk-panel.lsk-fullpage {{ position: fixed !important; inset: 0; z-index: 10000; width: 100vw !important;
  height: 100vh !important; }}
.lsk-panel:fullscreen > *, .lsk-panel.lsk-fullpage > * {{ flex-shrink: 0; }}
.lsk-panel:fullscreen .lsk-turns, .lsk-panel.lsk-fullpage .lsk-turns {{ flex: 1 1 auto !important;
  max-height: none !important; min-height: 0; }}
.lsk-panel:fullscreen .lsk-controls, .lsk-panel.lsk-fullpage .lsk-controls, .lsk-panel.lsk-compact .lsk-controls,
.lsk-panel:fullscreen .lsk-report, .lsk-panel.lsk-fullpage .lsk-report, .lsk-panel.lsk-compact .lsk-report
  {{ display: none !important; }}
.lsk-presenter {{ display: flex; gap: 6px; align-items: center; margin-left: auto; }}
.lsk-presenter button {{ font: inherit; font-size: 13px; padding: 3px 10px; border-radius: 4px; cursor: pointer;
  border: 1px solid var(--jp-border-color1, #bdbdbd); background: var(--jp-layout-color1, #fff);
  color: var(--jp-ui-font-color1, #222); }}
.lsk-presenter button.lsk-on {{ background: var(--jp-brand-color1, #1976d2); border-color: var(--jp-brand-color1, #1976d2);
  color: #fff; }}
"""


def _line(kind: str, target: str, body: str, note: str = "") -> str:
    """One line under a turn: ``<div class=kind><span class=lsk-lang>es:</span> body</div>`` (its text
    reads "es: body", the form the saved columns and the tests compare)."""
    parts = [f'<span class="lsk-lang">{html.escape(target)}:</span>', body, f'<span class="lsk-note">{note}</span>' if note else ""]
    return f'<div class="{kind}" data-lang="{html.escape(target)}" style="{_LINE_STYLE}">{" ".join(p for p in parts if p)}</div>'


def translation_lines(translations: Mapping[str, Translation], pending: Mapping[str, str] | None = None, *,
                      targets: Sequence[str] | None = None, show_all: bool = False) -> list[str]:
    """The lines under one turn: for each shown target its translation, its pending draft ("… translating"),
    a line marked "⚠ unverified" (a reply that is not a real translation), or why there is none.

    ``targets``: the session's current targets, in order (None: every target found); other targets'
    translations stay in the DataFrame and are shown only with ``show_all``."""
    pending = pending or {}
    found = sorted(set(translations) | set(pending))
    shown = found if targets is None else list(targets) + ([t for t in found if t not in targets] if show_all else [])
    lines = []
    for target in shown:
        item, draft = translations.get(target), pending.get(target)
        if draft:  # a model is writing it: what it has written so far
            lines.append(_line("lsk-pending", target, f'<span class="lsk-draft">{html.escape(draft)}</span>',
                               "… translating"))
        elif draft is not None and item is not None and item.text is not None:  # asked again: the old one until then
            lines.append(_line("lsk-translation lsk-updating", target, html.escape(item.text), "… updating"))
        elif draft is not None:
            lines.append(_line("lsk-pending", target, "", "… translating"))
        elif item is None:
            continue
        elif item.text is None:
            lines.append(_line("lsk-translation lsk-failed", target, f"not translated ({html.escape(item.error or '')})"))
        elif problem := item.problem:  # a reply that is not a translation: marked, not shown as one
            lines.append(_line("lsk-unverified", target, html.escape(item.text),
                               f'<span title="{html.escape(str(problem))}">⚠ unverified</span>'))
        else:
            lines.append(_line("lsk-translation", target, html.escape(item.text)))
    return lines


def turn_html(row: TurnRecord, translations: Mapping[str, Translation], pending: Mapping[str, str] | None = None, *,
              targets: Sequence[str] | None = None, show_all: bool = False) -> str:
    """One finished turn: its time, its text, and under it the lines of `translation_lines`."""
    head = (f'<div class="lsk-turn"><span class="lsk-time" style="{_TIME_STYLE}">{clock(row.start)}</span> '
            f'<span class="lsk-text">{html.escape(row.text)}</span>')
    return head + "".join(translation_lines(translations, pending, targets=targets, show_all=show_all)) + "</div>"


def live_words(settled: str, tentative: str) -> str:
    """The live line's words as HTML: those the server will not change, then its tentative guess in a span that is
    lighter, and hidden in large text, so captions on a projector do not flicker through first guesses ("the lord
    and wellcome") but wait for words two decodes agree on."""
    guess = f'<span class="lsk-tentative">{html.escape(tentative)}</span>' if tentative else ""
    return " ".join(part for part in (html.escape(settled), guess) if part)


def live_html(partial: str) -> str:
    """The live line (already escaped text) in its box: tentative words, visibly not a finished turn."""
    return f'<div class="lsk-live">{partial}</div>'


def level_of(dbfs: float | None, floor: float = -60.0) -> float:
    """A meter position 0..1 from a level in dBFS (``floor`` and below: empty)."""
    if dbfs is None or math.isnan(dbfs):
        return 0.0
    return max(0.0, min(1.0, (dbfs - floor) / -floor))


def build_view(transcript: Transcript, translations: Iterable[Translation], status: Status, *,
               level_dbfs: float | None = None, max_rows: int = MAX_ROWS,
               pending: Mapping[tuple[tuple[str, int], str], str] | None = None,
               targets: Sequence[str] | None = None, show_all: bool = False) -> PanelView:
    """The panel's next frame: the last ``max_rows`` turns with their latest translations, the live line and the meter.

    ``pending``: translations asked for and not finished, ``{((session_id, turn_order), target): draft}``
    (the draft is "" until a model streams one); ``targets`` and ``show_all``: see `translation_lines`."""
    latest = latest_translations(translations)
    by_turn: dict[tuple[str, int], dict[str, Translation]] = {}
    for (key, target), item in latest.items():
        by_turn.setdefault(key, {})[target] = item
    drafts: dict[tuple[str, int], dict[str, str]] = {}
    for (key, target), draft in (pending or {}).items():
        drafts.setdefault(key, {})[target] = draft or ""
    rows = transcript.rows[-max_rows:]
    turns = tuple(TurnView(row.key, turn_html(row, by_turn.get(row.key, {}), drafts.get(row.key),
                                              targets=targets, show_all=show_all)) for row in rows)
    return PanelView(status=status_line(status), partial=live_words(*transcript.partial_parts), turns=turns,
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


__all__ = ["LARGE_TEXT_PX", "MAX_ROWS", "STYLESHEET", "Changes", "PanelView", "Status", "TurnView", "build_view", "changes",
           "level_of", "live_html", "live_words", "status_line", "translation_lines", "turn_html"]
