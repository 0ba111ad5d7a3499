"""Language models behind one small interface: ``LLM.complete(messages) -> str``.

Backends (all HTTP, through one client with retries, backoff with jitter and a per-model rate limit):

``LLMGateway``        AssemblyAI's LLM Gateway (``/v1/chat/completions``, raw key header)
``OpenAICompatible``  any OpenAI-compatible server by base URL (Bearer key): OpenAI, Ollama, vLLM,
                      llama.cpp's server, and the embedded local model server
``LeMUR``             AssemblyAI's legacy LeMUR task endpoint: used if it still answers, and a clear
                      `LLMGone` pointing to the gateway when it does not

Messages are OpenAI-shaped dicts: ``{"role": "system" | "user" | "assistant", "content": str}``.
``complete`` may be called from any thread; each thread keeps its own HTTP connection pool.

Streaming is optional and not part of the protocol: the OpenAI-shaped backends (and so the gateway and
the local model) also have ``stream(messages) -> Iterator[str]``, the reply's pieces as they are
written (server-sent events); LeMUR has none. Callers look for it with ``getattr(llm, "stream", None)``
and fall back to ``complete``.

Every request is bounded: ``timeout`` is a deadline for the whole request (connect, send, read the
whole answer; a watcher shuts the connection down when it passes, so a server that dribbles a byte at a
time cannot stretch it), and an answer is read only up to `MAX_REPLY_BYTES`. A stream's ``timeout``
bounds the wait for each next event instead (lack of progress), since a long answer may keep coming.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse, urlunparse

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3 import poolmanager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..errors import ConfigurationError, LLMError, LLMGone, LLMRateLimited, LLMRefused, LLMUnavailable

Message = Mapping[str, str]

GATEWAY_URL = "https://llm-gateway.assemblyai.com/v1"
GATEWAY_MODEL = "gemini-2.5-flash-lite"
LEMUR_URL = "https://api.assemblyai.com"
LEMUR_MODEL = "anthropic/claude-sonnet-4-20250514"
GATEWAY_RPM = 30  # about 30 requests per minute per model on paid accounts
MAX_REPLY_BYTES = 8 << 20  # a chat answer is a few KB; megabytes more are a broken or hostile server
_CHUNK = 64 << 10


@runtime_checkable
class LLM(Protocol):
    """A chat model. ``backend`` and ``model`` name it in errors, caches and reports."""

    backend: str
    model: str

    def complete(self, messages: Sequence[Message], *, max_tokens: int = 1000, temperature: float = 0.2) -> str:
        """The assistant's reply; raises `LLMError` (with backend, model and status) when it cannot."""
        ...


# --- pure policy ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for 429, 5xx, timeouts and dropped connections.

    ``attempts`` counts the first try. A server's own wait (``Retry-After``, ``X-RateLimit-Reset``)
    replaces the computed delay; one longer than ``max_wait_s`` ends the retries at once.
    """

    attempts: int = 4
    base_s: float = 0.5
    max_s: float = 20.0
    jitter: float = 0.5  # the delay is scaled by a random factor in [1 - jitter, 1]
    max_wait_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigurationError(f"a RetryPolicy needs at least one attempt, not {self.attempts}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        raw = min(self.max_s, self.base_s * 2.0 ** (attempt - 1))
        return raw * (1 - self.jitter * rng.random())


def server_wait(headers: Mapping[str, str], now: float) -> float | None:
    """How long the server asked us to wait, from ``Retry-After`` (seconds or an HTTP date) or
    ``X-RateLimit-Reset`` (seconds from now, or a Unix time); None if it did not say, or said it in a
    form we cannot read (the caller then backs off as usual)."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, OverflowError):  # neither seconds nor a date ("soon"): not said
            pass
    reset = headers.get("X-RateLimit-Reset") or headers.get("x-ratelimit-reset")
    if reset:
        try:
            seconds = float(reset)
        except ValueError:
            return None
        return max(0.0, seconds - now) if seconds > 1e9 else max(0.0, seconds)
    return None


