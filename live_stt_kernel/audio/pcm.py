"""PCM16 conversions, pure (numpy and soxr, no devices): float samples to PCM16, µ-law to PCM16,
streaming resampling to 16 kHz, and a block's level in dBFS.

Everything downstream of a source speaks 16 kHz mono PCM16 little-endian, the format v3 sends by
default and the embedded engine decodes.
"""

from __future__ import annotations

import math

import numpy as np
import soxr

SAMPLE_RATE = 16_000
BYTES_PER_SAMPLE = 2  # PCM16


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1) (mixed down over the last axis if 2-D) to PCM16 bytes; the inverse
    of libsndfile's int16 -> float scaling, so 16-bit input comes back bit-exact."""
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return bytes(np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2").tobytes())


class Resampler:
    """Streaming resampler of float mono samples to 16 kHz (soxr, high quality); a pass-through at 16 kHz."""

    def __init__(self, in_rate: int, out_rate: int = SAMPLE_RATE):
        self._stream = None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, mono: np.ndarray, *, last: bool = False) -> np.ndarray:
        """The next resampled samples; ``last=True`` flushes what the filter still holds."""
        if self._stream is None:
            return mono
        return np.asarray(self._stream.resample_chunk(np.ascontiguousarray(mono, dtype=np.float32), last=last))


def _mulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


_MULAW = _mulaw_table()  # G.711 µ-law byte -> PCM16 sample


def mulaw_to_pcm16(data: bytes) -> np.ndarray:
    """G.711 µ-law bytes as int16 samples."""
    return _MULAW[np.frombuffer(data, dtype=np.uint8)]


class ToPCM16:
    """Wire audio (PCM16 or µ-law at any rate from 8 to 48 kHz) as 16 kHz PCM16, block by block
    (a streaming resampler keeps its state between blocks)."""

    def __init__(self, *, sample_rate: int, encoding: str = "pcm_s16le"):
        self.mulaw = encoding == "pcm_mulaw"
        self._resampler = None if sample_rate == SAMPLE_RATE else soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="int16")

    def __call__(self, frame: bytes) -> bytes:
        """One wire frame as 16 kHz PCM16 bytes; when resampling, the filter holds a few samples back for the next frame."""
        samples = mulaw_to_pcm16(frame) if self.mulaw else np.frombuffer(frame, dtype="<i2")
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        return bytes(samples.astype("<i2").tobytes())


def dbfs(pcm: bytes) -> float:
    """The RMS level of PCM16 audio in dB below full scale (-inf for digital silence)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    if not len(samples):
        return float("-inf")
    rms = float(np.sqrt(np.mean(samples * samples))) / 32768.0
    return 20 * math.log10(rms) if rms > 0 else float("-inf")


__all__ = ["BYTES_PER_SAMPLE", "SAMPLE_RATE", "Resampler", "ToPCM16", "dbfs", "float_to_pcm16", "mulaw_to_pcm16"]
