"""The session folder: real files, a real replay server, and a real process killed mid-session."""

from __future__ import annotations

import json
import re
import signal
import struct
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers import RATE, pcm16, speechlike, wait_until, write_audio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from live_stt_kernel.audio.sources import WavSource
from live_stt_kernel.errors import ConfigurationError, LiveSTTError, SavedSessionError
from live_stt_kernel.events import Word
from live_stt_kernel.session import load_session
from live_stt_kernel.store import (
    AUDIO_FILE,
    META_FILE,
    TURNS_FILE,
    SessionStore,
    WavAppender,
    read_turns,
    wav_header,
)
from live_stt_kernel.transcript import COLUMNS, TurnRecord
from live_stt_kernel.v3.replay import ReplayServer, even_turns, turns_script

LIVE_STT = str(Path(sys.executable).parent / "live-stt")


def record(order: int, text: str, *, session_id: str = "sess-1", index: int | None = None, formatted: bool = True,
           speaker: str | None = None) -> TurnRecord:
    words = tuple(
        Word(text=w, start_ms=1000 * order + 300 * i, end_ms=1000 * order + 300 * i + 260, confidence=0.9, speaker=speaker)
        for i, w in enumerate(text.split())
    )
    return TurnRecord(
        session_id=session_id, turn_order=order, turn_index=order if index is None else index, text=text, words=words,
        start=words[0].start_ms / 1000 if words else None, end=words[-1].end_ms / 1000 if words else None,
        confidence=0.9 if words else None, speaker=speaker, language="en", formatted=formatted, end_of_turn_latency=0.25,
    )


def jsonl_line(rec: TurnRecord) -> str:
    return json.dumps(rec.to_dict(), ensure_ascii=False) + "\n"


# --- WavAppender ------------------------------------------------------------------------------


def test_wav_header_fields():
    header = wav_header(3200)
    assert len(header) == 44
    riff, riff_size, wave, fmt, fmt_size, audio_format, channels, rate, byte_rate, align, bits, data, data_size = struct.unpack(
        "<4sI4s4sIHHIIHH4sI", header
    )
    assert (riff, wave, fmt, data) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert riff_size == 36 + 3200 and data_size == 3200
    assert (fmt_size, audio_format, channels, rate, byte_rate, align, bits) == (16, 1, 1, 16000, 32000, 2, 16)
    stereo = struct.unpack("<4sI4s4sIHHIIHH4sI", wav_header(0, sample_rate=8000, channels=2))
    assert stereo[6:11] == (2, 8000, 32000, 4, 16)


def test_wav_header_matches_libsndfile(tmp_path):
    samples = np.arange(-50, 50, dtype=np.int16)
    sf.write(str(tmp_path / "ref.wav"), samples, RATE, subtype="PCM_16")
    assert (tmp_path / "ref.wav").read_bytes()[:44] == wav_header(len(samples) * 2)


def test_wav_appender_is_a_valid_wav_after_every_append(tmp_path):
    path = tmp_path / "grow.wav"
    rng = np.random.default_rng(1)
    blocks = [rng.integers(-32768, 32767, size=n, dtype=np.int16) for n in (800, 1, 1600, 37, 800, 4000)]
    appender = WavAppender(path)
    try:
        info = sf.info(str(path))  # valid (and empty) before the first append
        assert (info.frames, info.samplerate, info.channels) == (0, RATE, 1)
        so_far: list[np.ndarray] = []
        for block in blocks:
            appender.append(block.astype("<i2").tobytes())
            so_far.append(block)
            expected = np.concatenate(so_far)
            data, rate = sf.read(str(path), dtype="int16")  # read while the appender is still open
            assert rate == RATE
            np.testing.assert_array_equal(data, expected)
            assert appender.data_bytes == 2 * len(expected)
            assert appender.seconds == pytest.approx(len(expected) / RATE)
        appender.append(b"")  # nothing to add: still the same valid file
        assert sf.info(str(path)).frames == sum(len(b) for b in blocks)
    finally:
        appender.close()
    appender.close()  # idempotent
    appender.append(b"\x01\x00")  # after close: ignored, the file stays as it was
    data, _ = sf.read(str(path), dtype="int16")
    np.testing.assert_array_equal(data, np.concatenate(blocks))
    assert path.stat().st_size == 44 + 2 * len(data)


