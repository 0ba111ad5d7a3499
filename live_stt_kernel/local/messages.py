"""The `Turn` messages the embedded engine sends, built from recognized words (pure).

Partials are unformatted (lower case, no punctuation) like Universal-Streaming: a word counts as
final once two consecutive decodes agree on it and it is not the last one, and ``transcript`` holds
only those. Finals come as an unformatted message and, with ``format_turns``, a formatted re-send of
the same ``turn_order`` (the behaviour of Universal-Streaming with ``format_turns=true``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..v3.protocol import turn_message, word_message
from .recognizer import RecognizedWord, plain


def stable_prefix(previous: Sequence[str], current: Sequence[str]) -> int:
    """How many leading words two successive hypotheses agree on."""
    n = 0
    for a, b in zip(previous, current, strict=False):  # up to the shorter
        if a != b:
            break
        n += 1
    return n


def _word(w: RecognizedWord, offset_ms: int, *, final: bool, formatted: bool) -> dict[str, Any]:
    return word_message(w.text if formatted else plain(w.text), offset_ms + w.start_ms, offset_ms + w.end_ms,
                        confidence=round(w.confidence, 4), final=final)


def partial_message(turn_order: int, words: Sequence[RecognizedWord], offset_ms: int, previous: Sequence[str]) -> dict[str, Any]:
    """A partial of the open turn; ``previous`` is the last partial's plain words (for the settled prefix)."""
    texts = [plain(w.text) for w in words]
    settled = min(stable_prefix(previous, texts), max(0, len(words) - 1))
    return turn_message(turn_order, [_word(w, offset_ms, final=i < settled, formatted=False) for i, w in enumerate(words)],
                        transcript=" ".join(texts[:settled]))


def final_messages(turn_order: int, words: Sequence[RecognizedWord], offset_ms: int, *, format_turns: bool) -> list[dict[str, Any]]:
    """The end of a turn: the unformatted final and, with ``format_turns``, the formatted one."""
    text = " ".join(w.text for w in words)
    confidence = 0.9 if text.rstrip().endswith((".", "?", "!")) else 0.6
    unformatted = " ".join(plain(w.text) for w in words)
    common: dict[str, Any] = {"end_of_turn": True, "end_of_turn_confidence": confidence, "utterance": unformatted}
    messages = [turn_message(turn_order, [_word(w, offset_ms, final=True, formatted=False) for w in words],
                             transcript=unformatted, **common)]
    if format_turns:
        messages.append(turn_message(turn_order, [_word(w, offset_ms, final=True, formatted=True) for w in words],
                                     transcript=text, formatted=True, **common))
    return messages


BEHIND_CODE = 4100  # ours: AssemblyAI documents no warning codes; clients read the text


def behind_message(late_ms: float) -> dict[str, Any]:
    """The ``Warning`` sent after a final that came ``late_ms`` after its audio was spoken (partials pause meanwhile)."""
    return {"type": "Warning", "warning_code": BEHIND_CODE,
            "warning": f"decoding is {late_ms / 1000:.1f} s behind the audio: this machine is busy; live words "
                       "pause until it catches up, finished turns keep coming"}


__all__ = ["BEHIND_CODE", "behind_message", "final_messages", "partial_message", "stable_prefix"]
