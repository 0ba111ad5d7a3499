"""What the tests share, as plain functions and constants (fixtures live in conftest.py): generated
audio and what survived a conversion, scripted turns, a session against a test server, and polling
with a deadline."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import websocket

from live_stt_kernel import Session
from live_stt_kernel.events import Word
from live_stt_kernel.transcript import TurnRecord

ROOT = Path(__file__).resolve().parent.parent  # the project: notebooks/, test-artifacts/, the package
RATE = 16_000
API_KEY = "test-key-0123456789abcdef0123"  # what the replay servers of `conftest.serve` accept


def tone(seconds: float, *, rate: int = RATE, freq: float = 440.0, amplitude: float = 0.3) -> np.ndarray:
    """A float64 sine of ``freq`` Hz, ``seconds`` long, sampled at ``rate``."""
    t = np.arange(round(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def speechlike(rate: int, seconds: float, *, seed: int = 0) -> np.ndarray:
    """A deterministic, non-periodic test signal (tones with a slow envelope plus noise), so that
    matching a prefix of it cannot happen by chance."""
    rng = np.random.default_rng(seed)
    n = round(rate * seconds)
    t = np.arange(n) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t)
    signal = 0.25 * np.sin(2 * np.pi * 300 * t) + 0.15 * np.sin(2 * np.pi * 1170 * t + 1.0)
    noise = rng.normal(0.0, 0.05, n)
    # keep the noise inside the band every resampler keeps (< 7 kHz at 16 kHz)
    noise = np.convolve(noise, np.ones(4) / 4, mode="same")
    return np.clip(envelope * signal + noise, -0.99, 0.99)


def write_audio(path: Path, samples: np.ndarray, rate: int, *, subtype: str | None = None, format: str | None = None) -> Path:
    sf.write(str(path), samples, rate, subtype=subtype, format=format)
    return path


def pcm16(data: bytes) -> np.ndarray:
    """Little-endian PCM16 bytes as an int16 array."""
    assert len(data) % 2 == 0, f"PCM16 data must have an even length, got {len(data)} bytes"
    return np.frombuffer(data, dtype="<i2")


def dominant_frequency(samples: np.ndarray, rate: int = RATE) -> float:
    x = samples.astype(np.float64)
    x = x - x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def tone_amplitude(samples: np.ndarray, freq: float, rate: int = RATE) -> float:
    """Least-squares amplitude of a ``freq`` Hz component (phase-agnostic)."""
    t = np.arange(len(samples)) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, samples.astype(np.float64), rcond=None)
    return float(np.hypot(coef[0], coef[1]))


def sine_residual(samples: np.ndarray, freqs: list[float], rate: int = RATE) -> float:
    """Energy left after fitting sines at ``freqs`` (plus DC), relative to the signal's energy:
    near 0 for a clean tone, near 1 for anything else."""
    x = samples.astype(np.float64)
    t = np.arange(len(x)) / rate
    columns = [np.ones_like(t)]
    for f in freqs:
        columns += [np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)]
    basis = np.stack(columns, axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    residual = x - basis @ coef
    return float(np.sum(residual**2) / max(np.sum(x**2), 1e-12))


def wait_until(predicate: Callable[[], bool], timeout: float, *, interval: float = 0.02, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def session_for(server: Any, source: Any, tmp_path: Path, **options: Any) -> Session:
    """A session (not started) that streams ``source`` to a test ``server`` as fast as it takes it,
    saving under ``tmp_path / "session"``."""
    options.setdefault("api_key", API_KEY)
    options.setdefault("realtime", False)
    return Session(source, url=server.url, folder=tmp_path / "session", **options)


def timed_turn(index: int, text: str, *, start: float = 0.0, wpm: float = 150.0, pauses: dict[int, float] | None = None,
         words: str | None = None, origin_ms: int | None = None, speaker: str | None = None) -> TurnRecord:
    """A finished turn spoken at ``wpm``: words back to back, each 60/wpm seconds long, with
    ``pauses[k]`` seconds of silence before word k. ``words`` gives the timed words when they differ
    from the text; ``origin_ms`` puts them on a later session's clock (the turn's start stays)."""
    per_ms, pauses = 60000 / wpm, pauses or {}
    t = float(origin_ms if origin_ms is not None else start * 1000)
    timed = []
    for k, w in enumerate((words or text).split()):
        t += pauses.get(k, 0.0) * 1000
        timed.append(Word(text=w, start_ms=round(t), end_ms=round(t + per_ms)))
        t += per_ms
    span = (timed[-1].end_ms - timed[0].start_ms) / 1000
    return TurnRecord(session_id="s1", turn_order=index, turn_index=index, text=text, words=tuple(timed),
                      start=start, end=round(start + span, 3), confidence=0.9, speaker=speaker, language="en",
                      formatted=True, end_of_turn_latency=None)


def conversation(*texts: str, gap_s: float = 1.0, wpm: float = 150.0) -> list[TurnRecord]:
    """Turns one after another with ``gap_s`` of silence between them."""
    records, start = [], 0.0
    for i, text in enumerate(texts):
        records.append(timed_turn(i, text, start=start, wpm=wpm))
        start = records[-1].end + gap_s
    return records


def raw_session(server: Any, *, query: str = "sample_rate=16000", token: str | None = None) -> websocket.WebSocket:
    """A bare websocket to a v3 server's ``/v3/ws`` with its token (or ``token``) in the header."""
    header = {"Authorization": token if token is not None else server.token}
    return websocket.create_connection(f"{server.url}/v3/ws?{query}", header=header, timeout=60)


def read_all(ws: websocket.WebSocket) -> tuple[list[dict], int | None, str]:
    """Every text message until the server closes, and the close code and reason."""
    messages = []
    while True:
        opcode, frame = ws.recv_data_frame(control_frame=False)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(frame.data[:2], "big") if len(frame.data) >= 2 else None
            return messages, code, frame.data[2:].decode()
        messages.append(json.loads(frame.data))
