"""Regenerate live_stt_kernel/data/sample.wav and sample.json (needs espeak-ng and sox).

Each sentence is spoken by espeak-ng, trimmed, and joined with pauses; word times are spread over
each sentence's voiced span in proportion to word length (good enough for a replayed script).
"""

import json
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SENTENCES = [
    "Welcome to live speech to text in Jupyter.",
    "Each finished turn lands in a data frame while you speak.",
    "Translations and a coaching report come at the end.",
]
RATE, LEAD_S, GAP_S = 16000, 0.5, 1.0
OUT = Path(__file__).resolve().parent.parent / "live_stt_kernel" / "data"


def speak(text: str, folder: Path) -> np.ndarray:
    raw, wav = folder / "raw.wav", folder / "out.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(wav)], check=True)
    audio, _ = sf.read(wav, dtype="float32")
    voiced = np.flatnonzero(np.abs(audio) > 0.01)
    return audio[voiced[0] : voiced[-1] + 1]


def main() -> None:
    pieces, turns, t = [np.zeros(int(LEAD_S * RATE), np.float32)], [], LEAD_S
    with tempfile.TemporaryDirectory() as tmp:
        for sentence in SENTENCES:
            audio = speak(sentence, Path(tmp))
            words = re.findall(r"[A-Za-z']+", sentence)
            total = sum(len(w) + 1 for w in words)
            span, cursor, timed = len(audio) / RATE, 0, []
            for w in words:
                start = t + span * cursor / total
                cursor += len(w) + 1
                timed.append([w.lower(), round(start * 1000), round((t + span * cursor / total) * 1000) - 20])
            turns.append({"formatted": sentence, "words": timed})
            pieces += [audio, np.zeros(int(GAP_S * RATE), np.float32)]
            t += span + GAP_S
    sf.write(OUT / "sample.wav", np.concatenate(pieces), RATE, subtype="PCM_16")
    (OUT / "sample.json").write_text(json.dumps({"turns": turns}, indent=1) + "\n")


if __name__ == "__main__":
    main()
