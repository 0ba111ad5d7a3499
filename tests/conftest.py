"""Shared fixtures: generated audio files and real v3 replay servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from helpers import API_KEY, tone

from live_stt_kernel.v3.replay import ReplayServer, Script


@pytest.fixture
def make_wav(tmp_path: Path) -> Callable[..., Path]:
    """Write a tone to a sound file: ``make_wav(seconds, rate=16000, channels=1, subtype="PCM_16", name=...)``."""

    def make(seconds: float = 2.0, *, rate: int = 16000, channels: int = 1, subtype: str = "PCM_16",
             name: str = "audio.wav", freq: float = 440.0, fmt: str | None = None) -> Path:
        mono = tone(seconds, rate=rate, freq=freq)
        data = np.stack([mono] * channels, axis=1) if channels > 1 else mono
        path = tmp_path / name
        sf.write(path, data, rate, subtype=subtype, format=fmt)
        return path

    return make


@pytest.fixture
def gateway() -> Iterator[Callable[..., Any]]:
    """Start scripted LLM Gateway / OpenAI-compatible servers: ``gateway(*replies, respond=...)``."""
    from gateway_server import GatewayServer

    servers: list[GatewayServer] = []

    def start(*replies: Any, **options: Any) -> GatewayServer:
        server = GatewayServer(list(replies), **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def serve() -> Iterator[Callable[..., ReplayServer]]:
    """Start replay servers for a test: ``serve(script, **options)``; all are stopped afterwards."""
    servers: list[ReplayServer] = []

    def start(script: Script | Callable[..., Script], **options: Any) -> ReplayServer:
        options.setdefault("api_key", API_KEY)
        server = ReplayServer(script, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def virtual_mic() -> Iterator[Any]:
    """A PulseAudio virtual microphone (``virtual_mic.VirtualMic``) with a silent listener from the start:
    the sound server then reads its pipe all along, so a browser does not get seconds of stale silence in
    one burst when it starts recording (which Chromium drops, with whatever follows it closely)."""
    import subprocess

    from virtual_mic import VirtualMic

    mic = VirtualMic().start()
    listener = subprocess.Popen(["parec", "--device=virtmic", "--format=s16le", "--rate=16000", "--channels=1"],
                                env=mic.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield mic
    finally:
        listener.terminate()
        listener.wait(timeout=10)
        mic.stop()


@pytest.fixture(scope="session")
def whisper() -> Any:
    """The embedded speech model, loaded once per test run."""
    from live_stt_kernel.local.recognizer import WhisperRecognizer

    return WhisperRecognizer()


@pytest.fixture(scope="session")
def local_llm() -> Iterator[tuple[str, str]]:
    """The embedded LLM server with the real model, started once per test run through the launcher (as a
    kernel starts it): ``(base_url, token)`` with ``base_url`` like ``http://127.0.0.1:PORT/v1``."""
    from live_stt_kernel.local.launcher import embedded_llm_endpoint, stop_embedded_llm_server

    try:
        yield embedded_llm_endpoint()
    finally:
        stop_embedded_llm_server()
