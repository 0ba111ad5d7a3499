"""`lsk.batch` on a real Dask `LocalCluster` (worker processes, each loading the model once), in this process, and
through a v3 server: real speech in, every recording exactly once out, resumable, a dead worker survived."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest
from distributed import Client, LocalCluster
from helpers import wait_until
from speech import conversation, librivox, reading, wer

from live_stt_kernel import batch, load_session
from live_stt_kernel.batch.plan import BatchSettings, Layout, content_hash, find_audio, pending, recording, safe_name
from live_stt_kernel.cli import main
from live_stt_kernel.errors import ConfigurationError
from live_stt_kernel.local.server import LocalServer

SENTENCES = ["Good morning everyone, let us begin the lesson now.", "The first student reads the question aloud."]
WORKER_WAIT_S = 180  # bound on waits for worker processes (each loads the model); never reached on a healthy run


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A folder of real speech (LibriVox conversations, an espeak-ng reading in a subfolder), one unreadable file and
    one text file; returns it with the reference text of each recording by name."""
    folder = tmp_path_factory.mktemp("recordings")
    utterances = librivox()
    refs = {
        "talk-a": conversation(folder / "talk-a.wav", utterances[0:2]),
        "talk-b": conversation(folder / "talk-b.flac", utterances[2:4]),
        "talk-c": conversation(folder / "talk-c.wav", utterances[4:5]),
    }
    (folder / "week2").mkdir()
    refs["reading"] = reading(folder / "week2" / "reading.wav", SENTENCES)
    for stray in (folder / "week2").glob("reading.*.wav"):  # espeak-ng's pieces
        stray.unlink()
    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 20)
    (folder / "notes.txt").write_text("not audio")
    return folder, refs


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """Two worker processes with a thread each, as `batch` starts on a 2-core machine."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as running:
        yield running


def _check_outputs(out: Path, refs: dict[str, str]) -> pd.DataFrame:
    """Every good recording once, with the right words, in every output; returns the turns dataset."""
    layout = Layout(out)
    folders = sorted(layout.sessions.iterdir())
    assert sorted(f.name.rsplit("-", 1)[0] for f in folders) == sorted(refs)
    dataset = pd.read_parquet(layout.turns)
    assert sorted(p.stem for p in layout.turns.iterdir()) == sorted(f.name.rsplit("-", 1)[1] for f in folders)
    assert sorted(p.stem for p in layout.metrics.iterdir()) == sorted(p.stem for p in layout.turns.iterdir())
    assert not dataset.duplicated(["recording", "turn_order"]).any()
    for folder in folders:
        name, key = folder.name.rsplit("-", 1)
        saved = load_session(folder)
        rows = dataset[dataset["recording"] == key]
        assert list(rows["text"]) == list(saved["text"]) and len(rows) >= 1
        assert wer(refs[name], " ".join(saved["text"])) <= 0.2, (name, list(saved["text"]))
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["status"] == "completed" and meta["batch"]["recording"] == key
        assert meta["audio_seconds"] > 1
    return dataset


def test_a_folder_on_a_local_cluster_comes_out_once_per_recording(recordings, client, tmp_path):
    folder, refs = recordings
    result = batch(folder, out=tmp_path / "out", client=client, progress=False)

    dataset = _check_outputs(tmp_path / "out", refs)
    everything = " ".join(dataset.sort_values(["name", "turn_order"])["text"])
    assert wer(" ".join(refs[name] for name in sorted(refs)), everything) <= 0.1  # the live path's bound, over the set
    # the result's tables are the outputs on disk
    turns = result.turns
    assert list(turns.columns[:3]) == ["recording", "name", "path"]
    pd.testing.assert_frame_equal(turns.sort_values(["recording", "turn_order"]).reset_index(drop=True),
                                  dataset.sort_values(["recording", "turn_order"]).reset_index(drop=True),
                                  check_dtype=False)
    metrics = result.metrics.set_index("name")
    assert sorted(metrics.index) == sorted(refs)
    assert (metrics["words"] > 5).all() and (metrics["audio_seconds"] > 1).all() and (metrics["speed"] > 0).all()
    assert set(metrics["worker"]) <= set(client.scheduler_info()["workers"])
    errors = result.errors
    assert list(errors["name"]) == ["broken"] and errors["error"].iloc[0] == "AudioFileError"
    assert len(result.done) == len(refs) and len(result.failed) == 1 and not result.skipped

    again = batch(folder, out=tmp_path / "out", client=client, progress=False)  # a re-run does no work
    assert again.outcomes == [] and len(again.skipped) == len(refs) + 1
    assert "0 transcribed now, 4 done in all, 1 failed" in again.summary()
    assert len(again.turns) == len(turns)


def test_a_worker_killed_mid_recording_leaves_no_trace_and_the_batch_completes(recordings, client, tmp_path):
    folder, refs = recordings
    out = tmp_path / "out"
    done: dict[str, object] = {}
    runner = threading.Thread(target=lambda: done.update(result=batch(folder, out=out, client=client, progress=False)))
    runner.start()
    scratch = Layout(out).partial

    def in_progress() -> tuple[str, str] | None:
        """A recording a worker is decoding now (its scratch folder exists), and that worker."""
        keys = [p.name.split("-")[0] for p in scratch.iterdir()] if scratch.is_dir() else []
        working = client.processing()
        return next(((key, address) for key in keys for address, tasks in working.items()
                     if any(key in str(task) for task in tasks)), None)

    wait_until(lambda: in_progress() is not None or not runner.is_alive(), WORKER_WAIT_S, what="a recording in progress")
    seen = in_progress()
    assert seen is not None, "the batch ended before any recording was seen in progress"
    key, victim = seen
    try:
        client.run(os._exit, 1, workers=[victim])
    except Exception:  # the worker dies before it answers
        pass
    runner.join(WORKER_WAIT_S)
    assert not runner.is_alive()

    result = done["result"]
    assert key in {o.key for o in result.done}  # run again, elsewhere or on the restarted worker
    assert any(p.name.startswith(key) for p in scratch.iterdir())  # the dead worker's scratch: never in the outputs
    _check_outputs(out, refs)

    again = batch(folder, out=out, workers=0, progress=False)  # needs no cluster at all
    assert again.outcomes == [] and not any(scratch.iterdir())  # the leftover is cleared


def test_in_process_batch_translates_and_force_redoes(recordings, tmp_path):
    folder, _ = recordings
    inputs = tmp_path / "week2"
    inputs.mkdir()
    (inputs / "reading.wav").write_bytes((folder / "week2" / "reading.wav").read_bytes())
    out = inputs / "results"  # inside the inputs: its audio.wav files are no recordings
    options = {"out": out, "workers": 0, "progress": False}
    result = batch(inputs, translate_to="es", translator="apertium", **options)
    [session] = result.sessions
    saved = load_session(session)
    assert "translation_es" in saved.columns and saved["translation_es"].notna().all()
    assert any(w in " ".join(saved["translation_es"]).lower() for w in ("buenos", "estudiante", "lección"))
    assert "translation_es" in result.turns.columns
    before = (session / "meta.json").stat().st_mtime_ns

    again = batch(inputs, translate_to="es", translator="apertium", **options)
    assert len(again.recordings) == 1 and again.outcomes == []
    other = batch(inputs, **options)  # other settings: another key, another folder
    assert len(other.done) == 1 and len(list(Layout(out).sessions.iterdir())) == 2
    forced = batch(inputs, translate_to="es", translator="apertium", force=True, **options)
    assert len(forced.done) == 1 and forced.sessions[0].name == session.name
    assert (session / "meta.json").stat().st_mtime_ns != before


def test_a_batch_through_a_v3_server_streams_each_recording(whisper, recordings, tmp_path):
    folder, refs = recordings
    with LocalServer(whisper) as server:
        result = batch([folder / "talk-a.wav", folder / "talk-c.wav", folder / "broken.wav"], out=tmp_path / "out",
                       url=server.url, api_key=server.token, workers=0, concurrency=2, progress=False)
    assert sorted(o.path.rsplit("/", 1)[1] for o in result.done) == ["talk-a.wav", "talk-c.wav"]
    for session in result.sessions:
        name = session.name.rsplit("-", 1)[0]
        assert wer(refs[name], " ".join(load_session(session)["text"])) <= 0.2
        assert json.loads((session / "meta.json").read_text())["server"].startswith("ws://127.0.0.1")
    assert list(result.errors["error"]) == ["AudioFileError"]
    assert server.token not in json.dumps([json.loads((s / "meta.json").read_text()) for s in result.sessions])


def test_the_command_line_runs_a_batch_on_its_own_cluster_and_says_what_failed(recordings, tmp_path, capsys):
    folder, _refs = recordings
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code = main(["batch", str(folder / "talk-*.wav"), str(folder / "broken.wav"), "--out", str(tmp_path / "out"),
                 "--workers", "1", "-q"])
    captured = capsys.readouterr()
    assert code == 4
    # the LocalCluster it started is gone: no worker process left behind
    wait_until(lambda: {p.pid for p in psutil.Process().children(recursive=True)} <= before, WORKER_WAIT_S,
               what="the batch's worker processes to end")
    assert "3 recordings: 2 transcribed now, 2 done in all, 1 failed" in captured.out
    assert "failed: " in captured.err and "broken.wav: AudioFileError" in captured.err
    assert main(["batch", str(tmp_path / "nothing-*.wav"), "--out", str(tmp_path / "out2"), "--workers", "0"]) == 2

    # the unreadable file is not tried again, unless forced (which redoes the others too)
    assert main(["batch", str(folder / "broken.wav"), "--out", str(tmp_path / "out"), "--workers", "0", "-q"]) == 4
    assert "1 recordings: 0 transcribed now, 0 done in all, 1 failed" in capsys.readouterr().out
    assert main(["batch", str(folder / "talk-c.wav"), str(folder / "broken.wav"), "--out", str(tmp_path / "out"),
                 "--workers", "0", "--force", "-q"]) == 4
    assert "2 recordings: 1 transcribed now, 1 done in all, 1 failed" in capsys.readouterr().out


def test_a_backend_that_cannot_be_used_stops_the_batch_before_any_work(recordings, tmp_path, monkeypatch):
    folder, _ = recordings
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="base_url"):
        batch(folder / "talk-c.wav", out=tmp_path / "out", workers=0, translate_to="es", translator="openai",
              progress=False)
    assert not (tmp_path / "out").exists()


def test_plans_are_pure_and_keys_follow_bytes_and_settings(recordings, tmp_path):
    folder, _ = recordings
    found = find_audio(folder)
    assert [p.name for p in found] == ["broken.wav", "talk-a.wav", "talk-b.flac", "talk-c.wav", "reading.wav"]
    assert find_audio([folder / "talk-*.wav", folder / "talk-a.wav"]) == [folder / "talk-a.wav", folder / "talk-c.wav"]
    with pytest.raises(ConfigurationError, match="no such file"):
        find_audio(tmp_path / "missing")
    with pytest.raises(ConfigurationError, match="no audio files"):
        find_audio(str(tmp_path / "*.flac"))

    copy = tmp_path / "renamed.wav"
    copy.write_bytes((folder / "talk-a.wav").read_bytes())
    plain, spanish = BatchSettings(), BatchSettings(translate_to=("es",))
    a = recording(folder / "talk-a.wav", content_hash(folder / "talk-a.wav"), plain)
    same = recording(copy, content_hash(copy), plain)
    assert a.key == same.key and a.name == "talk-a" and same.name == "renamed"
    assert recording(copy, content_hash(copy), spanish).key != a.key
    todo, skipped = pending([a, same], set())
    assert todo == [a] and skipped == [same]  # the same bytes twice: once
    assert safe_name("Week 3: Q&A / final") == "Week-3-Q-A-final" and safe_name("...") == "recording"


def test_a_second_batch_into_the_same_folder_is_refused(recordings, tmp_path):
    folder, _ = recordings
    import fcntl

    (tmp_path / "out").mkdir()
    fd = os.open(tmp_path / "out" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(ConfigurationError, match="another batch is writing"):
            batch(folder / "talk-c.wav", out=tmp_path / "out", workers=0, progress=False)
    finally:
        os.close(fd)
