"""Every notebook runs top to bottom on a headless kernel, and shows what it promises."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from helpers import ROOT
from nbclient import NotebookClient

NOTEBOOKS = ROOT / "notebooks"


def execute(name: str, cwd: Path, timeout: int = 120) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == [
        "01_quickstart.ipynb", "02_live_translation.ipynb", "03_coaching.ipynb", "04_browser_microphone.ipynb",
        "05_protocol_tour.ipynb", "06_export_and_load.ipynb", "07_batch_and_class.ipynb"]


@pytest.mark.timeout(180)
def test_quickstart_streams_the_sample_and_shows_the_turns(tmp_path):
    nb = execute("01_quickstart.ipynb", tmp_path)
    first = nb.cells[1].outputs  # lsk.start(...): the live panel only (no session repr left behind, stale)
    assert len(first) == 1 and "application/vnd.jupyter.widget-view+json" in first[0]["data"]
    outputs = [o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for c in nb.cells for o in c.get("outputs", [])]
    everything = "\n".join(outputs)
    assert re.search(r"live line: '\w+", everything)  # a partial while the first sentence is spoken
    for sentence in ("Hello and welcome to this short demonstration.", "The words appear on the screen while you are speaking."):
        assert everything.count(sentence) == 2  # the live DataFrame and the one loaded from disk
    assert len(list((tmp_path / "sessions").iterdir())) == 1
    assert "translation_es" in everything and "Hola" in everything  # each turn translated as it arrived


def outputs_by_code_cell(nb: nbformat.NotebookNode) -> list[dict]:
    """Per code cell: every output's data merged by MIME type."""
    return [{k: v for o in cell.outputs for k, v in o.get("data", {}).items()} for cell in nb.cells if cell.cell_type == "code"]


@pytest.mark.timeout(600)
def test_live_translation_notebook(tmp_path):
    nb = execute("02_live_translation.ipynb", tmp_path, timeout=400)
    outputs = outputs_by_code_cell(nb)
    printed = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    live, tweaked, german = outputs[2]["text/plain"], outputs[3]["text/plain"], outputs[4]["text/plain"]
    assert "application/vnd.jupyter.widget-view+json" in outputs[0]  # start() showed the live panel
    assert any("still playing: True" in text for text in printed)  # the prompt changed while the session ran
    assert "translation_es" in live and "translation_es" in tweaked and tweaked != live
    assert "translation_de" in german
    (folder,) = (tmp_path / "sessions").iterdir()
    saved = [json.loads(line) for line in (folder / "translations.jsonl").read_text().splitlines()]
    by_turn: dict[int, list[str]] = {}
    for item in saved:
        by_turn.setdefault(item["turn_order"], []).append(item["backend"])
    first, last = by_turn[min(by_turn)], by_turn[max(by_turn)]
    assert first[0] == "apertium" and last[0] == "local"  # before the change Apertium, after it the model, live
    assert all(backends[-1] == "local" for backends in by_turn.values())  # retranslate(): every turn by the model
    assert "<turn" not in tweaked and "Voici" not in tweaked  # the prompt's output rules held


@pytest.mark.timeout(600)
def test_coaching_notebook(tmp_path):
    outputs = outputs_by_code_cell(execute("03_coaching.ipynb", tmp_path, timeout=400))
    assert "Does that make sense?" in outputs[0]["text/plain"]
    metrics = outputs[1]["text/markdown"]
    assert metrics.startswith("# Speaking coach report") and "**you know**" in metrics and "words per minute" in metrics
    assert outputs[2]["image/svg+xml"].lstrip().startswith("<svg")
    assert "## Analysis" in outputs[3]["text/markdown"] and "## Computed metrics" in outputs[3]["text/markdown"]
    assert "## Analysis" in outputs[4]["text/markdown"]


