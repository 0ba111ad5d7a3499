"""The streaming client: websocket-client with one sender and one receiver thread.

``StreamingClient.stream(source)`` connects, waits for `Begin`, then sends audio from a sender
thread while a receiver thread parses server messages into a queue; the caller iterates events
on its own thread (so slow consumers never stall the socket). When the source ends, the tail is
flushed, `Terminate` is sent, and the stream ends after `Termination` and the close, or raises a
typed error saying why it could not.
"""

from __future__ import annotations

import bisect
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import websocket

from . import protocol
from .errors import (
    AuthenticationError,
    ConnectionLost,
    ConnectTimeout,
    ProtocolError,
    ServerRefused,
    ServerUnreachable,
    StreamingError,
    TerminationTimeout,
    TooManySessions,
)
from .events import Event, ServerError, SessionBegan, SessionEnded, Turn
from .protocol import Action, Chunker, StreamingParams

_END = object()


class SendLog:
    """When each millisecond of audio left the client: turns word times into end-of-turn latency.

    Written by the sender thread (append only), read by the receiver thread.
    """

    def __init__(self) -> None:
        self._ms: list[float] = []
        self._at: list[float] = []

    def record(self, total_ms: float, at: float) -> None:
        self._at.append(at)
        self._ms.append(total_ms)

    def sent_at(self, ms: float) -> float | None:
        """Monotonic time at which audio up to ``ms`` had been sent."""
        count = min(len(self._ms), len(self._at))
        if not count:
            return None
        i = bisect.bisect_left(self._ms, ms, 0, count)
        return self._at[min(i, count - 1)]


def refusal(code: int | None, reason: str = "", error_text: str = "") -> StreamingError:
    """The typed error for a close or HTTP refusal, with what to do about it."""
    verdict = protocol.classify_close(code, reason, error_text)
    detail = error_text or reason or verdict.meaning
    if verdict.action is Action.STOP_AUTH:
        return AuthenticationError(
            f"server refused the credentials ({code}): {detail}. Check ASSEMBLYAI_API_KEY; not retrying.",
            code=code, reason=reason, error_text=error_text,
        )
    if verdict.action is Action.BACK_OFF:
        return TooManySessions(
            f"server limit reached ({code}): {detail}. Wait before starting another session.",
            code=code, reason=reason, error_text=error_text,
        )
    return ServerRefused(
        f"server closed the session ({code}, {verdict.meaning}): {detail}. Next step: {verdict.action.value}.",
        code=code, reason=reason, error_text=error_text,
    )


def _close_frame(data: bytes) -> tuple[int | None, str]:
    if len(data) < 2:
        return None, ""
    return struct.unpack("!H", data[:2])[0], data[2:].decode("utf-8", "replace")