def test_wav_appender_is_safe_across_threads(tmp_path):
    path = tmp_path / "threads.wav"
    appender = WavAppender(path)
    block = np.full(160, 7, dtype="<i2").tobytes()

    def writer() -> None:
        for _ in range(200):
            appender.append(block)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    appender.close()
    data, _ = sf.read(str(path), dtype="int16")
    assert len(data) == 4 * 200 * 160 and np.all(data == 7)


# --- SessionStore, read_turns, load_session ---------------------------------------------------


def test_turns_round_trip_to_a_dataframe(tmp_path):
    folder = tmp_path / "sess"
    records = [record(0, "hello there", speaker="A"), record(1, "how are you today", speaker="B"), record(2, "fine")]
    store = SessionStore(folder)
    for rec in records:
        store.append_turn(rec)
    # readable while the store is still open: each turn is flushed as it is appended
    assert list(read_turns(folder).rows) == records
    store.close()

    assert list(read_turns(folder / TURNS_FILE).rows) == records  # the file or its folder
    df = load_session(folder)
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == COLUMNS
    assert df["text"].tolist() == ["hello there", "how are you today", "fine"]
    assert df["turn_order"].tolist() == [0, 1, 2] and df["turn_index"].tolist() == [0, 1, 2]
    assert df["speaker"].tolist()[:2] == ["A", "B"]
    assert df["start"].tolist() == [0.0, 1.0, 2.0]
    assert df["end"].tolist() == pytest.approx([0.56, 2.16, 2.26])
    assert df["start"].dtype == np.float64 and df["turn_index"].dtype == np.int64
    assert df["words"].iloc[1][3] == {"text": "today", "start_ms": 1900, "end_ms": 2160, "confidence": 0.9,
                                      "is_final": True, "speaker": "B"}


def test_a_later_version_of_a_turn_replaces_the_earlier_one(tmp_path):
    folder = tmp_path / "sess"
    store = SessionStore(folder)
    store.append_turn(record(0, "hello there", formatted=False))
    store.append_turn(record(0, "Hello there.", formatted=True))  # behaviour A: the formatted final
    store.append_turn(record(1, "second turn", formatted=False))
    store.append_turn(record(1, "Second turn.", formatted=True))
    store.append_turn(record(0, "Hello there.", session_id="sess-2", index=2))  # same order, another session: a new turn
    store.close()
    assert len((folder / TURNS_FILE).read_text().splitlines()) == 5
    df = load_session(folder)
    assert df["text"].tolist() == ["Hello there.", "Second turn.", "Hello there."]
    assert df["formatted"].tolist() == [True, True, True]
    assert list(zip(df["session_id"], df["turn_order"])) == [("sess-1", 0), ("sess-1", 1), ("sess-2", 0)]


def test_a_torn_final_line_is_ignored(tmp_path):
    folder = tmp_path / "sess"
    folder.mkdir()
    complete = [record(0, "first turn"), record(1, "second turn")]
    torn = jsonl_line(record(2, "third turn"))[:57]  # the process died mid-write
    (folder / TURNS_FILE).write_text("".join(jsonl_line(r) for r in complete) + torn, encoding="utf-8")
    with pytest.warns(UserWarning, match=rf"{TURNS_FILE}:3: skipped an incomplete last line"):
        assert list(read_turns(folder).rows) == complete
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert load_session(folder)["text"].tolist() == ["first turn", "second turn"]


def test_a_torn_final_line_cut_inside_a_multibyte_character_is_ignored(tmp_path):
    """Non-English text is saved as UTF-8: a crash can cut a line inside a character."""
    folder = tmp_path / "sess"
    folder.mkdir()
    complete = [record(0, "buenos días"), record(1, "hasta mañana")]
    torn = jsonl_line(record(2, "el año que viene")).encode("utf-8")
    torn = torn[: torn.index("ñ".encode()) + 1]  # half of the "ñ"
    (folder / TURNS_FILE).write_bytes("".join(jsonl_line(r) for r in complete).encode("utf-8") + torn)
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert [r.text for r in read_turns(folder).rows] == ["buenos días", "hasta mañana"]


