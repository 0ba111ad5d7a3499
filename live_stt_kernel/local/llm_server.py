"""An OpenAI-compatible chat server on loopback, backed by the embedded local LLM.

Any OpenAI client pointed at ``http://127.0.0.1:PORT/v1`` with the server's token as its API key works:

``POST /v1/chat/completions``  ``messages`` (required), ``max_tokens`` (512), ``temperature`` (0.2), ``stop``;
                               ``model`` is accepted and answered with the one model served; no streaming
``GET /v1/models``             the one model, in OpenAI's list shape
``GET /health``                ``{"status": "ok"}``, without a token

Errors come in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 401 for a missing or
wrong token (the token is never echoed), 400 for a request we cannot serve, 500 when the model fails.

Threads: the standard library's `ThreadingHTTPServer` gives each connection a thread; they parse and
validate in parallel and queue on the model's lock for the generation itself. `LocalLLMServer.start`
runs the accept loop on one more thread, so the caller's thread stays free.
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import json
import logging
import secrets
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

from ..errors import LiveSTTError, PromptTooLong
from .credentials import server_token
from .llm_model import DEFAULT_CTX, SERVED_MODEL, LocalChat

log = logging.getLogger(__name__)

READY_PREFIX = "live-stt llm server ready at "
TOKEN_ENV = "LIVE_STT_LLM_TOKEN"
MAX_BODY = 4 << 20  # a few MB of JSON is far beyond a 4096-token context; more is a mistake or abuse
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ChatModel(Protocol):
    """What the server needs from a model; `LocalChat` is the real one. Called from request threads."""

    def chat(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int, temperature: float,
             stop: str | list[str] | None) -> dict[str, Any]:
        """An OpenAI ``chat.completion`` dict for these messages; raises `PromptTooLong` when the prompt does not fit the context."""
        ...


class BadRequest(Exception):
    """Answer with this status and an OpenAI-shaped error."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """A validated ``/v1/chat/completions`` request (see `parse_chat_request`), roles normalised (``developer`` -> ``system``)."""

    messages: tuple[dict[str, str], ...]
    max_tokens: int = 512
    temperature: float = 0.2
    stop: str | list[str] | None = None


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


def parse_chat_request(body: bytes) -> ChatRequest:
    """Validate a ``/v1/chat/completions`` body (pure; raises `BadRequest`). Unknown fields are ignored."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "the body must be a JSON object")
    if data.get("stream"):
        raise BadRequest(400, "streaming not supported: send stream=false", param="stream")
    if data.get("n", 1) != 1:
        raise BadRequest(400, "only n=1 is supported", param="n")
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
    return ChatRequest(messages=_messages(data.get("messages")), max_tokens=max_tokens,
                       temperature=float(temperature), stop=stop)


def error_body(message: str, *, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    """One instance per request, on that connection's thread."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive: an OpenAI client reuses its connection for every turn
    timeout = 120  # an idle kept-alive connection gives its thread back after this long

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, payload: Mapping[str, Any], *, close: bool = False) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if close:  # the request body was not read: the connection cannot carry another request
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting: nobody to tell
            self.close_connection = True

    def _fail(self, error: BadRequest, *, close: bool = False) -> None:
        kind = "invalid_request_error" if error.status < 500 else "server_error"
        self._send(error.status, error_body(error.message, kind=kind, param=error.param, code=error.code), close=close)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        expected = self.server.app.token
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
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
            app = self.server.app
            self._send(200, {"object": "list", "data": [{"id": app.model_name, "object": "model",
                                                          "created": app.created, "owned_by": "live_stt_kernel"}]})
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
            status, reply = 200, self.server.app.complete(parse_chat_request(body))
        except BadRequest as exc:
            self._fail(exc)
        else:
            self._send(status, reply)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung client never keeps the process alive
    app: LocalLLMServer


class LocalLLMServer:
    """The chat server around a `ChatModel`: ``start()`` / ``stop()`` or ``with``; ``url`` ends in ``/v1``.

    ``token`` is the API key clients must send (a fresh random one when not given, read it from
    ``.token``). Port 0 picks a free port, known after ``start()``.
    """

    def __init__(self, chat: ChatModel, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 model_name: str = SERVED_MODEL):
        self.chat, self.host, self.port, self.model_name = chat, host, port, model_name
        self.token = token or secrets.token_urlsafe(24)
        self.created = int(time.time())
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<LocalLLMServer {self.url if self._httpd else 'stopped'}>"

    @property
    def url(self) -> str:
        """The base URL clients use, ``http://host:port/v1`` (the real port once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def complete(self, request: ChatRequest) -> dict[str, Any]:
        """Run one request on the model (request threads; the model serialises them)."""
        try:
            reply = self.chat.chat(request.messages, max_tokens=request.max_tokens,
                                   temperature=request.temperature, stop=request.stop)
        except PromptTooLong as exc:
            raise BadRequest(400, str(exc), param="messages", code="context_length_exceeded") from None
        except Exception as exc:
            log.exception("the local model failed")
            raise BadRequest(500, f"the local model failed: {type(exc).__name__}: {exc}") from None
        # llama-cpp-python names the model by its file path: answer with the served name, as OpenAI does
        return {**reply, "model": self.model_name}

    def start(self) -> Self:
        """Bind (port 0: a free port, read back into ``port``) and serve on a daemon thread; raises `OSError` if the address is taken."""
        self._httpd = _HTTPServer((self.host, self.port), _Handler)
        self._httpd.app = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="llm-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and close the socket; a generation in progress finishes on its own thread."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
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
