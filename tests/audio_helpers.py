"""Small helpers shared by the source and store tests: generate audio files, read PCM16 back,
and measure what survived a conversion. Plain functions, no fixtures (conftest.py is separate)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16_000


def tone(rate: int, seconds: float, freq: float, *, amplitude: float = 0.5) -> np.ndarray:
    """A float64 sine of ``freq`` Hz sampled at ``rate``."""
    t = np.arange(int(round(rate * seconds))) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def speechlike(rate: int, seconds: float, *, seed: int = 0) -> np.ndarray:
    """A deterministic, non-periodic test signal (tones with a slow envelope plus noise), so that
    matching a prefix of it cannot happen by chance."""
    rng = np.random.default_rng(seed)
    n = int(round(rate * seconds))
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
