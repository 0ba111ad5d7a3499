"""Real speech for the embedded server's tests: Debian's LibriVox recordings and espeak-ng."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def librivox() -> list[tuple[np.ndarray, str]]:
    """The five utterances (16 kHz int16) with their verbatim transcripts."""
    lines = (LIBRIVOX / "transcription").read_text().splitlines()
    out = []
    for line in lines:
        match = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
        assert match, line
        audio, rate = sf.read(LIBRIVOX / f"{match.group(2)}.wav", dtype="int16")
        assert rate == 16000
        out.append((audio, match.group(1)))
    return out


def conversation(path: Path, utterances: list[tuple[np.ndarray, str]], gap_s: float = 1.2) -> str:
    """Write the utterances with pauses between them; return the reference text."""
    silence = np.zeros(int(gap_s * 16000), dtype=np.int16)
    parts = [silence]
    for audio, _ in utterances:
        parts += [audio, silence]
    sf.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
    return " ".join(text for _, text in utterances)


def espeak(path: Path, text: str) -> Path:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True, timeout=60)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path), "pad", "0.5", "1.0"], check=True, timeout=60)
    return path


def reading(path: Path, sentences: list[str], *, comma_pause_s: float = 0.35, stop_pause_s: float = 1.0) -> str:
    """A reader's pace: each clause spoken by espeak-ng on its own, joined by ``comma_pause_s`` of silence at a comma
    and ``stop_pause_s`` after a sentence (Whisper ends each such clause, decoded alone, with a full stop). Returns
    the reference text."""
    parts = [np.zeros(8000, dtype=np.int16)]
    for sentence in sentences:
        clauses = [c.strip() for c in sentence.split(",")]
        for i, clause in enumerate(clauses):
            spoken = espeak(path.with_suffix(f".{len(parts)}.wav"), clause)
            audio, _ = sf.read(spoken, dtype="int16")
            loud = np.flatnonzero(np.abs(audio) > 300)
            pause = comma_pause_s if i < len(clauses) - 1 else stop_pause_s
            parts += [audio[loud[0] : loud[-1] + 1], np.zeros(int(pause * 16000), dtype=np.int16)]
    sf.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
    return " ".join(sentences)


_NUMBERS = {"mr": "mister", "mrs": "missus"}


def normalise(text: str) -> str:
    words = re.sub(r"[^a-z' ]+", " ", text.lower().replace("-", " ")).split()
    return " ".join(_NUMBERS.get(w, w) for w in words)


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalise(reference), normalise(hypothesis))
