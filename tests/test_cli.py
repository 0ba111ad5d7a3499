"""The live-stt command against real replay servers."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import API_KEY

from live_stt_kernel.cli import build_parser, main, translations_in_turn_order
from live_stt_kernel.language.translation import Translation
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


def test_a_local_url_with_a_key_translates_locally_never_through_the_cloud(serve, make_wav, monkeypatch, tmp_path):
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", "aai-key-from-env")
    server = serve(turns_script(even_turns(TEXTS), "B"))
    folder = tmp_path / "saved"
    assert main(["transcribe", str(make_wav(6.0)), "--url", server.url, "--api-key", API_KEY, "--to", "es", "--fast", "-q",
                 "--save", str(folder)]) == 0
    assert json.loads((folder / "meta.json").read_text())["translation"]["backend"] == "apertium"


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


def test_each_translation_is_printed_under_its_turn_even_when_a_later_one_finishes_first():
    def done(order, target="es"):
        return Translation(session_id="s", turn_order=order, target=target, source="x", text=f"t{order}", backend="b", model="m")

    positions = {("s", 0): 0, ("s", 1): 1, ("s", 2): 2}
    # turn 2's translation finished while turn 1's is still being made: it waits, turn 0's goes out
    ready = translations_in_turn_order([done(0), done(2)], [("s", 1)], positions, set(), ended=False)
    assert [t.turn_order for t in ready] == [0]
    printed = {("s", 0, "es")}
    ready = translations_in_turn_order([done(0), done(2), done(1)], [], positions, printed, ended=False)
    assert [t.turn_order for t in ready] == [1, 2]
    # a translation of a turn not printed yet waits for its turn, unless the session ended
    assert translations_in_turn_order([done(3)], [], positions, set(), ended=False) == []
    assert [t.turn_order for t in translations_in_turn_order([done(3), done(1)], [], positions, set(), ended=True)] == [1, 3]


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
    # each translation after its turn and in the turns' order (with --fast, turns may come faster than translations,
    # and a later translation may finish first)
    places = [lines.index(line) for line in spanish]
    assert places == sorted(places) and all(lines.index(turn) < place for turn, place in zip(turns, places, strict=True))
    assert "to the embedded local server" in done.stderr and "translated to es by apertium" in done.stderr
    report = done.stdout[done.stdout.index("# Speaking coach report"):]
    assert "## Analysis" in report and "## Computed metrics" in report and "words per minute" in report
    (folder,) = (tmp_path / "sessions").iterdir()
    assert len((folder / "turns.jsonl").read_text().splitlines()) == 3  # u3-rt-pro: one formatted final per turn
    assert len((folder / "translations.jsonl").read_text().splitlines()) == 3  # one per turn
    assert (folder / "coaching.md").read_text().strip() == report.strip()
    assert f"saved: sessions/{folder.name}" in done.stderr


def test_ctrl_c_ends_the_stream_like_end_of_file(serve, make_wav):
    # the second turn's final only comes when the server flushes on Terminate
    server = serve(turns_script(even_turns(["one two", "three four"], gap_ms=300), "A", final_delay_ms=3000))
    process = subprocess.Popen([LIVE_STT, "transcribe", str(make_wav(20.0)), "--url", server.url, "--api-key", API_KEY,
                                "--format", "jsonl"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = json.loads(process.stdout.readline())  # real time: about 3.9 s in (later on a busy machine)
    process.send_signal(signal.SIGINT)
    rest, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert first["text"] == "One two." and [json.loads(line)["text"] for line in rest.splitlines()] == ["Three four."]
    record = server.wait_for_client()
    assert record.terminated and record.audio_ms < 18000  # stopped early, not at the end of the file


# --- bad arguments and paths: one line on stderr naming the argument, exit code 2, never a traceback ------------


@pytest.fixture
def paths(tmp_path, make_wav):
    """Things a user may pass by mistake: an audio file, a plain file, a folder, a session with a bad line."""
    (tmp_path / "notes.txt").write_text("not a session\n")
    (tmp_path / "binary.bin").write_bytes(bytes(range(256)))
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "sess").mkdir()
    (tmp_path / "sess" / "turns.jsonl").write_text("[1, 2]\n")
    return {"wav": str(make_wav(1.0)), "file": str(tmp_path / "notes.txt"), "binary": str(tmp_path / "binary.bin"),
            "folder": str(tmp_path / "empty-folder"), "session": str(tmp_path / "sess"), "missing": str(tmp_path / "missing"),
            "under-file": str(tmp_path / "notes.txt" / "sub"), "too-long": str(tmp_path / ("x" * 300))}


URL = ["--url", "ws://127.0.0.1:9"]  # never reached: the arguments are refused first
BAD_ARGUMENTS = [
    # (argv with {placeholders} from `paths`, what stderr must say)
    (["transcribe", "{wav}", *URL, "--save", "{file}"], "argument --save: {file} is a file, not a folder"),
    (["transcribe", "{wav}", *URL, "--save", "{under-file}"], "argument --save: cannot make {under-file}: {file} is a file"),
    (["transcribe", "{wav}", *URL, "--save", "{session}"], "argument --save: {session} already holds a session"),
    (["transcribe", "{wav}", *URL, "--save", "{too-long}/sess"], "argument --save: cannot use {too-long}/sess: File name too long"),
    (["transcribe", "{wav}", *URL, "--timeout", "-5"], "argument --timeout: must be more than 0"),
    (["transcribe", "{wav}", *URL, "--timeout", "0"], "argument --timeout: must be more than 0"),
    (["transcribe", "{wav}", *URL, "--timeout", "nan"], "argument --timeout: must be more than 0"),
    (["transcribe", "{wav}", *URL, "--timeout", "inf"], "argument --timeout: must be more than 0"),
    (["transcribe", "{wav}", *URL, "--timeout", "soon"], "argument --timeout: expected a number of seconds, not 'soon'"),
    (["transcribe", "{wav}", *URL, "--reconnect", "-1"], "argument --reconnect: must be from 0 to 100, not -1"),
    (["transcribe", "{wav}", *URL, "--reconnect", "2.5"], "argument --reconnect: expected a whole number, not '2.5'"),
    (["transcribe", "{wav}", "--url", "http://example.com"], "argument --url: expected a URL such as ws://"),
    (["transcribe", "{wav}", "--url", "ws://[::1"], "argument --url: Invalid IPv6 URL"),
    (["transcribe", "{wav}", "--url", "ws://127.0.0.1:99999/v3/ws?token=SECRET"], "argument --url: Port out of range"),
    (["transcribe", "{wav}", "--url", "ws://127.0.0.1:port"], "argument --url: Port could not be cast"),
    (["transcribe", "{wav}", *URL, "--to", "klingon"], "argument --to: unknown target language 'klingon'"),
    (["transcribe", "{wav}", *URL, "--to", ""], "argument --to: unknown target language ''"),
    (["transcribe", "{wav}", *URL, "--keyterm", " "], "argument --keyterm: a key term has 1 to 50 characters"),
    (["transcribe", "{wav}", *URL, "--keyterm", "x" * 51], "argument --keyterm: a key term has 1 to 50 characters, not 51"),
    (["transcribe", "{wav}", *URL, "--to", "es", "--base-url", "localhost:11434"], "argument --base-url: expected a URL such as http"),
    (["transcribe", "{wav}", *URL, "--format", "xml"], "argument --format: invalid choice: 'xml'"),
    (["transcribe", "{wav}", *URL, "--backend", "nope"], "argument --backend: invalid choice: 'nope'"),
    (["transcribe"], "the following arguments are required: file"),
    (["demo", "--save", "{file}"], "argument --save: {file} is a file, not a folder"),
    (["demo", "--url", "wss://"], "argument --url: expected a URL such as ws://"),
    (["demo", "--to", "xx-notalanguagecode"], "argument --to: unknown target language"),
    (["translate", "{wav}", "--to", "es"], "argument session: {wav} is an audio file, not a saved session"),
    (["translate", "{missing}", "--to", "es"], "argument session: no such folder or file: {missing}"),
    (["translate", "{folder}", "--to", "es"], "argument session: {folder} is not a session folder: it has no turns.jsonl"),
    (["translate", "{session}", "--to", "es", "--workers", "0"], "argument --workers: must be from 1 to 64, not 0"),
    (["translate", "{session}"], "the following arguments are required: --to"),
    (["coach", "{wav}"], "argument session: {wav} is an audio file, not a saved session"),
    (["coach", "{missing}"], "argument session: no such folder or file: {missing}"),
    (["coach", "{folder}"], "argument session: {folder} is not a session folder"),
    (["coach", "{too-long}"], "argument session: cannot use {too-long}: File name too long"),
    (["coach", "{session}", "--prompt-file", "{missing}"], "argument --prompt-file: cannot read {missing}: No such file"),
    (["coach", "{session}", "--prompt-file", "{folder}"], "argument --prompt-file: cannot read {folder}: Is a directory"),
    (["coach", "{session}", "--prompt-file", "{binary}"], "argument --prompt-file: {binary} is not UTF-8 text"),
    (["serve", "--port", "70000"], "argument --port: must be from 0 to 65535, not 70000"),
    (["serve", "--port", "http"], "argument --port: expected a whole number, not 'http'"),
    (["serve", "--workers", "0"], "argument --workers: must be from 1 to 64, not 0"),
    (["serve", "--cpu-threads", "-2"], "argument --cpu-threads: must be from 1 to 256, not -2"),
    (["serve", "--host", "no such host!"], "argument --host: cannot resolve the address 'no such host!'"),
    (["serve-llm", "--model", "{missing}"], "argument --model: no such file: {missing}"),
    (["serve-llm", "--model", "{folder}"], "argument --model: {folder} is a folder, not a file"),
    (["serve-llm", "--model", "{too-long}"], "argument --model: cannot use {too-long}: File name too long"),
    (["serve-llm", "--threads", "0"], "argument --threads: must be from 1 to 256, not 0"),
    (["serve-llm", "--port", "-1"], "argument --port: must be from 0 to 65535, not -1"),
    (["no-such-command"], "argument command: invalid choice: 'no-such-command'"),
]


@pytest.mark.parametrize("argv, message", BAD_ARGUMENTS, ids=[" ".join(a)[:60] for a, _ in BAD_ARGUMENTS])
def test_a_bad_argument_is_one_line_naming_it(argv, message, paths, capsys):
    code = main([arg.format(**paths) for arg in argv])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.err.count("\n") == 1 and captured.out == "", captured.err
    assert message.format(**paths) in captured.err
    assert captured.err.startswith(("live-stt: error:", f"live-stt {argv[0]}: error:"))
    assert captured.err.rstrip().endswith("--help)")
    assert "Traceback" not in captured.err and "SECRET" not in captured.err


def test_every_number_option_has_a_range(paths):
    """A bare ``type=int`` or ``float`` accepts -5 and nan: each number option says what range it takes."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.type not in (int, float), f"live-stt {name} {action.option_strings}: no range"


