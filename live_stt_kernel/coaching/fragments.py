"""Sentences cut in two by a turn-length cap, joined again for the analysis. Pure.

A speech server ends a turn after a silence, or when it has gone on too long (the embedded server's cap
is about 15 s). A cap can fall mid-sentence: "…whenever they get to" | "stuck." The second part is then a
turn of its own, one word in a third of a second: 200 words per minute by arithmetic, a spike in the pace
chart, and a "quote" for a model to pick on. For coaching, such a continuation is put back onto the turn
it was cut from.

A turn continues the previous one when all of these hold:

- the transcript is punctuated (some turn has ``.``, ``?`` or ``!``), so a missing full stop means
  something; an unpunctuated transcript is never joined;
- the previous turn does not end with sentence-final punctuation;
- both are from the same session (word times share a clock) and the same speaker;
- the silence between them is at most ``max_gap_s`` (a cap cuts speech that goes on; a speaker who
  trails off and pauses for seconds has ended the turn, whatever the punctuation).

A speech model that punctuates each piece it hears (Whisper does) may end the cut turn with a full stop
anyway ("…whenever they get." | "Stuck."). So a *short* turn (fewer than `FRAGMENT_WORDS` words) that
starts within ``cut_gap_s`` of the previous turn's end also joins it, punctuated or not, with the same
session and speaker: a turn ends after a silence, so a turn that follows with almost none was cut, not
ended (a cloud server that ends confident turns after 160 ms of silence may have two real turns that
close; joining them costs a turn in the count and little else: sentences, fillers and quotes are the same).

The joined turn keeps the first turn's index, order and start; its text is both texts with a space
between (verbatim, so quotes stay exact substrings), its words both word lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..transcript import TurnRecord

MAX_GAP_S = 1.0
CUT_GAP_S = 0.3
FRAGMENT_WORDS = 4
_ENDS_SENTENCE = re.compile(r"[.?!…][\"'”’)\]]*\s*$")
_HAS_SENTENCE_END = re.compile(r"[.?!…]")


@dataclass(frozen=True, slots=True, kw_only=True)
class MergedTurns:
    """The turns to analyse, and which of the given turns were joined: ``joined`` holds one tuple of
    turn indexes per joined turn (first index first); turns left alone are not listed."""

    records: tuple[TurnRecord, ...]
    joined: tuple[tuple[int, ...], ...]


def _continues(prev: TurnRecord, turn: TurnRecord, *, punctuated: bool, max_gap_s: float, cut_gap_s: float) -> bool:
    if prev.session_id != turn.session_id or prev.speaker != turn.speaker or not prev.text.strip():
        return False
    if prev.end is None or turn.start is None:
        return False
    gap = turn.start - prev.end
    if gap <= cut_gap_s and len(turn.text.split()) < FRAGMENT_WORDS:
        return True
    return punctuated and not _ENDS_SENTENCE.search(prev.text) and gap <= max_gap_s


def _join(prev: TurnRecord, turn: TurnRecord) -> TurnRecord:
    a, b = len(prev.words) or 1, len(turn.words) or 1
    if prev.confidence is not None and turn.confidence is not None:
        confidence: float | None = (prev.confidence * a + turn.confidence * b) / (a + b)
    else:
        confidence = prev.confidence if prev.confidence is not None else turn.confidence
    return replace(prev, text=f"{prev.text.rstrip()} {turn.text.lstrip()}", words=prev.words + turn.words,
                   end=turn.end if turn.end is not None else prev.end, confidence=confidence,
                   formatted=prev.formatted and turn.formatted, end_of_turn_latency=turn.end_of_turn_latency)


def merge_fragments(records: Iterable[TurnRecord], *, max_gap_s: float = MAX_GAP_S,
                    cut_gap_s: float = CUT_GAP_S) -> MergedTurns:
    """Join each turn that continues a sentence the previous turn left unfinished (see the module's
    docstring for the rule). Turns without text are dropped, as the metrics skip them."""
    turns = [r for r in records if r.text.strip()]
    punctuated = any(_HAS_SENTENCE_END.search(r.text) for r in turns)
    out: list[TurnRecord] = []
    groups: list[list[int]] = []
    last: TurnRecord | None = None  # the last *given* turn, whose end and text decide the next join
    for turn in turns:
        if out and last is not None and _continues(last, turn, punctuated=punctuated, max_gap_s=max_gap_s,
                                                     cut_gap_s=cut_gap_s):
            out[-1] = _join(out[-1], turn)
            groups[-1].append(turn.turn_index)
        else:
            out.append(turn)
            groups.append([turn.turn_index])
        last = turn
    return MergedTurns(records=tuple(out), joined=tuple(tuple(g) for g in groups if len(g) > 1))


__all__ = ["CUT_GAP_S", "FRAGMENT_WORDS", "MAX_GAP_S", "MergedTurns", "merge_fragments"]
