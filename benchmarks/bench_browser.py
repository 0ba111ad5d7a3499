#!/usr/bin/env python3
"""The notebook experience in a real browser: JupyterLab in headless Debian Chromium, the embedded default
(the kernel starts its local v3 server with the offline Whisper model; Spanish by Apertium), the live panel.

Two runs, each in a fresh JupyterLab:

1. **file**: LibriVox speech streamed from a file in real time. For every live line and finished turn that
   the page shows, the time from the kernel sending the audio of its last word to the page drawing it
   (``requestAnimationFrame`` after the DOM change), split into server (sent -> the event reaches the kernel)
   and panel (event in the kernel -> drawn). The panel part is what the widget path adds; the server part is
   the baseline a script without a panel would see.
2. **mic**: the same speech, repeated for about ``--mic-seconds``, played into a PulseAudio virtual microphone
   that Chromium records through the browser-microphone widget (binary comm). Chunks numbered by the page,
   gaps, late/duplicate/reordered chunks, the recording's correlation with what was played, and audio-to-screen
   latency from the moment the virtual microphone played the last word.

    .venv/bin/python benchmarks/bench_browser.py [--mic-seconds 120] [--out benchmarks/out]

Needs what `bash scripts/setup.sh --dev` installs (chromium, pulseaudio, jupyterlab, playwright).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the browser set-up of the tests: lab.py, audio.py, virtual_mic.py

from browser.audio import compare  # noqa: E402
from browser.lab import JupyterLab, chromium, open_notebook, run_all_cells, run_cell, write_notebook  # noqa: E402
from helpers import wait_until  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402
from speech import librivox  # noqa: E402
from virtual_mic import VirtualMic  # noqa: E402

# kernel side: for each Turn, what the panel will show and when its last word's audio was sent (epoch s)
LOGGER = """
import json, time
from live_stt_kernel.events import Turn

LOG = []

def note(event):
    if not (isinstance(event, Turn) and event.words):
        return
    end_ms = max(w.end_ms for w in event.words)
    sent = session.client.connection.send_log.sent_at(end_ms)
    now_m, now_w = time.monotonic(), time.time()
    shown = session.transcript.rows[-1].text if event.end_of_turn else session.partial
    LOG.append({"final": event.end_of_turn, "shown": shown, "end_ms": end_ms,
                "sent": None if sent is None else now_w - (now_m - sent), "received": now_w - (now_m - event.received_at)})

session.on_event(note)
"""
FILE_CELL = """
import live_stt_kernel as lsk
session = lsk.start({source!r}, translate_to="es", folder={folder!r})
"""
MIC_CELL = """
import live_stt_kernel as lsk
from live_stt_kernel.widgets import BrowserMic
mic = BrowserMic()
mic
"""
MIC_SESSION_CELL = """
session = lsk.start(mic.source, translate_to="es", folder={folder!r})
"""
SAVE_CELL = """
session.wait(timeout=900)
stats = {{name: getattr(mic, name) for name in ("chunks", "gaps", "late", "duplicates", "reordered", "invalid",
                                              "seconds", "lag_ms", "device_rate")}} if "mic" in globals() else {{}}