def test_text_with_unicode_line_separators_round_trips(tmp_path):
    """JSON leaves U+2028, U+2029 and U+0085 unescaped, so they must not be taken for line ends."""
    folder = tmp_path / "sess"
    texts = ["one\u2028two", "three\u2029four", "five\x85six", "last turn"]
    store = SessionStore(folder)
    for order, text in enumerate(texts):
        store.append_turn(record(order, text))
    store.close()
    assert load_session(folder)["text"].tolist() == texts


def test_a_corrupt_middle_line_is_a_clear_error(tmp_path):
    folder = tmp_path / "sess"
    folder.mkdir()
    lines = [jsonl_line(record(0, "first")), "this is not json\n", jsonl_line(record(1, "second"))]
    (folder / TURNS_FILE).write_text("".join(lines), encoding="utf-8")
    with pytest.raises(SavedSessionError) as info:
        load_session(folder)
    message = str(info.value)
    assert f"{TURNS_FILE}:2" in message  # which file, which line
    assert "not a saved turn" in message


def test_a_middle_line_that_is_json_but_not_a_turn_is_a_clear_error(tmp_path):
    folder = tmp_path / "sess"
    folder.mkdir()
    lines = [jsonl_line(record(0, "first")), '{"hello": "world"}\n', jsonl_line(record(1, "second"))]
    (folder / TURNS_FILE).write_text("".join(lines), encoding="utf-8")
    with pytest.raises(SavedSessionError, match=rf"{TURNS_FILE}:2: not a saved turn"):
        read_turns(folder)


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "turns.jsonl"
    path.write_text("\n" + jsonl_line(record(0, "first")) + "\n\n" + jsonl_line(record(1, "second")), encoding="utf-8")
    assert [r.text for r in read_turns(path).rows] == ["first", "second"]


def test_load_session_of_a_missing_folder_raises_a_saved_session_error(tmp_path):
    with pytest.raises(SavedSessionError, match="no saved session"):
        load_session(tmp_path / "never-saved")
    (tmp_path / "empty-folder").mkdir()
    with pytest.raises(SavedSessionError, match=TURNS_FILE):
        load_session(tmp_path / "empty-folder")


def test_an_empty_session_loads_as_an_empty_frame(tmp_path):
    store = SessionStore(tmp_path / "sess")
    store.close()
    df = load_session(tmp_path / "sess")
    assert list(df.columns) == COLUMNS and len(df) == 0
    assert sf.info(str(tmp_path / "sess" / AUDIO_FILE)).frames == 0


def test_meta_is_merged_and_replaced_atomically(tmp_path):
    folder = tmp_path / "sess"
    store = SessionStore(folder)
    store.update_meta(status="running", folder=folder, ids=[])
    assert json.loads((folder / META_FILE).read_text()) == {"status": "running", "folder": str(folder), "ids": []}

    # a reader polling meta.json while it is rewritten must only ever see whole JSON documents
    big = list(range(3000))
    stop = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                text = (folder / META_FILE).read_text(encoding="utf-8")
            except FileNotFoundError as exc:  # os.replace never leaves the name missing
                problems.append(repr(exc))
                continue
            try:
                seen.append(json.loads(text)["n"])
            except KeyError:
                pass  # the first version, before "n" was written
            except ValueError as exc:
                problems.append(f"{exc}: {text[:40]!r}...")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(150):
            store.update_meta(n=n, payload=big)
    finally:
        stop.set()
        thread.join(10)
    store.close()
    assert not thread.is_alive()
    assert problems == []
    assert seen == sorted(seen)  # never an older version after a newer one
    final = json.loads((folder / META_FILE).read_text())
    assert final["n"] == 149 and final["status"] == "running" and final["payload"] == big
    assert sorted(p.name for p in folder.iterdir()) == [AUDIO_FILE, META_FILE, TURNS_FILE]  # no temp file left


def test_reusing_a_session_folder_does_not_destroy_its_saved_audio(tmp_path):
    """Saving twice into one folder (``--save DIR`` run again) must not silently lose the first
    session's audio while keeping its turns: refusing the folder or appending are both fine."""
    folder = tmp_path / "sess"
    first_audio = np.arange(-8000, 8000, dtype="<i2")
    first = SessionStore(folder)
    first.audio.append(first_audio.tobytes())
    first.append_turn(record(0, "the first session"))
    first.close()

    try:
        second = SessionStore(folder)
    except (FileExistsError, LiveSTTError):
        pass
    else:
        second.close()
    data, _ = sf.read(str(folder / AUDIO_FILE), dtype="int16")
    assert len(data) >= len(first_audio), "the first session's audio.wav was truncated"
    np.testing.assert_array_equal(data[: len(first_audio)], first_audio)
    assert "the first session" in load_session(folder)["text"].tolist()


