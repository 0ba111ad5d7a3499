"""The bundled speech samples (espeak-ng, 16 kHz mono, made by scripts/make_sample.py):

``sample_wav()``      three sentences, 11 s: the demo and the quickstart
``coaching_sample()`` a short meeting update with fillers, hedges, a question and pauses: the coaching notebook
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLE_SENTENCES = (
    "Hello and welcome to this short demonstration.",
    "Each finished sentence is written down at once.",
    "The words appear on the screen while you are speaking.",
)


COACHING_SENTENCES = (
    "So, I think the main goal this quarter is, you know, making onboarding faster.",
    ("We basically lose most new users after the second page of the setup guide, which is kind of a problem, "
     "because the guide is the very first thing they see when they sign up and it is also the page our support "
     "team sends them to whenever they get stuck."),
    "Maybe we could try a short video instead.",
    "Does that make sense?",
    "Honestly, I guess the video would probably take about two weeks.",
    "Let's decide on Friday.",
)


def _data(name: str) -> Path:
    return Path(str(resources.files("live_stt_kernel") / "data" / name))


def sample_wav() -> Path:
    """The path of the demo sample (WAV, 11 s): the three `SAMPLE_SENTENCES`."""
    return _data("sample.wav")


def coaching_sample() -> Path:
    """The path of the coaching sample (FLAC): the `COACHING_SENTENCES`."""
    return _data("coaching_sample.flac")


__all__ = ["COACHING_SENTENCES", "SAMPLE_SENTENCES", "coaching_sample", "sample_wav"]
