"""The embedded default: one local server per process, started on demand, gone with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from live_stt_kernel.endpoint import choose_endpoint
from live_stt_kernel.errors import EmbeddedServerError
from live_stt_kernel.local.launcher import EmbeddedServer, embedded_endpoint, stop_embedded_server


def test_without_a_key_sessions_use_one_shared_local_server(monkeypatch):
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    try:
        endpoint = choose_endpoint()
        assert endpoint.kind == "embedded" and endpoint.url is None  # chosen without starting anything
        url, token = endpoint.resolve()
        assert url.startswith("ws://127.0.0.1:") and len(token) >= 24
        assert embedded_endpoint() == (url, token)  # reused, not started twice
    finally:
        stop_embedded_server()
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", "cloud-key")
    assert choose_endpoint().resolve() == ("wss://streaming.assemblyai.com/v3/ws", "cloud-key")


@pytest.mark.timeout(120)
def test_a_session_outlives_a_crash_of_the_embedded_server(monkeypatch, tmp_path):
    """The local server dies mid-session (killed); the session starts a new one and resends the audio
    since the last finished turn: both sentences are transcribed."""
    import numpy as np
    from helpers import wait_until
    from speech import librivox, wer

    from live_stt_kernel import Session
    from live_stt_kernel.audio.sources import QueueSource
    from live_stt_kernel.local import launcher
    from live_stt_kernel.v3.reconnect import ReconnectPolicy

    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    (first, first_text), (second, second_text) = librivox()[:2]
    pause = np.zeros(16000, dtype=np.int16).tobytes()
    mic = QueueSource()
    try:
        session = Session(mic, folder=tmp_path / "s", reconnect=ReconnectPolicy(first_delay_s=0.1)).start()
        mic.push(pause + first.astype("<i2").tobytes() + pause)
        wait_until(lambda: bool(session.transcript.rows), 60, what="the first sentence to be finished")
        crashed = launcher._servers["speech"]
        crashed.process.kill()  # a crash, as far as the session can tell
        mic.push(second.astype("<i2").tobytes() + pause)
        mic.close()
        session.wait(timeout=90)
        assert launcher._servers["speech"] is not crashed and launcher._servers["speech"].alive
    finally:
        stop_embedded_server()
    said = " ".join(session.df["text"])
    assert session.transcript.reconnects == 1 and len(session.session_ids) == 2
    assert wer(f"{first_text} {second_text}", said) <= 0.15, said


def test_a_server_that_cannot_start_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVE_STT_CACHE", str(tmp_path))
    with pytest.raises(EmbeddedServerError, match="model folder not found"):
        EmbeddedServer(model="./no-such-model", timeout=60)


def test_the_server_stops_when_its_parent_dies():
    parent = subprocess.Popen(
        [sys.executable, "-c", ("from live_stt_kernel.local.launcher import embedded_endpoint; embedded_endpoint();"
                                "from live_stt_kernel.local import launcher; "
                                "print(launcher._servers['speech'].process.pid, flush=True); import time; time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, env={k: v for k, v in os.environ.items() if k != "ASSEMBLYAI_API_KEY"},
    )
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # running
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{child}/stat") as stat:
            if stat.read().split()[2] == "Z":  # exited, waiting to be reaped by init
                return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the local server outlived its parent")
