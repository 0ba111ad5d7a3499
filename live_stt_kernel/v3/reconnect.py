"""Reconnecting a live session without losing a word.

A v3 session cannot be resumed: after a drop the client opens a new one. To lose nothing,
`ResumableAudio` keeps the recording since the end of the last finished turn; a new connection first
resends that (the unfinished turn is transcribed again, whole) and then goes on with the live audio,
and a `Reconnected` event moves the transcript's clock to where the resent audio starts, so times run
on across sessions. `resilient_stream` is the loop: the events of one connection after another, with
a backoff between attempts, for the failures where a new session can help; it also tells the kept
audio when a turn has finished, so only what follows it is ever resent.

Neither official SDK reconnects a live session. The cloud wants audio no faster than real time, so a
resend to a remote server is paced (``max_speed``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from ..audio.pcm import BYTES_PER_SAMPLE, SAMPLE_RATE
from ..errors import AuthenticationError, ConnectionLost, ConnectTimeout, ServerRefused, ServerUnreachable, StreamingError, TooManySessions
from ..events import Disconnected, Event, Reconnected, Turn
from . import protocol
from .protocol import Action


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """``attempts`` new connections per drop (0: never reconnect), waiting ``first_delay_s``,
    then twice as long each time, at most ``max_delay_s``; ``keep_s`` of unfinished audio at most
    is kept for a resend."""

    attempts: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0
    keep_s: float = 300.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before new connection number ``attempt`` (1-based) after a drop."""
        return min(self.max_delay_s, self.first_delay_s * 2.0 ** (attempt - 1))


RECONNECT = ReconnectPolicy()  # the default: five tries per drop


def worth_reconnecting(exc: BaseException, *, connecting: bool = False) -> bool:
    """Whether a new session can help after ``exc``: a dropped connection, a server error, an
    expired session; while connecting again also an unreachable server, a timeout or a limit. Never
    refused credentials or a client bug."""
    if isinstance(exc, AuthenticationError):
        return False
    if isinstance(exc, ConnectionLost):
        return True
    if connecting and isinstance(exc, (ServerUnreachable, ConnectTimeout, TooManySessions)):
        return True
    if isinstance(exc, ServerRefused) and not isinstance(exc, TooManySessions):
        verdict = protocol.classify_close(exc.code, exc.reason, exc.error_text)
        return verdict.action in (Action.RECONNECT, Action.NEW_SESSION)
    return False


class ResumableAudio:
    """One audio source read by one connection after another. Every block read is kept, from the end
    of the last finished turn on (`settle`), so that the next connection can start there.

    Positions are bytes of the whole recording; ``settled_ms`` and `settle` speak milliseconds.
    Thread-safe, with one lock: a connection that is being abandoned may still be reading the source
    when its successor starts; the successor waits for that read and gets what it brought.
    """

    def __init__(self, source: Iterable[bytes], *, sample_rate: int = SAMPLE_RATE, keep_s: float = 300.0):
        self._blocks = iter(source)
        self.bytes_per_ms = sample_rate * BYTES_PER_SAMPLE / 1000
        self._changed = threading.Condition()  # guards everything below
        self._kept = bytearray()
        self._kept_from = 0  # byte position of _kept[0] in the recording
        self._reading = False  # a reader is inside the source's next(): others wait for what it brings
        self._ended = False
        self._keep_bytes = self.to_bytes(keep_s * 1000)

    def to_bytes(self, ms: float) -> int:
        """Whole PCM16 samples' worth of bytes in ``ms``."""
        return int(ms * self.bytes_per_ms) & ~1

    @property
    def settled_ms(self) -> float:
        """Where the audio still kept starts: the end of the last finished turn."""
        with self._changed:
            return self._kept_from / self.bytes_per_ms

    def settle(self, upto_ms: float) -> None:
        """Audio before ``upto_ms`` is transcribed for good: no new connection needs it."""
        with self._changed:
            cut = min(self.to_bytes(upto_ms), self._kept_from + len(self._kept)) - self._kept_from
            if cut > 0:
                del self._kept[:cut]
                self._kept_from += cut

    def connection(self, *, max_speed: float | None = None) -> AudioConnection:
        """The audio for a new connection: the kept part, then the live source."""
        with self._changed:
            return AudioConnection(self, self._kept_from, max_speed)

    def read_for(self, reader: AudioConnection) -> bytes | None:
        """The next bytes for ``reader`` (kept audio past its position first), None at the end or
        once ``reader`` is closed."""
        while True:
            with self._changed:
                while True:
                    if reader.closed:
                        return None
                    end = self._kept_from + len(self._kept)
                    position = max(reader.position, self._kept_from)
                    if position < end:
                        reader.position = end
                        return bytes(self._kept[position - self._kept_from :])
                    if self._ended:
                        return None
                    if not self._reading:
                        break
                    self._changed.wait()  # another reader is in the source: take what it brings
                self._reading = True
            block = None
            try:
                block = next(self._blocks, None)  # outside the lock: a live source blocks here
            finally:
                with self._changed:
                    self._reading = False
                    self._keep(block)
                    self._changed.notify_all()

    def _keep(self, block: bytes | None) -> None:
        if block is None:
            self._ended = True
            return
        self._kept += block
        excess = len(self._kept) - self._keep_bytes
        if excess > 0:  # a turn that never ends: keep the newest audio only
            excess -= excess % 2
            del self._kept[:excess]
            self._kept_from += excess

    def wake(self) -> None:
        """Wake the readers waiting in `read_for` (one of them was closed)."""
        with self._changed:
            self._changed.notify_all()


