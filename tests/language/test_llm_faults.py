"""The HTTP client of the LLM backends against servers on 127.0.0.1 that misbehave on purpose: junk
``Retry-After``, answers dribbled a byte at a time, replies of many megabytes, JSON nested too deep.
Every failure is an error of the package's own tree, within the stated deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from gateway_server import Reply
from helpers import conversation

from live_stt_kernel import coach
from live_stt_kernel.errors import ConfigurationError, LLMRateLimited, LLMUnavailable
from live_stt_kernel.language.llm import MAX_REPLY_BYTES, OpenAICompatible, RetryPolicy, server_wait

HELLO = [{"role": "user", "content": "hello"}]
ANSWER = b'{"choices": [{"message": {"role": "assistant", "content": "hola, buenos dias"}}]}'
ONCE = RetryPolicy(attempts=1)


class Misbehaving:
    """A real HTTP server on 127.0.0.1 whose POST handler reads the request, then runs ``act(handler, server)``.
    ``sent`` counts what ``write`` got out; leaving the ``with`` wakes every act waiting on ``stopped``."""

    def __init__(self, act: Callable[[BaseHTTPRequestHandler, Misbehaving], None]):
        self.stopped = threading.Event()
        self.sent = 0
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests += 1
                try:
                    act(self, server)
                except OSError:  # the client cut the connection: what these tests want
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def write(self, handler: BaseHTTPRequestHandler, data: bytes) -> None:
        handler.wfile.write(data)
        self.sent += len(data)

    def __enter__(self) -> Misbehaving:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def head(length: int | None = None) -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Connection: close\r\n"
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{size}\r\n".encode()


def dribble(gap_s: float, *, whole: bool = False) -> Callable[[BaseHTTPRequestHandler, Misbehaving], None]:
    """Send the answer one byte every ``gap_s`` seconds: the body only, or (``whole``) the status line and headers too."""

    def act(handler: BaseHTTPRequestHandler, server: Misbehaving) -> None:
        data = head(len(ANSWER)) + ANSWER
        if not whole:
            server.write(handler, head(len(ANSWER)))
            data = ANSWER
        for byte in data:
            if server.stopped.wait(gap_s):
                return
            server.write(handler, bytes([byte]))

    return act


def flood(declared: bool) -> Callable[[BaseHTTPRequestHandler, Misbehaving], None]:
    """A 64 MB answer (a valid chat reply, if anyone read it all), with or without a Content-Length."""
    total = 64 << 20
    start, end = b'{"choices": [{"message": {"content": "', b'"}}]}'
    filler = total - len(start) - len(end)

    def act(handler: BaseHTTPRequestHandler, server: Misbehaving) -> None:
        server.write(handler, head(total if declared else None) + start)
        block = b"a" * (1 << 20)
        for _ in range(filler // len(block)):
            if server.stopped.is_set():
                return
            server.write(handler, block)
        server.write(handler, b"a" * (filler % len(block)) + end)

    return act


def timers() -> list[threading.Thread]:
    """The deadline watchers still running (each request's ends with it)."""
    return [t for t in threading.enumerate() if t.name == "live-stt-llm-deadline" or isinstance(t, threading.Timer)]


@pytest.fixture
def misbehaving() -> Iterator[Callable[..., Misbehaving]]:
    servers: list[Misbehaving] = []

    def start(act: Callable[[BaseHTTPRequestHandler, Misbehaving], None]) -> Misbehaving:
        servers.append(Misbehaving(act).__enter__())
        return servers[-1]

    yield start
    for server in servers:
        server.__exit__()


# --- Retry-After that is not a number or a date ------------------------------------------------


@pytest.mark.parametrize("junk", ["soon", "Tue, 32 Foo 2025 99:99:99 GMT", "-", "1 hour"])
def test_a_junk_retry_after_falls_back_to_the_backoff(gateway, junk):
    assert server_wait({"Retry-After": junk}, time.time()) is None
    assert server_wait({"Retry-After": junk, "X-RateLimit-Reset": "3"}, time.time()) == 3
    server = gateway(Reply(429, {"error": "slow down", "status": "error"}, {"Retry-After": junk}))
    llm = OpenAICompatible(server.url + "/v1", model="m", retry=RetryPolicy(attempts=2, base_s=0.05))
    assert llm.complete(HELLO) == "[?] hello"
    first, second = server.requests
    assert 0.02 <= second.at - first.at < 0.5  # the policy's own backoff, not a crash and not a long wait


def test_rate_limited_with_junk_retry_after_on_every_attempt_is_llm_rate_limited(gateway):
    server = gateway(*[Reply(429, {"error": {"message": "quota"}}, {"Retry-After": "soon"})] * 6)  # 3 for complete, 3 for coach
    llm = OpenAICompatible(server.url + "/v1", model="m", retry=RetryPolicy(attempts=3, base_s=0.01))
    with pytest.raises(LLMRateLimited, match=r"quota.*after 3 attempts") as info:
        llm.complete(HELLO)
    assert info.value.status == 429 and len(server.requests) == 3
    report = coach(conversation("so, um, we ship on friday"), llm=llm)  # coach() keeps its metrics, with a note
    assert report.analysis is None and "429" in report.note and report.metrics.filler_counts


# --- the deadline is for the whole request -------------------------------------------------------


@pytest.mark.parametrize("whole", [False, True], ids=["body", "head-and-body"])
def test_a_dribbling_server_is_cut_at_the_deadline(misbehaving, whole):
    server = misbehaving(dribble(0.05, whole=whole))  # 0.05 s a byte: ~4 s for the whole answer
    llm = OpenAICompatible(server.url, model="m", timeout=0.5, retry=ONCE)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match=r"no whole answer within 0.5 s from http://127.0.0.1") as info:
        llm.complete(HELLO)
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 0.5 + 0.5, elapsed  # before: each byte restarted a per-read timeout, ~4 s here
    assert info.value.status is None and server.sent < 20 + len(ANSWER)
    assert not timers()  # the deadline's timer ends with the request