class StreamingClient:
    """One v3 session: call ``stream()`` once.

    ``api_key`` goes in the `Authorization` header; a temporary ``token`` goes in the query.
    ``on_message(raw_text)`` sees every server text message (receiver thread: keep it trivial).
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
        terminate_timeout: float = 10.0,
        on_message: Callable[[str], None] | None = None,
    ):
        self.params = params or StreamingParams()
        self._url = protocol.build_url(url, self.params, token=token)
        self._headers = protocol.auth_headers(api_key)
        self.url = self._url.split("?", 1)[0]  # for messages and reprs: no query, so never a token
        Chunker(frame_ms=frame_ms, sample_rate=self.params.sample_rate)  # validate early
        self.frame_ms = frame_ms
        self.connect_timeout = connect_timeout
        self.begin_timeout = begin_timeout
        self.terminate_timeout = terminate_timeout
        self.on_message = on_message
        self.send_log = SendLog()
        self.bytes_sent = 0
        self.frames_sent = 0
        self._ws: websocket.WebSocket | None = None
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done = threading.Event()
        self._received_all = threading.Event()
        self._failure: BaseException | None = None
        self._source_failure: BaseException | None = None

    def __repr__(self) -> str:
        return f"StreamingClient(url={self.url!r}, frames_sent={self.frames_sent})"

    # --- public -------------------------------------------------------------------------------

    def stream(self, source: Iterable[bytes]) -> Iterator[Event]:
        """Connect, stream ``source`` to the end, and yield every event; raise on failure."""
        if self._ws is not None:
            raise StreamingError("a StreamingClient streams one session; create a new one")
        ws = self._connect()
        self._ws = ws
        began = self._await_begin(ws)
        receiver = threading.Thread(target=self._receive_loop, args=(ws,), name="live-stt-receiver", daemon=True)
        sender = threading.Thread(target=self._send_loop, args=(source,), name="live-stt-sender", daemon=True)
        receiver.start()
        sender.start()
        try:
            yield began
            while True:
                item = self._events.get()
                if item is _END:
                    break
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
        """Send a control message (thread-safe); e.g. ``protocol.force_endpoint_message()``."""
        if self._ws is None:
            raise StreamingError("not connected")
        self._ws.send(message)

    def update_configuration(self, **changes: Any) -> None:
        self.send_text(protocol.update_configuration_message(**changes))

    def force_endpoint(self) -> None:
        self.send_text(protocol.force_endpoint_message())

    # --- connecting ---------------------------------------------------------------------------

    def _connect(self) -> websocket.WebSocket:
        try:
            return websocket.create_connection(
                self._url, header=self._headers, timeout=self.connect_timeout, enable_multithread=True
            )
        except websocket.WebSocketBadStatusException as exc:
            status = exc.status_code
            body = exc.resp_body.decode("utf-8", "replace")[:200] if isinstance(exc.resp_body, bytes) else ""
            if status in (401, 403):
                raise AuthenticationError(
                    f"server refused the credentials (HTTP {status}) at {self.url}. Check ASSEMBLYAI_API_KEY; not retrying.",
                    code=status, reason=body,
                ) from None
            if status == 429:
                raise TooManySessions(f"too many sessions (HTTP 429) at {self.url}; wait and retry.", code=status, reason=body) from None
            raise ServerRefused(f"server refused the connection (HTTP {status}) at {self.url}: {body}", code=status, reason=body) from None
        except (websocket.WebSocketTimeoutException, TimeoutError):
            raise ConnectTimeout(f"no answer from {self.url} within {self.connect_timeout:g} s") from None
        except (OSError, websocket.WebSocketException) as exc:
            raise ServerUnreachable(f"cannot reach the streaming server at {self.url}: {exc}") from None

    def _await_begin(self, ws: websocket.WebSocket) -> SessionBegan:
        try:
            return self._read_until_begin(ws)
        except BaseException:
            ws.shutdown()
            raise

    def _read_until_begin(self, ws: websocket.WebSocket) -> SessionBegan:
        deadline = time.monotonic() + self.begin_timeout
        error_text = ""
        try:
            while True:
                ws.settimeout(max(0.01, deadline - time.monotonic()))
                opcode, data = self._recv(ws)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code, reason = _close_frame(data)
                    raise refusal(code, reason, error_text)
                if opcode != websocket.ABNF.OPCODE_TEXT:
                    continue
                event = self._parse(data.decode("utf-8", "replace"))
                if isinstance(event, ServerError):
                    error_text = event.message
                elif isinstance(event, SessionBegan):
                    ws.settimeout(None)
                    return event
        except (websocket.WebSocketTimeoutException, TimeoutError):
            raise ConnectTimeout(f"connected to {self.url} but no Begin message within {self.begin_timeout:g} s") from None
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            raise ConnectionLost(f"{self.url} closed the connection before Begin ({error_text or 'no reason given'})") from None

    @staticmethod
    def _recv(ws: websocket.WebSocket) -> tuple[int, bytes]:
        opcode, frame = ws.recv_data_frame(control_frame=False)
        return opcode, frame.data if hasattr(frame, "data") else frame

    def _parse(self, text: str) -> Event | None:
        if self.on_message is not None:
            self.on_message(text)
        return protocol.parse(text, received_at=time.monotonic())

    # --- threads ------------------------------------------------------------------------------

    def _send_loop(self, source: Iterable[bytes]) -> None:
        chunker = Chunker(frame_ms=self.frame_ms, sample_rate=self.params.sample_rate)
        ms_per_byte = 1000 / (self.params.sample_rate * protocol.BYTES_PER_SAMPLE)
        ws = self._ws
        assert ws is not None

        def send(frame: bytes) -> None:
            ws.send_bytes(frame)
            self.bytes_sent += len(frame)
            self.frames_sent += 1
            self.send_log.record(self.bytes_sent * ms_per_byte, time.monotonic())

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
                for frame in chunker.feed(block):
                    send(frame)
                    time.sleep(0)  # let the receiver and worker run: a fast source must not starve them of the GIL
            else:
                return
            tail = chunker.flush()
            if tail:
                send(tail)
            ws.send(protocol.terminate_message())
        except (websocket.WebSocketException, OSError):
            return  # the connection is gone; the receiver says why
        if not self._received_all.wait(self.terminate_timeout):
            self._fail(TerminationTimeout(
                f"sent Terminate but {self.url} did not confirm with Termination within {self.terminate_timeout:g} s; "
                "the last turn may be missing"
            ))

    def _receive_loop(self, ws: websocket.WebSocket) -> None:
        error_text = ""
        ended = False
        try:
            while True:
                opcode, data = self._recv(ws)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code, reason = _close_frame(data)
                    if not (ended or code == 1000):
                        self._fail(refusal(code, reason, error_text))
                    return
                if opcode != websocket.ABNF.OPCODE_TEXT:
                    continue
                event = self._parse(data.decode("utf-8", "replace"))
                if event is None:
                    continue
                if isinstance(event, ServerError):
                    error_text = event.message
                elif isinstance(event, SessionEnded):
                    ended = True
                elif isinstance(event, Turn) and event.end_of_turn and event.words:
                    sent_at = self.send_log.sent_at(max(w.end_ms for w in event.words))
                    if sent_at is not None:
                        event = replace(event, latency_s=max(0.0, event.received_at - sent_at))
                self._events.put(event)
        except (ProtocolError, websocket.WebSocketPayloadException) as exc:
            self._fail(exc if isinstance(exc, ProtocolError) else ProtocolError(f"server sent an invalid frame: {exc}"))
            try:
                ws.send(protocol.terminate_message())
            except (websocket.WebSocketException, OSError):
                pass
        except (websocket.WebSocketException, OSError) as exc:
            if not (ended or self._done.is_set()):
                self._fail(ConnectionLost(
                    f"connection to {self.url} dropped without a close frame (1006): {exc or type(exc).__name__}"
                    + (f"; last server error: {error_text}" if error_text else "")
                ))
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


__all__ = ["SendLog", "StreamingClient", "refusal"]
