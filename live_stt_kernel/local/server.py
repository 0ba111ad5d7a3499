"""The embedded server: AssemblyAI Universal Streaming v3 on loopback, backed by an offline model.

Any v3 client (ours, the official SDKs) connects to ``ws://127.0.0.1:PORT/v3/ws`` with the server's
token in `Authorization` or a one-time token from ``GET /v3/token``. Each connection gets its own
turn detector and a decode queue; the shared model runs on a thread pool, so a slow decode never
stalls the event loop, other sessions, or audio reception. Protocol violations are answered as
AssemblyAI answers them: an `Error` frame, then the close code (1008, 3006, 3007, 3008).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import secrets
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from websockets.exceptions import ConnectionClosed

from ..protocol import MAX_FRAME_MS, MIN_FRAME_MS
from ..wsserver import LoopbackServer
from .messages import begin_message, error_message, final_messages, partial_message, termination_message
from .recognizer import Recognizer, plain
from .turns import CHECK, DUE, PARTIAL, Decode, TurnDetector, TurnSettings, reads_finished

log = logging.getLogger(__name__)

SESSION_LIMIT_S = 10_800


class Refusal(Exception):
    """Answer the client with an Error frame and this close code."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code, self.text = code, text


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise Refusal(3006, f"Invalid Message: expected a boolean, got {value!r}")


def _json_list(value: str) -> list[str]:
    try:
        items = json.loads(value)
    except ValueError:
        items = [value]
    if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
        raise Refusal(3006, "Invalid Message: keyterms_prompt must be a JSON list of strings")
    return items


@dataclass(slots=True)
class SessionConfig:
    """The query parameters this server uses; unknown ones are ignored, as AssemblyAI does."""

    sample_rate: int = 16_000
    encoding: str = "pcm_s16le"
    speech_model: str = "universal-streaming-english"
    format_turns: bool = False
    keyterms_prompt: list[str] = field(default_factory=list)
    prompt: str | None = None
    inactivity_timeout: float | None = None
    min_turn_silence: int | None = None
    max_turn_silence: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> SessionConfig:
        config = cls()
        try:
            if "sample_rate" in query:
                config.sample_rate = int(query["sample_rate"])
            if "encoding" in query:
                config.encoding = query["encoding"]
            config.speech_model = query.get("speech_model", config.speech_model)
            if "format_turns" in query:
                config.format_turns = _bool(query["format_turns"])
            if "keyterms_prompt" in query:
                config.keyterms_prompt = _json_list(query["keyterms_prompt"])
            config.prompt = query.get("prompt") or None
            if "inactivity_timeout" in query:
                config.inactivity_timeout = float(query["inactivity_timeout"])
            silence = query.get("min_turn_silence", query.get("min_end_of_turn_silence_when_confident"))
            config.min_turn_silence = int(silence) if silence else None
            config.max_turn_silence = int(query["max_turn_silence"]) if query.get("max_turn_silence") else None
        except ValueError as exc:
            raise Refusal(3006, f"Invalid Message: bad query parameter ({exc})") from None
        if config.encoding not in ("pcm_s16le", "pcm_mulaw"):
            raise Refusal(3006, f"Invalid Message: unsupported encoding {config.encoding!r}")
        if not 8000 <= config.sample_rate <= 48000:
            raise Refusal(3006, f"Invalid Message: unsupported sample_rate {config.sample_rate}")
        if config.inactivity_timeout is not None and not 5 <= config.inactivity_timeout <= 3600:
            raise Refusal(3006, "Invalid Message: inactivity_timeout must be between 5 and 3600 seconds")
        return config

    def public(self) -> dict[str, Any]:
        return {"speech_model": self.speech_model, "sample_rate": self.sample_rate, "encoding": self.encoding,
                "format_turns": self.format_turns, "keyterms_prompt": self.keyterms_prompt}


_MULAW = None


def mulaw_to_pcm16(data: bytes) -> np.ndarray:
    global _MULAW
    if _MULAW is None:
        u = ~np.arange(256, dtype=np.int32) & 0xFF
        magnitude = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
        _MULAW = np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)
    return _MULAW[np.frombuffer(data, dtype=np.uint8)]


