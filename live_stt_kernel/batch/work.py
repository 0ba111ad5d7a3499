"""One recording, on whichever process runs it (a Dask worker, or this one): transcribed, translated, measured,
and put in place atomically.

Everything is written under ``.partial/`` first and renamed into place at the end, the session folder last (its
presence means "done"): a worker killed half-way leaves only a scratch folder, which the next run clears, and Dask
runs the recording again elsewhere. A recording that fails (an unreadable file, a server that refuses) comes back
as an `Outcome` with ``error`` set and an ``errors/<key>.json`` beside the others; it never stops the batch.

Each worker process loads the speech model once (`shared_engine`; on Dask, `cluster.EnginePlugin` loads it as the
worker starts).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..audio.sources import WavSource
from ..coaching.report import CoachingReport, save_report, write_report
from ..errors import AudioFileError, ConfigurationError
from ..events import SessionBegan, Turn
from ..export import to_parquet
from ..language.backends import as_translator, resolve_llm
from ..language.batch import translate_records
from ..language.live import append_translations
from ..local.engine import Engine
from ..local.recognizer import WhisperRecognizer
from ..session import Session, load_session
from ..store import SessionStore, as_records, write_json_atomic
from ..transcript import Transcript, TurnRecord
from ..v3.protocol import SessionConfig, StreamingParams
from .plan import BatchSettings, Layout, Recording

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """What a worker needs for one recording. The credentials travel only to the workers (never in a repr)."""

    recording: Recording
    out: str
    settings: BatchSettings
    cpu_threads: int = 1
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # the v3 server's (remote)
    token: str | None = field(default=None, repr=False)
    language_key: str | None = field(default=None, repr=False)  # for the translator: see `endpoint.language_key`
    coach_key: str | None = field(default=None, repr=False)  # the same for the coaching model (the default backend)
    concurrency: int = 0  # remote: sessions at once across the cluster (0: no cap here)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What became of one recording: ``error`` is None when its outputs are in place."""

    key: str
    path: str
    audio_seconds: float = 0.0
    seconds: float = 0.0  # wall-clock time of the work
    turns: int = 0
    error: str | None = None
    worker: str = ""


# --- the model, once per process ---------------------------------------------------------------

# Decodes at once per process, each on ``cpu_threads`` threads. Two single-thread decodes beat one decode on two threads:
# a recording's check of the turn so far runs beside the final of the turn before (on 2 cores, 8 LibriVox conversations:
# 13.6x real time against 9.0x, the same turns; benchmarks/README.md, "Batch")
DECODES = 2
BLOCK_MS = 1000  # audio handed to the engine at a time: fewer hand-offs than a live 100 ms, the same turns (measured)

_ENGINES: dict[tuple[str, int, str], Engine] = {}
_USERS: dict[tuple[str, int, str], int] = {}  # batches (or worker plugins) holding each engine
_ENGINES_LOCK = threading.Lock()


def _engine_key(settings: BatchSettings, cpu_threads: int) -> tuple[str, int, str]:
    return settings.model, cpu_threads, json.dumps(asdict(settings.turns), sort_keys=True)


def shared_engine(settings: BatchSettings, cpu_threads: int) -> Engine:
    """This process's `Engine` for ``settings`` (loaded on first use, then reused by every recording). Raises
    `ConfigurationError` for a model name faster-whisper does not know."""
    cache_key = _engine_key(settings, cpu_threads)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(cache_key)
        if engine is None:
            # no second copy of the model for lone decodes (the server's default): more workers use more cores
            try:
                recognizer = WhisperRecognizer(settings.model, cpu_threads=cpu_threads, workers=DECODES,
                                               alone_threads=cpu_threads)
            except ValueError as exc:  # faster-whisper's answer to a model name it does not know
                raise ConfigurationError(f"model {settings.model!r}: {exc}") from exc
            engine = _ENGINES[cache_key] = Engine(recognizer, settings=replace(settings.turns), workers=DECODES)
        return engine


def hold_engine(settings: BatchSettings, cpu_threads: int) -> Engine:
    """`shared_engine`, counted as in use until `release_engine`: a batch here, or a Dask worker's plugin."""
    engine = shared_engine(settings, cpu_threads)
    with _ENGINES_LOCK:
        key = _engine_key(settings, cpu_threads)
        _USERS[key] = _USERS.get(key, 0) + 1
    return engine


def release_engine(settings: BatchSettings, cpu_threads: int) -> None:
    """One holder is done with the engine; the last one closes it (its decode threads end, its model is freed)."""
    key = _engine_key(settings, cpu_threads)
    with _ENGINES_LOCK:
        _USERS[key] = _USERS.get(key, 1) - 1
        engine = _ENGINES.pop(key) if _USERS[key] <= 0 and key in _ENGINES else None
        if _USERS[key] <= 0:
            del _USERS[key]
    if engine is not None:
        engine.close()


