"""The bundled speech sample: three espeak-ng sentences, 11 s, 16 kHz mono (scripts/make_sample.py)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLE_SENTENCES = (
    "Hello and welcome to this short demonstration.",
    "Each finished sentence is written down at once.",
    "The words appear on the screen while you are speaking.",
)


def sample_wav() -> Path:
    return Path(str(resources.files("live_stt_kernel") / "data" / "sample.wav"))


__all__ = ["SAMPLE_SENTENCES", "sample_wav"]
