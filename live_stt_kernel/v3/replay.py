"""A real v3 WebSocket server on loopback that replays scripted sessions.

It stands in for AssemblyAI's cloud where the cloud cannot be reached: the test suite drives the
client through every protocol behaviour (A, B, C), error frame and close code with it, and it
records everything the client sent (query, headers, frames with arrival times, text messages) so
tests can assert frame sizes, pacing, `Terminate`, and that every audio byte arrived.

A script is a list of `Step`s, each released once the server has received ``at_ms`` of audio;
on `Terminate` the server releases the rest, sends `Termination` and closes 1000, as the real
service flushes the last turn. Like the real service it enforces 50-1000 ms audio frames (3007),
JSON control messages (3006), 128 KB messages (1009) and credentials (1008 or HTTP 401).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.exceptions import ConnectionClosed

from ..errors import ConfigurationError
from .connection import ServerConnection
from .protocol import Refusal, pcm_ms, turn_message, word_message
from .server_base import LoopbackServer


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket with this code and reason."""

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Drop:
    """Abort the TCP connection without a close frame (the client sees 1006)."""


@dataclass(frozen=True, slots=True)
class Stall:
    """Stop reading the socket and say nothing for ``seconds`` (a stuck server: the client's frames pile up in
    TCP buffers, its pings go unanswered), then drop the connection."""

    seconds: float = 20.0


@dataclass(frozen=True, slots=True)
class Step:
    """Release ``action`` once ``at_ms`` of audio has arrived: a dict is sent as JSON, a str as is."""

    at_ms: float
    action: dict[str, Any] | str | Close | Drop | Stall


@dataclass(frozen=True, slots=True)
class Script:
    """Steps (kept in ``at_ms`` order, ties in the order given) and how the server behaves."""

    steps: tuple[Step, ...] = ()
    send_begin: bool = True
    answer_terminate: bool = True
    http_status: int | None = None  # refuse the handshake with this status

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(sorted(self.steps, key=lambda s: s.at_ms)))


@dataclass(frozen=True, slots=True)
class ScriptedTurn:
    """A turn to replay: words as (text, start_ms, end_ms); formatted text derived if not given."""

    words: tuple[tuple[str, int, int], ...]
    formatted: str | None = None
    speaker: str | None = None

    @property
    def plain(self) -> str:
        """The words joined by spaces, as the script gives them."""
        return " ".join(w for w, _, _ in self.words)

    @property
    def pretty(self) -> str:
        """The formatted text: ``formatted`` if given, else the plain text capitalised and ending in a full stop."""
        if self.formatted is not None:
            return self.formatted
        text = self.plain
        return text[:1].upper() + text[1:] + "."

    @property
    def end_ms(self) -> int:
        """When the last word ends, in ms."""
        return self.words[-1][2]


