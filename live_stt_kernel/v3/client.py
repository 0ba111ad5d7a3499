"""The streaming client's shell: websocket-client with one sender and one receiver thread.

``StreamingClient.stream(source)`` connects, waits for `Begin`, then sends audio from a sender thread
while a receiver thread turns server messages into events on a queue; the caller iterates the events
on its own thread (so a slow consumer never stalls the socket). When the source ends, the tail is
flushed, `Terminate` is sent, and the stream ends after `Termination` and the close, or raises a typed
error saying why it could not. What bytes mean is decided by `ClientConnection`; this module only
moves them.

Every wait is bounded. Both threads wait on the socket in short ticks (``poll``), never inside a blocking
call they cannot leave: the sender sends only when the socket can take a frame, so a server that stops
reading slows it down (flow control) but never traps it; the receiver pings a quiet server every
``ping_interval`` and gives up with `ConnectionLost` when nothing at all (message, ping, pong) has come for
``stall_timeout``. `abort` ends a stream from any thread at once.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Generator, Iterable
from typing import Any

import websocket

from ..errors import (
    ConfigurationError,
    ConnectionLost,
    ConnectTimeout,
    ProtocolError,
    ServerUnreachable,
    StreamingError,
    TerminationTimeout,
)
from ..events import Event, SessionBegan
from . import protocol
from .connection import ClientConnection, State
from .protocol import StreamingParams

log = logging.getLogger(__name__)

_END = object()
# the kernel may hold this much unsent audio (about 2 s at 16 kHz): audio waits in the session's own kept buffer,
# not in socket buffers that autotune to megabytes, so a fast stream never runs minutes ahead of what the server
# has read, and a reconnect can always resend what was not transcribed
SEND_BUFFER_BYTES = 64 << 10


def _close_frame(data: bytes) -> tuple[int | None, str]:
    if len(data) < 2:
        return None, ""
    return struct.unpack("!H", data[:2])[0], data[2:].decode("utf-8", "replace")


class StreamingClient:
    """One v3 session: call ``stream()`` once.

    ``api_key`` goes in the `Authorization` header; a temporary ``token`` goes in the query.
    ``connect_timeout`` bounds the handshake, ``begin_timeout`` the wait for `Begin`,
    ``terminate_timeout`` the wait for `Termination` after `Terminate`, counted from the server's last
    message or heartbeat (a server still working through a backlog keeps sending turns, and is waited
    for), and never longer than that plus 60 s or four times the audio it has not answered yet. ``stall_timeout``:
    nothing at all from the server for this long means it is gone (`ConnectionLost`).
    """

    def __init__(
        self,
        url: str = protocol.CLOUD_URL,
        *,
        api_key: str | None = None,
        token: str | None = None,
        params: StreamingParams | None = None,
        frame_ms: int = 50,
        connect_timeout: float = 10.0,
        begin_timeout: float = 10.0,
        terminate_timeout: float = 5.0,
        ping_interval: float = 2.0,
        stall_timeout: float = 15.0,
    ):
        self.params = params or StreamingParams()
        self.connection = ClientConnection(self.params, frame_ms=frame_ms)
        self._url = protocol.build_url(url, self.params, token=token)
        self._headers = protocol.auth_headers(api_key)
        self.url = self._url.split("?", 1)[0]  # for messages and reprs: no query, so never a token
        self.connect_timeout = connect_timeout
        self.begin_timeout = begin_timeout
        self.terminate_timeout = terminate_timeout
        self.ping_interval = ping_interval
        self.stall_timeout = stall_timeout
        self._began_at = float("inf")
        self._pinged_at = float("-inf")
        self._ws: websocket.WebSocket | None = None
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done = threading.Event()
        self._received_all = threading.Event()
        self._failure: BaseException | None = None
        self._source_failure: BaseException | None = None

    def __repr__(self) -> str:
        return f"StreamingClient(url={self.url!r}, frames_sent={self.connection.frames_sent})"

    @property
    def bytes_sent(self) -> int:
        """Audio bytes sent so far."""
        return self.connection.bytes_sent

    @property
    def streaming(self) -> bool:
        """The session began (`Begin` arrived) and is not over."""
        return self.connection.state in (State.OPEN, State.ENDING)

    @property
    def idle_s(self) -> float:
        """Seconds since the session last moved: a frame sent, a message or a heartbeat received (0 before it began)."""
        moved = max(self._began_at, self.connection.last_sent_at, self.connection.progress_at)
        return max(0.0, time.monotonic() - moved) if moved != float("inf") else 0.0

    def abort(self, error: StreamingError) -> None:
        """End the stream now (any thread): the caller's iteration raises ``error``; nothing more is sent."""
        self._fail(error)

    # --- public -------------------------------------------------------------------------------

    def stream(self, source: Iterable[bytes]) -> Generator[Event, None, None]:
        """Connect, stream ``source`` to the end, and yield every event; raise on failure.

        Runs on the caller's thread; starts a sender and a receiver thread and ends both before it
        returns (or raises), closing ``source`` if it has a ``close()``.
        """
        if self._ws is not None:
            raise ConfigurationError("a StreamingClient streams one session; create a new one")
        ws = self._ws = self._connect()
        try:
            if self._done.is_set():  # aborted while connecting
                raise self._failure or ConnectionLost(f"stopped while connecting to {self.url}")
            began = self._await_begin(ws)
        except StreamingError as exc:
            ws.shutdown()
            raise (self._failure or exc) from None
        except BaseException:
            ws.shutdown()
            raise
        receiver = threading.Thread(target=self._receive_loop, args=(ws,), name="live-stt-receiver", daemon=True)
        sender = threading.Thread(target=self._send_loop, args=(ws, source), name="live-stt-sender", daemon=True)
        receiver.start()
        sender.start()
        try:
            yield began
            while (item := self._events.get()) is not _END:
                yield item
        finally:
            self._done.set()
            self._abort()
            close = getattr(source, "close", None)
            if close is not None:  # unblock a sender waiting on a live source
                close()
            sender.join(timeout=5)
            receiver.join(timeout=5)
            ws.shutdown()
        failure = self._failure or self._source_failure
        if failure is not None:
            raise failure

    def send_text(self, message: str) -> None:
        """Send a control message (any thread), e.g. ``protocol.control_message("ForceEndpoint")``.
        Raises `ConnectionLost` when the session is over or the socket is gone."""
        if self._ws is None or self.connection.state is State.CLOSED:
            raise ConnectionLost(f"not connected to {self.url}")
        try:
            self._ws.send(message)
        except (websocket.WebSocketException, OSError) as exc:
            raise ConnectionLost(f"could not send to {self.url}: {exc}") from None

    # --- connecting ---------------------------------------------------------------------------

    def _connect(self) -> websocket.WebSocket:
        try:
            return websocket.create_connection(
                self._url, header=self._headers, timeout=self.connect_timeout, enable_multithread=True,
                sockopt=((socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES),),
            )
        except websocket.WebSocketBadStatusException as exc:
            body = exc.resp_body.decode("utf-8", "replace")[:200] if isinstance(exc.resp_body, bytes) else ""
            raise protocol.http_refusal(exc.status_code, body, self.url) from None
        except (websocket.WebSocketTimeoutException, TimeoutError):
            raise ConnectTimeout(f"no answer from {self.url} within {self.connect_timeout:g} s") from None
        except (OSError, websocket.WebSocketException) as exc:
            raise ServerUnreachable(f"cannot reach the streaming server at {self.url}: {exc}") from None

    def _await_begin(self, ws: websocket.WebSocket) -> SessionBegan:
        deadline = time.monotonic() + self.begin_timeout
        try:
            while True:
                ws.settimeout(max(0.01, deadline - time.monotonic()))
                event = self._read(ws)
                if isinstance(event, SessionBegan):
                    ws.settimeout(None)  # from now on the threads wait in ticks (see _ready)
                    self._began_at = time.monotonic()
                    return event
        except (websocket.WebSocketTimeoutException, TimeoutError):
            raise ConnectTimeout(f"connected to {self.url} but no Begin message within {self.begin_timeout:g} s") from None
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            error = self.connection.error_text or "no reason given"
            raise ConnectionLost(f"{self.url} closed the connection before Begin ({error})") from None

    def _read(self, ws: websocket.WebSocket) -> Event | None:
        """One frame from the server: an event, None (nothing for us: a ping, a pong, a malformed message,
        which is skipped with a warning), or the error a close means (raised; a normal close raises `_Closed`)."""
        opcode, frame = ws.recv_data_frame(control_frame=True)  # a ping is answered inside, then returned
        now = time.monotonic()
        data = frame.data if hasattr(frame, "data") else frame
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            failure = self.connection.closed(*_close_frame(data))
            raise failure if failure is not None else _Closed()
        if opcode != websocket.ABNF.OPCODE_TEXT:
            self.connection.heard(now, ping=opcode == websocket.ABNF.OPCODE_PING)
            return None
        try:
            return self.connection.receive(data.decode("utf-8", "replace"), now)
        except ProtocolError as exc:
            log.warning("skipped a malformed message from %s: %s", self.url, exc)
            return None

    def _ready(self, ws: websocket.WebSocket, *, write: bool) -> bool:
        """Whether the socket can be read (or written) now, waiting at most one tick: no thread ever blocks
        in a socket call it cannot be woken from. Raises OSError once the socket is gone."""
        sock = ws.sock
        if sock is None:
            raise OSError("the socket is closed")
        if not write and isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True  # decrypted bytes already wait in the TLS layer
        poller = select.poll()  # not select(): a kernel may hold more than 1024 file descriptors
        try:
            poller.register(sock, select.POLLOUT if write else select.POLLIN)
        except (ValueError, TypeError) as exc:  # the socket was closed meanwhile (fileno -1)
            raise OSError("the socket is closed") from exc
        return bool(poller.poll(self.ping_interval / 2 * 1000))

    def _keep_alive(self, ws: websocket.WebSocket) -> None:
        """The receiver found nothing to read: ping a quiet server, give up on a silent one."""
        now = time.monotonic()
        quiet = now - max(self.connection.last_heard_at, self._began_at)
        if quiet > self.stall_timeout:
            raise ConnectionLost(f"nothing from {self.url} for {quiet:.0f} s, not even an answer to a ping: "
                                 "the server is gone or stuck")
        if quiet >= self.ping_interval and now - self._pinged_at >= self.ping_interval:
            self._pinged_at = now
            ws.ping()

    def _writable(self, ws: websocket.WebSocket) -> bool:
        """Wait until the socket takes a frame; False once the stream is over."""
        while not self._done.is_set():
            if self._ready(ws, write=True):
                return True
        return False

    # --- threads ------------------------------------------------------------------------------

    def _send_loop(self, ws: websocket.WebSocket, source: Iterable[bytes]) -> None:
        connection = self.connection

        def send(frame: bytes) -> None:
            if not self._writable(ws):
                raise _Stopped()
            ws.send_bytes(frame)
            connection.sent(frame, time.monotonic())

        blocks = iter(source)
        try:
            while not self._done.is_set():
                try:
                    block = next(blocks)
                except StopIteration:
                    break
                except Exception as exc:  # the source failed: still end the session cleanly
                    self._source_failure = exc
                    break
                for frame in connection.frames(block):
                    send(frame)
                    time.sleep(0)  # let the receiver and worker run: a fast source must not starve them of the GIL
            else:
                return
            tail, terminate = connection.end()
            if tail:
                send(tail)
            if not self._writable(ws):
                return
            ws.send(terminate)
        except (_Stopped, websocket.WebSocketException, OSError):
            return  # the stream is over or the connection is gone; the receiver says why
        terminated_at = time.monotonic()
        # a server still working may take a while on a loaded machine, but not forever
        latest = terminated_at + self.terminate_timeout + max(60.0, 4 * connection.unconfirmed_ms / 1000)

        def quiet_until() -> float:  # a stall window that moves with every message or heartbeat, within `latest`
            return min(latest, max(terminated_at, connection.progress_at) + self.terminate_timeout)

        while not self._received_all.wait(max(0.0, quiet_until() - time.monotonic())):
            if time.monotonic() >= quiet_until():
                self._fail(TerminationTimeout(
                    f"sent Terminate but {self.url} did not confirm with Termination (nothing from it for "
                    f"{time.monotonic() - max(terminated_at, connection.progress_at):.0f} s); the last turn may be missing"
                ))
                return

    def _receive_loop(self, ws: websocket.WebSocket) -> None:
        try:
            while True:
                if not self._ready(ws, write=False):
                    self._keep_alive(ws)
                    continue
                event = self._read(ws)
                if event is not None:
                    self._events.put(event)
        except _Closed:
            pass
        except StreamingError as exc:
            self._fail(exc)
        except (ProtocolError, websocket.WebSocketPayloadException) as exc:
            self._fail(exc if isinstance(exc, ProtocolError) else ProtocolError(f"server sent an invalid frame: {exc}"))
            try:
                ws.send(protocol.control_message("Terminate"))
            except (websocket.WebSocketException, OSError):
                pass
        except (websocket.WebSocketException, OSError) as exc:
            if not self._done.is_set():
                failure = self.connection.dropped(str(exc) or type(exc).__name__, self.url)
                if failure is not None:
                    self._fail(failure)
        finally:
            self._received_all.set()
            self._events.put(_END)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._done.set()
        self._abort()
        self._events.put(_END)

    def _abort(self) -> None:
        ws = self._ws
        if ws is not None and ws.sock is not None:
            try:
                ws.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Closed(Exception):
    """The server closed the socket normally."""


class _Stopped(Exception):
    """The stream ended while the sender waited to send."""


__all__ = ["StreamingClient"]