@pytest.mark.timeout(300)
def test_protocol_tour_shows_partials_becoming_finals(tmp_path):
    nb = execute("05_protocol_tour.ipynb", tmp_path)
    texts = ["".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in c.get("outputs", []))
             for c in nb.cells if c.cell_type == "code"]
    assert texts[0].startswith("ws://127.0.0.1:8765/v3/ws?sample_rate=16000") and "format_turns=true" in texts[0]
    table = texts[1]
    assert "SessionBegan" in table and "SessionEnded" in table
    assert "Hello and welcome to this short demonstration." in texts[2] and "False" in texts[2] and "True" in texts[2]
    partials, finals = map(int, re.search(r"partials: (\d+), finals: (\d+)", texts[3]).groups())
    assert partials >= 1 and finals == 6  # three turns, each final unformatted then formatted
    drop = texts[4]  # the server stopped mid-sentence and started again
    assert drop.count("SessionBegan") == 2 and "Disconnected" in drop and "Reconnected" in drop, drop
    assert drop.index("Disconnected") < drop.index("Reconnected") < drop.rindex("SessionBegan")
    resumed = texts[5]
    assert "sessions: 2, reconnects: 1" in resumed, resumed
    assert "Each finished sentence is written" in resumed and "The words appear on the screen" in resumed, resumed


@pytest.mark.timeout(300)
def test_browser_microphone_notebook_falls_back_to_the_sample_without_a_browser(tmp_path):
    outputs = outputs_by_code_cell(execute("04_browser_microphone.ipynb", tmp_path))
    assert "application/vnd.jupyter.widget-view+json" in outputs[0]  # the microphone widget
    assert "application/vnd.jupyter.widget-view+json" in outputs[1]  # the live panel
    table = outputs[2]["text/plain"]
    assert "Hello and welcome to this short demonstration." in table and "Hola" in table
    assert "'state': 'idle'" in outputs[3]["text/plain"] and "'chunks': 0" in outputs[3]["text/plain"]


@pytest.mark.timeout(300)
def test_batch_notebook_runs_a_folder_on_a_local_cluster(tmp_path):
    nb = execute("07_batch_and_class.ipynb", tmp_path)
    outputs = outputs_by_code_cell(nb)
    printed = ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells if c.cell_type == "code"]
    out = tmp_path / "batch_demo" / "out"
    good = ["update-part1", "update-part2", "welcome"]
    assert "broken.wav" in printed[0] and "welcome.wav" in printed[0]
    assert "processes=2 threads=2" in outputs[1]["text/plain"] and "Dashboard" in outputs[1]["text/html"]
    assert "4 recordings: 3 transcribed now, 3 done in all, 1 failed (.errors)" in printed[2], printed[2]
    assert "application/vnd.jupyter.widget-view+json" in outputs[2]  # the progress bar

    def row_names(html: str) -> list[str]:
        return re.findall(r"<tr>\s*<th>([^<]*)</th>", html.split("<tbody>", 1)[1])

    assert row_names(outputs[3]["text/html"]) == good  # one row per good recording, the broken file in none
    assert "wpm" in outputs[3]["text/plain"] and "filler_rate" in outputs[3]["text/plain"]
    svg = outputs[4]["image/svg+xml"]
    assert svg.lstrip().startswith("<svg") and "Words per minute" in svg and "Fillers per 100 words" in svg
    assert svg.count('fill="#3d85c6"') == 2 * len(good) and all(svg.count(f">{name}<") == 2 for name in good)
    assert row_names(outputs[5]["text/html"]) == ["0"]  # one error, the unreadable file
    assert "broken" in outputs[5]["text/plain"] and "AudioFileError" in outputs[5]["text/plain"]
    assert "update-part1" in outputs[6]["text/plain"] and "making onboarding faster" in outputs[6]["text/plain"]
    dataset = pd.read_parquet(out / "turns")
    assert f"out/turns: {len(dataset)} turns of 3 recordings, the same table as result.turns" in printed[7]
    assert sorted(dataset["name"].unique()) == good and len(dataset) >= len(good)
    session = tmp_path / printed[8].strip()  # the first session folder, loaded in the notebook
    assert session.parent == out / "sessions" and (session / "meta.json").is_file()
    assert "making onboarding faster" in outputs[8]["text/plain"]
    assert "4 recordings: 0 transcribed now, 3 done in all, 1 failed (.errors)" in printed[9], printed[9]
    assert sorted(p.name.rsplit("-", 1)[0] for p in (out / "sessions").iterdir()) == good