# --- one recording ----------------------------------------------------------------------------

STOPPING = threading.Event()  # set by a batch run in this process when the user interrupts it
STOP_POLL_S = 0.2


class _Interrupted(Exception):
    """The batch was interrupted while this recording was being streamed: its session ended early (caught below:
    the recording's error row says "Interrupted")."""


def run_job(job: Job) -> Outcome:
    """Transcribe one recording and put its outputs in place; failures come back in the `Outcome`."""
    layout = Layout(Path(job.out))
    rec = job.recording
    scratch = layout.partial / f"{rec.key}-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    worker = _worker_name()
    try:
        audio_seconds, turns = (_remote if job.settings.remote else _local)(job, scratch)
        _finish(job, layout, scratch, audio_seconds, time.perf_counter() - started, worker)
    except Exception as exc:  # any failure of one recording is that recording's error row, never the batch's end
        shutil.rmtree(scratch, ignore_errors=True)
        if not layout.session(rec).is_dir():  # parts already renamed into place, without the folder that makes them count
            for part in (layout.turns / f"{rec.key}.parquet", layout.metrics / f"{rec.key}.parquet"):
                part.unlink(missing_ok=True)
        message = f"{_kind(exc)}: {exc}"
        log.info("%s failed: %s", rec.path, message)
        _write_error(layout, job, exc)
        return Outcome(key=rec.key, path=rec.path, seconds=time.perf_counter() - started, error=message, worker=worker)
    return Outcome(key=rec.key, path=rec.path, audio_seconds=audio_seconds, seconds=time.perf_counter() - started,
                   turns=turns, worker=worker)


def _local(job: Job, scratch: Path) -> tuple[float, int]:
    """Decode through this process's engine at full speed: the turns a live session would get."""
    source = WavSource(job.recording.path, realtime=False, block_ms=BLOCK_MS)  # AudioFileError for a file it cannot read
    engine = shared_engine(job.settings, job.cpu_threads)
    store = SessionStore(scratch)
    try:
        store.update_meta(started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), server=f"in-process engine ({job.settings.model})",
                          source=f"file:{Path(job.recording.path).name}", status="running")

        def recorded() -> Iterator[bytes]:
            for pcm in source:
                store.audio.append(pcm)
                yield pcm

        config = SessionConfig(format_turns=True, keyterms_prompt=list(job.settings.keyterms))
        transcript = Transcript()
        session_ids: list[str] = []
        for event in engine.transcribe(recorded(), config=config):
            before, transcript = transcript, transcript.apply(event)
            if isinstance(event, SessionBegan):
                session_ids.append(event.session_id)
            if isinstance(event, Turn) and event.end_of_turn:
                for row in transcript.changed_rows(before, [event.turn_order]):
                    store.append_turn(row)
        store.update_meta(session_ids=session_ids, audio_seconds=round(store.audio.seconds, 3), turns=len(transcript.rows))
    finally:
        store.close()
    _translate(job, scratch, list(transcript.rows))
    return store.audio.seconds, len(transcript.rows)


def _translate(job: Job, scratch: Path, rows: list[TurnRecord]) -> None:
    if not job.settings.translate_to or not rows:
        return
    translator = as_translator(job.settings.translator, api_key=job.language_key)
    try:
        results = translate_records(rows, to=job.settings.translate_to, translator=translator, progress=False)
    finally:
        close = getattr(translator, "close", None)
        if close is not None:
            close()
    append_translations(scratch, results)


def _remote(job: Job, scratch: Path) -> tuple[float, int]:
    """Stream to a v3 server (the cloud at real time, or a shared server), ``job.concurrency`` at once across the
    cluster; the session writes the folder itself."""
    with RemoteSlot(job.concurrency):
        session = Session(job.recording.path, url=job.url, api_key=job.api_key, token=job.token, folder=scratch,
                          realtime=False, params=StreamingParams(format_turns=True, keyterms_prompt=list(job.settings.keyterms)),
                          translate_to=list(job.settings.translate_to) or None, translator=job.settings.translator)
        session.start()
        while session.running:  # every wait inside the session is bounded by its stall windows
            if STOPPING.wait(STOP_POLL_S):
                session.stop()  # bounded; what it streamed is not the whole recording, so it is not kept
                raise _Interrupted("the batch was interrupted")
        session.wait()
    meta = json.loads((scratch / "meta.json").read_text(encoding="utf-8"))
    return float(meta.get("audio_seconds") or 0.0), int(meta.get("turns") or 0)


