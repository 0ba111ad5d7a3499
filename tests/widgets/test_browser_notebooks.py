"""The teaching notebooks in a real JupyterLab, in headless Chromium, on the embedded default (the kernel
starts its own local v3 server with the offline Whisper model; translations by Apertium).

- The quickstart, run from the page: the live line and then the finished turns, each with its Spanish
  translation, appear in the panel while the sample still streams.
- The browser-microphone notebook: Chromium records the PulseAudio virtual microphone playing LibriVox
  speech; the kernel gets that audio (duration, correlation) and the words appear in the panel.

Screenshots go to test-artifacts/ (look at them).
"""

from __future__ import annotations

import ast
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from browser.audio import compare
from browser.lab import JupyterLab, chromium, open_notebook, run_all_cells, run_cell, wait_for_kernel_idle
from helpers import ROOT
from playwright.sync_api import sync_playwright
from speech import librivox, normalise, wer

from live_stt_kernel import load_session
from live_stt_kernel.samples import SAMPLE_SENTENCES

assert Path("/usr/bin/chromium").exists(), "the browser tests need Debian's chromium: apt-get install chromium"
assert shutil.which("pulseaudio") and shutil.which("parec"), "apt-get install pulseaudio pulseaudio-utils"

NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts"

PANEL_TEXT = """() => {
  const text = (selector) => [...document.querySelectorAll(selector)].map((e) => e.textContent.trim());
  return { status: text('.lsk-status').join(' '), partial: text('.lsk-partial').join(' '),
           turns: [...document.querySelectorAll('.lsk-turn')].map((row) => ({
             text: row.querySelector('.lsk-text').textContent.trim(),
             translations: [...row.querySelectorAll('.lsk-translation')].map((e) => e.textContent.trim()) })) };
}"""
LIVE_LINES = """() => {  // every text the live line shows from now on, and how many turns were translated then
  window.__liveLines = [];
  window.__liveLinesAfter = [];
  const line = document.querySelector('.lsk-partial');
  new MutationObserver(() => {
    window.__liveLines.push(line.textContent.trim());
    window.__liveLinesAfter.push(document.querySelectorAll('.lsk-turn .lsk-translation').length);
  }).observe(line, { subtree: true, childList: true, characterData: true });
}"""
CELL_OUTPUTS = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .filter((cell) => cell.model.type === 'code').map((cell) => cell.model.outputs.toJSON())"""


def panel(page: Any) -> dict[str, Any]:
    """What the panel shows now: the status line, the live line, and each turn with its translations."""
    return page.evaluate(PANEL_TEXT)


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    page.locator(".lsk-panel").first.screenshot(path=str(ARTIFACTS / f"{name}_panel.png"))


@pytest.mark.timeout(240)
def test_the_quickstart_shows_live_words_and_translations_in_jupyterlab(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(NOTEBOOKS / "01_quickstart.ipynb", tmp_path)
    with JupyterLab(tmp_path) as lab, sync_playwright() as p:
        browser = chromium(p, lab.env)
        try:
            page = open_notebook(lab, browser, "01_quickstart.ipynb")
            run_all_cells(page)
            page.wait_for_function("() => document.querySelector('.lsk-status')"
                                   " && /streaming/.test(document.querySelector('.lsk-status').textContent)",
                                   timeout=90_000)  # first run: the kernel starts the local server
            page.evaluate(LIVE_LINES)
            page.wait_for_function("() => document.querySelector('.lsk-partial').textContent.trim().length > 0",
                                   timeout=30_000)
            live_line = panel(page)
            shot(page, "quickstart_live_line")
            page.wait_for_function("() => document.querySelector('.lsk-turn .lsk-translation')", timeout=30_000)
            first_translated = panel(page)
            lines_before_first_turn = page.evaluate("() => window.__liveLines")
            shot(page, "quickstart_first_translation")
            page.wait_for_function("() => document.querySelectorAll('.lsk-turn .lsk-translation').length >= 2",
                                   timeout=30_000)  # translated turns (the next one may be being spoken)
            both = panel(page)
            shot(page, "quickstart_streaming")  # the README's picture of the panel
            page.wait_for_function("() => /stopped/.test(document.querySelector('.lsk-status').textContent)",
                                   timeout=60_000)
            wait_for_kernel_idle(page, timeout_ms=60_000)
            page.wait_for_function("() => document.querySelectorAll('.lsk-turn .lsk-translation').length >= 3",
                                   timeout=15_000)
            done = panel(page)
            live_lines = page.evaluate("() => window.__liveLines")
            translated_then = page.evaluate("() => window.__liveLinesAfter")
            shot(page, "quickstart_done")
            outputs = page.evaluate(CELL_OUTPUTS)
        finally:
            browser.close()

    report = {"live_line": live_line, "lines_before_first_turn": lines_before_first_turn, "live_lines": live_lines,
              "first_translated": first_translated, "both": both, "done": done}
    (ARTIFACTS / "quickstart_report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    # while the sample streamed: a live line, then a finished turn with its translation under it
    assert "streaming" in live_line["status"] and "local" in live_line["status"], live_line
    # the live line showed words before the first turn, and the live lines carried the sentences being spoken.
    # Which partials there are depends on how busy the machine is (a partial is skipped while decoding lags), and
    # Whisper tiny's early guesses are rough ("the lord and wellcome"): so the words are checked over every live
    # line of the run, each against the sentences of the sample
    assert any(line for line in lines_before_first_turn), lines_before_first_turn
    sentences = [set(normalise(sentence).split()) for sentence in SAMPLE_SENTENCES]
    heard = [line for line in live_lines if any(len(set(normalise(line).split()) & words) >= 2 for words in sentences)]
    assert heard, live_lines
    assert "streaming" in first_translated["status"], first_translated
    assert first_translated["turns"][0]["text"] == SAMPLE_SENTENCES[0]
    assert first_translated["turns"][0]["translations"][0].startswith("es: Hola")
    assert "streaming" in both["status"] and len(both["turns"]) == 2, both
    # words were live under translated turns: the next sentence spoken while the earlier ones stayed on screen (how
    # long a given partial is on screen depends on the machine's load, so every live line of the run counts)
    assert any(line and after >= 1 for line, after in zip(live_lines, translated_then, strict=True)), live_lines
    # at the end: the three sentences, each translated, the live line empty, and the same turns on disk
    saved = load_session(next((tmp_path / "sessions").iterdir()))
    assert [t["text"] for t in done["turns"]] == saved["text"].tolist()
    assert len(saved) == len(SAMPLE_SENTENCES) and wer(" ".join(SAMPLE_SENTENCES), " ".join(saved["text"])) <= 0.1
    assert [t["translations"] for t in done["turns"]] == [[f"es: {t}"] for t in saved["translation_es"]]
    assert done["partial"] == "" and "stopped" in done["status"]
    # and the notebook's own cells ran: the DataFrame in the page has the translations too
    table = outputs[2][0]["data"]["text/html"]
    assert "translation_es" in table and saved["translation_es"][0] in table


@pytest.mark.timeout(300)
def test_the_browser_microphone_notebook_transcribes_what_the_microphone_hears(virtual_mic, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(NOTEBOOKS / "04_browser_microphone.ipynb", tmp_path)
    utterances = librivox()[:2]
    silence = np.zeros(8000, dtype=np.int16)
    speech = np.concatenate([utterances[0][0], silence, utterances[1][0]])
    reference = " ".join(text for _, text in utterances)
    with JupyterLab(tmp_path, env=virtual_mic.env) as lab, sync_playwright() as p:
        browser = chromium(p, virtual_mic.env)
        try:
            page = open_notebook(lab, browser, "04_browser_microphone.ipynb")
            run_cell(page, 1)  # mic = BrowserMic(); mic
            button = page.locator(".live-stt-mic-button")
            button.wait_for(timeout=30_000)
            wait_for_kernel_idle(page)
            button.click()  # the user's click: getUserMedia
            page.wait_for_selector(".live-stt-mic[data-state=recording]", timeout=15_000)
            run_cell(page, 3, "notebook:run-all-below")  # the session on mic.source, the panel, wait()
            page.wait_for_function("() => document.querySelector('.lsk-status')"
                                   " && /streaming/.test(document.querySelector('.lsk-status').textContent)",
                                   timeout=90_000)
            time.sleep(1.0)
            clicked = time.monotonic()
            virtual_mic.play(speech.astype("<i2").tobytes())
            time.sleep(len(speech) / 16000 + 1.5)  # the speech, then a pause that ends the last turn
            page.wait_for_function("() => document.querySelectorAll('.lsk-turn .lsk-translation').length >= 2",
                                   timeout=30_000)
            heard = panel(page)
            shot(page, "browser_mic_notebook_live")
            button.click()  # Stop: end-of-file for the session; the cell waiting on it returns
            stopped = time.monotonic()
            page.wait_for_function(f"() => ({CELL_OUTPUTS})().at(-1).length > 0", timeout=60_000)  # the last cell ran
            page.wait_for_function("() => /stopped/.test(document.querySelector('.lsk-status').textContent)",
                                   timeout=15_000)
            shot(page, "browser_mic_notebook_done")
            outputs = page.evaluate(CELL_OUTPUTS)
        finally:
            browser.close()

    folder = next((tmp_path / "sessions").iterdir())
    got, rate = sf.read(folder / "audio.wav", dtype="int16")
    match = compare(got, speech)
    stats = ast.literal_eval(outputs[-1][0]["data"]["text/plain"])  # the notebook's last cell: {'state': ..., 'chunks': ...}
    said = " ".join(turn["text"] for turn in heard["turns"])
    report = {"heard": heard, "stats": stats, **match.summary(), "recorded_s": len(got) / rate, "wer": wer(reference, said)}
    (ARTIFACTS / "browser_mic_notebook_report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    # the kernel got the microphone's audio, all of it, through the widget comm
    assert stats["state"] == "stopped" and stats["gaps"] == 0 and stats["late"] == 0, stats
    assert len(got) / rate >= stopped - clicked - 0.5
    assert np.median(match.window_correlations) > 0.95, match.summary()
    # and the words the microphone heard are in the panel, each turn with its Spanish translation
    assert report["wer"] <= 0.25, (reference, said)
    assert all(t["translations"] and t["translations"][0].startswith("es: ") for t in heard["turns"]), heard
    saved = load_session(folder)["text"].tolist()
    assert [turn["text"] for turn in heard["turns"]] == saved[: len(heard["turns"])]