def _words(turn: ScriptedTurn, count: int, *, final_upto: int, texts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    return [word_message(texts[i] if texts else text, start, end, confidence=0.9, final=i < final_upto, speaker=turn.speaker)
            for i, (text, start, end) in enumerate(turn.words[:count])]


def _turn(order: int, turn: ScriptedTurn, words: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    fields.setdefault("end_of_turn_confidence", 0.01)
    return turn_message(order, words, speaker=turn.speaker, **fields)


def turns_script(turns: Iterable[ScriptedTurn], behaviour: str = "A", *, final_delay_ms: int = 240) -> Script:
    """The messages a v3 server sends for these turns, in one of the three turn behaviours servers show:

    A: unformatted partials, an unformatted final, then a formatted final with the same turn_order;
    B: every message formatted, one final;
    C: each partial re-transcribes the whole turn (all words non-final, early words revised), one final.
    """
    steps: list[Step] = []
    for order, turn in enumerate(turns):
        n = len(turn.words)
        if behaviour == "C":
            steps.append(Step(turn.words[0][1], {"type": "SpeechStarted", "timestamp": turn.words[0][1], "confidence": 0.9}))
        for k in range(1, n + 1):
            at = turn.words[k - 1][2]
            if behaviour == "A":
                words = _words(turn, k, final_upto=k - 1)
                transcript = " ".join(w["text"] for w in words if w["word_is_final"])
                steps.append(Step(at, _turn(order, turn, words, transcript=transcript)))
            elif behaviour == "B":
                words = _words(turn, k, final_upto=k - 1)
                transcript = " ".join(w["text"] for w in words if w["word_is_final"])
                steps.append(Step(at, _turn(order, turn, words, transcript=transcript, formatted=True)))
            elif behaviour == "C":
                # an earlier hypothesis is revised later: the client must replace, never append
                texts = [t.upper() if i == 0 and k < n else t for i, (t, _, _) in enumerate(turn.words[:k])]
                words = _words(turn, k, final_upto=0, texts=texts)
                steps.append(Step(at, _turn(order, turn, words, transcript=" ".join(texts))))
            else:
                raise ConfigurationError(f"unknown behaviour {behaviour!r}; use 'A', 'B' or 'C'")
        final_at = turn.end_ms + final_delay_ms
        all_final = _words(turn, n, final_upto=n)
        if behaviour == "A":
            steps.append(Step(final_at, _turn(order, turn, all_final, transcript=turn.plain, end_of_turn=True,
                                              end_of_turn_confidence=0.8, utterance=turn.plain)))
            steps.append(Step(final_at, _turn(order, turn, all_final, transcript=turn.pretty, end_of_turn=True,
                                              formatted=True, end_of_turn_confidence=0.8, utterance=turn.plain)))
        else:
            text = turn.pretty if behaviour == "B" else turn.plain
            steps.append(Step(final_at, _turn(order, turn, all_final, transcript=text, end_of_turn=True,
                                              formatted=behaviour == "B", end_of_turn_confidence=1.0 if behaviour == "C" else 0.8,
                                              utterance=text)))
    return Script(steps=tuple(steps))


def even_turns(texts: Sequence[str], *, start_ms: int = 300, word_ms: int = 300, gap_ms: int = 1000) -> list[ScriptedTurn]:
    """Turns whose words are evenly spaced: handy when the audio is synthetic."""
    turns, t = [], start_ms
    for text in texts:
        words = []
        for word in text.split():
            words.append((word, t, t + word_ms - 40))
            t += word_ms
        turns.append(ScriptedTurn(tuple(words)))
        t += gap_ms
    return turns


@dataclass
class ClientRecord:
    """What one client connection did, as the server saw it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    frame_sizes: list[int] = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    texts: list[dict[str, Any]] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)

    @property
    def audio_ms(self) -> float:
        """Milliseconds of audio received (PCM16 at the query's ``sample_rate``, 16000 if not given)."""
        return pcm_ms(len(self.audio), int(self.query.get("sample_rate", "16000")))

    @property
    def terminated(self) -> bool:
        """The client has sent `Terminate`."""
        return any(t.get("type") == "Terminate" for t in self.texts)


class ReplayServer(LoopbackServer):
    """Serve ``script`` (or ``script(record)`` per connection) at ``ws://127.0.0.1:PORT/v3/ws``.

    ``api_key`` is accepted in the `Authorization` header, ``tokens`` in the header or ``token=``
    query (each once, like temporary tokens). A wrong key closes 1008 after an Error frame, or is
    refused with HTTP 401 when ``auth_failure="http"``. ``strict_frames`` enforces 50-1000 ms frames;
    ``realtime_margin_ms`` (if set) closes 3007 when audio arrives that much faster than real time.
    """

    def __init__(
        self,
        script: Script | Callable[[ClientRecord], Script],
        *,
        api_key: str | None = "test-key",
        tokens: Iterable[str] = (),
        auth_failure: str = "close",
        strict_frames: bool = True,
        realtime_margin_ms: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self._script = script
        self.api_key = api_key
        self.tokens = set(tokens)
        self.open = api_key is None and not self.tokens  # no credentials configured: anyone may connect
        self.auth_failure = auth_failure
        self.strict_frames = strict_frames
        self.realtime_margin_ms = realtime_margin_ms
        super().__init__(host=host, port=port)
        self.clients: list[ClientRecord] = []

    def wait_for_client(self, index: int = 0, timeout: float = 10.0) -> ClientRecord:
        """The ``index``-th connection once it has closed."""
        deadline = time.monotonic() + timeout
        while len(self.clients) <= index:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no client #{index} within {timeout} s")
            time.sleep(0.01)
        record = self.clients[index]
        if not record.closed.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"client #{index} still connected after {timeout} s")
        return record

    # --- the server (its own event loop thread) ----------------------------------------------

    thread_name = "replay-server"
    max_queue = None  # never pause reading: a handler awaiting a close must still see the client's close frame

    def _authorized(self, record: ClientRecord) -> bool:
        offered = {record.headers.get("authorization"), record.query.get("token")} - {None}
        if self.api_key is not None and self.api_key in offered:
            return True
        for token in offered & self.tokens:
            self.tokens.discard(token)  # one token, one session
            return True
        return self.open

    def _check_request(self, connection: Any, request: Any) -> Any:
        parts = urlsplit(request.path)
        record = ClientRecord(path=parts.path, query=dict(parse_qsl(parts.query)),
                              headers={k.lower(): v for k, v in request.headers.raw_items()})
        self.clients.append(record)
        connection.record = record
        script = self._script(record) if callable(self._script) else self._script
        connection.script = script
        if parts.path != "/v3/ws":
            record.closed.set()
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        if script.http_status is not None:
            record.closed.set()
            return connection.respond(script.http_status, "Refused by script\n")
        connection.authorized = self._authorized(record)
        if not connection.authorized and self.auth_failure == "http":
            record.closed.set()
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        return None

    async def _handle(self, ws: Any) -> None:
        record: ClientRecord = ws.record
        try:
            await _Replay(self, ws, record, ws.script).run()
        finally:
            record.closed.set()


class _Stop(Exception):
    pass


class _Replay:
    """One connection's replay, driven by a `ServerConnection` (what is legal, what to answer)."""

    def __init__(self, server: ReplayServer, ws: Any, record: ClientRecord, script: Script):
        self.server, self.ws, self.record, self.script = server, ws, record, script
        self.pending = list(script.steps)
        self.started = time.monotonic()

    async def send(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        self.record.sent.append(text)
        await self.ws.send(text)

    async def release(self, upto_ms: float) -> None:
        while self.pending and self.pending[0].at_ms <= upto_ms:
            action = self.pending.pop(0).action
            if isinstance(action, Close):
                await self.ws.close(action.code, action.reason)
                raise _Stop
            if isinstance(action, Stall):
                self.ws.transport.pause_reading()
                with contextlib.suppress(TimeoutError):  # until the time is up or the server stops
                    await asyncio.wait_for(self.server.stopping.wait(), action.seconds)
            if isinstance(action, (Drop, Stall)):
                self.ws.transport.abort()
                raise _Stop
            await self.send(action)

    async def run(self) -> None:
        try:
            try:
                await self.serve()
            except Refusal as refusal:
                await self.send(refusal.message())
                await self.ws.close(refusal.code, refusal.close_reason)
        except (_Stop, ConnectionClosed):
            pass

    async def serve(self) -> None:
        if not self.ws.authorized:
            raise Refusal(1008, "Unauthorized Connection: Invalid API key")
        connection = ServerConnection(self.record.query, strict_frames=self.server.strict_frames)
        if self.script.send_begin:
            await self.send(connection.begin())
        await self.release(0)
        async for message in self.ws:
            if isinstance(message, bytes):
                await self.on_audio(connection, message)
            else:
                await self.on_text(connection, message)

    async def on_audio(self, connection: ServerConnection, frame: bytes) -> None:
        record = self.record
        record.frame_sizes.append(len(frame))
        record.frame_times.append(time.monotonic())
        record.audio += frame
        connection.receive_audio(frame)
        margin = self.server.realtime_margin_ms
        if margin is not None and connection.audio_ms - (time.monotonic() - self.started) * 1000 > margin:
            raise Refusal(3007, "Audio Transmission Rate Exceeded: audio sent faster than real time")
        await self.release(connection.audio_ms)

    async def on_text(self, connection: ServerConnection, text: str) -> None:
        try:
            control = connection.receive_text(text)
        except Refusal:
            try:
                self.record.texts.append(dict(json.loads(text)))
            except (ValueError, TypeError):
                self.record.texts.append({"invalid": text})
            raise
        self.record.texts.append({"type": control.kind, **control.changes})
        if control.kind == "Terminate" and self.script.answer_terminate:
            await self.release(float("inf"))
            await self.send(connection.termination(round(time.monotonic() - self.started)))
            await self.ws.close(1000, "")
            raise _Stop


__all__ = ["ClientRecord", "Close", "Drop", "ReplayServer", "Script", "ScriptedTurn", "Stall", "Step", "even_turns", "turns_script"]
