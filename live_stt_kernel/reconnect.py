"""Reconnecting a live session without losing a word.

A v3 session cannot be resumed: after a drop the client opens a new one. To lose nothing,
`ResumableAudio` keeps the recording since the end of the last finished turn; a new connection
first resends that (the unfinished turn is transcribed again, whole) and then goes on with the live
audio, and a `Reconnected` event moves the transcript's clock to where the resent audio starts, so
times run on across sessions. `resilient_stream` is the loop: the events of one connection after
another, with a backoff between attempts, for the failures where a new session can help.

Neither official SDK reconnects a live session (see PROTOCOL.md); the cloud wants audio no faster
than real time, so a resend to a remote server is paced (``max_speed``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from . import protocol
from .errors import (AuthenticationError, ConnectionLost, ConnectTimeout, ServerRefused, ServerUnreachable,
                     StreamingError, TooManySessions)
from .events import Disconnected, Event, Reconnected
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
        return min(self.max_delay_s, self.first_delay_s * 2 ** (attempt - 1))


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
    """One audio source read by one connection after another. Every block read is kept (from the
    end of the last finished turn on: `settle`) so that the next connection can start there.

    Positions are milliseconds of the whole recording. Thread-safe: a connection that is being
    abandoned may still be reading when its successor starts; whatever it read is kept for the
    successor.
    """

    def __init__(self, source: Iterable[bytes], *, sample_rate: int = protocol.SAMPLE_RATE, keep_s: float = 300.0):
        self._blocks = iter(source)
        self.bytes_per_ms = sample_rate * protocol.BYTES_PER_SAMPLE / 1000
        self._lock = threading.Lock()  # guards the kept audio
        self._reading = threading.Lock()  # one reader of the source at a time
        self._kept = bytearray()
        self._kept_from = 0  # byte position of _kept[0] in the recording
        self._ended = False
        self._keep_bytes = self.to_bytes(keep_s * 1000)

    def to_bytes(self, ms: float) -> int:
        return int(ms * self.bytes_per_ms) & ~1  # whole PCM16 samples

    @property
    def settled_ms(self) -> float:
        """Where the audio still kept starts: the end of the last finished turn."""
        with self._lock:
            return self._kept_from / self.bytes_per_ms

    def settle(self, upto_ms: float) -> None:
        """Audio before ``upto_ms`` is transcribed for good: no new connection needs it."""
        with self._lock:
            cut = min(self.to_bytes(upto_ms), self._kept_from + len(self._kept)) - self._kept_from
            if cut > 0:
                del self._kept[:cut]
                self._kept_from += cut

    def connection(self, *, max_speed: float | None = None) -> AudioConnection:
        """The audio for a new connection: the kept part, then the live source."""
        with self._lock:
            return AudioConnection(self, self._kept_from, max_speed)

    def read_for(self, reader: AudioConnection) -> bytes | None:
        """The next bytes for ``reader`` (kept audio past its position first), None at the end."""
        while True:
            with self._lock:
                if reader.closed:
                    return None
                end = self._kept_from + len(self._kept)
                position = max(reader.position, self._kept_from)
                if position < end:
                    reader.position = end
                    return bytes(self._kept[position - self._kept_from:])
                if self._ended:
                    return None
            with self._reading:
                with self._lock:
                    if self._kept_from + len(self._kept) != end or self._ended:
                        continue  # another reader got there first
                try:
                    block = next(self._blocks)
                except StopIteration:
                    block = None
                with self._lock:
                    if block is None:
                        self._ended = True
                    else:
                        self._kept += block
                        excess = len(self._kept) - self._keep_bytes
                        if excess > 0:  # a turn that never ends: keep the newest audio only
                            excess -= excess % 2
                            del self._kept[:excess]
                            self._kept_from += excess


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
        self.closed = True


class EventStream(Protocol):  # what `StreamingClient` offers here
    def stream(self, source: Iterable[bytes]) -> Iterator[Event]: ...


def resilient_stream(connect: Callable[[], EventStream], audio: ResumableAudio, policy: ReconnectPolicy, *,
                     max_speed: float | None = None, on_connect: Callable[[EventStream], None] | None = None,
                     sleep: Callable[[float], None] = time.sleep) -> Iterator[Event]:
    """The events of one session after another until the audio ends. The first connection's
    failures are raised at once (a wrong key or URL must not wait through retries); after a session
    has begun, a failure worth it (`worth_reconnecting`) opens a new one after a backoff, at most
    ``policy.attempts`` times in a row, resending from the end of the last finished turn, and
    yields `Disconnected` before each wait and `Reconnected` before the new session's `SessionBegan`. Call ``audio.settle(ms)`` as turns
    finish; ``on_connect(client)`` sees each new client."""
    reconnects, failures = 0, 0
    lost: BaseException | None = None  # what ended the last connection, while reconnecting
    resumed_at = -1.0  # where the last drop left the transcription
    while True:
        client = connect()
        if on_connect is not None:
            on_connect(client)
        connection = audio.connection(max_speed=None if lost is None else max_speed)
        events = client.stream(connection)
        begun = False
        try:
            began = next(events)
            begun = True
            if lost is not None:
                reconnects += 1
                yield Reconnected(attempt=reconnects, reason=str(lost), resume_at_ms=connection.starts_at_ms,
                                  received_at=time.monotonic())
            lost = None
            yield began
            yield from events
            return
        except StreamingError as exc:
            if reconnects == 0 and lost is None and not begun:  # the very first connection: say why at once
                raise
            if begun:
                if audio.settled_ms > resumed_at:  # turns were finished since the last drop: a fresh start
                    failures, resumed_at = 0, audio.settled_ms
                lost = exc
            if failures >= policy.attempts or not worth_reconnecting(exc, connecting=not begun):
                if failures:
                    exc.add_note(f"gave up after {failures} new connection(s); the connection had dropped: {lost}")
                raise
            failures += 1
            yield Disconnected(reason=str(lost), attempt=failures, retry_in_s=policy.delay(failures),
                               received_at=time.monotonic())
            sleep(policy.delay(failures))
        finally:
            events.close()


__all__ = ["RECONNECT", "AudioConnection", "ReconnectPolicy", "ResumableAudio", "resilient_stream", "worth_reconnecting"]