def test_retries_of_a_dribbling_server_each_get_the_deadline(misbehaving):
    server = misbehaving(dribble(0.05))
    llm = OpenAICompatible(server.url, model="m", timeout=0.3, retry=RetryPolicy(attempts=2, base_s=0.01, max_s=0.01))
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match="after 2 attempts"):
        llm.complete(HELLO)
    assert time.monotonic() - started < 2 * 0.3 + 0.5 and server.requests == 2


def test_a_slow_but_whole_answer_within_the_deadline_is_read(misbehaving):
    server = misbehaving(dribble(0.002))  # ~0.2 s for the answer
    llm = OpenAICompatible(server.url, model="m", timeout=2.0, retry=ONCE)
    for _ in range(2):  # twice: the second request reuses the kept-alive connection
        assert llm.complete(HELLO) == "hola, buenos dias"
    assert not timers()


# --- the reply-size cap ---------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_a_64_mb_reply_is_refused_without_reading_it(misbehaving, declared):
    server = misbehaving(flood(declared))
    llm = OpenAICompatible(server.url, model="m", timeout=20, retry=RetryPolicy(attempts=3, base_s=0.01))
    with pytest.raises(LLMUnavailable, match=r"more than 8 MB .*stopped reading") as info:
        llm.complete(HELLO)
    assert info.value.status == 200
    assert server.requests == 1  # the same server would send the same: not retried
    assert server.sent < MAX_REPLY_BYTES + (16 << 20)  # stopped at the cap (plus what the socket buffers hold)


def test_a_reply_of_a_megabyte_is_still_fine(misbehaving):
    content = "a" * (1 << 20)

    def act(handler: BaseHTTPRequestHandler, server: Misbehaving) -> None:
        data = b'{"choices": [{"message": {"content": "%s"}}]}' % content.encode()
        server.write(handler, head(len(data)) + data)

    assert OpenAICompatible(misbehaving(act).url, model="m", retry=ONCE).complete(HELLO) == content


# --- answers that are not what they claim ------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 500])
def test_json_nested_too_deep_is_an_llm_error(misbehaving, status):
    data = b"[" * 200_000

    def act(handler: BaseHTTPRequestHandler, server: Misbehaving) -> None:
        server.write(handler, head(len(data)).replace(b"200 OK", b"%d X" % status) + data)

    with pytest.raises(LLMUnavailable, match="not JSON" if status == 200 else "server error HTTP 500"):
        OpenAICompatible(misbehaving(act).url, model="m", retry=ONCE).complete(HELLO)


@pytest.mark.parametrize("key", ["sk-caf\u00e9-123", "sk-\u20ac-123", "sk-123\r\nX-Injected: 1", "sk-123\x00"])
def test_a_key_no_http_header_can_carry_is_refused_up_front(key):
    with pytest.raises(ConfigurationError, match="HTTP header") as info:
        OpenAICompatible("http://127.0.0.1:9/v1", model="m", api_key=key)
    assert key not in str(info.value)


# --- streams -------------------------------------------------------------------------------------


def sse_head() -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"


def test_a_stream_dribbling_bytes_that_never_make_an_event_is_cut_at_the_timeout(misbehaving):
    def act(handler: BaseHTTPRequestHandler, server: Misbehaving) -> None:
        server.write(handler, sse_head())
        for byte in b'data: {"choices": [{"delta": {"content": "' + b"x" * 400:
            if server.stopped.wait(0.05):
                return
            server.write(handler, bytes([byte]))

    llm = OpenAICompatible(misbehaving(act).url, model="m", timeout=0.5, retry=ONCE)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable, match=r"nothing new for 0.5 s"):
        list(llm.stream(HELLO))
    assert 0.45 <= time.monotonic() - started < 1.5
    assert not timers()


def test_a_flood_of_events_is_cut_at_the_reply_cap(misbehaving):
    def act(handler: BaseHTTPRequestHandler, server: Misbehaving) -> None:
        server.write(handler, sse_head())
        block = b'data: {"choices": []}\n\n' * 40_000  # ~1 MB of events that say nothing
        for _ in range(64):
            if server.stopped.is_set():
                return
            server.write(handler, block)

    server = misbehaving(act)
    with pytest.raises(LLMUnavailable, match=r"more than 8 MB"):
        list(OpenAICompatible(server.url, model="m", timeout=20, retry=ONCE).stream(HELLO))
    # stopped at the cap, not after the 64 MB (plus what the socket buffers hold); wall time says nothing on a busy
    # machine (8 s once under load)
    assert server.sent < MAX_REPLY_BYTES + (16 << 20)


def test_junk_in_a_stream_is_an_llm_error(misbehaving):
    def act(handler: BaseHTTPRequestHandler, server: Misbehaving) -> None:
        server.write(handler, sse_head() + b"data: not json\n\n")

    with pytest.raises(LLMUnavailable, match="not JSON"):
        list(OpenAICompatible(misbehaving(act).url, model="m", retry=ONCE).stream(HELLO))
