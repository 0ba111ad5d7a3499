"""Every notebook runs top to bottom on a headless kernel, and shows what it promises."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_notebook(name: str, cwd: Path) -> list[str]:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") + str(output.get("data", {}).get("text/plain", "")))
    return texts


def test_every_notebook_is_tested():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == ["01_quickstart.ipynb"]


@pytest.mark.timeout(180)
def test_quickstart_streams_the_sample_and_shows_the_turns(tmp_path):
    outputs = run_notebook("01_quickstart.ipynb", tmp_path)
    everything = "\n".join(outputs)
    assert "<Session running" in outputs[0]
    assert re.search(r"live line: '\w+", everything)  # a partial while the first sentence is spoken
    for sentence in ("Hello and welcome to this short demonstration.", "The words appear on the screen while you are speaking."):
        assert everything.count(sentence) == 2  # the live DataFrame and the one loaded from disk
    assert len(list((tmp_path / "sessions").iterdir())) == 1