RUNTIME_ERRORS = [
    (["coach", "{session}", "--no-llm"], "live-stt: error: {session}/turns.jsonl:1: not a saved turn: a JSON array, not an object"),
    (["translate", "{session}", "--to", "es"], "live-stt: error: {session}/turns.jsonl:1: not a saved turn: a JSON array"),
    (["coach", "{file}", "--no-llm"], "live-stt: error: {file}:1: not a saved turn"),
    (["coach", "{binary}", "--no-llm"], "live-stt: error: {binary}:1: not a saved turn"),  # no newline, not a torn turn
    (["transcribe", "{folder}", *URL], "live-stt: error: expected an audio file, got a directory: {folder}"),
    (["transcribe", "{file}", *URL], "live-stt: error: not an audio file this toolkit can read"),
]


@pytest.mark.parametrize("argv, message", RUNTIME_ERRORS, ids=[" ".join(a)[:60] for a, _ in RUNTIME_ERRORS])
def test_a_bad_file_found_at_run_time_is_one_line(argv, message, paths, capsys, monkeypatch):
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    code = main([arg.format(**paths) for arg in argv])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.err.count("\n") == 1 and captured.err.startswith(message.format(**paths)), captured.err
    assert not list(Path(paths["file"]).parent.glob("coaching*")), "a report was written for something that is not a session"


