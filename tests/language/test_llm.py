"""LLM backends against a real scripted HTTP server on 127.0.0.1: request shapes, the three error
shapes, retries with backoff, Retry-After / X-RateLimit-Reset, timeouts, rate limits, LeMUR's sunset."""

from __future__ import annotations

import itertools
import random
import socket
import threading
import time
from email.utils import formatdate

import pytest
from gateway_server import GatewayServer, Reply

from live_stt_kernel.errors import (
    ConfigurationError,
    LLMGone,
    LLMRateLimited,
    LLMRefused,
    LLMUnavailable,
)
from live_stt_kernel.language.backends import LocalModel, choose_backend, resolve_llm, resolve_translator
from live_stt_kernel.language.llm import (
    GATEWAY_URL,
    LeMUR,
    LLMGateway,
    OpenAICompatible,
    RateLimiter,
    RetryPolicy,
    error_message,
    redacted_url,
    server_wait,
    stopped_by,
)

KEY = "sk-secret-0123456789abcdef"
FAST = RetryPolicy(attempts=3, base_s=0.01, max_s=0.05)
HELLO = [{"role": "system", "content": "Translate into Spanish."}, {"role": "user", "content": "<turn>\nhello\n</turn>"}]


def gateway_client(server: GatewayServer, **options) -> LLMGateway:
    options.setdefault("retry", FAST)
    options.setdefault("requests_per_minute", None)
    return LLMGateway(KEY, base_url=server.url + "/v1", model="gemini-2.5-flash-lite", **options)


def test_gateway_request_shape_and_answer(gateway):
    server = gateway()
    assert gateway_client(server).complete(HELLO, max_tokens=50, temperature=0.0) == "[Spanish] hello"
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == KEY  # the raw key, no "Bearer"
    assert request.body == {"model": "gemini-2.5-flash-lite", "messages": HELLO, "max_tokens": 50, "temperature": 0.0}


def test_openai_compatible_sends_a_bearer_key(gateway):
    server = gateway()
    llm = OpenAICompatible(server.url + "/v1", model="llama3", api_key=KEY, retry=FAST)
    assert llm.complete(HELLO) == "[Spanish] hello"
    assert server.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    assert server.requests[0].path == "/v1/chat/completions"


@pytest.mark.parametrize("body, message", [
    ({"error": {"code": 400, "message": "model not supported"}}, "model not supported"),
    ({"code": 400, "message": "max_tokens too large", "metadata": {"limit": 8192}}, "max_tokens too large"),
    ({"error": "Invalid API key", "status": "error"}, "Invalid API key"),
])
def test_the_three_error_shapes_are_read_and_400_is_not_retried(gateway, body, message):
    server = gateway(Reply(400, body))
    with pytest.raises(LLMRefused) as info:
        gateway_client(server).complete(HELLO)
    assert message in str(info.value) and "gateway" in str(info.value) and "gemini-2.5-flash-lite" in str(info.value)
    assert info.value.status == 400 and info.value.backend == "gateway" and info.value.model == "gemini-2.5-flash-lite"
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_refused_keys_are_not_retried_and_never_echoed(gateway, status):
    server = gateway(Reply(status, {"error": f"key {KEY} is not valid", "status": "error"}))
    llm = gateway_client(server)
    with pytest.raises(LLMRefused) as info:
        llm.complete(HELLO)
    assert len(server.requests) == 1 and info.value.status == status
    assert KEY not in str(info.value) and KEY not in repr(llm) and "***" in str(info.value)
    assert ("refused" in str(info.value)) and ("key" in str(info.value))


def test_429_waits_as_long_as_retry_after_says(gateway):
    server = gateway(Reply(429, {"error": {"code": 429, "message": "slow down"}}, {"Retry-After": "1"}))
    assert gateway_client(server).complete(HELLO) == "[Spanish] hello"
    first, second = server.requests
    assert 0.95 <= second.at - first.at < 2.0