class AudioIn:
    """Client audio (any rate, PCM16 or µ-law) as 16 kHz PCM16."""

    def __init__(self, config: SessionConfig):
        self.config = config
        self.bytes_per_sample = 1 if config.encoding == "pcm_mulaw" else 2
        self._resampler = None
        if config.sample_rate != 16_000:
            import soxr

            self._resampler = soxr.ResampleStream(config.sample_rate, 16_000, 1, dtype="int16")

    def frame_ms(self, frame: bytes) -> float:
        return len(frame) / self.bytes_per_sample / self.config.sample_rate * 1000

    def convert(self, frame: bytes) -> bytes:
        samples = mulaw_to_pcm16(frame) if self.bytes_per_sample == 1 else np.frombuffer(frame, dtype="<i2")
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        return samples.astype("<i2").tobytes()


class Tokens:
    """The server's own token plus one-time temporary tokens (each opens one session)."""

    def __init__(self, master: str):
        self.master = master
        self._temporary: dict[str, tuple[float, int | None]] = {}  # token -> (valid until, max session s)

    def issue(self, expires_in: int, max_session: int | None) -> str:
        token = "tmp_" + secrets.token_urlsafe(24)
        self._temporary[token] = (time.monotonic() + expires_in, max_session)
        return token

    def admit(self, offered: list[str]) -> tuple[bool, int]:
        """Whether any offered credential opens a session, and that session's time limit."""
        for credential in offered:
            if secrets.compare_digest(credential, self.master):
                return True, SESSION_LIMIT_S
            grant = self._temporary.pop(credential, None)
            if grant is not None and grant[0] >= time.monotonic():
                return True, grant[1] or SESSION_LIMIT_S
        return False, 0


class LocalServer(LoopbackServer):
    """Serve v3 at ``ws://host:port/v3/ws``. ``start()`` runs it on its own thread (for tests and the
    embedded default); ``run()`` blocks (for ``live-stt serve``)."""

    thread_name = "live-stt-server"

    def __init__(self, recognizer: Recognizer, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 settings: TurnSettings | None = None, workers: int = 2):
        super().__init__(host=host, port=port)
        self.recognizer = recognizer
        self.tokens = Tokens(token or secrets.token_urlsafe(24))
        self.settings = settings or TurnSettings()
        self.workers = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="live-stt-decode")
        self.decoding = 0  # decodes queued or running, all sessions (event-loop thread only)
        self.active_sessions = 0

    def __repr__(self) -> str:
        return f"<LocalServer {self.url} sessions={self.active_sessions}>"

    @property
    def token(self) -> str:
        return self.tokens.master

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # --- HTTP: the token endpoint and the handshake's credentials ------------------------------

    def _check_request(self, connection: Any, request: Any) -> Any:
        parts = urlsplit(request.path)
        query = dict(parse_qsl(parts.query))
        header = request.headers.get("Authorization")
        offered = [c for c in (header, query.get("token")) if c]
        if parts.path == "/v3/token":
            return self._issue_token(connection, header, query)
        if parts.path != "/v3/ws":
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found: the streaming endpoint is /v3/ws\n")
        connection.admitted, connection.limit_s = self.tokens.admit(offered)
        connection.query = query
        return None

    def _issue_token(self, connection: Any, header: str | None, query: Mapping[str, str]) -> Any:
        if not header or not secrets.compare_digest(header, self.tokens.master):
            return self._json(connection, http.HTTPStatus.UNAUTHORIZED, {"error": "Unauthorized: invalid API key"})
        try:
            expires_in = int(query.get("expires_in_seconds", "60"))
            max_session = int(query["max_session_duration_seconds"]) if "max_session_duration_seconds" in query else None
        except ValueError:
            return self._json(connection, http.HTTPStatus.BAD_REQUEST, {"error": "expires_in_seconds must be an integer"})
        if not 1 <= expires_in <= 600 or (max_session is not None and not 60 <= max_session <= SESSION_LIMIT_S):
            return self._json(connection, http.HTTPStatus.BAD_REQUEST,
                              {"error": "expires_in_seconds must be 1..600 and max_session_duration_seconds 60..10800"})
        return self._json(connection, http.HTTPStatus.OK,
                          {"token": self.tokens.issue(expires_in, max_session), "expires_in_seconds": expires_in})

    @staticmethod
    def _json(connection: Any, status: http.HTTPStatus, body: dict[str, Any]) -> Any:
        response = connection.respond(status, json.dumps(body))
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    # --- one streaming session ----------------------------------------------------------------

    async def _handle(self, ws: Any) -> None:
        self.active_sessions += 1
        session = _Session(self, ws)
        try:
            await session.run()
        except Refusal as refusal:
            with contextlib.suppress(Exception):
                await ws.send(json.dumps(error_message(refusal.code, refusal.text)))
                await ws.close(refusal.code, refusal.text[:123])
        except ConnectionClosed as closed:  # the client left, or the server is stopping (1001): not a failure
            log.info("session closed: %s", closed)
        except Exception:  # one broken session must never take the server down
            log.exception("session failed")
            with contextlib.suppress(Exception):
                await ws.close(3005, "Internal server error")
        finally:
            session.cancel()
            self.active_sessions -= 1


