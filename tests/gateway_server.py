"""A scripted stand-in for AssemblyAI's LLM Gateway (and LeMUR, and any OpenAI-compatible server):
a real HTTP server on 127.0.0.1 that records every request and answers from a script.

``Reply`` items are used in order, one per request; when the script runs out, ``respond(body)``
writes the answer (by default it echoes the delimited turn back, tagged with the target language).
A request with ``"stream": true`` is answered with server-sent events, one word of that answer per
event (``Reply.gap_s`` apart; ``Reply.break_after`` events, then the connection is dropped), then
``data: [DONE]``, as OpenAI's servers do.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON; str -> as is; None -> a chat completion from `respond`
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    gap_s: float = 0.0  # a stream: seconds between events
    break_after: int | None = None  # a stream: drop the connection after this many events


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() on arrival


def echo_translation(body: dict[str, Any]) -> str:
    """``[Spanish] <the turn's text>``: which language was asked for, and what exactly was sent."""
    system = next((m["content"] for m in body.get("messages", []) if m["role"] == "system"), "")
    user = next((m["content"] for m in reversed(body.get("messages", [])) if m["role"] == "user"), "")
    language = re.search(r"into (\w+)", system)
    inner = re.search(r"<turn>\n(.*)\n</turn>", user, re.DOTALL)
    return f"[{language.group(1) if language else '?'}] {inner.group(1) if inner else user}"


def completion(content: str, model: str = "test-model") -> dict[str, Any]:
    return {
        "request_id": "req-1",
        "model": model,
        "choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
    }


class GatewayServer:
    def __init__(self, script: list[Reply] | None = None, respond: Callable[[dict[str, Any]], str] = echo_translation):
        self.script = list(script or [])
        self.respond = respond
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with gateway._lock:
                    gateway.requests.append(Request(self.path, dict(self.headers), body, time.monotonic()))
                    reply = gateway.script.pop(0) if gateway.script else Reply()
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.body is None and reply.status == 200 and isinstance(body, dict) and body.get("stream"):
                    self.stream(gateway.respond(body), body.get("model", ""), reply)
                    return
                if reply.body is None and reply.status == 200:
                    if self.path.endswith("/generate/task"):
                        payload: Any = {"request_id": "lemur-1", "response": f"LeMUR says: {body.get('prompt', '')[:20]}"}
                    else:
                        payload = completion(gateway.respond(body), body.get("model", ""))
                else:
                    payload = reply.body
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def stream(self, content: str, model: str, reply: Reply) -> None:
                words = re.findall(r"\s*\S+", content) or [""]
                events = [{"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
                           "choices": [{"index": 0, "delta": {"role": "assistant", "content": w}, "finish_reason": None}]}
                          for w in words]
                events.append({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model,
                               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i, event in enumerate([*events, "[DONE]"]):
                        if reply.break_after is not None and i >= reply.break_after:
                            self.close_connection = True
                            self.connection.shutdown(2)
                            return
                        if i and reply.gap_s:
                            time.sleep(reply.gap_s)
                        data = f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n".encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    self.close_connection = True  # the client went away (a stream it stopped reading)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> GatewayServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
