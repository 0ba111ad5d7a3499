"""Putting numbered audio chunks back in order (pure: no clock, no I/O, no threads).

The browser microphone numbers its 50 ms chunks 0, 1, 2, ...; they reach the kernel over the widget
comm, usually in order, but not always: after a cell that blocked the kernel, a burst of queued
messages once arrived shuffled. `ChunkAssembler` turns ``(seq, pcm)`` pairs in any order into PCM in
order:

- a chunk that arrives early is held in a bounded reorder window until the ones before it arrive;
- a missing chunk is replaced by silence of a chunk's length once the chunk after it has waited
  ``timeout_s`` or the window is full, so everything downstream keeps the right timing (a turn's
  start and end seconds stay true to the recording);
- a chunk that arrives after its slot was filled with silence is dropped (too late), as is one seen
  before (a duplicate), and one absurdly far ahead (a bad sequence number; it would otherwise turn
  into minutes of silence).

Time is passed in (``now``, any monotonic seconds) so that the behaviour is a function of the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigurationError

CHUNK_SAMPLES = 800  # 50 ms at 16 kHz
CHUNK_BYTES = CHUNK_SAMPLES * 2  # PCM16


@dataclass(frozen=True, slots=True, kw_only=True)
class ChunkStats:
    """Counts since the assembler was made (or `reset`)."""

    received: int = 0  # every chunk pushed, whatever became of it
    delivered: int = 0  # real chunks released in order
    reordered: int = 0  # arrived ahead of a missing one, so were held for a while
    gaps: int = 0  # missing chunks replaced with silence
    dropped: int = 0  # arrived after their slot was filled with silence, or impossibly far ahead
    duplicates: int = 0  # already delivered or already held
    pending: int = 0  # held now, waiting for an earlier chunk


class ChunkAssembler:
    """Reorder numbered chunks; fill what never comes with silence.

    ``push(seq, pcm, now)`` and ``poll(now)`` return the PCM that is now ready, in order, as a list of
    ``bytes`` (real chunks and silent fillers); ``flush()`` releases everything held at the end of a
    recording. ``window``: how far past the missing one a chunk may be held (a chunk ``window + 1``
    past it gives the missing one up); ``timeout_s``: how long the oldest held chunk may wait for the ones
    before it; ``max_jump``: a sequence number further ahead than this is rejected as corrupt.
    """

    def __init__(self, *, chunk_bytes: int = CHUNK_BYTES, window: int = 40, timeout_s: float = 1.0,
                 max_jump: int = 1200, first_seq: int = 0):
        if chunk_bytes <= 0 or chunk_bytes % 2:
            raise ConfigurationError("chunk_bytes must be a positive, even number of bytes (PCM16)")
        if window < 1:
            raise ConfigurationError("window must be at least 1")
        if timeout_s < 0:
            raise ConfigurationError("timeout_s must not be negative")
        if max_jump < window:
            raise ConfigurationError("max_jump must be at least the window")
        self.chunk_bytes, self.window, self.timeout_s, self.max_jump = chunk_bytes, window, timeout_s, max_jump
        self.reset(first_seq)

    def reset(self, first_seq: int = 0) -> None:
        """Start a new recording whose first chunk is ``first_seq``; counts start from zero."""
        self._next = first_seq
        self._held: dict[int, tuple[bytes, float]] = {}  # seq -> (pcm, when it arrived)
        self._filled: set[int] = set()  # recent seqs given up as silence, to tell "late" from "duplicate"
        self._highest = first_seq - 1
        self._received = self._delivered = self._reordered = self._gaps = self._dropped = self._duplicates = 0

    @property
    def next_seq(self) -> int:
        """The sequence number the assembler waits for."""
        return self._next

    @property
    def highest_seq(self) -> int:
        """The highest sequence number accepted so far (``first_seq - 1`` before any)."""
        return self._highest

    @property
    def stats(self) -> ChunkStats:
        """A snapshot of the counts, with the chunks held now as ``pending``."""
        return ChunkStats(received=self._received, delivered=self._delivered, reordered=self._reordered,
                          gaps=self._gaps, dropped=self._dropped, duplicates=self._duplicates,
                          pending=len(self._held))

    def push(self, seq: int, pcm: bytes, now: float) -> list[bytes]:
        """Take one chunk; return the PCM now ready, in order."""
        self._received += 1
        if seq < self._next:
            if seq in self._filled:
                self._dropped += 1  # its slot is already silence in the stream: too late
            else:
                self._duplicates += 1
            return self.poll(now)
        if seq in self._held:
            self._duplicates += 1
            return self.poll(now)
        if seq - self._next > self.max_jump:
            self._dropped += 1
            return self.poll(now)
        self._highest = max(self._highest, seq)
        self._held[seq] = (bytes(pcm), now)
        if seq != self._next:
            self._reordered += 1
        return self.poll(now)

    def poll(self, now: float) -> list[bytes]:
        """Release what is ready, giving up missing chunks that waited too long or overflow the window."""
        out: list[bytes] = []
        while self._held:
            if self._next in self._held:
                out.append(self._held.pop(self._next)[0])
                self._delivered += 1
                self._next += 1
                continue
            oldest_arrival = min(arrived for _, arrived in self._held.values())
            furthest = max(self._held)
            if furthest - self._next > self.window or now - oldest_arrival >= self.timeout_s:
                self._give_up(min(self._held), out)
                continue
            break
        return out

    def flush(self, last_seq: int | None = None) -> list[bytes]:
        """End of the recording: release everything held, gaps between held chunks as silence.
        With ``last_seq`` (the last chunk the sender sent), missing chunks up to it are silence too."""
        out: list[bytes] = []
        end = max([*self._held, self._next - 1, last_seq if last_seq is not None else self._next - 1])
        if end - self._next > self.max_jump:  # a corrupt last_seq must not become minutes of silence
            end = max([*self._held, self._next - 1])
        while self._next <= end:
            if self._next in self._held:
                out.append(self._held.pop(self._next)[0])
                self._delivered += 1
                self._next += 1
            else:
                self._give_up(self._next + 1, out)
        return out

    def _give_up(self, until: int, out: list[bytes]) -> None:
        """Fill ``next_seq .. until-1`` with silence."""
        silence = bytes(self.chunk_bytes)
        while self._next < until:
            out.append(silence)
            self._filled.add(self._next)
            self._gaps += 1
            self._next += 1
        horizon = self._next - 4 * self.window
        if len(self._filled) > 8 * self.window:
            self._filled = {s for s in self._filled if s >= horizon}


__all__ = ["CHUNK_BYTES", "CHUNK_SAMPLES", "ChunkAssembler", "ChunkStats"]
