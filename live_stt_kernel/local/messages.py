"""The `Turn` messages the embedded engine sends, built from recognized words (pure).

Universal-Streaming's behaviour: partials are unformatted (lower case, no punctuation); a word counts as final once
two consecutive decodes agree on it and it is not the last one, and ``transcript`` holds only those. Finals come as
an unformatted message and, with ``format_turns``, a formatted re-send of the same ``turn_order``.

The pro models' behaviour (``pro=True``): each partial is the whole turn as written, every word non-final; one
formatted final with ``end_of_turn_confidence`` 1; `speech_started_message` when a turn's speech begins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..v3.protocol import turn_message, word_message
from .recognizer import RecognizedWord, plain
from .turns import reads_finished


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


def end_of_turn_confidence(text: str) -> float:
    """How sure we are that a turn reading ``text`` is over (pure): a sentence's end 0.9, a full stop after a word
    a statement hardly ends with 0.3, anything else 0.1. A check ends the turn when this reaches the session's
    ``end_of_turn_confidence_threshold`` (default 0.4: sentence ends only; 0.1 or less: every pause; above 0.9: only
    ``max_turn_silence`` does)."""
    if reads_finished(text):
        return 0.9
    return 0.3 if text.rstrip().endswith(".") else 0.1


def partial_message(turn_order: int, words: Sequence[RecognizedWord], offset_ms: int, previous: Sequence[str], *,
                    pro: bool = False) -> dict[str, Any]:
    """A partial of the open turn; ``previous`` is the last partial's plain words (for the settled prefix).

    ``pro``: the pro models' partial, a fresh transcription of the whole turn: every word non-final, the transcript
    all of it, as written."""
    if pro:
        return turn_message(turn_order, [_word(w, offset_ms, final=False, formatted=True) for w in words],
                            transcript=" ".join(w.text for w in words))
    texts = [plain(w.text) for w in words]
    settled = min(stable_prefix(previous, texts), max(0, len(words) - 1))
    return turn_message(turn_order, [_word(w, offset_ms, final=i < settled, formatted=False) for i, w in enumerate(words)],
                        transcript=" ".join(texts[:settled]))


def final_messages(turn_order: int, words: Sequence[RecognizedWord], offset_ms: int, *, format_turns: bool,
                   pro: bool = False, language: str | None = None) -> list[dict[str, Any]]:
    """The end of a turn: the unformatted final and, with ``format_turns``, the formatted one; ``pro``: one formatted
    final with ``end_of_turn_confidence`` 1. ``language``: the turn's ``language_code`` (with language detection)."""
    text = " ".join(w.text for w in words)
    unformatted = " ".join(plain(w.text) for w in words)
    extra: dict[str, Any] = {"language_code": language} if language else {}
    if pro:
        message = turn_message(turn_order, [_word(w, offset_ms, final=True, formatted=True) for w in words], transcript=text,
                               formatted=True, end_of_turn=True, end_of_turn_confidence=1.0, utterance=text)
        return [{**message, **extra}]
    common: dict[str, Any] = {"end_of_turn": True, "end_of_turn_confidence": end_of_turn_confidence(text), "utterance": unformatted}
    messages = [turn_message(turn_order, [_word(w, offset_ms, final=True, formatted=False) for w in words],
                             transcript=unformatted, **common)]
    if format_turns:
        messages.append(turn_message(turn_order, [_word(w, offset_ms, final=True, formatted=True) for w in words],
                                     transcript=text, formatted=True, **common))
    return [{**m, **extra} for m in messages]


def speech_started_message(timestamp_ms: int) -> dict[str, Any]:
    """``SpeechStarted`` (pro models): speech began at ``timestamp_ms`` of the session's audio. The voice activity
    detector is binary: it heard speech in every frame of the opening window, so its confidence is 1."""
    return {"type": "SpeechStarted", "timestamp": timestamp_ms, "confidence": 1.0}


BEHIND_CODE = 4100  # ours: AssemblyAI documents no warning codes; clients read the text


def behind_message(late_ms: float) -> dict[str, Any]:
    """The ``Warning`` sent after a final that came ``late_ms`` after its audio was spoken (partials pause meanwhile)."""
    return {"type": "Warning", "warning_code": BEHIND_CODE,
            "warning": f"decoding is {late_ms / 1000:.1f} s behind the audio: this machine is busy; live words "
                       "pause until it catches up, finished turns keep coming"}


__all__ = ["BEHIND_CODE", "behind_message", "end_of_turn_confidence", "final_messages", "partial_message",
           "speech_started_message", "stable_prefix"]