_TERMINATE, _FORCE = object(), object()
PARTIAL_BACKLOG_MS = 1000  # when decoding falls this far behind, partials are skipped to catch up


class _Session:
    """One connection: the receive loop only validates and queues; a processing task runs the turn
    detector and the decodes in audio order, so turns never depend on network timing."""

    def __init__(self, server: LocalServer, ws: Any):
        self.server, self.ws = server, ws
        self.started = time.monotonic()
        self.audio_ms = 0.0
        self.backlog_ms = 0.0
        self.turn_orders: dict[int, int] = {}  # detector turn -> turn_order on the wire
        self.previous_words: list[str] = []
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.partial_task: asyncio.Task[None] | None = None
        self.check: tuple[Decode, asyncio.Task[list[Any]]] | None = None  # the latest check and its decode
        self.closed_turns: set[int] = set()

    def cancel(self) -> None:
        for task in (self.worker, self.partial_task, self.check[1] if self.check else None):
            if task is not None:
                task.cancel()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def run(self) -> None:
        ws = self.ws
        if not ws.admitted:
            raise Refusal(1008, "Unauthorized Connection: Invalid token")
        self.config = SessionConfig.from_query(ws.query)
        overrides = {name: value for name, value in (("min_turn_silence", self.config.min_turn_silence),
                                                     ("max_turn_silence", self.config.max_turn_silence)) if value}
        from webrtcvad import Vad

        vad = Vad(3)  # the most aggressive mode: mode 2 heard room noise after speech as speech (benchmarks/README.md)
        self.detector = TurnDetector(is_speech=lambda frame: vad.is_speech(frame, 16_000),
                                     settings=replace(self.server.settings, **overrides))
        self.audio_in = AudioIn(self.config)
        await self.send(begin_message(self.config.public(), max_session_s=ws.limit_s))
        self.worker = asyncio.create_task(self.process())
        deadline = self.started + ws.limit_s
        while True:
            timeout = min(self.config.inactivity_timeout or float("inf"), deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=None if timeout == float("inf") else max(0.0, timeout))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise Refusal(3008, "Session Expired: Maximum session duration exceeded") from None
                raise Refusal(3006, "Inactivity timeout: no audio or KeepAlive received") from None
            if self.worker.done():
                self.worker.result()  # a decode failed: surface it
            if isinstance(message, bytes):
                self.on_audio(message)
            elif await self.on_text(message):
                return

    def on_audio(self, frame: bytes) -> None:
        duration = self.audio_in.frame_ms(frame)
        if not MIN_FRAME_MS <= round(duration, 3) <= MAX_FRAME_MS:
            raise Refusal(3007, f"Input Duration Violation: {duration:.0f} ms. Expected between 50 and 1000 ms")
        self.audio_ms += duration
        self.backlog_ms += duration
        self.inbox.put_nowait(self.audio_in.convert(frame))

    async def on_text(self, text: str) -> bool:
        """Handle a control message; True when the session is over."""
        try:
            message = json.loads(text)
            kind = message["type"]
        except (ValueError, KeyError, TypeError):
            raise Refusal(3006, f"Invalid Message: {text[:60]}") from None
        if kind == "Terminate":
            self.inbox.put_nowait(_TERMINATE)
            if self.worker is not None:
                await self.worker
            await self.send(termination_message(self.audio_ms, time.monotonic() - self.started))
            await self.ws.close(1000, "")
            return True
        if kind == "ForceEndpoint":
            self.inbox.put_nowait(_FORCE)
        elif kind == "UpdateConfiguration":
            if isinstance(message.get("keyterms_prompt"), list):
                self.config.keyterms_prompt = [str(t) for t in message["keyterms_prompt"]]
            if "prompt" in message:
                self.config.prompt = message["prompt"] or None
            for name in ("min_turn_silence", "max_turn_silence"):
                if isinstance(message.get(name), int):
                    setattr(self.detector.settings, name, message[name])
        elif kind != "KeepAlive":
            raise Refusal(3006, f"Invalid Message Type: {kind}")
        return False

    async def process(self) -> None:
        while True:
            item = await self.inbox.get()
            if item is _TERMINATE:
                await self.run_requests(self.detector.force_endpoint())
                if self.partial_task is not None:
                    self.partial_task.cancel()
                return
            if item is _FORCE:
                await self.run_requests(self.detector.force_endpoint())
                continue
            self.backlog_ms -= len(item) / 32
            requests = self.detector.push(item)
            while requests:  # the detector pauses after a due verdict; go on once it is settled
                await self.run_requests(requests)
                requests = self.detector.push(b"")

    async def run_requests(self, requests: list[Decode]) -> None:
        for request in requests:
            if request.kind == PARTIAL:
                # partials never change the turns: decode them beside the pipeline, one at a time, so a
                # check or final never waits behind one (there are two decode workers), only on an idle
                # worker, so no session's check or final queues behind another's partial, and not while
                # this session's check runs (a pause mid-sentence)
                idle = self.server.decoding < self.server.workers
                checking = self.check is not None and not self.check[1].done()
                if self.partial_task is None and idle and not checking and self.backlog_ms <= PARTIAL_BACKLOG_MS:
                    self.partial_task = asyncio.create_task(self.partial(request))
            elif request.kind == CHECK:  # decode now, in the background; the verdict comes with DUE
                self.check = (request, asyncio.create_task(self.decode(request)))
            elif request.kind == DUE:
                if self.check is None or self.check[0].turn_order != request.turn_order:
                    continue
                check, task = self.check
                self.check = None
                words = await task
                if reads_finished(" ".join(w.text for w in words)):
                    self.detector.end_turn()
                    await self.emit(check, words, final=True)
            else:
                self.check = None
                await self.emit(request, await self.decode(request), final=True)

    async def decode(self, request: Decode) -> list[Any]:
        self.server.decoding += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.server.pool,
                lambda: self.server.recognizer.transcribe(request.pcm, prompt=self.config.prompt, keyterms=self.config.keyterms_prompt),
            )
        finally:
            self.server.decoding -= 1

    async def partial(self, request: Decode) -> None:
        try:
            words = await self.decode(request)
            if request.turn_order not in self.closed_turns:  # its final went out meanwhile: too late
                await self.emit(request, words, final=False)
        finally:
            self.partial_task = None

    async def emit(self, request: Decode, words: list[Any], *, final: bool) -> None:
        if not words and not (final and request.turn_order in self.turn_orders):
            return  # nothing heard: no Turn during silence
        order = self.turn_orders.setdefault(request.turn_order, len(self.turn_orders))
        if final:
            self.closed_turns.add(request.turn_order)
            for message in final_messages(order, words, request.start_ms, format_turns=self.config.format_turns):
                await self.send(message)
            self.previous_words = []
        else:
            await self.send(partial_message(order, words, request.start_ms, self.previous_words))
            self.previous_words = [plain(w.text) for w in words]


__all__ = ["LocalServer", "SessionConfig"]
