"""Turn detection for the embedded server, pure: audio in, "decode this span" requests out.

A voice-activity detector classifies 20 ms frames. A turn opens at speech (with a little pre-roll) and
asks for a partial every ``partial_every_ms`` of new audio. After ``min_turn_silence`` of silence it
asks for a *check*: the caller decodes the turn and, if the text reads as a finished sentence, calls
``end_turn()`` and sends that decode as the final (punctuation stands in for AssemblyAI's end-of-turn
model); otherwise the turn ends at ``max_turn_silence``. A turn longer than ``max_turn_ms`` is cut,
because re-decoding cost grows with its length. The caller feeds audio and answers checks in order,
and times are audio milliseconds, so the turns never depend on how fast audio arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

FRAME_MS = 20
BYTES_PER_MS = 32  # 16 kHz PCM16 mono


@dataclass(slots=True, kw_only=True)
class TurnSettings:
    min_turn_silence: int = 200
    max_turn_silence: int = 800
    partial_every_ms: int = 1000
    max_turn_ms: int = 15_000
    pre_roll_ms: int = 200
    min_speech_ms: int = 120  # shorter bursts (clicks, breaths) do not open a turn


PARTIAL, CHECK, FINAL = "partial", "check", "final"


@dataclass(frozen=True, slots=True)
class Decode:
    """Transcribe ``pcm``, the open turn's audio from ``start_ms`` to ``end_ms``.

    ``kind``: ``partial`` (the turn goes on), ``check`` (may end the turn: see ``end_turn``), ``final``.
    """

    turn_order: int
    start_ms: int
    end_ms: int
    kind: str
    pcm: bytes = field(repr=False, default=b"")


@dataclass(slots=True)
class TurnDetector:
    is_speech: Callable[[bytes], bool]
    settings: TurnSettings = field(default_factory=TurnSettings)
    audio: bytearray = field(default_factory=bytearray)  # the session's audio since ``base_ms``
    base_ms: int = 0
    pending: bytearray = field(default_factory=bytearray)  # less than one VAD frame
    turn_order: int = 0
    turn_start_ms: int | None = None
    speech_ms: int = 0  # speech in the open turn so far
    silence_ms: int = 0  # trailing silence
    last_partial_ms: int = 0
    checked: bool = False  # a check was asked for during the current silence

    @property
    def now_ms(self) -> int:
        return self.base_ms + len(self.audio) // BYTES_PER_MS

    def _request(self, kind: str) -> Decode:
        assert self.turn_start_ms is not None
        start, end = self.turn_start_ms, self.now_ms - max(0, self.silence_ms - self.settings.pre_roll_ms)
        lo, hi = ((t - self.base_ms) * BYTES_PER_MS for t in (start, end))
        return Decode(self.turn_order, start, end, kind, bytes(self.audio[max(0, lo) : max(0, hi)]))

    def push(self, pcm: bytes) -> list[Decode]:
        self.pending += pcm
        frame = FRAME_MS * BYTES_PER_MS
        out: list[Decode] = []
        while len(self.pending) >= frame:
            chunk = bytes(self.pending[:frame])
            del self.pending[:frame]
            self.audio += chunk
            out += self._frame(self.is_speech(chunk))
        return out

    def _frame(self, speech: bool) -> list[Decode]:
        s = self.settings
        if self.turn_start_ms is None:
            self.speech_ms = self.speech_ms + FRAME_MS if speech else 0
            if self.speech_ms >= s.min_speech_ms:
                self.turn_start_ms = max(self.base_ms, self.now_ms - self.speech_ms - s.pre_roll_ms)
                self.silence_ms, self.last_partial_ms, self.checked = 0, self.now_ms, False
            else:
                self._forget_before(self.now_ms - s.pre_roll_ms - s.min_speech_ms)
            return []
        self.speech_ms += FRAME_MS if speech else 0
        if speech:
            self.silence_ms, self.checked = 0, False
        else:
            self.silence_ms += FRAME_MS
        if self.silence_ms >= s.max_turn_silence or self.now_ms - self.turn_start_ms >= s.max_turn_ms:
            request = self._request(FINAL)
            self.end_turn()
            return [request]
        if self.silence_ms >= s.min_turn_silence and not self.checked:
            self.checked = True
            return [self._request(CHECK)]
        if speech and self.now_ms - self.last_partial_ms >= s.partial_every_ms:
            self.last_partial_ms = self.now_ms
            return [self._request(PARTIAL)]
        return []

    def end_turn(self) -> None:
        """Close the open turn (after a check that read as finished, or at a forced endpoint)."""
        if self.turn_start_ms is not None:
            self.turn_order += 1
            self.turn_start_ms = None
            self.speech_ms = self.silence_ms = 0

    def _forget_before(self, ms: int) -> None:
        drop = (ms - self.base_ms) * BYTES_PER_MS
        if drop > 0:
            del self.audio[:drop]
            self.base_ms += drop // BYTES_PER_MS

    def force_endpoint(self) -> list[Decode]:
        """End the open turn now (ForceEndpoint, Terminate)."""
        if self.turn_start_ms is None:
            return []
        request = self._request(FINAL)
        self.end_turn()
        return [request]


def reads_finished(text: str) -> bool:
    """Whether a hypothesis ends like a sentence: the end-of-turn signal for checks."""
    return text.rstrip().endswith((".", "?", "!"))


__all__ = ["CHECK", "FINAL", "PARTIAL", "Decode", "TurnDetector", "TurnSettings", "reads_finished"]
