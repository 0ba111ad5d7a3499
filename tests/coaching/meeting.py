"""The bundled coaching meeting as finished turns, the way the embedded server once cut it: the 15 s turn
cap fell inside the long second sentence, so "stuck." came as a turn of its own (one word in 0.28 s,
214 wpm by arithmetic)."""

from __future__ import annotations

from dataclasses import replace

from helpers import timed_turn

from live_stt_kernel.samples import COACHING_SENTENCES
from live_stt_kernel.transcript import TurnRecord

CUT_AT = COACHING_SENTENCES[1].index("stuck.")


def cut_meeting(*, gap_s: float = 0.8, cut_gap_s: float = 0.05) -> list[TurnRecord]:
    """The meeting's turns at 150 wpm, ``gap_s`` apart, with the second sentence cut before "stuck."
    (``cut_gap_s`` of silence at the cut) and that one word spoken at 214 wpm."""
    second = COACHING_SENTENCES[1]
    texts = [COACHING_SENTENCES[0], second[:CUT_AT].strip(), "stuck.", *COACHING_SENTENCES[2:]]
    records: list[TurnRecord] = []
    start = 0.0
    for i, text in enumerate(texts):
        fragment = text == "stuck."
        record = timed_turn(i, text, start=start, wpm=214 if fragment else 150)
        records.append(replace(record, speaker="A"))
        start = record.end + (cut_gap_s if i == 1 else gap_s)
    return records


__all__ = ["CUT_AT", "cut_meeting"]
