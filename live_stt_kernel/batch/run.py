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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..endpoint import choose_endpoint, language_key
from ..errors import ConfigurationError
from ..export import read_parquet
from ..extras import BATCH, LOCAL, require
from ..language.live import normalise_targets
from ..local.models import DEFAULT_MODEL
from ..progress import Progress
from .plan import BatchSettings, Layout, Recording, content_hash, find_audio, pending, recording
from .work import DECODES, Job, Outcome, run_job, shared_engine

log = logging.getLogger(__name__)

# AssemblyAI's default limit of new streaming sessions is generous, but each stream runs at real time: a cap keeps
# an account (and the machine's uplink) from being flooded; raise it to your account's limit
CLOUD_CONCURRENCY = 10
WORKER_MEMORY_BYTES = 700 * 2**20  # a batch worker's peak with tiny.en, with room (benchmarks/README.md, "Batch")
LARGE_TURNS_BYTES = 512 * 2**20  # turns parts larger than this together come back as a dask DataFrame


@dataclass
class BatchResult:
    """What a batch did. ``turns``, ``metrics`` and ``errors`` are read from ``out`` when first asked for, so
    they hold the recordings done before (a resumed batch) as well as the new ones."""

    out: Path
    recordings: list[Recording]
    outcomes: list[Outcome] = field(default_factory=list)  # this run's, longest recording first
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
        return [by_key[r.key] for r in self.recordings if r.key in by_key]

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
        rows = []
        for rec in self.recordings:
            path = self.layout.errors / f"{rec.key}.json"
            if rec.key not in done and path.exists():
                rows.append(json.loads(path.read_text(encoding="utf-8")))
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

    def _parts(self, folder: Path) -> list[Path]:
        done = self.layout.done_keys()
        keys = dict.fromkeys(r.key for r in self.recordings)  # the same bytes twice: one recording
        return [folder / f"{key}.parquet" for key in keys if key in done and (folder / f"{key}.parquet").exists()]


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
    always measured). ``client``: a `distributed.Client` or a scheduler address; None starts a `LocalCluster` of
    ``workers`` processes (default: as many as cores and memory allow) and closes it at the end; ``workers=0``
    runs here, one recording after another, without Dask. Each worker runs `DECODES` decodes at once, each on
    ``cpu_threads`` threads.

    The server is chosen as for a live session: ``url``/``api_key`` (or ``$LIVE_STT_URL``, ``$ASSEMBLYAI_API_KEY``)
    stream each recording to that server, at most ``concurrency`` at once (the cloud: at real time, default
    `CLOUD_CONCURRENCY`); with none, each worker decodes at full speed with its own copy of the offline model.

    ``force``: transcribe again what is done. Returns a `BatchResult`; a recording that fails is a row of
    ``.errors``, never an exception. Raises `ConfigurationError` for inputs that name nothing, an output folder
    that cannot be written, or another batch writing to the same one."""
    started = time.perf_counter()
    endpoint = choose_endpoint(url, api_key, token=token is not None)
    remote = endpoint.kind != "embedded"
    settings = BatchSettings(model=model, keyterms=tuple(keyterms), translator=translator, coach=coach, remote=remote,
                             translate_to=normalise_targets(translate_to) if translate_to else ())
    if not remote:
        require(LOCAL, "a batch without a server URL or an API key")
    layout = Layout(Path(out))
    layout.make()
    with OnlyWriter(layout):
        _tidy(layout)
        recordings = [recording(path, content_hash(path), settings) for path in find_audio(inputs, outside=layout.out)]
        if force:
            _forget([r for r in recordings if r.key in layout.done_keys()], layout)
        # an unreadable file fails the same way every time (a repaired one has new bytes, so a new key)
        todo, skipped = pending(recordings, layout.done_keys() | layout.failed_for_good())
        result = BatchResult(layout.out, recordings, skipped=skipped)
        log.info("batch: %d recordings, %d done or failed before, %d to do", len(recordings), len(skipped), len(todo))
        if todo:
            url_, key_ = endpoint.resolve() if remote else (None, None)
            cap = (concurrency or (CLOUD_CONCURRENCY if endpoint.cloud else 4)) if remote else 0
            # longest first: the run ends on short recordings, not with one long one on a single busy worker
            jobs = [Job(recording=r, out=str(layout.out), settings=settings, cpu_threads=cpu_threads, url=url_,
                        api_key=key_, token=token, concurrency=cap, language_key=language_key(endpoint, translator))
                    for r in sorted(todo, key=lambda r: os.path.getsize(r.path), reverse=True)]
            with Progress(len(jobs), "transcribing", enabled=progress) as bar:
                result.outcomes = _execute(jobs, client=client, workers=workers, settings=settings, bar=bar)
        result.seconds = time.perf_counter() - started
    log.info("batch: %s", result.summary())
    return result


def _execute(jobs: list[Job], *, client: Any, workers: int | None, settings: BatchSettings, bar: Progress) -> list[Outcome]:
    if client is None and (workers == 0 or settings.remote):  # streams wait on the network: threads here suffice
        if not settings.remote:
            shared_engine(settings, jobs[0].cpu_threads)  # loaded before the first recording's clock starts
        return _here(jobs, bar)
    require(BATCH, "lsk.batch on a Dask cluster (workers=0 runs without one)")
    from .cluster import on_dask

    return on_dask(jobs, client=client, workers=workers or default_workers(jobs[0].cpu_threads), settings=settings, bar=bar)


def _here(jobs: list[Job], bar: Progress) -> list[Outcome]:
    """In this process: remote streams side by side (at most the cap), local decodes one after another."""
    outcomes: list[Outcome] = []
    width = jobs[0].concurrency or 1
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="live-stt-batch") as pool:
        for future in as_completed([pool.submit(run_job, job) for job in jobs]):
            outcome = future.result()
            outcomes.append(outcome)
            bar.advance(failed=outcome.error is not None)
    order = {j.recording.key: n for n, j in enumerate(jobs)}
    return sorted(outcomes, key=lambda o: order[o.key])


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
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
    for rec in recordings:
        for folder in layout.sessions.glob(f"*-{rec.key}"):
            shutil.rmtree(folder, ignore_errors=True)
        for part in (layout.turns / f"{rec.key}.parquet", layout.metrics / f"{rec.key}.parquet"):
            part.unlink(missing_ok=True)


def _concat(frames: list[Any]) -> Any:
    import pandas as pd

    frames = [f for f in frames if len(f.columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


__all__ = ["CLOUD_CONCURRENCY", "BatchResult", "batch", "default_workers"]
