#!/usr/bin/env python3
"""What a dropped connection costs: the real local server (Whisper tiny.en) is stopped in the middle of a
sentence and started again on the same port, while the audio keeps coming in real time.

Measured per round, against a round on the same audio without a drop (the baseline, same run):
- down time: server stopped -> `Reconnected` (the client's backoff plus the new server's start);
- catch-up: `Reconnected` -> the final of the sentence that was cut (resent from the last finished turn);
- resent audio (s) and the words: the transcript with a drop against the one without.

    .venv/bin/python benchmarks/bench_reconnect.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/speech.py: librivox(), wer()

from speech import librivox, wer  # noqa: E402

from live_stt_kernel import Reconnected, Session, Turn  # noqa: E402
from live_stt_kernel.audio.sources import QueueSource  # noqa: E402
from live_stt_kernel.local.recognizer import WhisperRecognizer  # noqa: E402
from live_stt_kernel.local.server import LocalServer  # noqa: E402
from live_stt_kernel.v3.reconnect import ReconnectPolicy  # noqa: E402

BLOCK = 800  # 50 ms at 16 kHz


def one_round(recognizer: WhisperRecognizer, audio: np.ndarray, cut_at_s: float | None) -> dict[str, Any]:
    """Stream ``audio`` in real time; with ``cut_at_s`` the server is stopped there for 1 s."""
    server = LocalServer(recognizer, token="bench").start()
    mic = QueueSource()
    marks: dict[str, float] = {}
    finals: list[tuple[float, float]] = []  # (arrival, end of the turn in the recording, s)
    session = Session(mic, url=server.url, api_key="bench", folder=None,
                      reconnect=ReconnectPolicy(first_delay_s=0.2, max_delay_s=1.0))

    def note(event: Any) -> None:
        if isinstance(event, Reconnected):
            marks["reconnected"] = time.monotonic()
            marks["resent_from_s"] = event.resume_at_ms / 1000
        elif isinstance(event, Turn) and event.end_of_turn and session.transcript.rows:
            finals.append((time.monotonic(), session.transcript.rows[-1].end or 0.0))

    session.on_event(note)
    session.start()
    started = time.monotonic()
    for i in range(0, len(audio), BLOCK):
        mic.push(audio[i : i + BLOCK].astype("<i2").tobytes())
        position = (i + BLOCK) / 16000
        if cut_at_s is not None and "stopped" not in marks and position >= cut_at_s:
            server.stop()
            marks["stopped"] = time.monotonic()
        if "stopped" in marks and "restarted" not in marks and time.monotonic() - marks["stopped"] >= 1.0:
            server = LocalServer(recognizer, token="bench", port=server.port).start()
            marks["restarted"] = time.monotonic()
        time.sleep(max(0.0, started + position - time.monotonic()))
    mic.close()
    session.wait(timeout=120)
    server.stop()
    result: dict[str, Any] = {"text": " ".join(session.df["text"]), "reconnects": session.transcript.reconnects}
    if cut_at_s is not None:
        resumed = [arrived for arrived, _ in finals if arrived > marks["reconnected"]]
        result.update(down_s=marks["reconnected"] - marks["stopped"],
                      catch_up_s=resumed[0] - marks["reconnected"] if resumed else None,
                      resent_s=cut_at_s + (marks["reconnected"] - marks["stopped"]) - marks["resent_from_s"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()
    utterances = librivox()
    pause = np.zeros(int(1.2 * 16000), dtype=np.int16)
    audio = np.concatenate([part for sample, _ in utterances for part in (sample, pause)])
    reference = " ".join(text for _, text in utterances)
    second_starts = (len(utterances[0][0]) + len(pause)) / 16000
    cut = second_starts + len(utterances[1][0]) / 16000 / 2  # the middle of the second sentence
    recognizer = WhisperRecognizer()
    rounds = []
    for _ in range(args.rounds):
        base = one_round(recognizer, audio, None)
        dropped = one_round(recognizer, audio, cut)
        rounds.append({"baseline_wer": wer(reference, base["text"]), "dropped_wer": wer(reference, dropped["text"]),
                       "same_words": base["text"] == dropped["text"], **{k: v for k, v in dropped.items() if k != "text"},
                       "baseline_text": base["text"], "dropped_text": dropped["text"]})
        print(json.dumps({k: v for k, v in rounds[-1].items() if not k.endswith("_text")}), flush=True)
    summary = {key: round(statistics.median(r[key] for r in rounds), 3)
               for key in ("down_s", "catch_up_s", "resent_s", "baseline_wer", "dropped_wer")}
    print("median:", json.dumps(summary))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"reconnect-results-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"audio_s": len(audio) / 16000, "cut_at_s": cut, "rounds": rounds, "median": summary}, indent=1))
    print("saved", path)


if __name__ == "__main__":
    main()
