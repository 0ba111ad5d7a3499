"""Regenerate the bundled samples (needs espeak-ng and sox): the sentences of live_stt_kernel.samples spoken
by espeak-ng, trimmed, and joined with pauses: sample.wav (one-second pauses) and coaching_sample.flac (pauses of
1.0-2.6 s, so the coaching report has long pauses between turns to find)."""

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from live_stt_kernel.samples import COACHING_SENTENCES, SAMPLE_SENTENCES, coaching_sample, sample_wav

RATE, LEAD_S, GAP_S = 16000, 0.5, 1.0


def speak(text: str, folder: Path) -> np.ndarray:
    raw, wav = folder / "raw.wav", folder / "out.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(wav)], check=True)
    audio, _ = sf.read(wav, dtype="float32")
    voiced = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[voiced[0] : voiced[-1] + 1]


def join(sentences: tuple[str, ...], gaps_s: list[float]) -> np.ndarray:
    pieces = [np.zeros(int(LEAD_S * RATE), np.float32)]
    with tempfile.TemporaryDirectory() as tmp:
        for sentence, gap in zip(sentences, gaps_s):
            pieces += [speak(sentence, Path(tmp)), np.zeros(int(gap * RATE), np.float32)]
    return np.concatenate(pieces)


def main() -> None:
    sf.write(sample_wav(), join(SAMPLE_SENTENCES, [GAP_S] * len(SAMPLE_SENTENCES)), RATE, subtype="PCM_16")
    gaps = [1.0, 2.6, 1.0, 1.2, 2.2, 1.0]
    sf.write(coaching_sample(), join(COACHING_SENTENCES, gaps), RATE, subtype="PCM_16", format="FLAC")


if __name__ == "__main__":
    main()
