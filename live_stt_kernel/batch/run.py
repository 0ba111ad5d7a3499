"""`batch()`: a folder of recordings through Dask, each exactly once, resumable.

Dask (``distributed``) is the scheduler: with no ``client`` a `LocalCluster` sized to this machine (worker
processes, one recording at a time each), with a `distributed.Client` or a scheduler address the same code on
any cluster (dask-jobqueue, dask-kubernetes, Coiled). The output folder must then be one every worker can write
(a shared file system). Dask reruns the recording of a worker that dies; the outputs of a recording appear only
when it is done (see `work`), so it is in the results exactly once, and a re-run skips what is done.

Thread: `batch` runs on the caller's thread and returns when every recording is done or has failed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..endpoint import choose_endpoint, language_key
from ..errors import ConfigurationError
from ..export import read_parquet
from ..extras import BATCH, LOCAL, require
from ..language.backends import as_translator, resolve_llm
from ..language.live import normalise_targets
from ..local.models import DEFAULT_MODEL
from ..progress import Progress
from .plan import BatchSettings, Layout, Recording, content_hash, find_audio, pending, recording
from .work import DECODES, STOPPING, Job, Outcome, hold_engine, release_engine, run_job

log = logging.getLogger(__name__)

# AssemblyAI's default limit of new streaming sessions is generous, but each stream runs at real time: a cap keeps
# an account (and the machine's uplink) from being flooded; raise it to your account's limit
CLOUD_CONCURRENCY = 10
WORKER_MEMORY_BYTES = 700 * 2**20  # a batch worker's peak with tiny.en, with room (benchmarks/README.md, "Batch")
LARGE_TURNS_BYTES = 512 * 2**20  # turns parts larger than this together come back as a dask DataFrame


@dataclass
class BatchResult:
    """What a batch did. ``turns``, ``metrics`` and ``errors`` are read from ``out`` each time they are asked
    for, so they hold the recordings done before (a resumed batch) as well as the new ones."""

    out: Path
    recordings: list[Recording]
    outcomes: list[Outcome] = field(default_factory=list)  # this run's, in input order
    skipped: list[Recording] = field(default_factory=list)  # done by an earlier run, or unreadable then
    seconds: float = 0.0

    @property
    def layout(self) -> Layout:
        """Where the outputs are."""
        return Layout(self.out)

    @property
    def failed(self) -> list[Outcome]:
        """The recordings this run could not transcribe (`errors` has them all, earlier runs' too)."""
        return [o for o in self.outcomes if o.error is not None]

    @property
    def done(self) -> list[Outcome]:
        """The recordings this run transcribed."""
        return [o for o in self.outcomes if o.error is None]

    @property
    def sessions(self) -> list[Path]:
        """The session folders of this batch's recordings that are done, in input order (`load_session` reads each)."""
        by_key = {p.name.rsplit("-", 1)[-1]: p for p in self.layout.sessions.iterdir()} if self.layout.sessions.is_dir() else {}
        return [by_key[key] for key in self._keys() if key in by_key]

    @property
    def turns(self) -> Any:
        """Every turn of every recording done, with ``recording``, ``name`` and ``path`` first: a pandas DataFrame,
        or a dask DataFrame when the parts are larger than `LARGE_TURNS_BYTES`."""
        parts = self._parts(self.layout.turns)
        if sum(p.stat().st_size for p in parts) > LARGE_TURNS_BYTES:
            import dask.dataframe as dd

            return dd.read_parquet([str(p) for p in parts])
        return _concat([read_parquet(p) for p in parts])

    @property
    def metrics(self) -> Any:
        """One row per recording done: length, time taken, speed, and the speaking metrics of `coach`."""
        import pandas as pd

        return _concat([pd.read_parquet(p) for p in self._parts(self.layout.metrics)])

    @property
    def errors(self) -> Any:
        """One row per recording that failed (and has not succeeded since): path, error type and message."""
        import pandas as pd

        done = self.layout.done_keys()
        by_key = {r.key: r for r in self.recordings}
        outcomes = {o.key: o for o in self.outcomes if o.error is not None}
        rows = []
        for key in self._keys():
            path = self.layout.errors / f"{key}.json"
            if key in done:
                continue
            if path.exists():
                rows.append(json.loads(path.read_text(encoding="utf-8")))
            elif key in outcomes:  # no record on disk: the worker died with it every time, or could not write it
                rec, outcome = by_key[key], outcomes[key]
                error, _, message = (outcome.error or "").partition(": ")
                rows.append({"recording": key, "name": rec.name, "path": rec.path, "error": error, "message": message,
                             "permanent": False, "worker": outcome.worker})
        columns = ["recording", "name", "path", "error", "message", "permanent", "at", "worker"]
        return pd.DataFrame(rows, columns=columns).astype({c: "string" for c in columns if c != "permanent"})

    @property
    def audio_hours(self) -> float:
        """Hours of audio transcribed by this run."""
        return sum(o.audio_seconds for o in self.done) / 3600

    def summary(self) -> str:
        """One line: what was done, skipped and failed, and how fast."""
        speed = f", {self.audio_hours * 3600 / self.seconds:.1f}x real time" if self.seconds and self.done else ""
        failed = len(self.errors)
        return (f"{len(self.recordings)} recordings: {len(self.done)} transcribed now, {len(self.sessions)} done in all, "
                f"{failed} failed (.errors) in {self.seconds:.1f} s{speed}; outputs in {self.out}")

    def __repr__(self) -> str:
        return f"<BatchResult {self.summary()}>"

    def _keys(self) -> list[str]:
        return list(dict.fromkeys(r.key for r in self.recordings))  # the same bytes twice: one recording

    def _parts(self, folder: Path) -> list[Path]:
        done = self.layout.done_keys()
        return [folder / f"{key}.parquet" for key in self._keys() if key in done and (folder / f"{key}.parquet").exists()]


def batch(
    inputs: str | Path | Iterable[str | Path],
    *,
    out: str | Path = "batch",
    translate_to: str | Sequence[str] | None = None,
    translator: str | None = None,
    coach: bool = False,
    client: Any = None,
    workers: int | None = None,
    cpu_threads: int = 1,
    model: str = DEFAULT_MODEL,
    keyterms: Sequence[str] = (),
    url: str | None = None,
    api_key: str | None = None,
    token: str | None = None,
    concurrency: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> BatchResult:
    """Transcribe every recording in ``inputs`` (a folder, a glob pattern, files, or a list of them) into ``out``.

    ``translate_to``: translate each turn (``translator``: a backend name, default as in `translate`);
    ``coach``: also write each recording's coaching report (an LLM call per recording; the speaking metrics are
    always measured). ``client``: a `distributed.Client` or a scheduler address (``out`` must then be a folder every
    worker shares); None starts a `LocalCluster` of ``workers`` processes on loopback (default: one per two cores,
    as memory allows) and closes it at the end; ``workers=0`` runs here, one recording after another, without Dask.
    Each worker runs `DECODES` decodes at once, each on ``cpu_threads`` threads.

    The server is chosen as for a live session: ``url``/``api_key`` (or ``$LIVE_STT_URL``, ``$ASSEMBLYAI_API_KEY``)
    stream each recording to that server, at most ``concurrency`` at once (the cloud: at real time, default
    `CLOUD_CONCURRENCY`), from threads here unless a ``client`` is given; ``token`` is that server's own token (a
    one-time token would open one session only). With none, each worker decodes at full speed with its own copy
    of the offline model.

    ``force``: transcribe again what is done or failed (its old outputs go first). Returns a `BatchResult`; a
    recording that fails is a row of ``.errors``, never an exception. An interrupt stops the batch: what is done
    stays, the rest is done by the next run. Raises `ConfigurationError` for inputs that name nothing, a backend
    that cannot be used, an output folder that cannot be written, or another batch writing to the same one."""
    started = time.perf_counter()
    endpoint = choose_endpoint(url, api_key, token=token is not None)
    remote = "" if endpoint.kind == "embedded" else "cloud" if endpoint.cloud else "server"
    settings = BatchSettings(model="" if remote else model, keyterms=tuple(keyterms), translator=translator, coach=coach,
                             remote=remote, translate_to=normalise_targets(translate_to) if translate_to else ())
    if not remote:
        require(LOCAL, "a batch without a server URL or an API key")
    keys = {"language_key": language_key(endpoint, translator), "coach_key": language_key(endpoint, None)}
    _check_backends(settings, **keys)  # a missing key or base URL: one error now, not one per recording later
    layout = Layout(Path(out).absolute())  # workers elsewhere get the same path, not one relative to their own folder
    layout.make()
    with OnlyWriter(layout):
        _tidy(layout)
        recordings, unreadable = _hash_all(find_audio(inputs, outside=(layout.sessions, layout.partial)), settings)
        if force:
            _forget(recordings, layout)
        # an unreadable file fails the same way every time (a repaired one has new bytes, so a new key)
        todo, skipped = pending(recordings, layout.done_keys() | layout.failed_for_good())
        result = BatchResult(layout.out, recordings + [o for o, _ in unreadable], skipped=skipped)
        result.outcomes = [outcome for _, outcome in unreadable]
        log.info("batch: %d recordings, %d done or failed before, %d to do", len(recordings), len(skipped), len(todo))
        if todo:
            # the cloud is chosen by the session itself (its own rules for the key and the translator)
            url_, key_ = (None, endpoint.api_key) if endpoint.kind == "cloud" else endpoint.resolve() if remote else (None, None)
            cap = (concurrency or (CLOUD_CONCURRENCY if endpoint.cloud else 4)) if remote else 0
            # longest first: the run ends on short recordings, not with one long one on a single busy worker
            jobs = [Job(recording=r, out=str(layout.out), settings=settings, cpu_threads=cpu_threads, url=url_,
                        api_key=key_, token=token, concurrency=cap, **keys)
                    for r in sorted(todo, key=lambda r: os.path.getsize(r.path), reverse=True)]
            with Progress(len(jobs), "transcribing", enabled=progress) as bar:
                result.outcomes += _checked(_execute(jobs, client=client, workers=workers, settings=settings, bar=bar),
                                            layout, todo)
        result.seconds = time.perf_counter() - started
    log.info("batch: %s", result.summary())
    return result


def _check_backends(settings: BatchSettings, *, language_key: str | None, coach_key: str | None) -> None:
    """Build (and drop) the translator and the coaching model once: nothing is started or sent, but a backend that
    cannot be used (no key, no base URL) raises its `ConfigurationError` here."""
    if settings.translate_to:
        translator = as_translator(settings.translator, api_key=language_key)
        close = getattr(translator, "close", None)
        if close is not None:
            close()
    if settings.coach:
        resolve_llm(None, api_key=coach_key)


def _hash_all(paths: list[Path], settings: BatchSettings) -> tuple[list[Recording], list[tuple[Recording, Outcome]]]:
    """The recordings, and for each file that cannot even be read here, a stand-in recording (keyed by its path) with
    its failure: a row of ``.errors``, never the end of the batch."""
    recordings: list[Recording] = []
    unreadable: list[tuple[Recording, Outcome]] = []
    for path in paths:
        try:
            recordings.append(recording(path, content_hash(path), settings))
        except OSError as exc:
            stand_in = recording(path, f"unreadable:{path}", settings)
            message = f"AudioFileError: cannot read {path.name}: {exc.strerror or exc}"
            unreadable.append((stand_in, Outcome(key=stand_in.key, path=str(path), error=message)))
    return recordings, unreadable


def _checked(outcomes: list[Outcome], layout: Layout, todo: list[Recording]) -> list[Outcome]:
    """Outcomes in input order; a success whose session folder the caller cannot see (a worker wrote to a folder of
    its own: ``out`` is not shared with it) is a failure."""
    done = layout.done_keys()
    order = {r.key: n for n, r in enumerate(todo)}
    checked = [o if o.error is not None or o.key in done else
               replace(o, error=f"OutputNotShared: the worker {o.worker or ''} wrote outputs this machine cannot see "
                                f"in {layout.out}: give the batch a folder every worker shares")
               for o in outcomes]
    return sorted(checked, key=lambda o: order.get(o.key, 0))


def _execute(jobs: list[Job], *, client: Any, workers: int | None, settings: BatchSettings, bar: Progress) -> list[Outcome]:
    if client is None and (workers == 0 or settings.remote):  # streams wait on the network: threads here suffice
        if settings.remote:
            return _here(jobs, bar)
        hold_engine(settings, jobs[0].cpu_threads)  # loaded before the first recording's clock starts
        try:
            return _here(jobs, bar)
        finally:
            release_engine(settings, jobs[0].cpu_threads)  # its threads end with the batch
    require(BATCH, "lsk.batch on a Dask cluster (workers=0 runs without one)")
    from .cluster import on_dask

    return on_dask(jobs, client=client, workers=workers or default_workers(jobs[0].cpu_threads), settings=settings, bar=bar)


def _here(jobs: list[Job], bar: Progress) -> list[Outcome]:
    """In this process: remote streams side by side (at most the cap), local decodes one after another. An interrupt
    (Ctrl-C, the kernel's stop button) drops the recordings not started and ends those streaming; the recording
    being decoded finishes (seconds)."""
    outcomes: list[Outcome] = []
    pool = ThreadPoolExecutor(max_workers=jobs[0].concurrency or 1, thread_name_prefix="live-stt-batch")
    try:
        for future in as_completed([pool.submit(run_job, job) for job in jobs]):
            outcome = future.result()
            outcomes.append(outcome)
            bar.advance(failed=outcome.error is not None)
    except BaseException:
        STOPPING.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        STOPPING.clear()
    return outcomes


def default_workers(cpu_threads: int) -> int:
    """Worker processes for a `LocalCluster` on this machine: one per `DECODES` x ``cpu_threads`` cores, as many as
    memory holds."""
    import psutil

    cores = len(os.sched_getaffinity(0))
    return max(1, min(cores // (DECODES * cpu_threads), int(psutil.virtual_memory().available // WORKER_MEMORY_BYTES)))


class OnlyWriter:
    """Hold ``out/.lock`` for the batch, so a second batch into the same folder stops at once with a clear error."""

    def __init__(self, layout: Layout):
        self.path = layout.out / ".lock"
        self.fd = -1

    def __enter__(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigurationError(f"cannot write the batch output folder {self.path.parent}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise ConfigurationError(f"another batch is writing to {self.path.parent}; wait for it or choose another out") from None

    def __exit__(self, *exc: Any) -> None:
        os.close(self.fd)  # closing the descriptor lets go of the lock


def _tidy(layout: Layout) -> None:
    """Clear what an interrupted run left: scratch folders, and parts of recordings whose folder never arrived."""
    for scratch in layout.partial.iterdir():
        shutil.rmtree(scratch, ignore_errors=True)
    done = layout.done_keys()
    for folder in (layout.turns, layout.metrics):
        for part in folder.iterdir():
            if part.name.startswith(".") or part.name.removesuffix(".parquet") not in done:
                part.unlink(missing_ok=True)


def _forget(recordings: list[Recording], layout: Layout) -> None:
    """``force``: the outputs and error records of these recordings go, so they are done again."""
    done = {p.name.rsplit("-", 1)[-1]: p for p in layout.sessions.iterdir()}
    for rec in recordings:
        if rec.key in done:
            shutil.rmtree(done[rec.key], ignore_errors=True)
        for part in (layout.turns / f"{rec.key}.parquet", layout.metrics / f"{rec.key}.parquet",
                     layout.errors / f"{rec.key}.json"):
            part.unlink(missing_ok=True)


def _concat(frames: list[Any]) -> Any:
    import pandas as pd

    frames = [f for f in frames if len(f.columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


__all__ = ["CLOUD_CONCURRENCY", "BatchResult", "batch", "default_workers"]