def test_429_waits_for_the_rate_limit_reset(gateway):
    server = gateway(Reply(429, {"error": "rate limited", "status": "error"}, {"X-RateLimit-Reset": "1", "X-RateLimit-Remaining": "0"}))
    assert gateway_client(server).complete(HELLO) == "[Spanish] hello"
    first, second = server.requests
    assert 0.95 <= second.at - first.at < 2.0


def test_a_wait_longer_than_allowed_fails_at_once(gateway):
    server = gateway(Reply(429, {"error": {"code": 429, "message": "quota"}}, {"Retry-After": "3600"}))
    with pytest.raises(LLMRateLimited, match="3600 s"):
        gateway_client(server).complete(HELLO)
    assert len(server.requests) == 1


def test_server_errors_are_retried_with_backoff_then_succeed(gateway):
    server = gateway(Reply(500, "Internal Server Error"), Reply(503, {"error": {"code": 503, "message": "overloaded"}}))
    assert gateway_client(server).complete(HELLO) == "[Spanish] hello"
    assert len(server.requests) == 3


def test_persistent_server_errors_end_with_a_clear_error(gateway):
    server = gateway(*[Reply(503, {"code": 503, "message": "overloaded"})] * 3)
    with pytest.raises(LLMUnavailable) as info:
        gateway_client(server).complete(HELLO)
    text = str(info.value)
    assert "overloaded" in text and "503" in text and "after 3 attempts" in text and "gemini-2.5-flash-lite" in text
    assert info.value.status == 503 and len(server.requests) == 3


def test_rate_limited_on_every_attempt(gateway):
    server = gateway(*[Reply(429, {"error": "rate limited", "status": "error"}, {"Retry-After": "0"})] * 3)
    with pytest.raises(LLMRateLimited) as info:
        gateway_client(server).complete(HELLO)
    assert info.value.status == 429 and len(server.requests) == 3


def test_a_slow_answer_times_out_and_is_retried(gateway):
    server = gateway(Reply(delay_s=1.0))
    started = time.monotonic()
    assert gateway_client(server, timeout=0.3).complete(HELLO) == "[Spanish] hello"
    assert len(server.requests) == 2 and time.monotonic() - started < 1.5


def test_an_unreachable_server_is_named(gateway):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAICompatible(f"http://127.0.0.1:{port}/v1", model="m", retry=FAST)
    with pytest.raises(LLMUnavailable, match=rf"cannot reach http://127.0.0.1:{port}.*after 3 attempts"):
        llm.complete(HELLO)


def test_an_answer_without_content_is_an_error(gateway):
    server = gateway(Reply(200, {"choices": []}))
    with pytest.raises(LLMUnavailable, match="choices"):
        gateway_client(server, retry=RetryPolicy(attempts=1)).complete(HELLO)


