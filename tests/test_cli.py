"""The live-stt command against real replay servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import API_KEY

from live_stt_kernel.cli import main
from live_stt_kernel.v3.replay import Drop, Script, Step, even_turns, turns_script

TEXTS = ["one two three", "four five six", "seven eight"]
LIVE_STT = str(Path(sys.executable).parent / "live-stt")


def test_jsonl_prints_each_turn_once_with_formatted_text(serve, make_wav, capsys):
    server = serve(turns_script(even_turns(TEXTS), "A"))  # two finals per turn on the wire
    code = main(["transcribe", str(make_wav(6.0)), "--url", server.url, "--api-key", API_KEY, "--format", "jsonl", "--fast", "-q"])
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [r["text"] for r in rows] == ["One two three.", "Four five six.", "Seven eight."]
    assert [r["turn_order"] for r in rows] == [0, 1, 2]
    assert rows[0]["start"] == 0.3 and rows[0]["end"] > rows[0]["start"]
    assert API_KEY not in out


def test_text_format_shows_times(serve, make_wav, capsys):
    server = serve(turns_script(even_turns(TEXTS), "C"))
    assert main(["transcribe", str(make_wav(6.0)), "--url", server.url, "--api-key", API_KEY, "--fast", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["[   0.30 -    1.16] one two three", "[   2.20 -    3.06] four five six", "[   4.10 -    4.66] seven eight"]


def test_api_key_comes_from_the_environment(serve, make_wav, monkeypatch, capsys):
    server = serve(turns_script(even_turns(TEXTS), "B"))
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", API_KEY)
    assert main(["transcribe", str(make_wav(2.0)), "--url", server.url, "--fast", "-q"]) == 0
    assert server.wait_for_client().headers["authorization"] == API_KEY


def test_a_refused_key_exits_non_zero_with_one_line(serve, make_wav):
    server = serve(turns_script(even_turns(TEXTS), "B"))
    wrong = "wrong-key-0000000000000000000000"
    done = subprocess.run([LIVE_STT, "transcribe", str(make_wav(1.0)), "--url", server.url, "--api-key", wrong, "--fast"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("live-stt: refused:")
    assert "Invalid API key" in done.stderr and wrong not in done.stderr + done.stdout


def test_turns_before_a_failure_are_printed_then_the_reason(serve, make_wav, capsys):
    server = serve(Script(steps=(*turns_script(even_turns(TEXTS), "B").steps, Step(2500, Drop()))))
    code = main(["transcribe", str(make_wav(6.0)), "--url", server.url, "--api-key", API_KEY, "--fast", "-q", "--format", "jsonl",
                 "--reconnect", "0"])
    captured = capsys.readouterr()
    assert code == 2
    assert [json.loads(line)["text"] for line in captured.out.splitlines()] == ["One two three."]
    assert "dropped" in captured.err and captured.err.count("\n") == 1


def test_bad_inputs_get_specific_errors(tmp_path, make_wav, monkeypatch, capsys):
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    (tmp_path / "notes.txt").write_text("not audio")
    cases = {
        str(tmp_path / "missing.wav"): "audio file not found",
        str(tmp_path / "notes.txt"): "not an audio file",
    }
    for path, message in cases.items():
        assert main(["transcribe", path, "--url", "ws://127.0.0.1:9"]) == 2
        assert message in capsys.readouterr().err
    assert main(["transcribe", str(make_wav(1.0)), "--url", "http://example.com"]) == 2
    assert "ws://" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_demo_streams_the_bundled_sample_through_the_embedded_server(tmp_path):
    """The main job, as the README runs it: live turns, each translated, then a coaching report."""
    env = {k: v for k, v in os.environ.items() if k != "ASSEMBLYAI_API_KEY"}
    done = subprocess.run([LIVE_STT, "demo", "--fast"], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    turns = [line for line in lines if line.startswith("[")]
    assert len(turns) == 3
    assert turns[0].endswith("Hello and welcome to this short demonstration.")
    assert turns[2].endswith("The words appear on the screen while you are speaking.")
    spanish = [line for line in lines if line.startswith("    es: ")]
    assert len(spanish) == 3 and spanish[0].lower().startswith("    es: hola") and "palabras" in spanish[2]
    assert lines[lines.index(turns[0]) + 1] == spanish[0]  # each translation right under its turn
    assert "to the embedded local server" in done.stderr and "translated to es by apertium" in done.stderr
    report = done.stdout[done.stdout.index("# Speaking coach report"):]
    assert "## Analysis" in report and "## Computed metrics" in report and "words per minute" in report
    (folder,) = (tmp_path / "sessions").iterdir()
    assert len((folder / "turns.jsonl").read_text().splitlines()) == 6  # unformatted + formatted finals, folded on load
    assert len((folder / "translations.jsonl").read_text().splitlines()) == 3  # one per turn
    assert (folder / "coaching.md").read_text().strip() == report.strip()
    assert f"saved: sessions/{folder.name}" in done.stderr


def test_ctrl_c_ends_the_stream_like_end_of_file(serve, make_wav):
    # the second turn's final only comes when the server flushes on Terminate
    server = serve(turns_script(even_turns(["one two", "three four"], gap_ms=300), "A", final_delay_ms=3000))
    process = subprocess.Popen([LIVE_STT, "transcribe", str(make_wav(10.0)), "--url", server.url, "--api-key", API_KEY,
                                "--format", "jsonl"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = json.loads(process.stdout.readline())  # real time: about 3.9 s in
    process.send_signal(signal.SIGINT)
    rest, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert first["text"] == "One two." and [json.loads(line)["text"] for line in rest.splitlines()] == ["Three four."]
    record = server.wait_for_client()
    assert record.terminated and record.audio_ms < 8000  # stopped early, not at the end of the file