def error_message(body: str) -> str:
    """The human part of an error body, whichever of the gateway's three shapes it has:
    ``{"error": {"code", "message"}}``, ``{"code", "message", "metadata"}``, ``{"error": "...", "status": "error"}``
    (OpenAI servers use the first). Anything else: the start of the text."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to be an error we could read
        return " ".join(body.split())[:200] or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        if data.get("message"):
            detail = data.get("metadata")
            return f"{data['message']}" + (f" ({json.dumps(detail)[:160]})" if detail else "")
        if data.get("detail"):
            return str(data["detail"])
    return " ".join(body.split())[:200]


class RateLimiter:
    """At most ``per_minute`` requests per minute, spaced evenly; shared by every thread that
    calls the same backend and model (see `rate_limiter`)."""

    def __init__(self, per_minute: float, *, clock: Callable[[], float] = time.monotonic):
        self.interval = 60.0 / per_minute
        self.clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Claim the next slot; returns the seconds to wait before using it."""
        with self._lock:
            now = self.clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
            return slot - now

    def acquire(self) -> None:
        """Claim the next slot and sleep the calling thread until it comes."""
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def rate_limiter(key: str, per_minute: float) -> RateLimiter:
    """One limiter per (endpoint and model, rate) in this process."""
    with _limiters_lock:
        return _limiters.setdefault((key, per_minute), RateLimiter(per_minute))


class SSEDecoder:
    """Server-sent events, the pure part: feed bytes as they arrive, get each complete event's ``data``
    (several ``data:`` lines joined by newlines). Comments (``:``) and other fields are skipped; an event
    ends at a blank line; ``\r\n``, ``\r`` and ``\n`` all end a line. A line longer than ``max_line``
    bytes is a broken server: `ValueError`."""

    def __init__(self, *, max_line: int = 1 << 20):
        self.max_line = max_line
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        """The data of every event completed by ``chunk``."""
        buffer = self._buffer + chunk
        events: list[str] = []
        at = 0
        for cut in _LINE_END.finditer(buffer):
            if cut.group() == b"\r" and cut.end() == len(buffer):
                break  # a lone \r at the end may be half of \r\n
            line = buffer[at:cut.start()].decode("utf-8", "replace")
            at = cut.end()
            if not line:
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
                continue
            field, _, value = line.partition(":")
            if field == "data":
                self._data.append(value[1:] if value.startswith(" ") else value)
        self._buffer = buffer[at:]
        if len(self._buffer) > self.max_line:
            raise ValueError(f"a server-sent event line longer than {self.max_line} bytes")
        return events


_LINE_END = re.compile(rb"\r\n|\r|\n")


class _HTTPStatus(Exception):
    """A streamed request answered with a status that is not a success (inside the HTTP shell only)."""

    def __init__(self, code: int, headers: Mapping[str, str], body: bytes):
        super().__init__(code)
        self.code, self.headers, self.body = code, headers, body


# --- the HTTP shell ---------------------------------------------------------------------------


_sending = threading.local()  # .deadline: the `_Deadline` of the request this thread is sending, if any
_stopping = threading.local()  # .event: what stops the streams this thread reads (see `stopped_by`)
_STOP_POLL_S = 0.05  # how often a stream's watcher looks at its stop event


@contextmanager
def stopped_by(event: threading.Event) -> Iterator[None]:
    """Streams read by this thread inside the block stop soon (within ~50 ms) after ``event`` is set, from
    any thread: waiting for an answer, for the first token or for the next, their connection is cut and
    they raise `LLMUnavailable` ("stopped"), with no retry. (A generator cannot be closed from another
    thread while it runs; this is how a caller gives up on one that is blocked.)"""
    previous = getattr(_stopping, "event", None)
    _stopping.event = event
    try:
        yield
    finally:
        _stopping.event = previous


def _stop_event() -> threading.Event | None:
    event: threading.Event | None = getattr(_stopping, "event", None)
    return event