def test_the_reported_tracebacks_are_one_line_errors(paths):
    """The commands from the issue, as a user runs them: exit code 2, one line, no traceback."""
    for argv, message in [
        (["transcribe", paths["wav"], "--save", paths["file"]], f"argument --save: {paths['file']} is a file"),
        (["transcribe", paths["wav"], "--timeout", "-5"], "argument --timeout: must be more than 0"),
        (["coach", paths["wav"]], f"argument session: {paths['wav']} is an audio file, not a saved session"),
    ]:
        done = subprocess.run([LIVE_STT, *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""


def test_an_unknown_speech_model_for_serve_is_one_line(tmp_path):
    done = subprocess.run([LIVE_STT, "serve", "--port", "0", "--model", "no-such-model"], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("live-stt: error: --model no-such-model:") and done.stderr.count("\n") == 1, done.stderr


def test_help_and_usage_errors_return_their_codes_from_main(capsys):
    assert main(["--help"]) == 0
    assert "transcribe" in capsys.readouterr().out
    assert main([]) == 2
    assert "the following arguments are required: command" in capsys.readouterr().err


def test_help_names_every_environment_variable_and_version_prints_the_package_version(capsys):
    from live_stt_kernel import __version__

    for argv in (["--help"], ["serve", "--help"], ["transcribe", "--help"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        for name in ("ASSEMBLYAI_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL", "LIVE_STT_URL", "LIVE_STT_TOKEN",
                     "LIVE_STT_SERVER_TOKEN", "LIVE_STT_LLM_TOKEN", "LIVE_STT_CACHE", "XDG_CACHE_HOME"):
            assert name in out, (argv, name)
    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"live-stt {__version__}"