class RemoteSlot:
    """A lease of the cluster-wide `distributed.Semaphore` that caps sessions at once (the account's limit);
    nothing outside a Dask worker (there, the caller's thread pool is the cap)."""

    def __init__(self, concurrency: int):
        self.semaphore: Any = None
        if concurrency > 0 and _worker_name():
            from distributed import Semaphore

            self.semaphore = Semaphore(max_leases=concurrency, name=f"live-stt-sessions-{concurrency}")

    def __enter__(self) -> None:
        if self.semaphore is not None:
            self.semaphore.acquire()

    def __exit__(self, *exc: Any) -> None:
        if self.semaphore is not None:
            self.semaphore.release()
            self.semaphore.close()  # its lease-refresh callback ends with it


def _finish(job: Job, layout: Layout, scratch: Path, audio_seconds: float, seconds: float, worker: str) -> None:
    """Measure, write the turns and metrics parts, then rename the session folder into place (the last step)."""
    rec = job.recording
    frame = load_session(scratch)
    records = as_records(frame)
    report = write_report(records, llm=resolve_llm(None, api_key=job.coach_key) if job.settings.coach else None)
    if job.settings.coach:
        save_report(report, scratch)
    meta_path = scratch / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.update(ended_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), status="completed", batch={
        "recording": rec.key, "path": rec.path, "settings": job.settings.digest(), "seconds": round(seconds, 3),
        "worker": worker})
    write_json_atomic(meta_path, meta)
    labelled = frame.copy()
    for position, (column, value) in enumerate((("recording", rec.key), ("name", rec.name), ("path", rec.path))):
        labelled.insert(position, column, value)
        labelled[column] = labelled[column].astype("string")
    _parquet_atomic(labelled, layout.turns / f"{rec.key}.parquet")
    _parquet_atomic(metrics_row(rec, report, audio_seconds=audio_seconds, seconds=seconds, worker=worker),
                    layout.metrics / f"{rec.key}.parquet")
    target = layout.session(rec)
    try:
        os.replace(scratch, target)
    except OSError:  # another run of the same recording finished first (a task run twice): its outputs stand
        if not target.is_dir():
            raise
        shutil.rmtree(scratch, ignore_errors=True)
    (layout.errors / f"{rec.key}.json").unlink(missing_ok=True)


def metrics_row(rec: Recording, report: CoachingReport, *, audio_seconds: float, seconds: float, worker: str) -> Any:
    """One recording's row of the metrics table."""
    import pandas as pd

    m = report.metrics
    row = {
        "recording": rec.key, "name": rec.name, "path": rec.path,
        "audio_seconds": round(audio_seconds, 3), "seconds": round(seconds, 3),
        "speed": round(audio_seconds / seconds, 2) if seconds > 0 else None,  # audio seconds per second of work
        "turns": m.turns, "words": m.words, "speaking_seconds": round(m.speaking_seconds, 3), "wpm": m.wpm,
        "fillers": len(m.fillers), "filler_rate": round(m.filler_rate, 2), "hedges": len(m.hedges),
        "hedge_rate": round(m.hedge_rate, 2), "pauses": len(m.pauses), "long_sentences": len(m.long_sentences),
        "questions": len(m.questions), "repeats": len(m.repeats), "worker": worker,
    }
    frame = pd.DataFrame([row])
    for column in ("recording", "name", "path", "worker"):
        frame[column] = frame[column].astype("string")
    return frame.astype({"wpm": "float64", "speed": "float64"})


def _parquet_atomic(frame: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    if "text" in frame.columns:
        to_parquet(frame, tmp)
    else:
        frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _write_error(layout: Layout, job: Job, exc: Exception) -> None:
    rec = job.recording
    record = {"recording": rec.key, "name": rec.name, "path": rec.path, "error": _kind(exc),
              "message": str(exc), "permanent": _depends_on_bytes(exc, Path(rec.path)),
              "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "worker": _worker_name()}
    try:
        write_json_atomic(layout.errors / f"{rec.key}.json", record)
    except OSError as write_error:  # the outcome still carries the error to the caller
        log.warning("could not record the error of %s: %s", rec.path, write_error)


def _kind(exc: Exception) -> str:
    return type(exc).__name__.lstrip("_")


def _depends_on_bytes(exc: Exception, path: Path) -> bool:
    """Whether the failure comes from the file's contents (not audio, damaged), so it will fail the same way until
    the bytes change; a missing file (not there on this worker), settings or the machine may be fixed meanwhile."""
    return isinstance(exc, AudioFileError) and path.is_file() and os.access(path, os.R_OK)


def _worker_name() -> str:
    """The Dask worker's address, or "" outside one."""
    try:
        from distributed import get_worker
    except ImportError:
        return ""
    try:
        return str(get_worker().address)
    except ValueError:  # not in a worker
        return ""


__all__ = ["DECODES", "STOPPING", "Job", "Outcome", "hold_engine", "metrics_row", "release_engine", "run_job",
           "shared_engine"]