class _Deadline:
    """A request's deadline, used as ``with`` around one request on the thread that sends it: when
    ``seconds`` pass without `progress`, a watcher thread shuts the request's connection down, which ends
    whatever connect, send or read is blocked on it. (requests' own timeout restarts with every byte
    received.) `complete` never calls `progress`, so its deadline is for the whole request; a stream
    calls it at each event, so only a stall is cut, not a long answer that keeps coming."""

    def __init__(self, seconds: float, stop: threading.Event | None = None):
        self.seconds = seconds
        self.stop = stop  # set from another thread: cut as if the time were up (``stopped`` says which)
        self.expired = False
        self.stopped = False
        self._connection: HTTPConnection | None = None
        self._socket: socket.socket | None = None
        self._done = False
        self._until = 0.0
        self._changed = threading.Condition(threading.Lock())
        self._watcher = threading.Thread(target=self._watch, name="live-stt-llm-deadline", daemon=True)

    def __enter__(self) -> _Deadline:
        _sending.deadline = self
        self._until = time.monotonic() + self.seconds
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        _sending.deadline = None
        with self._changed:
            self._done = True
            self._changed.notify_all()
        self._watcher.join(timeout=1.0)  # at once: woken, or done cutting; the watcher ends with the request

    def progress(self) -> None:
        """Something arrived: the next ``seconds`` start now (the watcher sees it when it wakes)."""
        with self._changed:
            self._until = time.monotonic() + self.seconds

    def watch(self, connection: HTTPConnection) -> None:
        """The connection carrying the request (called as it is sent); cut at once if the time is already up.
        Its socket is kept too: http.client lets go of it when the answer says ``Connection: close``."""
        with self._changed:
            self._connection = connection
            if connection.sock is not None:
                self._socket = connection.sock
            late = self.expired and not self._done
        if late:
            _cut(connection.sock)

    def _watch(self) -> None:
        with self._changed:
            while not self._done:
                remaining = self._until - time.monotonic()
                if self.stop is not None and self.stop.is_set():
                    self.expired = self.stopped = True
                    break
                if remaining <= 0:
                    self.expired = True
                    break
                self._changed.wait(remaining if self.stop is None else min(remaining, _STOP_POLL_S))
            sock = None
            if self.expired and self._connection is not None:
                sock = self._connection.sock or self._socket
        _cut(sock)