from pathlib import Path
Path({log!r}).write_text(json.dumps({{"events": LOG, "mic": stats}}))
"""
# page side: when each live line / turn text was drawn (epoch ms, one animation frame after the DOM change)
OBSERVER = """() => {
  window.__drawn = [];
  const stamp = (kind, text) => requestAnimationFrame(() =>
    window.__drawn.push({ kind, text, at: performance.timeOrigin + performance.now() }));
  const partial = document.querySelector('.lsk-partial');
  new MutationObserver(() => stamp('partial', partial.textContent.trim()))
    .observe(partial, { subtree: true, childList: true, characterData: true });
  const turns = document.querySelector('.lsk-turns');
  let rows = 0;  // rows already stamped (the same sentence may be said twice)
  new MutationObserver(() => {
    const all = turns.querySelectorAll('.lsk-turn');
    for (; rows < all.length; rows++) stamp('final', all[rows].querySelector('.lsk-text').textContent.trim());
  }).observe(turns, { subtree: true, childList: true, characterData: true });
}"""


def speech(seconds: float) -> np.ndarray:
    """LibriVox utterances with 1.2 s pauses, repeated to at least ``seconds``."""
    pause = np.zeros(int(1.2 * 16000), dtype=np.int16)
    one = np.concatenate([part for audio, _ in librivox() for part in (audio, pause)])
    return np.tile(one, max(1, int(np.ceil(seconds * 16000 / len(one)))))


def latencies(events: list[dict[str, Any]], drawn: list[dict[str, Any]], spoken_at: Any = None) -> dict[str, Any]:
    """Match each drawn text to the latest kernel event before it that made it (the speech repeats);
    ms percentiles per kind and part."""
    parts: dict[str, list[float]] = {}
    unmatched = 0
    for item in drawn:
        final = item["kind"] == "final"
        made = [e for e in events if e["final"] == final and e["shown"] == item["text"] and e["received"] <= item["at"] / 1000]
        event = made[-1] if made else None
        if not item["text"] or event is None or event["sent"] is None:
            unmatched += bool(item["text"])
            continue
        kind = "final" if final else "partial"
        drawn_s = item["at"] / 1000
        parts.setdefault(f"{kind}: sent -> drawn", []).append(drawn_s - event["sent"])
        parts.setdefault(f"{kind}: sent -> kernel (server)", []).append(event["received"] - event["sent"])
        parts.setdefault(f"{kind}: kernel -> drawn (panel)", []).append(drawn_s - event["received"])
        if spoken_at is not None:
            parts.setdefault(f"{kind}: spoken -> drawn", []).append(drawn_s - spoken_at(event["end_ms"]))
    return {"unmatched": unmatched, **{name: summary(values) for name, values in parts.items()}}


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000 * s for s in seconds)
    return {"n": len(ms), "p50": round(statistics.median(ms), 1), "p95": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1),
            "max": round(ms[-1], 1)}


def file_run(root: Path, audio: np.ndarray) -> dict[str, Any]:
    source = root / "speech.wav"
    sf.write(source, audio, 16000, subtype="PCM_16")
    log = root / "log.json"
    write_notebook(root / "file.ipynb", FILE_CELL.format(source=str(source), folder=str(root / "session")) + LOGGER,
                   SAVE_CELL.format(log=str(log)))
    with JupyterLab(root) as lab, sync_playwright() as p:
        browser = chromium(p, lab.env)
        try:
            page = open_notebook(lab, browser, "file.ipynb")
            run_all_cells(page)
            page.wait_for_selector(".lsk-partial", timeout=90_000)
            page.evaluate(OBSERVER)
            wait_until(log.exists, len(audio) / 16000 + 90, what="the session to end")
            drawn = page.evaluate("() => window.__drawn")
        finally:
            browser.close()
    saved = json.loads(log.read_text())
    return {"audio_s": round(len(audio) / 16000, 1), **latencies(saved["events"], drawn)}


def mic_run(root: Path, audio: np.ndarray) -> dict[str, Any]:
    log = root / "log.json"
    write_notebook(root / "mic.ipynb", MIC_CELL, MIC_SESSION_CELL.format(folder=str(root / "session")) + LOGGER,
                   SAVE_CELL.format(log=str(log)))
    mic = VirtualMic().start()
    listener = subprocess.Popen(["parec", "--device=virtmic", "--format=s16le", "--rate=16000", "--channels=1"],
                                env=mic.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with JupyterLab(root) as lab, sync_playwright() as p:
            browser = chromium(p, mic.env)
            try:
                page = open_notebook(lab, browser, "mic.ipynb")
                run_cell(page, 0)
                button = page.locator(".live-stt-mic-button")
                button.wait_for(timeout=60_000)
                page.wait_for_timeout(500)
                button.click()
                page.wait_for_selector(".live-stt-mic[data-state=recording]", timeout=15_000)
                run_cell(page, 1, "notebook:run-all-below")
                page.wait_for_selector(".lsk-partial", timeout=90_000)
                page.evaluate(OBSERVER)
                time.sleep(1.0)
                played_at = time.time()
                mic.play(audio.astype("<i2").tobytes())
                time.sleep(len(audio) / 16000 + 2.0)
                button.click()  # Stop: the session ends, the last cell saves the log
                wait_until(log.exists, 60, what="the session to end")
                drawn = page.evaluate("() => window.__drawn")
            finally:
                browser.close()
    finally:
        listener.terminate()
        listener.wait(timeout=10)
        mic.stop()
    saved = json.loads(log.read_text())
    recorded, _ = sf.read(root / "session" / "audio.wav", dtype="int16")
    match = compare(recorded, audio)

    def spoken_at(end_ms: float) -> float:  # the recording's time -> when the virtual microphone played it
        return played_at + end_ms / 1000 - match.offset_s

    stats = saved["mic"]
    lost = stats["gaps"] / max(1, stats["chunks"])
    return {"audio_s": round(len(audio) / 16000, 1), "mic": stats, "chunk_loss": lost, **match.summary(),
            **latencies(saved["events"], drawn, spoken_at)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file-seconds", type=float, default=50.0)
    parser.add_argument("--mic-seconds", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "file").mkdir()
        (Path(tmp) / "mic").mkdir()
        results["file"] = file_run(Path(tmp) / "file", speech(args.file_seconds))
        print(json.dumps(results["file"], indent=1), flush=True)
        results["mic"] = mic_run(Path(tmp) / "mic", speech(args.mic_seconds))
        print(json.dumps(results["mic"], indent=1), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"browser-results-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print("saved", path)


if __name__ == "__main__":
    main()