def test_client_side_rate_limit_spaces_requests_across_threads(gateway):
    server = gateway()
    clients = [gateway_client(server, requests_per_minute=600) for _ in range(2)]  # one limiter for one model
    threads = [threading.Thread(target=clients[i % 2].complete, args=(HELLO,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    times = sorted(r.at for r in server.requests)
    assert len(times) == 4 and min(b - a for a, b in itertools.pairwise(times)) >= 0.085


def test_lemur_works_while_it_answers(gateway):
    server = gateway()
    llm = LeMUR(KEY, base_url=server.url, retry=FAST)
    assert llm.complete(HELLO).startswith("LeMUR says: Translate into")
    (request,) = server.requests
    assert request.path == "/lemur/v3/generate/task" and request.headers["Authorization"] == KEY
    assert request.body["prompt"] == "Translate into Spanish." and request.body["input_text"] == "<turn>\nhello\n</turn>"
    assert request.body["final_model"].startswith("anthropic/")


@pytest.mark.parametrize("status", [404, 410])
def test_a_retired_lemur_points_to_the_gateway(gateway, status):
    server = gateway(Reply(status, {"error": "This endpoint has been deprecated"}))
    with pytest.raises(LLMGone) as info:
        LeMUR(KEY, base_url=server.url, retry=FAST).complete(HELLO)
    assert "LLM Gateway" in str(info.value) and "backend='gateway'" in str(info.value)
    assert isinstance(info.value, LLMRefused) and len(server.requests) == 1


# --- choosing a backend ------------------------------------------------------------------------


def test_the_assemblyai_key_never_goes_to_a_third_party_url(gateway, monkeypatch):
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = gateway()
    llm = resolve_llm(base_url=server.url + "/v1", model="m")
    assert isinstance(llm, OpenAICompatible) and llm.backend == "openai"
    llm.complete(HELLO)
    assert "Authorization" not in server.requests[0].headers


def test_backend_rules(monkeypatch):
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert choose_backend(None, base_url=None, api_key=None, default="local") == "local"
    assert choose_backend(None, base_url="https://llm-gateway.assemblyai.com/v1", api_key=None, default="local") == "gateway"
    assert choose_backend(None, base_url="http://localhost:11434/v1", api_key=None, default="local") == "openai"
    assert choose_backend(None, base_url=None, api_key="k", default="apertium") == "gateway"
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", KEY)
    assert isinstance(resolve_llm(), LLMGateway)
    assert resolve_translator().backend == "gateway"
    monkeypatch.delenv("ASSEMBLYAI_API_KEY")
    assert isinstance(resolve_llm(), LocalModel) and resolve_translator().backend == "apertium"
    with pytest.raises(ConfigurationError, match="unknown backend"):
        choose_backend("gpt", base_url=None, api_key=None, default="local")
    with pytest.raises(ConfigurationError, match="API key"):
        resolve_llm("gateway")
    with pytest.raises(ConfigurationError, match="base_url"):
        resolve_llm("openai")


def test_openai_base_url_serves_the_openai_backend_when_it_is_named(gateway, monkeypatch):
    server = gateway()
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")  # as the official openai client reads it
    monkeypatch.setenv("OPENAI_API_KEY", "sk-for-that-host")
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    named = resolve_llm("openai", model="m", retry=FAST)  # before: "needs base_url"
    translator = resolve_translator("openai", model="m", retry=FAST)
    assert [named.backend, translator.backend] == ["openai"] * 2
    assert named.complete(HELLO) == "[Spanish] hello"
    assert translator.translate("good morning", target="es") == "[Spanish] good morning"  # the fake echoes the turn
    assert len(server.requests) == 2
    for request in server.requests:
        assert request.path == "/v1/chat/completions" and request.headers["Authorization"] == "Bearer sk-for-that-host"


def test_openai_base_url_alone_moves_no_text_off_the_machine(gateway, monkeypatch):
    env_host, given_host = gateway(), gateway()
    monkeypatch.setenv("OPENAI_BASE_URL", env_host.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-for-that-host")
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    # no backend named, no key, no base_url: a panel's or a demo's translator and coach stay local
    assert isinstance(resolve_llm(), LocalModel) and resolve_translator().backend == "apertium"
    resolve_llm(base_url=given_host.url + "/v1", model="m", retry=FAST).complete(HELLO)  # an explicit base_url wins
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", KEY)
    gateway_llm = resolve_llm()  # the AssemblyAI key means the gateway, never the variable's host
    assert isinstance(gateway_llm, LLMGateway) and gateway_llm.base_url == GATEWAY_URL
    named = resolve_llm("openai", model="m", retry=FAST)
    named.complete(HELLO)
    assert "Authorization" in env_host.requests[0].headers and KEY not in str(env_host.requests[0].headers)
    assert len(env_host.requests) == 1 and len(given_host.requests) == 1


# --- pure policy -------------------------------------------------------------------------------


def test_server_wait_reads_every_form():
    now = 1_800_000_000.0
    assert server_wait({"Retry-After": "7"}, now) == 7
    assert server_wait({"Retry-After": formatdate(now + 30, usegmt=True)}, now) == pytest.approx(30, abs=1)
    assert server_wait({"X-RateLimit-Reset": "12"}, now) == 12
    assert server_wait({"X-RateLimit-Reset": str(int(now + 5))}, now) == 5
    assert server_wait({}, now) is None


def test_error_message_falls_back_to_text():
    assert error_message("<html>Bad   Gateway</html>") == "<html>Bad Gateway</html>"
    assert error_message("") == "(empty body)"
    assert error_message('{"detail": "Not Found"}') == "Not Found"


def test_backoff_grows_and_is_jittered():
    policy = RetryPolicy(base_s=1.0, max_s=8.0, jitter=0.5)
    rng = random.Random(1)
    delays = [[policy.delay(attempt, rng) for attempt in (1, 2, 3, 4, 5)] for _ in range(50)]
    for row in delays:
        for attempt, delay in enumerate(row, 1):
            ceiling = min(8.0, 2 ** (attempt - 1))
            assert ceiling / 2 <= delay <= ceiling
    assert len({round(row[0], 6) for row in delays}) > 40  # jitter: no thundering herd


def test_rate_limiter_reserves_evenly_spaced_slots():
    now = [100.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert [limiter.reserve() for _ in range(3)] == [0.0, 1.0, 2.0]
    now[0] = 110.0
    assert limiter.reserve() == 0.0


# --- streaming ---------------------------------------------------------------------------------


def test_a_stream_yields_the_reply_as_it_is_written(gateway):
    server = gateway()
    llm = gateway_client(server)
    parts = list(llm.stream(HELLO, max_tokens=50, temperature=0.0))
    assert parts == ["[Spanish]", " hello"] and "".join(parts) == llm.complete(HELLO)
    first = server.requests[0]
    assert first.headers["Authorization"] == KEY
    assert first.body == {"model": "gemini-2.5-flash-lite", "messages": HELLO, "max_tokens": 50, "temperature": 0.0,
                          "stream": True}


def test_a_stream_is_retried_before_its_first_event(gateway):
    server = gateway(Reply(503, {"error": {"message": "overloaded"}}), Reply(429, {"error": "slow"}, {"Retry-After": "0"}))
    assert "".join(gateway_client(server).stream(HELLO)) == "[Spanish] hello"
    assert len(server.requests) == 3


def test_a_refused_stream_is_not_retried(gateway):
    server = gateway(Reply(401, {"error": "Invalid API key", "status": "error"}))
    with pytest.raises(LLMRefused, match="key") as info:
        list(gateway_client(server).stream(HELLO))
    assert info.value.status == 401 and len(server.requests) == 1


def test_a_long_stream_that_keeps_coming_is_not_cut_by_the_timeout(gateway):
    words = " ".join(f"w{i}" for i in range(10))
    server = gateway(Reply(gap_s=0.1), respond=lambda body: words)  # ~1.1 s in all, an event every 0.1 s
    llm = OpenAICompatible(server.url + "/v1", model="m", timeout=0.5, retry=FAST)
    started = time.monotonic()
    assert "".join(llm.stream(HELLO)) == words
    assert time.monotonic() - started > 0.5  # longer than the timeout in all, never that long without progress


def test_a_stalled_stream_fails_after_the_timeout_without_a_retry(gateway):
    server = gateway(Reply(gap_s=2.0), respond=lambda body: "uno dos tres")
    llm = OpenAICompatible(server.url + "/v1", model="m", timeout=0.3, retry=FAST)
    seen, started = [], time.monotonic()
    with pytest.raises(LLMUnavailable, match=r"stopped after 1 events: nothing new for 0.3 s"):
        for part in llm.stream(HELLO):
            seen.append(part)
    assert seen == ["uno"] and time.monotonic() - started < 1.5 and len(server.requests) == 1


def stop_later(event: threading.Event, after_s: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(after_s), event.set()), daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("reply", [Reply(delay_s=5.0), Reply(gap_s=5.0)])  # no answer yet; one piece, then a stall
def test_a_stream_waiting_for_its_next_event_stops_soon_after_its_stop_event(gateway, reply):
    server = gateway(reply, respond=lambda body: "uno dos")
    llm = OpenAICompatible(server.url + "/v1", model="m", timeout=30, retry=FAST)
    stop, seen = threading.Event(), []
    stopper = stop_later(stop, 0.3)  # from another thread, as a live translation cancels its work
    started = time.monotonic()
    with stopped_by(stop), pytest.raises(LLMUnavailable, match="stopped by its caller"):
        for part in llm.stream(HELLO):
            seen.append(part)
    took = time.monotonic() - started
    stopper.join()
    assert 0.25 < took < 1.5, took  # not the 5 s the server takes, nor the 30 s timeout
    assert len(server.requests) == 1 and seen == ([] if reply.delay_s else ["uno"])  # never retried


def test_a_stream_stopped_before_it_starts_sends_nothing(gateway):
    server = gateway()
    stop = threading.Event()
    stop.set()
    with stopped_by(stop), pytest.raises(LLMUnavailable, match="stopped"):
        list(OpenAICompatible(server.url + "/v1", model="m", retry=FAST).stream(HELLO))
    assert server.requests == []
    assert "".join(OpenAICompatible(server.url + "/v1", model="m", retry=FAST).stream(HELLO)) == "[Spanish] hello"  # outside: as usual


def test_a_url_is_printed_without_its_secrets(gateway):
    assert redacted_url("https://user:tok-777@example.com:8443/v1?key=q-999#f") == "https://example.com:8443/v1"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAICompatible(f"http://user:tok-777@127.0.0.1:{port}/v1?key=q-999", model="m", retry=FAST)
    shown = repr(llm)
    assert f"http://127.0.0.1:{port}/v1" in shown and "tok-777" not in shown and "q-999" not in shown and "user" not in shown
    with pytest.raises(LLMUnavailable, match=rf"cannot reach http://127.0.0.1:{port}\b") as info:
        llm.complete(HELLO)
    assert "tok-777" not in str(info.value) and "q-999" not in str(info.value) and "user" not in str(info.value)


def test_a_stream_cut_mid_way_is_an_llm_error(gateway):
    server = gateway(Reply(break_after=2), respond=lambda body: "uno dos tres cuatro")
    llm = OpenAICompatible(server.url + "/v1", model="m", retry=FAST)
    seen = []
    with pytest.raises(LLMUnavailable) as info:
        for part in llm.stream(HELLO):
            seen.append(part)
    assert seen == ["uno", " dos"] or seen == ["uno", " dos", " tres"]  # the end, not the cut, may be seen first
    assert len(server.requests) == 1 and "stream" in str(info.value)


def test_a_server_that_answers_whole_is_read_as_one_piece(gateway):
    from gateway_server import completion

    server = gateway(Reply(200, completion("hola entera")))
    assert list(gateway_client(server).stream(HELLO)) == ["hola entera"]


def test_lemur_cannot_stream_and_says_so_by_having_no_stream():
    assert getattr(LeMUR(KEY, base_url="http://127.0.0.1:9"), "stream", None) is None
    assert callable(getattr(LLMGateway(KEY), "stream", None)) and callable(getattr(LocalModel(), "stream", None))


@pytest.mark.parametrize("chunks, events", [
    ([b"data: a\n\n"], ["a"]),
    ([b"da", b"ta: {\"x\"", b": 1}\n", b"\n"], ['{"x": 1}']),
    ([b"data: one\r\ndata: two\r\n\r\n"], ["one\ntwo"]),
    ([b": keep-alive\n\n", b"event: x\nid: 3\ndata:no-space\n\n"], ["no-space"]),
    ([b"data: a\r", b"\n\r\ndata: b\n\n", b"data: [DONE]\n\n"], ["a", "b", "[DONE]"]),
    ([b"data: unfinished\n"], []),
])
def test_the_event_stream_decoder(chunks, events):
    from live_stt_kernel.language.llm import SSEDecoder

    decoder = SSEDecoder()
    assert [e for chunk in chunks for e in decoder.feed(chunk)] == events


def test_the_event_stream_decoder_bounds_a_line():
    from live_stt_kernel.language.llm import SSEDecoder

    with pytest.raises(ValueError, match="longer than"):
        SSEDecoder(max_line=100).feed(b"data: " + b"x" * 200)