class AudioConnection:
    """What one connection's sender reads; ``close()`` lets go of the source without ending it."""

    def __init__(self, audio: ResumableAudio, start: int, max_speed: float | None):
        self.audio = audio
        self.position = start
        self.starts_at_ms = round(start / audio.bytes_per_ms)
        self.max_speed = max_speed
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        started, sent_ms = time.monotonic(), 0.0
        while (data := self.audio.read_for(self)) is not None:
            if self.max_speed is None:
                yield data
                continue
            step = self.audio.to_bytes(100)  # paced in 100 ms slices: never ahead of the clock by more than one
            for i in range(0, len(data), step):
                piece = data[i : i + step]
                wait = (sent_ms / 1000) / self.max_speed - (time.monotonic() - started)
                if wait > 0:
                    time.sleep(wait)
                sent_ms += len(piece) / self.audio.bytes_per_ms
                yield piece

    def close(self) -> None:
        """Stop reading (any thread): the sender's next read returns nothing."""
        self.closed = True
        self.audio.wake()


class EventStream(Protocol):
    """What `resilient_stream` needs of a client: `StreamingClient` is one."""

    def stream(self, source: Iterable[bytes]) -> Generator[Event, None, None]:
        """Stream ``source`` and yield the session's events; raise `StreamingError` on failure."""
        ...


def resilient_stream(connect: Callable[[], EventStream], audio: ResumableAudio, policy: ReconnectPolicy, *,
                     max_speed: float | None = None, stopping: threading.Event | None = None) -> Iterator[Event]:
    """The events of one session after another until the audio ends.

    ``connect()`` makes the client for each connection, the first one and every new one. A failure
    before the first session began is raised at once (a wrong key or URL must not wait through
    retries). After that, a failure worth it (`worth_reconnecting`) opens a new session after a backoff,
    at most ``policy.attempts`` times in a row (the count starts over once turns finish again),
    resending from the end of the last finished turn (paced at ``max_speed`` times real time if given).
    `Disconnected` is yielded before each wait, `Reconnected` before the new session's `SessionBegan`.
    Once ``stopping`` is set, no new connection is tried (the failure is raised) and a backoff ends at once.
    """
    stopping = stopping or threading.Event()
    reconnects = 0  # new sessions that took over
    tries = 0  # failed attempts since the last fresh start
    fresh_from = -1.0  # settled_ms when the tries were last counted from zero
    lost: StreamingError | None = None  # why the previous connection ended, while reconnecting
    while True:
        connection = audio.connection(max_speed=None if lost is None else max_speed)
        events = connect().stream(connection)
        began = None
        try:
            began = next(events)
            if lost is not None:
                reconnects += 1
                yield Reconnected(attempt=reconnects, reason=str(lost), resume_at_ms=connection.starts_at_ms,
                                  received_at=time.monotonic())
                lost = None
            yield began
            for event in events:
                if isinstance(event, Turn) and event.end_of_turn and event.words:  # resend only what follows it
                    audio.settle(connection.starts_at_ms + max(w.end_ms for w in event.words))
                yield event
            return
        except StreamingError as exc:
            if began is None and lost is None and reconnects == 0:  # the very first connection: say why at once
                raise
            if began is not None:  # a session was lost (not just a new attempt that failed)
                lost = exc
                if audio.settled_ms > fresh_from:  # turns finished since the last drop: count from zero
                    tries, fresh_from = 0, audio.settled_ms
            if tries >= policy.attempts or stopping.is_set() or not worth_reconnecting(exc, connecting=began is None):
                if tries:
                    exc.add_note(f"gave up after {tries} new connection(s); the connection had dropped: {lost}")
                raise
            tries += 1
            yield Disconnected(reason=str(lost), attempt=tries, retry_in_s=policy.delay(tries), received_at=time.monotonic())
            stopping.wait(policy.delay(tries))
        finally:
            events.close()


__all__ = ["RECONNECT", "AudioConnection", "EventStream", "ReconnectPolicy", "ResumableAudio", "resilient_stream",
           "worth_reconnecting"]
