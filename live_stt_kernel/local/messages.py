"""The v3 messages the embedded server sends, built from recognized words (pure).

Partials are unformatted (lower case, no punctuation) like Universal-Streaming: a word counts as
final once two consecutive decodes agree on it and it is not the last one, and ``transcript`` holds
only those. Finals come as an unformatted message and, with ``format_turns``, a formatted re-send of
the same ``turn_order`` (behaviour A of PROTOCOL.md).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .recognizer import RecognizedWord, plain


def begin_message(configuration: Mapping[str, Any], *, max_session_s: int = 10_800) -> dict[str, Any]:
    return {"type": "Begin", "id": str(uuid.uuid4()), "expires_at": int(time.time()) + max_session_s,
            "configuration": dict(configuration)}


def termination_message(audio_ms: float, session_s: float) -> dict[str, Any]:
    return {"type": "Termination", "audio_duration_seconds": int(audio_ms // 1000), "session_duration_seconds": int(session_s)}


def error_message(code: int, text: str) -> dict[str, Any]:
    return {"type": "Error", "error_code": code, "error": text}


def stable_prefix(previous: Sequence[str], current: Sequence[str]) -> int:
    """How many leading words two successive hypotheses agree on."""
    n = 0
    for a, b in zip(previous, current):
        if a != b:
            break
        n += 1
    return n


def _word(w: RecognizedWord, offset_ms: int, *, final: bool, formatted: bool) -> dict[str, Any]:
    return {"start": offset_ms + w.start_ms, "end": offset_ms + w.end_ms, "text": w.text if formatted else plain(w.text),
            "confidence": round(w.confidence, 4), "word_is_final": final}


def partial_message(turn_order: int, words: Sequence[RecognizedWord], offset_ms: int, previous: Sequence[str]) -> dict[str, Any]:
    texts = [plain(w.text) for w in words]
    settled = min(stable_prefix(previous, texts), max(0, len(words) - 1))
    return {
        "type": "Turn", "turn_order": turn_order, "turn_is_formatted": False, "end_of_turn": False,
        "transcript": " ".join(texts[:settled]), "end_of_turn_confidence": 0.0, "utterance": "",
        "words": [_word(w, offset_ms, final=i < settled, formatted=False) for i, w in enumerate(words)],
    }


def final_messages(turn_order: int, words: Sequence[RecognizedWord], offset_ms: int, *, format_turns: bool) -> list[dict[str, Any]]:
    text = " ".join(w.text for w in words)
    confidence = 0.9 if text.rstrip().endswith((".", "?", "!")) else 0.6
    unformatted = " ".join(plain(w.text) for w in words)
    base = {"type": "Turn", "turn_order": turn_order, "end_of_turn": True, "end_of_turn_confidence": confidence,
            "utterance": unformatted}
    messages = [dict(base, turn_is_formatted=False, transcript=unformatted,
                     words=[_word(w, offset_ms, final=True, formatted=False) for w in words])]
    if format_turns:
        messages.append(dict(base, turn_is_formatted=True, transcript=text,
                             words=[_word(w, offset_ms, final=True, formatted=True) for w in words]))
    return messages


__all__ = ["begin_message", "error_message", "final_messages", "partial_message", "stable_prefix", "termination_message"]
