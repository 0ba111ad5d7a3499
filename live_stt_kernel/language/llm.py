"""Language models behind one small interface: ``LLM.complete(messages) -> str``.

Backends (all HTTP, through one client with retries, backoff with jitter and a per-model rate limit):

``LLMGateway``        AssemblyAI's LLM Gateway (``/v1/chat/completions``, raw key header)
``OpenAICompatible``  any OpenAI-compatible server by base URL (Bearer key): OpenAI, Ollama, vLLM,
                      llama.cpp's server, and the embedded local model server
``LeMUR``             AssemblyAI's legacy LeMUR task endpoint: used if it still answers, and a clear
                      `LLMGone` pointing to the gateway when it does not

Messages are OpenAI-shaped dicts: ``{"role": "system" | "user" | "assistant", "content": str}``.
``complete`` may be called from any thread; each thread keeps its own HTTP connection pool.

Every request is bounded: ``timeout`` is a deadline for the whole request (connect, send, read the
whole answer; a timer shuts the connection down when it passes, so a server that dribbles a byte at a
time cannot stretch it), and an answer is read only up to `MAX_REPLY_BYTES`.
"""

from __future__ import annotations

import email.utils
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

import requests
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


# --- the HTTP shell ---------------------------------------------------------------------------


_sending = threading.local()  # .deadline: the `_Deadline` of the request this thread is sending, if any


class _Deadline:
    """A whole-request deadline, used as ``with`` around one request on the thread that sends it: when
    ``seconds`` pass, a timer shuts the request's connection down, which ends whatever connect, send or
    read is blocked on it. (requests' own timeout restarts with every byte received.)"""

    def __init__(self, seconds: float):
        self.expired = False
        self._connection: HTTPConnection | None = None
        self._done = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        _sending.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        _sending.deadline = None
        with self._lock:
            self._done = True
        self._timer.cancel()
        self._timer.join(timeout=1.0)  # at once: cancelled, or done cutting; the timer's thread ends with the request

    def watch(self, connection: HTTPConnection) -> None:
        """The connection carrying the request (called as it is sent); cut at once if the time is already up."""
        with self._lock:
            self._connection = connection
            late = self.expired and not self._done
        if late:
            _cut(connection)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            connection = self._connection
        if connection is not None:
            _cut(connection)


def _cut(connection: HTTPConnection) -> None:
    sock = connection.sock
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
        return f"<{type(self).__name__} {self.base_url} model={self.model!r} key={key}>"

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
                status, text = code, data.decode("utf-8", "replace")
                if code < 300:
                    try:
                        return json.loads(data)
                    except (ValueError, RecursionError):
                        kind, detail, hint = LLMUnavailable, "answered with something that is not JSON", ""
                elif code == 429:
                    wait = server_wait(headers, time.time())
                    kind, detail = LLMRateLimited, f"rate limited (HTTP 429): {error_message(text)}"
                    hint = "slow down, or raise the account's limit"
                elif code >= 500 or code == 408:
                    kind, detail, hint = LLMUnavailable, f"server error HTTP {code}: {error_message(text)}", ""
                else:
                    raise self._refusal(code, error_message(text))
            if wait is not None and wait > self.retry.max_wait_s:
                raise self._fail(kind, status, f"{detail} (the server asks to wait {wait:.0f} s; not retrying)", hint)
            if attempt == self.retry.attempts:
                tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise self._fail(kind, status, detail + tries, hint)
            time.sleep(wait if wait is not None else self.retry.delay(attempt, self._rng))
        raise AssertionError("unreachable: the policy allows at least one attempt")

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
            raise self._fail(LLMUnavailable, response.status_code,
                             f"answered with more than {MAX_REPLY_BYTES >> 20} MB from {self._where()}, which no chat reply needs; "
                             "stopped reading", "check that base_url points to a chat completions server")
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
        return f"{parsed.scheme}://{parsed.netloc}"


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
    "error_message",
    "server_wait",
]