def _cut(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked thread; the pool then discards the connection
        except OSError:
            pass


class _WatchedHTTPConnection(HTTPConnection):
    """urllib3's connection, shown to the sending thread's `_Deadline` as each request goes out."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline: _Deadline | None = getattr(_sending, "deadline", None)
        if deadline is not None:
            deadline.watch(self)
        super().request(*args, **kwargs)  # connects first if needed
        if deadline is not None:
            deadline.watch(self)  # the time ran out while connecting: cut now


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The same, over TLS."""


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def _watched(manager: poolmanager.PoolManager) -> poolmanager.PoolManager:
    if manager.pool_classes_by_scheme is poolmanager.pool_classes_by_scheme:  # the stock pools (not SOCKS)
        manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
    return manager


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter with connections a `_Deadline` can cut, direct or through an HTTP proxy."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watched(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        return _watched(super().proxy_manager_for(proxy, **proxy_kwargs))


def _read_capped(response: requests.Response, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to exceed ``limit`` bytes (declared or received)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    for chunk in response.iter_content(_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _host(netloc: str) -> str:
    return netloc.rpartition("@")[2]  # "user:token@host:port" -> "host:port"


def redacted_url(url: str) -> str:
    """``url`` fit to print: without the user and password (``user:token@``), the query (``?key=...``)
    and the fragment, any of which may carry a secret."""
    parsed = urlparse(url)
    return urlunparse((parsed.scheme, _host(parsed.netloc), parsed.path, "", "", ""))


class HTTPBackend:
    """POST JSON with retries; subclasses say where, with which body, and how to read the answer."""

    backend = "http"

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        requests_per_minute: float | None = None,
        seed: int | None = None,
    ):
        if api_key and not (api_key.isascii() and api_key.isprintable()):
            raise ConfigurationError("the API key has characters an HTTP header cannot carry (non-ASCII or control "
                                     "characters): check that it was copied whole and alone")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key or None
        self.timeout = timeout
        self.retry = retry
        self.limiter = rate_limiter(f"{self.backend} {self.base_url} {model}", requests_per_minute) if requests_per_minute else None
        self._rng = random.Random(seed)
        self._local = threading.local()

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"<{type(self).__name__} {redacted_url(self.base_url)} model={self.model!r} key={key}>"

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.mount("http://", _WatchedAdapter())
            session.mount("https://", _WatchedAdapter())
        return session

    def _fail(self, kind: type[LLMError], status: int | None, detail: str, hint: str = "") -> LLMError:
        text = f"{self.backend} model {self.model!r}: {detail}" + (f" — {hint}" if hint else "")
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return kind(text, backend=self.backend, model=self.model, status=status)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """The decoded JSON answer, after as many attempts as the policy allows. Refusals (4xx other
        than 408/429) and answers over `MAX_REPLY_BYTES` are raised at once; the rest are retried, then
        raised with the last reason."""
        url = self.base_url + path
        for attempt in range(1, self.retry.attempts + 1):
            if self.limiter is not None:
                self.limiter.acquire()
            wait: float | None = None
            kind: type[LLMError]
            status: int | None
            try:
                code, headers, data = self._exchange(url, body)
            except requests.Timeout:
                kind, status, detail, hint = LLMUnavailable, None, f"no whole answer within {self.timeout:g} s from {self._where()}", ""
            except requests.RequestException as exc:
                kind, status, detail, hint = LLMUnavailable, None, f"cannot reach {self._where()} ({type(exc).__name__})", ""
            else:
                status = code
                if code < 300:
                    try:
                        return json.loads(data)
                    except (ValueError, RecursionError):
                        kind, detail, hint = LLMUnavailable, "answered with something that is not JSON", ""
                else:
                    kind, detail, hint, wait = self._judge(code, headers, data)
            self._after_failure(attempt, kind, status, detail, hint, wait)
        raise AssertionError("unreachable: the policy allows at least one attempt")

    def post_stream(self, path: str, body: Mapping[str, Any]) -> Iterator[Any]:
        """The decoded JSON of each server-sent event (``data: {...}``) until ``data: [DONE]`` or the end.

        Retried as `post` is, as long as nothing was yielded yet; once the caller has seen part of the
        answer, a failure is raised at once (`LLMUnavailable`: the stream broke or stalled). ``timeout``
        bounds each wait for the next event (lack of progress), not the whole answer. A server that
        answers with one whole JSON body instead of a stream yields that body once."""
        url = self.base_url + path
        stop = _stop_event()
        for attempt in range(1, self.retry.attempts + 1):
            if self.limiter is not None:
                self.limiter.acquire()
            if stop is not None and stop.is_set():
                raise self._stopped()
            wait: float | None = None
            kind: type[LLMError]
            status: int | None = None
            seen = 0
            try:
                for event in self._stream_exchange(url, body):
                    seen += 1
                    yield event
                return
            except _HTTPStatus as answer:
                status = answer.code
                kind, detail, hint, wait = self._judge(answer.code, answer.headers, answer.body)
            except requests.Timeout:
                kind, detail, hint = LLMUnavailable, f"nothing new for {self.timeout:g} s from {self._where()}", ""
            except requests.RequestException as exc:
                verb = "lost" if seen else "cannot reach"
                kind, detail, hint = LLMUnavailable, f"{verb} {self._where()} ({type(exc).__name__})", ""
            if seen:
                raise self._fail(kind, status, f"the stream stopped after {seen} events: {detail}")
            self._after_failure(attempt, kind, status, detail, hint, wait, stop)

    def _judge(self, code: int, headers: Mapping[str, str], data: bytes) -> tuple[type[LLMError], str, str, float | None]:
        """An HTTP failure read: (kind, detail, hint, the server's wait) for the retry loop; a refusal is raised at once."""
        text = data.decode("utf-8", "replace")
        if code == 429:
            return (LLMRateLimited, f"rate limited (HTTP 429): {error_message(text)}",
                    "slow down, or raise the account's limit", server_wait(headers, time.time()))
        if code >= 500 or code == 408:
            return LLMUnavailable, f"server error HTTP {code}: {error_message(text)}", "", None
        raise self._refusal(code, error_message(text))

    def _after_failure(self, attempt: int, kind: type[LLMError], status: int | None, detail: str, hint: str,
                       wait: float | None, stop: threading.Event | None = None) -> None:
        """Raise if this was the last attempt (or the server asks for too long a wait), else sleep before
        the next (a ``stop`` event set meanwhile ends the sleep at once)."""
        if wait is not None and wait > self.retry.max_wait_s:
            raise self._fail(kind, status, f"{detail} (the server asks to wait {wait:.0f} s; not retrying)", hint)
        if attempt == self.retry.attempts:
            tries = f" (after {attempt} attempts)" if attempt > 1 else ""
            raise self._fail(kind, status, detail + tries, hint)
        pause = wait if wait is not None else self.retry.delay(attempt, self._rng)
        if stop is not None:
            stop.wait(pause)
        else:
            time.sleep(pause)

    def _stream_exchange(self, url: str, body: Mapping[str, Any]) -> Iterator[Any]:
        """One streamed request: the JSON of each event as it arrives. Raises `_HTTPStatus` for an
        answer that is not a success, `requests.Timeout` when ``timeout`` passes without an event,
        another `requests.RequestException` when the connection fails, `LLMUnavailable` for junk."""
        with _Deadline(self.timeout, _stop_event()) as deadline:
            try:
                with self._session().post(url, json=body, headers=self._headers(), timeout=self.timeout,
                                          stream=True) as response:
                    _sending.deadline = None  # sent: the connection is known; this thread may send others meanwhile
                    if response.status_code >= 300:
                        raise _HTTPStatus(response.status_code, response.headers,
                                          _read_capped(response, MAX_REPLY_BYTES) or b"")
                    if "text/event-stream" not in response.headers.get("Content-Type", ""):
                        yield self._whole_json(response)
                        return
                    decoder, size = SSEDecoder(), 0
                    while True:
                        try:
                            chunk = response.raw.read1(_CHUNK, decode_content=True)
                        except (urllib3.exceptions.HTTPError, OSError) as exc:
                            raise requests.ConnectionError(str(exc)) from None
                        if not chunk:
                            if deadline.stopped:
                                raise self._stopped()
                            if deadline.expired:  # the watcher cut it
                                raise requests.Timeout()
                            return  # the end without [DONE]: what came is the answer
                        size += len(chunk)
                        if size > MAX_REPLY_BYTES:
                            raise self._too_big(response)
                        try:
                            events = decoder.feed(chunk)
                        except ValueError as exc:
                            raise self._fail(LLMUnavailable, 200, f"a broken event stream: {exc}") from None
                        for payload in events:
                            if payload == "[DONE]":
                                return
                            deadline.progress()
                            try:
                                event = json.loads(payload)
                            except (ValueError, RecursionError):
                                raise self._fail(LLMUnavailable, 200, f"a stream event that is not JSON: {payload[:80]!r}") from None
                            yield event
            except requests.RequestException:
                if deadline.stopped:
                    raise self._stopped() from None
                if deadline.expired:
                    raise requests.Timeout() from None
                raise

    def _stopped(self) -> LLMError:
        return self._fail(LLMUnavailable, None, f"the stream from {self._where()} was stopped by its caller")

    def _whole_json(self, response: requests.Response) -> Any:
        data = _read_capped(response, MAX_REPLY_BYTES)
        if data is None:
            raise self._too_big(response)
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise self._fail(LLMUnavailable, response.status_code, "answered with something that is not JSON") from None

    def _too_big(self, response: requests.Response) -> LLMError:
        return self._fail(LLMUnavailable, response.status_code,
                          f"answered with more than {MAX_REPLY_BYTES >> 20} MB from {self._where()}, which no chat reply needs; "
                          "stopped reading", "check that base_url points to a chat completions server")

    def _exchange(self, url: str, body: Mapping[str, Any]) -> tuple[int, Mapping[str, str], bytes]:
        """One request under one deadline: status, headers and the whole body. Raises `requests.Timeout`
        when ``timeout`` passes first, another `requests.RequestException` when the connection fails,
        and `LLMUnavailable` (not worth retrying) for a body over `MAX_REPLY_BYTES`, left unread."""
        with _Deadline(self.timeout) as deadline:
            try:
                with self._session().post(url, json=body, headers=self._headers(), timeout=self.timeout, stream=True) as response:
                    data = _read_capped(response, MAX_REPLY_BYTES)
            except requests.RequestException:
                if deadline.expired:
                    raise requests.Timeout() from None
                raise
        if data is None:
            raise self._too_big(response)
        return response.status_code, response.headers, data

    def _refusal(self, status: int, message: str) -> LLMError:
        hints = {
            401: "the API key was refused: check it (it is never retried)",
            403: "this key has no access to this endpoint or model",
            404: f"no such endpoint or model at {self._where()}",
        }
        return self._fail(LLMRefused, status, f"refused with HTTP {status}: {message}", hints.get(status, ""))

    def _where(self) -> str:
        parsed = urlparse(self.base_url)
        return f"{parsed.scheme}://{_host(parsed.netloc)}"


class OpenAICompatible(HTTPBackend):
    """``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>``."""

    backend = "openai"

    def _headers(self) -> dict[str, str]:
        headers = super()._headers()
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def complete(self, messages: Sequence[Message], *, max_tokens: int = 1000, temperature: float = 0.2) -> str:
        """The reply's ``choices[0].message.content``, stripped; raises `LLMError` (with backend, model and status) when it cannot."""
        body = {"model": self.model, "messages": [dict(m) for m in messages], "max_tokens": max_tokens,
                "temperature": temperature}
        return self._content(self.post("/chat/completions", body))

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 1000, temperature: float = 0.2) -> Iterator[str]:
        """The reply as it is written: each piece of ``choices[0].delta.content`` as it arrives (joined,
        they are the reply, unstripped). Retried like `complete` until the first event arrives; after
        that a failure, or a wait longer than ``timeout`` for the next piece, raises `LLMUnavailable`.
        Stop iterating (or ``close()`` the iterator) to drop the connection, which ends the generation
        on servers that notice (the embedded one does). A server that ignores ``stream`` and answers
        whole yields its reply once."""
        body = {"model": self.model, "messages": [dict(m) for m in messages], "max_tokens": max_tokens,
                "temperature": temperature, "stream": True}
        for event in self.post_stream("/chat/completions", body):
            if not isinstance(event, dict):
                raise self._fail(LLMUnavailable, 200, f"a stream event that is not an object: {str(event)[:160]}")
            if event.get("error"):
                raise self._fail(LLMUnavailable, 200, f"the stream ended with an error: {error_message(json.dumps(event))}")
            choices = event.get("choices")
            if not choices:  # e.g. the usage event some servers send last
                continue
            try:
                choice = choices[0]
                part = choice["delta"].get("content") if "delta" in choice else choice["message"]["content"]
            except (KeyError, IndexError, TypeError, AttributeError):
                raise self._fail(LLMUnavailable, 200, f"a stream event without choices[0].delta: {str(event)[:160]}") from None
            if part:
                yield str(part)

    def _content(self, data: Any) -> str:
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise self._fail(LLMUnavailable, 200, f"an answer without choices[0].message.content: {str(data)[:160]}") from None
        return str(content or "").strip()


class LLMGateway(OpenAICompatible):
    """AssemblyAI's LLM Gateway: the OpenAI request shape, the raw key in ``Authorization``,
    about 30 requests a minute per model (the client keeps under that by default). For EU data
    residency pass ``base_url="https://llm-gateway.eu.assemblyai.com/v1"``."""

    backend = "gateway"

    def __init__(self, api_key: str, *, model: str = GATEWAY_MODEL, base_url: str | None = None,
                 requests_per_minute: float | None = GATEWAY_RPM, **options: Any):
        if not api_key:
            raise ConfigurationError("the LLM Gateway needs an AssemblyAI API key (set ASSEMBLYAI_API_KEY or pass api_key)")
        super().__init__(base_url or GATEWAY_URL, model=model, api_key=api_key,
                         requests_per_minute=requests_per_minute, **options)

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": self._api_key or ""}


class LeMUR(HTTPBackend):
    """The legacy LeMUR task endpoint (sunset 2026-03-31). The system message becomes the
    ``prompt`` and the rest the ``input_text``."""

    backend = "lemur"

    def __init__(self, api_key: str, *, model: str = LEMUR_MODEL, base_url: str = LEMUR_URL, **options: Any):
        super().__init__(base_url, model=model, api_key=api_key, **options)

    def _headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": self._api_key or ""}

    def _refusal(self, status: int, message: str) -> LLMError:
        if status in (404, 410) or "deprecat" in message.lower() or "sunset" in message.lower():
            return self._fail(LLMGone, status, f"LeMUR is retired (HTTP {status}: {message})",
                              "use the LLM Gateway instead: backend='gateway' (LLMGateway), same API key")
        return super()._refusal(status, message)

    def complete(self, messages: Sequence[Message], *, max_tokens: int = 1000, temperature: float = 0.2) -> str:
        """The task's ``response``, stripped; raises `LLMGone` once LeMUR is retired (HTTP 404 or 410), else `LLMError` like any backend."""
        system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system")
        rest = "\n\n".join(m["content"] for m in messages if m.get("role") != "system")
        body = {"prompt": system or rest, "input_text": rest if system else "", "final_model": self.model,
                "max_output_size": max_tokens, "temperature": temperature}
        data = self.post("/lemur/v3/generate/task", body)
        if not isinstance(data, dict) or "response" not in data:
            raise self._fail(LLMUnavailable, 200, f"an answer without 'response': {str(data)[:160]}")
        return str(data["response"]).strip()


__all__ = [
    "GATEWAY_MODEL",
    "GATEWAY_URL",
    "LLM",
    "LLMGateway",
    "LeMUR",
    "Message",
    "OpenAICompatible",
    "RateLimiter",
    "RetryPolicy",
    "SSEDecoder",
    "error_message",
    "redacted_url",
    "server_wait",
    "stopped_by",
]
