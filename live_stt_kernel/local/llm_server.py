"""An OpenAI-compatible chat server on loopback, backed by the embedded local LLM.

Any OpenAI client pointed at ``http://127.0.0.1:PORT/v1`` with the server's token as its API key works:

``POST /v1/chat/completions``  ``messages`` (required), ``max_tokens`` (512), ``temperature`` (0.2), ``stop``,
                               ``stream``, ``stream_options``, ``response_format``; ``model`` is accepted and
                               answered with the one model served.
                               ``stream: true`` answers with server-sent events as tokens are decoded
                               (``data: {chat.completion.chunk}`` ... ``data: [DONE]``, chunked), as OpenAI
                               does; a client that goes away mid-stream ends the generation at the next token.
                               ``stream_options: {"include_usage": true}`` adds OpenAI's last chunk: empty
                               ``choices`` and the ``usage`` (the other chunks carry ``"usage": null``).
                               ``response_format``: ``{"type": "text"}`` (the default), ``{"type":
                               "json_object"}`` (any JSON object) or ``{"type": "json_schema", "json_schema":
                               {"name", "schema"}}`` (JSON following that schema): the model is held to it by
                               a grammar as it samples, not merely asked.
                               ``tools``/``tool_choice``/``functions`` are refused (400): this model server
                               does not call tools, and ignoring them would leave a client waiting for calls
``GET /v1/models``             the one model, in OpenAI's list shape
``GET /v1/models/{id}``        that model (what ``client.models.retrieve`` asks for); 404 for any other id
``GET /health``                ``{"status": "ok"}``, without a token

Errors come in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 401 for a missing or
wrong token (the token is never echoed; checked before the body is read), 413 for a body over `MAX_BODY`,
400 for a request we cannot serve, 500 when the model fails, 503 when the server is full.

Bounds: at most `MAX_CONNECTIONS` connections are served at once (the next is answered 503 and closed);
a request's head and body must arrive within `REQUEST_TIMEOUT_S` (from the connection's start, or from
its first byte on a kept-alive connection, which may idle `IDLE_TIMEOUT_S` between requests), so a
half-open or byte-dribbling client is dropped within seconds and its thread given back.

Threads: the standard library's `ThreadingHTTPServer` gives each admitted connection a thread; they
parse and validate in parallel and queue on the model's lock for the generation itself.
`LocalLLMServer.start` runs the accept loop on one more thread, so the caller's thread stays free.
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import io
import itertools
import json
import logging
import secrets
import socket
import sys
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self
from urllib.parse import unquote, urlsplit

from ..errors import ConfigurationError, LiveSTTError, PromptTooLong, UnusableSchema
from .credentials import server_token
from .llm_model import DEFAULT_CTX, SERVED_MODEL, LocalChat

log = logging.getLogger(__name__)

READY_PREFIX = "live-stt llm server ready at "
TOKEN_ENV = "LIVE_STT_LLM_TOKEN"
MAX_BODY = 4 << 20  # a few MB of JSON is far beyond a 4096-token context; more is a mistake or abuse
MAX_CONNECTIONS = 64  # connections served at once, each on its own thread
REQUEST_TIMEOUT_S = 5.0  # a request's head and body, on loopback: milliseconds unless the client stalls
IDLE_TIMEOUT_S = 30.0  # a kept-alive connection waiting for its next request
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ChatModel(Protocol):
    """What the server needs from a model; `LocalChat` is the real one. Called from request threads.

    A model may also have ``chat_stream`` (the same arguments and ``include_usage``, yields
    ``chat.completion.chunk`` dicts, see `LocalChat.chat_stream`); without it a streamed request gets the
    whole answer as one event."""

    def chat(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int, temperature: float,
             stop: str | list[str] | None, response_format: Mapping[str, Any] | None) -> dict[str, Any]:
        """An OpenAI ``chat.completion`` dict for these messages, its reply held to ``response_format``
        (llama-cpp-python's shape: None, or ``{"type": "json_object"}`` with an optional ``"schema"``).

        Raises `PromptTooLong` when the prompt does not fit the context, `UnusableSchema` for a format it cannot follow."""
        ...


class BadRequest(Exception):
    """Answer with this status and an OpenAI-shaped error."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """A validated ``/v1/chat/completions`` request (see `parse_chat_request`), roles normalised (``developer`` -> ``system``).

    ``response_format`` is in llama-cpp-python's shape (see `ChatModel.chat`): None for text; ``include_usage``
    is ``stream_options.include_usage`` of a streamed request."""

    messages: tuple[dict[str, str], ...]
    max_tokens: int = 512
    temperature: float = 0.2
    stop: str | list[str] | None = None
    stream: bool = False
    response_format: dict[str, Any] | None = None
    include_usage: bool = False


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    # OpenAI clients may send content as a list of parts; text parts are all a text model can use
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    raise BadRequest(400, f"{where}.content must be a string (or a list of text parts)", param="messages")


def _messages(value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise BadRequest(400, "'messages' is required: a non-empty list of {role, content} objects", param="messages")
    out = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadRequest(400, f"{where} must be an object with role and content", param="messages")
        role = message.get("role")
        if role not in ROLES:
            raise BadRequest(400, f"{where}.role must be one of {', '.join(ROLES)}", param="messages")
        out.append({"role": ROLES[role], "content": _content(message.get("content"), where)})
    return tuple(out)


def _response_format(value: Any) -> dict[str, Any] | None:
    """OpenAI's ``response_format`` in llama-cpp-python's shape: None for text, ``{"type": "json_object"}``
    for any JSON object, with ``"schema"`` for a ``json_schema`` format; `BadRequest` for anything else."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise BadRequest(400, "response_format must be {\"type\": \"text\"}, {\"type\": \"json_object\"} or "
                              "{\"type\": \"json_schema\", \"json_schema\": {\"name\": ..., \"schema\": {...}}}",
                         param="response_format")
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise BadRequest(400, "response_format.json_schema must be an object with a name (and a schema)", param="response_format")
    schema = spec.get("schema")
    if schema is None:
        return {"type": "json_object"}
    if not isinstance(schema, dict):
        raise BadRequest(400, "response_format.json_schema.schema must be a JSON Schema object", param="response_format")
    return {"type": "json_object", "schema": schema}


def _refuse_tools(data: Mapping[str, Any]) -> None:
    """`BadRequest` for a request that offers the model tools (or legacy functions) to call: this server's
    model writes text only, and a client told nothing would wait for a call that never comes."""
    for name in ("tools", "functions"):
        if data.get(name):
            raise BadRequest(400, f"this local model server does not call tools: send the request without '{name}'", param=name)
    for name in ("tool_choice", "function_call"):
        if data.get(name) not in (None, "none"):
            raise BadRequest(400, f"this local model server does not call tools: '{name}' can only be 'none'", param=name)


def _include_usage(value: Any) -> bool:
    """``stream_options.include_usage`` (false when absent); `BadRequest` for a malformed ``stream_options``."""
    if value is None:
        return False
    include = value.get("include_usage", False) if isinstance(value, dict) else None
    if not isinstance(include, bool):
        raise BadRequest(400, "stream_options must be an object like {\"include_usage\": true}", param="stream_options")
    return include


def parse_chat_request(body: bytes) -> ChatRequest:
    """Validate a ``/v1/chat/completions`` body (pure; raises `BadRequest`). Unknown fields are ignored,
    except those asking for what the model cannot do (tools, a response format other than text or JSON)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "the body must be a JSON object")
    stream = data.get("stream")
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadRequest(400, "stream must be true or false", param="stream")
    if data.get("n", 1) != 1:
        raise BadRequest(400, "only n=1 is supported", param="n")
    _refuse_tools(data)
    include_usage = _include_usage(data.get("stream_options")) and stream  # as OpenAI: usage chunks only in a stream
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))  # the newer name wins
    if max_tokens is None:
        max_tokens = 512
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest(400, "max_tokens must be a positive integer", param="max_tokens")
    temperature = data.get("temperature")
    if temperature is None:
        temperature = 0.2
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise BadRequest(400, "temperature must be a number from 0 to 2", param="temperature")
    stop = data.get("stop")
    if not (stop is None or isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))):
        raise BadRequest(400, "stop must be a string or a list of strings", param="stop")
    return ChatRequest(messages=_messages(data.get("messages")), max_tokens=max_tokens, temperature=float(temperature),
                       stop=stop, stream=stream, response_format=_response_format(data.get("response_format")),
                       include_usage=include_usage)


def _as_chunks(reply: Mapping[str, Any], *, include_usage: bool) -> list[dict[str, Any]]:
    """A whole ``chat.completion`` as a stream: one ``chat.completion.chunk`` with all of it, then, with
    ``include_usage``, the usage chunk (empty ``choices``)."""
    choice = (reply.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    head = {"id": reply.get("id", ""), "object": "chat.completion.chunk", "created": reply.get("created", int(time.time())),
            "model": reply.get("model", "")}
    chunks = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": message.get("content") or ""},
                                    "finish_reason": choice.get("finish_reason", "stop")}]}]
    if include_usage:
        chunks = [{**chunks[0], "usage": None}, {**head, "choices": [], "usage": reply.get("usage")}]
    return chunks


def error_body(message: str, *, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _busy_reply(max_connections: int) -> bytes:
    """The whole HTTP answer to a connection beyond the cap: 503 in OpenAI's shape, then close."""
    data = json.dumps(error_body(f"the server is busy: it serves {max_connections} connections at once; retry in a moment",
                                 kind="server_error", code="server_busy")).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Retry-After: 1\r\nConnection: close\r\n\r\n")
    return head.encode() + data


class _DeadlineReader(io.RawIOBase):
    """A connection's reading side under a deadline (``deadline``, in `time.monotonic` seconds): each read
    waits at most until then, and raises `TimeoutError` after. A plain socket timeout restarts with
    every byte, so a client sending one byte a second would never meet it."""

    def __init__(self, sock: socket.socket, deadline: float):
        super().__init__()
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        """Yes: this is the reading side."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Read what has arrived into ``buffer`` (at most one ``recv``), waiting no later than the deadline."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        self.sock.settimeout(remaining)
        return self.sock.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    """One instance per connection, on that connection's thread: reads requests under deadlines (see
    `handle_one_request`) and answers them."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive: an OpenAI client reuses its connection for every turn

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the stock reader, replaced by one with a deadline
        self._reader = _DeadlineReader(self.connection, time.monotonic() + self.server.app.request_timeout)
        self._buffered = io.BufferedReader(self._reader)
        self.rfile = self._buffered
        self._kept_alive = False

    def handle_one_request(self) -> None:
        """Read and answer one request. Its head and body must arrive within ``request_timeout`` of the
        connection's start, or, on a kept-alive connection (which waits up to ``idle_timeout`` for it),
        of its first byte; else the connection is closed (the stock handler catches the `TimeoutError`)."""
        app = self.server.app
        if self._kept_alive:
            self._reader.deadline = time.monotonic() + app.idle_timeout
            try:
                waiting = self._buffered.peek(1)
            except OSError:  # idle too long, or the client went away
                waiting = b""
            if not waiting:
                self.close_connection = True
                return
            self._reader.deadline = time.monotonic() + app.request_timeout
        self._kept_alive = True
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, payload: Mapping[str, Any], *, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        try:
            self.connection.settimeout(self.server.app.request_timeout)  # a client that does not read is dropped too
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if close:  # the request body was not read: the connection cannot carry another request
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up waiting, or stopped reading: nobody to tell
            self.close_connection = True

    def _fail(self, error: BadRequest, *, close: bool = False) -> None:
        kind = "invalid_request_error" if error.status < 500 else "server_error"
        self._send(error.status, error_body(error.message, kind=kind, param=error.param, code=error.code), close=close)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        expected = self.server.app.token
        # bytes, not str: compare_digest refuses non-ASCII str, and a client may send any byte (read as latin-1)
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"), expected.encode()):
            return True
        self._fail(BadRequest(401, "missing or invalid API key: send 'Authorization: Bearer <token>' with this "
                                   "server's token", code="invalid_api_key"), close=True)
        return False

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path.startswith("/v1/") and not self._authorized():
            return
        elif path == "/v1/models":
            self._send(200, {"object": "list", "data": [self.server.app.model_object()]})
        elif path.startswith("/v1/models/"):
            self._model(unquote(path.removeprefix("/v1/models/")))
        elif path == "/v1/chat/completions":
            self._fail(BadRequest(405, "use POST for /v1/chat/completions"))
        else:
            self._fail(BadRequest(404, f"no such endpoint: GET {path}"))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/v1/") and not self._authorized():
            return
        if path != "/v1/chat/completions":
            self._fail(BadRequest(404, f"no such endpoint: POST {path}"), close=True)
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._fail(BadRequest(411, "a JSON body with a Content-Length is required"), close=True)
            return
        if int(length) > MAX_BODY:
            self._fail(BadRequest(413, f"the body is larger than {MAX_BODY} bytes"), close=True)
            return
        body = self.rfile.read(int(length))
        try:
            request = parse_chat_request(body)
            if request.stream:
                self._stream(request)
                return
            status, reply = 200, self.server.app.complete(request)
        except BadRequest as exc:
            self._fail(exc)
        else:
            self._send(status, reply)

    def _model(self, name: str) -> None:
        """``GET /v1/models/{name}``: the model object if it is the one served, else 404 as OpenAI answers."""
        app = self.server.app
        if name == app.model_name:
            self._send(200, app.model_object())
        else:
            self._fail(BadRequest(404, f"The model '{name}' does not exist: this server serves '{app.model_name}'",
                                  param="model", code="model_not_found"))

    def _stream(self, request: ChatRequest) -> None:
        """Answer with server-sent events as the model writes. A failure before the first token is an
        ordinary error answer (400 for a prompt too long, 500); after it, an ``error`` event ends the
        stream. A client that stops reading, or goes away, closes the generation at the next write."""
        chunks = self.server.app.stream(request)
        try:
            first = next(chunks, None)  # raises BadRequest: answered as usual by the caller
            try:
                self.connection.settimeout(self.server.app.request_timeout)  # a client that does not read is dropped
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in itertools.chain([first] if first is not None else [], chunks):
                        self._event(json.dumps(chunk))
                except BadRequest as exc:
                    self._event(json.dumps(error_body(exc.message, kind="server_error", param=exc.param, code=exc.code)))
                    self.close_connection = True
                self._event("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:  # the client went away or stopped reading: stop generating for it
                self.close_connection = True
        finally:
            chunks.close()

    def _event(self, data: str) -> None:
        """One server-sent event as one HTTP chunk, sent now."""
        payload = f"data: {data}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.wfile.flush()


class _HTTPServer(ThreadingHTTPServer):
    """The stock threading server, admitting at most ``app.max_connections`` connections at a time."""

    daemon_threads = True  # a hung client never keeps the process alive
    request_queue_size = 128  # a burst of connections is accepted and answered (or refused), not left to SYN retries

    def __init__(self, address: tuple[str, int], app: LocalLLMServer):
        self.app = app
        self.open: set[socket.socket] = set()  # the admitted connections, each with its thread
        self._admission = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """On the accept thread: a thread for the connection if one of the slots is free, else a 503 and close."""
        with self._admission:
            admitted = len(self.open) < self.app.max_connections
            if admitted:
                self.open.add(request)
        if admitted:
            super().process_request(request, client_address)
            return
        try:
            request.setblocking(False)  # a fresh socket's send buffer is empty: the accept loop never waits here
            request.recv(1 << 16)  # what the client already sent, so that closing does not reset the connection
        except OSError:
            pass
        try:
            request.send(_busy_reply(self.app.max_connections))
        except OSError:
            pass
        self.shutdown_request(request)

    def shutdown_request(self, request: Any) -> None:
        """Close a connection (its thread is ending, or it was refused) and give its slot back."""
        super().shutdown_request(request)
        with self._admission:
            self.open.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed outside the handler's own error handling: a dropped connection is one
        debug line (never a traceback per connection); anything else is a bug and logged as one."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("connection from %s ended: %s: %s", client_address[0], type(error).__name__, error)
        else:
            log.exception("unexpected error serving %s", client_address[0])

    def release_readers(self) -> None:
        """Wake every connection's thread waiting for a request (it sees the end and ends); a reply being
        computed is still written."""
        with self._admission:
            connections = list(self.open)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass


def _model_failure(exc: Exception) -> BadRequest:
    """The answer to an exception from the model: 400 for the caller's mistakes (a prompt too long, a
    format it cannot follow), 500 (logged with its traceback) for anything else."""
    if isinstance(exc, BadRequest):
        return exc
    if isinstance(exc, PromptTooLong):
        return BadRequest(400, str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, UnusableSchema):
        return BadRequest(400, str(exc), param="response_format")
    log.error("the local model failed", exc_info=exc)
    return BadRequest(500, f"the local model failed: {type(exc).__name__}: {exc}")


class LocalLLMServer:
    """The chat server around a `ChatModel`: ``start()`` / ``stop()`` or ``with``; ``url`` ends in ``/v1``.

    ``token`` is the API key clients must send (a fresh random one when not given, read it from
    ``.token``). Port 0 picks a free port, known after ``start()``. ``max_connections``,
    ``request_timeout`` and ``idle_timeout`` bound the connections (see the module's docstring).
    """

    def __init__(self, chat: ChatModel, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 model_name: str = SERVED_MODEL, max_connections: int = MAX_CONNECTIONS,
                 request_timeout: float = REQUEST_TIMEOUT_S, idle_timeout: float = IDLE_TIMEOUT_S):
        if max_connections < 1 or not request_timeout > 0 or not idle_timeout > 0:
            raise ConfigurationError("the LLM server needs max_connections >= 1 and positive timeouts, not "
                                     f"{max_connections}, {request_timeout}, {idle_timeout}")
        self.chat, self.host, self.port, self.model_name = chat, host, port, model_name
        self.max_connections, self.request_timeout, self.idle_timeout = max_connections, request_timeout, idle_timeout
        self.token = token or secrets.token_urlsafe(24)
        self.created = int(time.time())
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<LocalLLMServer {self.url if self._httpd else 'stopped'}>"

    @property
    def connections(self) -> int:
        """How many connections are being served now (each holds a thread): at most ``max_connections``."""
        return len(self._httpd.open) if self._httpd is not None else 0

    @property
    def url(self) -> str:
        """The base URL clients use, ``http://host:port/v1`` (the real port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def model_object(self) -> dict[str, Any]:
        """The served model in OpenAI's shape, as ``/v1/models`` lists it and ``/v1/models/{id}`` answers."""
        return {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "live_stt_kernel"}

    def complete(self, request: ChatRequest) -> dict[str, Any]:
        """Run one request on the model (request threads; the model serialises them)."""
        try:
            reply = self.chat.chat(request.messages, max_tokens=request.max_tokens, temperature=request.temperature,
                                   stop=request.stop, response_format=request.response_format)
        except Exception as exc:
            raise _model_failure(exc) from None
        # llama-cpp-python names the model by its file path: answer with the served name, as OpenAI does
        return {**reply, "model": self.model_name}

    def stream(self, request: ChatRequest) -> Generator[dict[str, Any], None, None]:
        """Run one request on the model, yielding ``chat.completion.chunk`` dicts as it writes (request
        threads; the model serialises them). Failures are `BadRequest`, as in `complete`; closing the
        generator stops the model."""
        chat_stream = getattr(self.chat, "chat_stream", None)
        if chat_stream is None:
            yield from _as_chunks(self.complete(request), include_usage=request.include_usage)
            return
        usage = {"usage": None} if request.include_usage else {}  # as OpenAI: every chunk says it, the last has it
        try:
            chunks = chat_stream(request.messages, max_tokens=request.max_tokens, temperature=request.temperature,
                                 stop=request.stop, response_format=request.response_format,
                                 include_usage=request.include_usage)
            try:
                for chunk in chunks:
                    yield {**usage, **chunk, "model": self.model_name}
            finally:
                chunks.close()
        except Exception as exc:
            raise _model_failure(exc) from None

    def start(self) -> Self:
        """Bind (port 0: a free port, read back into ``port``) and serve on a daemon thread; raises `OSError` if the address is taken."""
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="llm-server",
                                        daemon=True)  # poll_interval: how soon stop() is noticed
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the socket and end the connections' threads; a generation in progress
        finishes on its own thread and its reply is still sent."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.release_readers()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m live_stt_kernel.local.llm_server``: load the model, serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m live_stt_kernel.local.llm_server", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0 picks a free port")
    parser.add_argument("--model", help="a GGUF file (default: the packaged Qwen2.5-Coder-1.5B-Instruct, verified)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: all cores but one)")
    parser.add_argument("--ctx", type=int, default=DEFAULT_CTX, help="context window in tokens")
    parser.add_argument("--watch-stdin", action="store_true", help="stop when stdin closes (the parent process died)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    try:
        token, token_note = server_token(TOKEN_ENV, "llm-token")
        chat = LocalChat(args.model, n_ctx=args.ctx, threads=args.threads)
        server = LocalLLMServer(chat, host=args.host, port=args.port, token=token).start()
    except (LiveSTTError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"{READY_PREFIX}{server.url}", flush=True)
    print(f"model: {chat.path} (loaded in {chat.load_seconds:.1f} s); auth: {token_note}", file=sys.stderr, flush=True)
    try:
        if args.watch_stdin:
            sys.stdin.read()  # returns at end of file: our parent, holding the other end, has gone
        else:
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
