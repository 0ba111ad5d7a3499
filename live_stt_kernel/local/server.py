"""The embedded server: AssemblyAI Universal Streaming v3 on loopback, a thin adapter over the engine.

Any v3 client (ours, the official SDKs) connects to ``ws://127.0.0.1:PORT/v3/ws`` (``wss://`` with an
``ssl_context``, see `tls`) with the server's token in `Authorization`, a user's token from a token file
(``users``, ``live-stt serve --tokens``) or a one-time token from ``GET /v3/token`` (see `credentials`; each session's
log line names its user, never the token). Per connection, a
`ServerConnection` says what is legal and what to answer, and an `EngineStream` turns the audio into
`Turn` messages; the shared model runs on the engine's pool, so a slow decode never stalls the event
loop, other sessions, or audio reception. Violations are answered as AssemblyAI answers them: an
`Error` frame, then the close code (1008, 3006, 3007, 3008, 3009); a client's input never gets 3005.

Bounded by design: at most ``max_sessions`` sessions at once (the next one is refused with 3009 rather than
making every session late), each closed after ``idle_timeout_s`` without audio or a message unless its query
asks for another ``inactivity_timeout``, each reading its socket only as fast as its audio is decoded (the
engine's flow control; then TCP pushes back on the client), and a few frames queued per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import secrets
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.exceptions import ConnectionClosed

from ..audio.pcm import ToPCM16
from ..v3.connection import ServerConnection
from ..v3.protocol import PATH, TOKEN_PATH, Refusal, param_problem
from ..v3.server_base import LoopbackServer
from .credentials import Grant, Tokens, UserTokens
from .engine import Engine
from .recognizer import Recognizer
from .turns import TurnSettings

log = logging.getLogger(__name__)

MAX_SESSIONS = 6  # real-time sessions one 2-core machine serves with finals on time (benchmarks/README.md)
IDLE_TIMEOUT_S = 300.0  # a session with neither audio nor a message for this long is closed (3006)


class LocalServer(LoopbackServer):
    """Serve v3 at ``ws://host:port/v3/ws``. ``start()`` runs it on its own thread (for tests and the
    embedded default); ``run()`` blocks (for ``live-stt serve``)."""

    thread_name = "live-stt-server"
    max_queue = 8  # frames read ahead per connection, on top of the engine's backlog
    ping_interval = 2.0  # heartbeats while a session's backlog is decoded
    receive_buffer = 64 << 10  # so a fast client is held back by the decodes, not by megabytes of kernel buffer

    def __init__(self, recognizer: Recognizer, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 settings: TurnSettings | None = None, workers: int = 2, max_sessions: int = MAX_SESSIONS,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, ssl_context: ssl.SSLContext | None = None,
                 users: UserTokens | None = None):
        super().__init__(host=host, port=port, ssl_context=ssl_context)
        self.engine = Engine(recognizer, settings=settings, workers=workers)
        self.tokens = Tokens(token or secrets.token_urlsafe(24), users=users)
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self.active_sessions = 0

    def __repr__(self) -> str:
        return f"<LocalServer {self.url} sessions={self.active_sessions}>"

    @property
    def token(self) -> str:
        """The server's own credential (the launcher passes it to its parent)."""
        return self.tokens.master

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (see `LoopbackServer.stop`), then shut down the engine's decode pool."""
        super().stop(timeout)
        self.engine.close()

    # --- HTTP: the token endpoint and the handshake's credentials ------------------------------

    def _check_request(self, connection: Any, request: Any) -> Any:
        parts = urlsplit(request.path)
        query = dict(parse_qsl(parts.query))
        header = request.headers.get("Authorization")
        offered = [c for c in (header, query.get("token")) if c]
        if parts.path == TOKEN_PATH:
            return self._issue_token(connection, header, query)
        if parts.path != PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found: the streaming endpoint is /v3/ws\n")
        connection.grant = self.tokens.admit(offered)
        connection.query = query
        return None

    def _issue_token(self, connection: Any, header: str | None, query: Mapping[str, str]) -> Any:
        issuer = self.tokens.owner(header) if header else None
        if issuer is None:
            return self._json(connection, http.HTTPStatus.UNAUTHORIZED, {"error": "Unauthorized: invalid API key"})
        try:
            expires_in = int(query.get("expires_in_seconds", "60"))
            max_session = int(query["max_session_duration_seconds"]) if "max_session_duration_seconds" in query else None
        except ValueError:
            return self._json(connection, http.HTTPStatus.BAD_REQUEST, {"error": "expires_in_seconds must be an integer"})
        problem = param_problem("expires_in_seconds", expires_in) or param_problem("max_session_duration_seconds", max_session)
        if problem:
            return self._json(connection, http.HTTPStatus.BAD_REQUEST, {"error": problem})
        return self._json(connection, http.HTTPStatus.OK,
                          {"token": self.tokens.issue(expires_in, max_session, issuer=issuer), "expires_in_seconds": expires_in})

    @staticmethod
    def _json(connection: Any, status: http.HTTPStatus, body: dict[str, Any]) -> Any:
        response = connection.respond(status, json.dumps(body))
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    # --- one streaming session ----------------------------------------------------------------

    async def _handle(self, ws: Any) -> None:
        grant: Grant | None = ws.grant
        try:
            if grant is None:
                log.info("session refused: no valid token")
                raise Refusal(1008, "Unauthorized Connection: Invalid token")
            if self.active_sessions >= self.max_sessions:
                log.info("session refused for %s: %d sessions at once already", grant.who, self.active_sessions)
                raise Refusal(3009, f"Too many concurrent sessions: this server serves {self.max_sessions} at once")
            self.active_sessions += 1  # counted while it is served, not while its socket closes
            started = time.monotonic()
            log.info("session opened for %s (%d at once)", grant.who, self.active_sessions)
            try:
                await self._serve(ws, grant)
            finally:
                self.active_sessions -= 1
                log.info("session ended for %s after %.1f s (%d at once)", grant.who, time.monotonic() - started,
                         self.active_sessions)
        except Refusal as refusal:
            with contextlib.suppress(Exception):
                await ws.send(json.dumps(refusal.message()))
                await ws.close(refusal.code, refusal.close_reason)
        except ConnectionClosed as closed:  # the client left, or the server is stopping (1001): not a failure
            log.info("session closed: %s", closed)
        except Exception:  # one broken session must never take the server down
            log.exception("session failed")
            with contextlib.suppress(Exception):
                await ws.close(3005, "Internal server error")

    async def _serve(self, ws: Any, grant: Grant) -> None:
        """One session: validate what arrives, hand the audio to an engine stream, send what it says."""
        started = time.monotonic()
        connection = ServerConnection(ws.query)
        config = connection.config
        to_pcm16 = ToPCM16(sample_rate=config.sample_rate, encoding=config.encoding)

        async def send(message: dict[str, Any]) -> None:
            await ws.send(json.dumps(message))

        stream = self.engine.stream(config, send)
        try:
            turns = self.engine.settings
            defaults = {"min_turn_silence": turns.min_turn_silence, "max_turn_silence": turns.max_turn_silence}
            await send(connection.begin(max_session_s=grant.limit_s, languages=self.engine.languages, defaults=defaults))
            deadline = started + grant.limit_s
            while True:
                timeout = min(config.inactivity_timeout or self.idle_timeout_s, deadline - time.monotonic())
                try:
                    message = await asyncio.wait_for(ws.recv(), timeout=max(0.0, timeout))
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise Refusal(3008, "Session Expired: Maximum session duration exceeded") from None
                    raise Refusal(3006, "Inactivity timeout: no audio or KeepAlive received") from None
                if isinstance(message, bytes):
                    connection.receive_audio(message)
                    stream.push(to_pcm16(message))
                    await stream.ready()  # flow control: read on only as fast as the decodes go
                    continue
                control = connection.receive_text(message)
                if control.kind == "Terminate":
                    await stream.finish()
                    await send(connection.termination(time.monotonic() - started))
                    await ws.close(1000, "")
                    return
                if control.kind == "ForceEndpoint":
                    stream.force_endpoint()
                elif control.kind == "UpdateConfiguration":
                    stream.reconfigure()
        finally:
            stream.cancel()


__all__ = ["LocalServer"]
