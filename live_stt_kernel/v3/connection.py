"""One v3 session as a state machine, without I/O, in either role (as h11 and websockets do it).

A shell reads bytes from a socket and hands them in; the connection says what they mean and what to
send back. It never touches a socket, a thread or a clock (times are passed in), so every rule is
tested with data alone.

`ClientConnection`  what a client sends (legal frames, a padded tail, `Terminate`), what a server
                    message means (events, with end-of-turn latency), and which typed error a close,
                    a drop or an HTTP refusal is
`ServerConnection`  what a server accepts (the query within bounds, 50-1000 ms frames, control
                    messages) and the messages it answers with, refusals included
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import replace
from enum import Enum
from typing import Any

from ..errors import ConnectionLost, StreamingError
from ..events import Event, ServerError, SessionBegan, SessionEnded, Turn
from . import protocol
from .protocol import (
    MAX_FRAME_MS,
    MIN_FRAME_MS,
    Chunker,
    Control,
    Refusal,
    SessionConfig,
    StreamingParams,
    begin_message,
    parse_control,
    pcm_ms,
    termination_message,
)


class State(Enum):
    """Where a session is. Client: CONNECTING until `Begin`, ENDING once `Terminate` is sent.
    Server: OPEN from `Begin` on, ENDING once `Terminate` arrived. Both: CLOSED at the end."""

    CONNECTING = "connecting"
    OPEN = "open"
    ENDING = "ending"
    CLOSED = "closed"


class SendLog:
    """When each millisecond of audio left the client: turns word times into end-of-turn latency.

    Written by the sender (append only), read by the receiver: two threads, no lock, because a
    reader only looks at entries both lists already hold.
    """

    def __init__(self) -> None:
        self._ms: list[float] = []
        self._at: list[float] = []

    def record(self, total_ms: float, at: float) -> None:
        """Audio up to ``total_ms`` had been sent at monotonic time ``at``."""
        self._at.append(at)
        self._ms.append(total_ms)

    def sent_at(self, ms: float) -> float | None:
        """Monotonic time at which audio up to ``ms`` had been sent."""
        count = min(len(self._ms), len(self._at))
        if not count:
            return None
        i = bisect.bisect_left(self._ms, ms, 0, count)
        return self._at[min(i, count - 1)]


class ClientConnection:
    """The client's side of one session.

    Threads: the sender calls `frames`, `sent` and `end`; the receiver calls `receive`, `closed` and
    `dropped`. They share only append-only counters and the state, which each side moves forward.
    """

    def __init__(self, params: StreamingParams, *, frame_ms: int = 50):
        self.params = params
        self.state = State.CONNECTING
        self.send_log = SendLog()
        self.bytes_sent = 0
        self.frames_sent = 0
        self.error_text = ""  # the last Error frame: it explains the close that follows
        self.last_received_at = float("-inf")  # when the last message arrived (monotonic)
        self.last_heard_at = float("-inf")  # when anything arrived: a message, a ping, a pong
        self.server_pinged_at = float("-inf")  # when the server last pinged us (a heartbeat while it works)
        self.confirmed_ms = 0.0  # where the last final turn's words end
        self.last_sent_at = float("-inf")
        self._chunker = Chunker(frame_ms=frame_ms, sample_rate=params.sample_rate,
                                bytes_per_sample=protocol.ENCODINGS[params.encoding])
        self._ms_per_byte = protocol.pcm_ms(1, params.sample_rate, protocol.ENCODINGS[params.encoding])

    # --- sending (sender thread) ------------------------------------------------------------------

    def frames(self, block: bytes) -> list[bytes]:
        """The legal frames ``block`` completes; send each, then call `sent`."""
        return self._chunker.feed(block)

    def sent(self, frame: bytes, at: float) -> None:
        """``frame`` left the client at monotonic time ``at``."""
        self.bytes_sent += len(frame)
        self.frames_sent += 1
        self.last_sent_at = at
        self.send_log.record(self.bytes_sent * self._ms_per_byte, at)

    def end(self) -> tuple[bytes, str]:
        """End-of-audio: the last frame (silence-padded to 50 ms; ``b""`` if none) and the `Terminate` text."""
        if self.state in (State.CONNECTING, State.OPEN):
            self.state = State.ENDING
        return self._chunker.flush(), protocol.control_message("Terminate")

    # --- receiving (receiver thread) --------------------------------------------------------------

    def heard(self, at: float, *, ping: bool = False) -> None:
        """Something arrived at ``at`` (``ping``: the server's heartbeat)."""
        self.last_heard_at = max(self.last_heard_at, at)
        if ping:
            self.server_pinged_at = at

    @property
    def progress_at(self) -> float:
        """When the server last showed it is working on this session: its last message or heartbeat."""
        return max(self.last_received_at, self.server_pinged_at)

    def receive(self, text: str, at: float) -> Event | None:
        """One text message from the server as an event (None for types we do not use). A final turn
        gets its end-of-turn latency: ``at`` minus when the audio of its last word was sent.
        Raises `ProtocolError` for a malformed message (the shell skips it)."""
        self.heard(at)
        self.last_received_at = at
        event = protocol.parse(text, received_at=at)
        if isinstance(event, SessionBegan) and self.state is State.CONNECTING:
            self.state = State.OPEN
        elif isinstance(event, ServerError):
            self.error_text = event.message
        elif isinstance(event, SessionEnded):
            self.state = State.CLOSED
        elif isinstance(event, Turn) and event.end_of_turn and event.words:
            self.confirmed_ms = max(self.confirmed_ms, max(w.end_ms for w in event.words))
            sent_at = self.send_log.sent_at(max(w.end_ms for w in event.words))
            if sent_at is not None:
                event = replace(event, latency_s=max(0.0, at - sent_at))
        return event

    @property
    def unconfirmed_ms(self) -> float:
        """Audio sent past the end of the last final turn: what the server may still be working on."""
        return max(0.0, self.bytes_sent * self._ms_per_byte - self.confirmed_ms)

    @property
    def ended(self) -> bool:
        """`Termination` arrived: whatever closes the socket now is a normal end."""
        return self.state is State.CLOSED

    def closed(self, code: int | None, reason: str = "") -> StreamingError | None:
        """The server closed the socket: None for a normal end, else the error that says why."""
        done = self.ended or code == 1000
        self.state = State.CLOSED
        return None if done else protocol.refusal(code, reason, self.error_text)

    def dropped(self, detail: str, where: str) -> StreamingError | None:
        """The socket broke without a close frame: None after a normal end, else `ConnectionLost`."""
        if self.ended:
            return None
        self.state = State.CLOSED
        last = f"; last server error: {self.error_text}" if self.error_text else ""
        return ConnectionLost(f"connection to {where} dropped without a close frame (1006): {detail}{last}")


class ServerConnection:
    """The server's side of one session: ``ServerConnection(query)`` raises `Refusal` for a query it
    cannot serve; then `begin`, then `receive_audio` / `receive_text` for what the client sends, and
    the message builders for what goes back (a `Refusal` carries its own `Error` message).
    ``strict_frames=False`` accepts frames of any length."""

    def __init__(self, query: Mapping[str, str], *, strict_frames: bool = True):
        self.config = SessionConfig.from_query(query)
        self.strict_frames = strict_frames
        self.state = State.CONNECTING
        self.audio_ms = 0.0

    def begin(self, *, max_session_s: int = protocol.SESSION_LIMIT_S, session_id: str | None = None,
              languages: Sequence[str] | None = None, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The `Begin` message; the session is open. ``languages`` and ``defaults``: see `SessionConfig.public`."""
        self.state = State.OPEN
        configuration = self.config.public(languages=languages, defaults=defaults)
        return begin_message(configuration, session_id=session_id, max_session_s=max_session_s)

    def receive_audio(self, frame: bytes) -> float:
        """Account for one audio frame; its duration in ms. Raises `Refusal` (3007) for a frame
        outside 50-1000 ms or not made of whole samples."""
        config = self.config
        if len(frame) % config.bytes_per_sample:
            raise Refusal(3007, f"Input Duration Violation: {len(frame)} bytes is not a whole number of {config.encoding} samples")
        duration = pcm_ms(len(frame), config.sample_rate, config.bytes_per_sample)
        if self.strict_frames and not MIN_FRAME_MS <= round(duration, 3) <= MAX_FRAME_MS:
            raise Refusal(3007, f"Input Duration Violation: {duration:.0f} ms. Expected between 50 and 1000 ms")
        self.audio_ms += duration
        return duration

    def receive_text(self, text: str) -> Control:
        """A control message. `UpdateConfiguration` is applied to ``config`` here (its usable fields);
        `Terminate` moves the session to ENDING. Raises `Refusal` (3006) for anything else."""
        control = parse_control(text)
        if control.kind == "UpdateConfiguration":
            self.config.update(control.changes)
        elif control.kind == "Terminate":
            self.state = State.ENDING
        return control

    def termination(self, session_s: float) -> dict[str, Any]:
        """The `Termination` message after the last turn; the session is over."""
        self.state = State.CLOSED
        return termination_message(self.audio_ms, session_s)


__all__ = ["ClientConnection", "SendLog", "ServerConnection", "State"]
