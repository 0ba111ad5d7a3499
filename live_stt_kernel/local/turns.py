"""Turn detection for the embedded server, pure: audio in, "decode this span" requests out.

A voice-activity detector classifies 20 ms frames. A turn opens at speech (with a little pre-roll), asks
for its first partial ``first_partial_ms`` later and then one every ``partial_every_ms`` of new audio
(partials are cheap drafts, see `Recognizer.draft`). After ``check_after_ms`` of silence it asks
for a *check*, a decode of the turn so far that the caller starts at once, in the background; at
``min_turn_silence`` the check's verdict is *due*: if its text reads as a finished sentence the caller
calls ``end_turn()`` and sends that decode as the final (punctuation stands in for AssemblyAI's
end-of-turn model); otherwise the turn ends at ``max_turn_silence``. Starting the decode before the
silence is long enough hides most of its cost (a Whisper decode takes about 0.33 s here). Speech before
the verdict is due drops the check. A turn longer than ``max_turn_ms`` is cut, because re-decoding cost
grows with its length.

`push` stops right after a *due* request, so the caller can end the turn before the detector reads the
audio that follows; ``push(b"")`` goes on. Times are audio milliseconds, so the turns never depend on how
fast audio arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

FRAME_MS = 20
BYTES_PER_MS = 32  # 16 kHz PCM16 mono


@dataclass(slots=True, kw_only=True)
class TurnSettings:
    """Turn detection's timings, all in ms of audio.

    ``min_turn_silence``: the silence after which a check that reads as finished ends the turn; ``max_turn_silence``: the
    silence that ends it regardless.
    """

    # 400, not 200: Whisper ends a clause decoded alone with a full stop, so at 200 ms every comma pause of a reading
    # ended a turn (17 turns for 3 sentences); the check's decode takes longer than the wait anyway
    min_turn_silence: int = 400
    max_turn_silence: int = 800
    check_after_ms: int = 40  # start the check's decode this far into the silence (capped at min_turn_silence)
    first_partial_ms: int = 250  # after the turn opens (itself ``min_speech_ms`` into the speech)
    partial_every_ms: int = 500
    max_turn_ms: int = 15_000
    cap_grace_ms: int = 5_000  # past max_turn_ms, how long to wait for a pause to cut at
    min_cut_pause_ms: int = 60  # a shorter gap in the VAD is a stop consonant, not a pause
    pre_roll_ms: int = 200
    min_speech_ms: int = 120  # shorter bursts (clicks, breaths) do not open a turn


PARTIAL, CHECK, DUE, FINAL = "partial", "check", "due", "final"


@dataclass(frozen=True, slots=True)
class Decode:
    """Transcribe ``pcm``, the open turn's audio from ``start_ms`` to ``end_ms``.

    ``kind``: ``partial`` (the turn goes on), ``check`` (may end the turn), ``due`` (no audio: the
    latest check's verdict is due now; see ``end_turn``), ``final``.
    """

    turn_order: int
    start_ms: int
    end_ms: int
    kind: str
    pcm: bytes = field(repr=False, default=b"")


@dataclass(slots=True)
class TurnDetector:
    """One stream's turn detector: `push` audio in, `Decode` requests out.

    ``is_speech`` classifies one 20 ms frame (640 bytes of 16 kHz PCM16); the other fields are its state. Not thread-safe.
    """

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
    due: bool = False  # and its verdict was asked for
    pauses: list[tuple[int, int]] = field(default_factory=list)  # (start_ms, end_ms) of the open turn's pauses

    @property
    def now_ms(self) -> int:
        """The session time at the end of the audio read so far (whole 20 ms frames), in ms."""
        return self.base_ms + len(self.audio) // BYTES_PER_MS

    def _request(self, kind: str) -> Decode:
        assert self.turn_start_ms is not None
        start = self.turn_start_ms
        end = max(start, self.now_ms - max(0, self.silence_ms - self.settings.pre_roll_ms))
        lo, hi = ((t - self.base_ms) * BYTES_PER_MS for t in (start, end))
        return Decode(self.turn_order, start, end, kind, bytes(self.audio[max(0, lo) : max(0, hi)]))

    def push(self, pcm: bytes) -> list[Decode]:
        """Feed 16 kHz PCM16 mono of any length; returns the decodes asked for, in order.

        Stops right after a ``due`` request and keeps the rest of the audio: decide the turn (`end_turn` or not), then
        ``push(b"")`` to go on.
        """
        self.pending += pcm
        frame = FRAME_MS * BYTES_PER_MS
        out: list[Decode] = []
        while len(self.pending) >= frame:
            chunk = bytes(self.pending[:frame])
            del self.pending[:frame]
            self.audio += chunk
            out += self._frame(self.is_speech(chunk))
            if out and out[-1].kind == DUE:
                break  # the caller may end the turn here: read no further until it has decided
        return out

    def _frame(self, speech: bool) -> list[Decode]:
        s = self.settings
        if self.turn_start_ms is None:
            self.speech_ms = self.speech_ms + FRAME_MS if speech else 0
            if self.speech_ms >= s.min_speech_ms:
                self.turn_start_ms = max(self.base_ms, self.now_ms - self.speech_ms - s.pre_roll_ms)
                self.silence_ms, self.checked = 0, False
                self.last_partial_ms = self.now_ms - s.partial_every_ms + s.first_partial_ms
            else:
                self._forget_before(self.now_ms - s.pre_roll_ms - s.min_speech_ms)
            return []
        speech_before = self.speech_ms > 0
        self.speech_ms += FRAME_MS if speech else 0
        if speech:
            if self.silence_ms >= s.min_cut_pause_ms:
                self.pauses.append((self.now_ms - FRAME_MS - self.silence_ms, self.now_ms - FRAME_MS))
            self.silence_ms, self.checked, self.due = 0, False, False
        else:
            self.silence_ms += FRAME_MS
        if self.silence_ms >= s.max_turn_silence:
            request = self._request(FINAL)
            self.end_turn()
            # a turn opened by a cut inside a pause that went on: nothing was said in it, nothing to decode
            return [request] if speech_before else []
        if self.now_ms - self.turn_start_ms >= s.max_turn_ms:
            cut = self._cut_at()
            if cut is not None:
                return [self._cut(cut)]
        out = []
        if self.silence_ms >= min(s.check_after_ms, s.min_turn_silence) and not self.checked:
            self.checked = True
            out.append(self._request(CHECK))
        if self.silence_ms >= s.min_turn_silence and self.checked and not self.due:
            self.due = True
            out.append(Decode(self.turn_order, self.turn_start_ms, self.now_ms, DUE))
        if out:
            return out
        if speech and self.now_ms - self.last_partial_ms >= s.partial_every_ms:
            self.last_partial_ms = self.now_ms
            return [self._request(PARTIAL)]
        return []

    def _cut_at(self) -> int | None:
        """Where to cut the over-long open turn: the middle of its best pause, or None to wait for one."""
        assert self.turn_start_ms is not None
        s = self.settings
        pauses = list(self.pauses)
        if self.silence_ms >= s.min_cut_pause_ms:  # a pause going on now counts too
            pauses.append((self.now_ms - self.silence_ms, self.now_ms))
        earliest = self.turn_start_ms + s.max_turn_ms // 3
        candidates = [p for p in pauses if p[1] > earliest]
        if candidates:
            start, end = max(candidates, key=lambda p: (p[1] - p[0], p[1]))  # the longest; the later of equals
            return max(earliest, (start + end) // 2)
        if self.now_ms - self.turn_start_ms >= s.max_turn_ms + s.cap_grace_ms:
            return self.now_ms
        return None

    def _cut(self, cut_ms: int) -> Decode:
        """End the open turn at ``cut_ms`` (its final's request) and open the next one there: the audio after the cut
        is the new turn's beginning."""
        assert self.turn_start_ms is not None
        lo, hi = ((t - self.base_ms) * BYTES_PER_MS for t in (self.turn_start_ms, cut_ms))
        request = Decode(self.turn_order, self.turn_start_ms, cut_ms, FINAL, bytes(self.audio[max(0, lo) : max(0, hi)]))
        self.turn_order += 1
        self.turn_start_ms = cut_ms
        self.speech_ms = max(0, self.now_ms - cut_ms - self.silence_ms)  # a cut in the pause going on: none yet
        self.pauses = [p for p in self.pauses if p[0] >= cut_ms]
        self.last_partial_ms, self.checked, self.due = self.now_ms, False, False
        self._forget_before(cut_ms - self.settings.pre_roll_ms)
        return request

    def end_turn(self) -> None:
        """Close the open turn (after a check that read as finished, or at a forced endpoint)."""
        if self.turn_start_ms is not None:
            self.turn_order += 1
            self.turn_start_ms = None
            self.speech_ms = self.silence_ms = 0
            self.pauses = []

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


# Words an English statement hardly ever ends with: Whisper writes a full stop after whatever a clause decoded alone
# ends with ("... the age of."), so these overrule a full stop (not "?" or "!": "What are you afraid of?"). Kept
# short: "that", "in", "so", "to", "her" and verbs end sentences.
DANGLING = frozenset({"a", "an", "the", "and", "or", "but", "nor", "because", "if", "than", "of", "from", "my", "your",
                      "his", "its", "our", "their"})


def reads_finished(text: str) -> bool:
    """Whether a hypothesis ends like a sentence (the end-of-turn signal for checks): with "?" or "!", or with "."
    after a word a statement can end with."""
    text = text.rstrip()
    if text.endswith(("?", "!")):
        return True
    if not text.endswith(".") or text.endswith("..."):
        return False
    words = text.rstrip(".").split()
    return bool(words) and words[-1].strip("\"'()-,;:").lower() not in DANGLING


__all__ = ["CHECK", "DUE", "FINAL", "PARTIAL", "Decode", "TurnDetector", "TurnSettings", "reads_finished"]
