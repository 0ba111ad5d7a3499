"""``live-stt serve --tls`` as users of the official SDKs run it: wss:// and https:// with a self-signed certificate.

The server runs as the command line starts it (its own process, the real model); the Node SDK comes from npm
(only ``wss://`` URLs are accepted by its `StreamingTranscriber`), the Python SDK is installed with the tests (its
temporary-token call always uses ``https://``).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import soundfile as sf
from helpers import ROOT
from speech import espeak, normalise

from live_stt_kernel import Session
from live_stt_kernel.local.tls import self_signed, server_context

pytestmark = pytest.mark.timeout(900)  # the first test also waits for the server, and for npm: bounds of their own below

TOKEN = "tls-test-token-0123456789abcdef"
READY_S = 180.0  # a bound on the model's load, not an estimate (a few seconds at idle)
SENTENCE = "Good morning everyone. The lesson begins now."


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``live-stt serve --tls`` on a free port with its own cache folder: ``(wss://.../v3/ws, cert.pem)``."""
    cache = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "LIVE_STT_CACHE": str(cache), "LIVE_STT_SERVER_TOKEN": TOKEN}
    process = subprocess.Popen([sys.executable, "-m", "live_stt_kernel", "serve", "--tls", "--port", "0", "--watch-stdin"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None and process.stderr is not None
    threading.Thread(target=lambda: lines.put(process.stdout.readline() if process.stdout else ""), daemon=True).start()
    try:
        ready = lines.get(timeout=READY_S)
        assert ready.startswith("live-stt server ready at wss://127.0.0.1:"), (ready, process.stderr.readline())
        note = process.stderr.readline()
        cert = cache / "tls" / "cert.pem"
        assert f"TLS certificate: {cert}" in note and f"NODE_EXTRA_CA_CERTS={cert}" in note
        assert (cache / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
        yield ready.removeprefix("live-stt server ready at ").strip(), cert
    finally:
        if process.stdin:
            process.stdin.close()  # the server's cue to stop
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return espeak(tmp_path_factory.mktemp("speech") / "lesson.wav", SENTENCE)


@pytest.fixture(scope="module")
def node_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official Node SDK (npm ``assemblyai`` 4.x) installed into a temporary folder: its node_modules."""
    folder = tmp_path_factory.mktemp("node")
    npm = shutil.which("npm")
    assert npm, "npm is needed for the Node SDK test: bash scripts/setup.sh --dev installs it"
    subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(folder), "assemblyai@4"],
                   check=True, capture_output=True, timeout=600)
    return folder / "node_modules"


def _host(url: str) -> str:
    return url.removeprefix("wss://").removesuffix("/v3/ws")


def test_our_client_streams_over_wss_trusting_the_printed_certificate(tls_server, speech, tmp_path, monkeypatch):
    url, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # what the server's start-up note tells a Python client to do
    session = Session(speech, url=url, api_key=TOKEN, realtime=False, folder=tmp_path / "s").start().wait(timeout=120)
    text = normalise(" ".join(session.df["text"]))
    assert text.startswith("good morning everyone") and "lesson" in text, text  # words, not accuracy: tiny.en on espeak varies


def test_an_untrusted_certificate_is_refused_by_a_verifying_client(tls_server):
    url, _ = tls_server
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{_host(url)}/v3/token", headers={"Authorization": TOKEN}, timeout=30)


def test_the_python_sdk_makes_a_temporary_token_over_https_and_streams_with_it(tls_server, speech, monkeypatch):
    from assemblyai.streaming.v3 import StreamingClient, StreamingClientOptions, StreamingEvents, StreamingParameters

    url, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    maker = StreamingClient(StreamingClientOptions(api_key=TOKEN, api_host=_host(url)))  # no scheme: https:// and wss://
    token = maker.create_temporary_token(expires_in_seconds=60)
    assert token and token != TOKEN

    finals: list[str] = []
    errors: list[object] = []
    client = StreamingClient(StreamingClientOptions(token=token, api_host=_host(url), terminate_timeout=60.0))
    client.on(StreamingEvents.Turn, lambda _c, e: finals.append(e.transcript) if e.end_of_turn and e.turn_is_formatted else None)
    client.on(StreamingEvents.Error, lambda _c, e: errors.append(e))
    client.connect(StreamingParameters(sample_rate=16000, format_turns=True))
    pcm = sf.read(speech, dtype="int16")[0].tobytes()
    client.stream(pcm[i : i + 1600].ljust(1600, b"\0") for i in range(0, len(pcm), 1600))
    client.disconnect(terminate=True)
    assert errors == []
    text = normalise(" ".join(finals))
    assert text.startswith("good morning everyone") and "lesson" in text, text  # words, not accuracy: tiny.en on espeak varies


def test_the_node_sdk_streams_over_wss(tls_server, speech, node_sdk, tmp_path):
    url, cert = tls_server
    pcm = tmp_path / "lesson.pcm"
    pcm.write_bytes(sf.read(speech, dtype="int16")[0].tobytes())
    env = {**os.environ, "NODE_PATH": str(node_sdk), "NODE_EXTRA_CA_CERTS": str(cert)}
    done = subprocess.run(["node", str(ROOT / "tests" / "node" / "stream_turns.cjs"), url, TOKEN, str(pcm)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["type"] == "Begin" and events[-1]["type"] == "Closed"
    finals = [e["transcript"] for e in events if e["type"] == "Turn" and e["end_of_turn"] and e["turn_is_formatted"]]
    text = normalise(" ".join(finals))
    assert text.startswith("good morning everyone") and "lesson" in text, text  # words, not accuracy: tiny.en on espeak varies


def test_the_node_sdk_is_refused_without_trusting_the_certificate(tls_server, speech, node_sdk, tmp_path):
    url, _ = tls_server
    pcm = tmp_path / "lesson.pcm"
    pcm.write_bytes(b"\0" * 3200)
    env = {k: v for k, v in os.environ.items() if k != "NODE_EXTRA_CA_CERTS"} | {"NODE_PATH": str(node_sdk)}
    done = subprocess.run(["node", str(ROOT / "tests" / "node" / "stream_turns.cjs"), url, TOKEN, str(pcm)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1 and "failed:" in done.stderr and "certificate" in done.stderr.lower(), done.stderr


def test_the_certificate_is_made_once_and_kept(tmp_path):
    cert, key = self_signed(tmp_path)
    first = cert.read_bytes()
    assert self_signed(tmp_path) == (cert, key) and cert.read_bytes() == first  # reused, not remade
    context = server_context(cert, key)
    assert isinstance(context, ssl.SSLContext)
    key.unlink()
    self_signed(tmp_path)
    assert cert.read_bytes() != first  # a certificate without its key is remade


def test_a_certificate_beside_another_ones_key_is_remade_and_servers_starting_together_make_one_pair(tmp_path):
    _, other_key = self_signed(tmp_path / "other")
    _, key = self_signed(tmp_path / "tls")
    key.write_bytes(other_key.read_bytes())  # what two unsynchronised writers, or a crash between the writes, leave
    server_context(*self_signed(tmp_path / "tls"))  # loads: remade as a pair
    fresh = tmp_path / "together"
    with ThreadPoolExecutor(8) as pool:
        pairs = set(pool.map(lambda _: self_signed(fresh), range(8)))
    assert pairs == {(fresh / "cert.pem", fresh / "key.pem")}
    server_context(fresh / "cert.pem", fresh / "key.pem")
    assert not list(fresh.glob("*.partial")) and (fresh / "key.pem").stat().st_mode & 0o777 == 0o600
