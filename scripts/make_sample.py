"""Regenerate live_stt_kernel/data/sample.wav (needs espeak-ng and sox): the sentences of
live_stt_kernel.samples spoken by espeak-ng, trimmed, and joined with one-second pauses."""

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from live_stt_kernel.samples import SAMPLE_SENTENCES, sample_wav

RATE, LEAD_S, GAP_S = 16000, 0.5, 1.0


def speak(text: str, folder: Path) -> np.ndarray:
    raw, wav = folder / "raw.wav", folder / "out.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(wav)], check=True)
    audio, _ = sf.read(wav, dtype="float32")
    voiced = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[voiced[0] : voiced[-1] + 1]


def main() -> None:
    pieces = [np.zeros(int(LEAD_S * RATE), np.float32)]
    with tempfile.TemporaryDirectory() as tmp:
        for sentence in SAMPLE_SENTENCES:
            pieces += [speak(sentence, Path(tmp)), np.zeros(int(GAP_S * RATE), np.float32)]
    sf.write(sample_wav(), np.concatenate(pieces), RATE, subtype="PCM_16")


if __name__ == "__main__":
    main()