# --- the CLI, end to end ----------------------------------------------------------------------

TURN_TEXTS = ["hello there world", "this is the second turn", "and a third one here", "the last few words"]


def _converted(path: Path) -> np.ndarray:
    """What WavSource makes of the file: the audio the session should have recorded."""
    return pcm16(b"".join(WavSource(path, realtime=False)))


def _jsonl_turns(path: Path) -> dict[tuple[str, int], str]:
    """The last text saved for each (session_id, turn_order), read without the package."""
    latest: dict[tuple[str, int], str] = {}
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue  # a torn last line
        latest[(data["session_id"], data["turn_order"])] = data["text"]
    return latest


def _complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _audio_seconds(path: Path) -> float:
    return max(0, path.stat().st_size - 44) / (2 * RATE) if path.exists() else 0.0


def test_killed_mid_session_keeps_its_audio_and_finished_turns(tmp_path):
    source = write_audio(tmp_path / "talk.wav", speechlike(44100, 8.0), 44100, subtype="PCM_16")
    expected_audio = _converted(source)
    folder = tmp_path / "sess"
    turns = even_turns(TURN_TEXTS)
    with ReplayServer(turns_script(turns, "A"), api_key="k") as server:
        proc = subprocess.Popen(
            [LIVE_STT, "transcribe", str(source), "--url", server.url, "--api-key", "k", "--save", str(folder),
             "--format", "jsonl"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
        )
        try:
            wait_until(lambda: _complete_lines(folder / TURNS_FILE) >= 1 and _audio_seconds(folder / AUDIO_FILE) > 1.2,
                       timeout=20, what="a saved turn and more than 1.2 s of saved audio")
            assert proc.poll() is None, "the session ended by itself before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if proc.stdout:
                proc.stdout.close()
            if proc.stderr:
                proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, stderr

    # the audio: a valid WAV holding the beginning of the source, sample for sample
    data, rate = sf.read(str(folder / AUDIO_FILE), dtype="int16")
    assert rate == RATE
    assert 1.0 < len(data) / RATE < 7.0, f"{len(data) / RATE:.2f} s saved"
    np.testing.assert_array_equal(data, expected_audio[: len(data)])

    # the turns: everything in the jsonl loads, with the scripted words
    saved = _jsonl_turns(folder / TURNS_FILE)
    assert len(saved) >= 1
    df = load_session(folder)
    loaded = {(s, int(o)): t for s, o, t in zip(df["session_id"], df["turn_order"], df["text"])}
    assert loaded == saved
    for (_, order), text in loaded.items():
        assert text in (turns[order].plain, turns[order].pretty)
    assert df["text"].iloc[0] in ("hello there world", "Hello there world.")

    # meta.json: whole, and honest that the session never finished
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["status"] == "running"
    assert meta["server"].startswith(server.url)


def test_cli_save_without_a_folder_writes_under_sessions_in_cwd(tmp_path):
    (tmp_path / "in").mkdir()
    source = write_audio(tmp_path / "in" / "clip.flac", speechlike(16000, 4.0, seed=3), 16000, subtype="PCM_16", format="FLAC")
    work = tmp_path / "work"
    work.mkdir()
    turns = even_turns(TURN_TEXTS[:2])
    with ReplayServer(turns_script(turns, "A"), api_key="k") as server:
        done = subprocess.run(
            [LIVE_STT, "transcribe", str(source), "--url", server.url, "--api-key", "k", "--save", "--fast",
             "--format", "jsonl"],
            capture_output=True, text=True, cwd=work, timeout=60,
        )
    assert done.returncode == 0, done.stderr
    folders = list((work / "sessions").iterdir())
    assert len(folders) == 1, folders
    folder = folders[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d(-\d+)?", folder.name), folder.name
    assert f"saved: {Path('sessions') / folder.name}" in done.stderr
    assert sorted(p.name for p in folder.iterdir()) == [AUDIO_FILE, META_FILE, TURNS_FILE]
    assert not (tmp_path / "in" / "sessions").exists()

    printed = [json.loads(line)["text"] for line in done.stdout.splitlines() if line.strip()]
    assert printed == [t.pretty for t in turns]
    assert load_session(folder)["text"].tolist() == [t.pretty for t in turns]
    data, rate = sf.read(str(folder / AUDIO_FILE), dtype="int16")
    assert rate == RATE
    np.testing.assert_array_equal(data, _converted(source))
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["status"] == "completed" and meta["turns"] == 2
    assert meta["audio_seconds"] == pytest.approx(4.0, abs=0.01)


# --- bad records: SavedSessionError naming the file and line, never another exception --------------------------


@pytest.mark.parametrize("bad", ["[1, 2]", '["a", {"b": 1}]', "42", '"text"', "null", "true"])
@pytest.mark.parametrize("where", ["middle", "last"])
def test_a_line_that_is_json_but_not_an_object_names_file_and_line(tmp_path, bad, where):
    folder = tmp_path / "sess"
    folder.mkdir()
    lines = [jsonl_line(record(0, "first")), bad + "\n"]
    if where == "middle":
        lines.append(jsonl_line(record(1, "second")))
    (folder / TURNS_FILE).write_text("".join(lines), encoding="utf-8")
    with pytest.raises(SavedSessionError, match=rf"{TURNS_FILE}:2: not a saved turn: a JSON \w+, not an object"):
        load_session(folder)


@pytest.mark.parametrize("change, message", [
    ({"turn_order": "3"}, "turn_order should be integer, not string '3'"),
    ({"turn_index": True}, "turn_index should be integer, not boolean True"),
    ({"turn_index": 2**70}, "turn_index is out of range"),
    ({"start": 2**70}, "start is out of range"),
    ({"text": ["a"]}, "text should be string, not array"),
    ({"start": "0.5"}, "start should be integer or number or null, not string"),
    ({"formatted": 1}, "formatted should be boolean, not integer 1"),
    ({"speaker": {"name": "A"}}, "speaker should be string or null, not object"),
    ({"words": {"text": "a"}}, "words should be array or null, not object"),
    ({"words": [1]}, r"words\[0\] is a JSON integer, not an object"),
    ({"words": [{"text": "a", "start_ms": "0", "end_ms": 1}]}, r"words\[0\].start_ms should be integer, not string"),
    ({"words": [{"text": "a", "start_ms": 0, "end_ms": 1, "shout": True}]}, "unexpected keyword argument 'shout'"),
    ({"words": [{"start_ms": 0, "end_ms": 1}]}, "missing 1 required keyword-only argument: 'text'"),
])
def test_a_turn_with_a_wrong_field_names_file_line_and_field(tmp_path, change, message):
    path = tmp_path / TURNS_FILE
    bad = json.dumps({**record(1, "second").to_dict(), **change}) + "\n"
    path.write_text(jsonl_line(record(0, "first")) + bad, encoding="utf-8")
    with pytest.raises(SavedSessionError, match=rf"{TURNS_FILE}:2: not a saved turn: .*{message}"):
        load_session(path)


def test_a_complete_last_line_that_is_not_a_turn_is_an_error_not_a_torn_line(tmp_path):
    """Only a line cut short by a crash (no newline after it) is forgiven; a whole line that is wrong is not ours."""
    path = tmp_path / TURNS_FILE
    path.write_text(jsonl_line(record(0, "first")) + '{"hello": "world"}\n', encoding="utf-8")
    with pytest.raises(SavedSessionError, match=rf"{TURNS_FILE}:2: not a saved turn"):
        read_turns(path)
    path.write_text(jsonl_line(record(0, "first")) + "not json\n\n", encoding="utf-8")
    with pytest.raises(SavedSessionError, match=rf"{TURNS_FILE}:2: not a saved turn"):
        read_turns(path)


def test_a_file_that_is_not_jsonl_at_all_is_not_taken_for_an_empty_session(tmp_path):
    """A one-line text file, or an audio file with no newline byte, is not a session whose only turn was torn."""
    (tmp_path / "hostname").write_text("my-machine\n")
    (tmp_path / "noise.raw").write_bytes(bytes(range(11, 256)))  # no b"\n" in it
    (tmp_path / "torn-array.jsonl").write_text("[1, 2")
    for name in ("hostname", "noise.raw", "torn-array.jsonl"):
        with pytest.raises(SavedSessionError, match=rf"{name}:1: not a saved turn"):
            read_turns(tmp_path / name)


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / TURNS_FILE
    path.write_text(jsonl_line(record(0, "first")) + jsonl_line(record(1, "second"))[:30], encoding="utf-8")
    with pytest.warns(UserWarning, match=rf"{TURNS_FILE}:2: skipped an incomplete last line"):
        assert [r.text for r in read_turns(path).rows] == ["first"]
    path.write_text(jsonl_line(record(1, "second"))[:30], encoding="utf-8")  # the first turn was being written
    with pytest.warns(UserWarning, match=rf"{TURNS_FILE}:1: skipped"):
        assert read_turns(path).rows == ()


def test_a_whole_last_line_without_its_newline_is_kept(tmp_path):
    path = tmp_path / TURNS_FILE
    path.write_text(jsonl_line(record(0, "first")) + jsonl_line(record(1, "second")).rstrip("\n"), encoding="utf-8")
    assert [r.text for r in read_turns(path).rows] == ["first", "second"]


def test_an_unreadable_turns_file_is_a_saved_session_error(tmp_path):
    (tmp_path / "sess" / TURNS_FILE).mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(SavedSessionError, match=rf"cannot read .*{TURNS_FILE}"):
        load_session(tmp_path / "sess")


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_session_folder_that_cannot_be_made_is_a_configuration_error(tmp_path, where):
    (tmp_path / "notes.txt").write_text("x")
    folder = tmp_path / "notes.txt" if where == "a file" else tmp_path / "notes.txt" / "sess"
    with pytest.raises(ConfigurationError, match=f"cannot write a session folder at {folder}"):
        SessionStore(folder)
    assert (tmp_path / "notes.txt").read_text() == "x"


# --- properties (hypothesis): any saved line loads as turns or raises SavedSessionError ------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
words = st.builds(
    Word, text=st.text(max_size=8), start_ms=st.integers(0, 10**7), end_ms=st.integers(0, 10**7),
    confidence=st.floats(0, 1), is_final=st.booleans(), speaker=st.none() | st.text(max_size=3),
)
optional_number = st.none() | st.floats(allow_nan=False, allow_infinity=False, width=64)
turn_records = st.builds(
    TurnRecord, session_id=st.text(max_size=6), turn_order=st.integers(0, 10**6), turn_index=st.integers(0, 10**6),
    text=st.text(max_size=20), words=st.lists(words, max_size=3).map(tuple), start=optional_number, end=optional_number,
    confidence=optional_number, speaker=st.none() | st.text(max_size=3), language=st.none() | st.sampled_from(["en", "es"]),
    formatted=st.booleans(), end_of_turn_latency=optional_number,
)
changed_turns = st.tuples(turn_records, st.sampled_from(sorted(TurnRecord.__dataclass_fields__)), json_values).map(
    lambda r: json.dumps({**r[0].to_dict(), r[1]: r[2]}))  # a saved turn with one field replaced by any JSON


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(
    turn_records.map(lambda r: json.dumps(r.to_dict())),
    changed_turns,
    json_values.map(json.dumps),
    st.binary(max_size=20).filter(lambda b: b"\n" not in b).map(lambda b: b.decode("latin-1")),
), max_size=5), end=st.sampled_from(["\n", ""]))
def test_any_turns_file_loads_or_raises_a_saved_session_error(tmp_path, lines, end):
    path = tmp_path / TURNS_FILE
    path.write_bytes(("\n".join(lines) + end).encode("utf-8", "surrogateescape"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a torn last line
        try:
            frame = load_session(path)
        except SavedSessionError as exc:
            assert re.search(rf"{TURNS_FILE}:\d+: not a saved turn", str(exc)), exc
        else:
            assert list(frame.columns) == COLUMNS and len(frame) <= len(lines)


@settings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(turn_records, max_size=6))
def test_saved_turns_read_back_as_written(tmp_path, records):
    folder = tmp_path / f"sess-{len(list(tmp_path.iterdir()))}"
    store = SessionStore(folder)
    for rec in records:
        store.append_turn(rec)
    store.close()
    latest = {rec.key: rec for rec in records}  # a later version of a turn replaces the earlier one
    assert sorted(read_turns(folder).rows, key=lambda r: (r.turn_index, r.key)) == sorted(
        latest.values(), key=lambda r: (r.turn_index, r.key))
