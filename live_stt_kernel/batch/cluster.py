"""The Dask side of a batch: the cluster (one this process starts, or the caller's), the speech model loaded once
per worker, and the recordings' tasks, gathered as they finish. Imported only when `distributed` is needed."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import uuid
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin, as_completed

from ..local.launcher import SERVER_ENV
from ..progress import Progress
from .plan import BatchSettings
from .work import Job, Outcome, hold_engine, release_engine, run_job

log = logging.getLogger(__name__)

PLUGIN_NAME = "live-stt-engine"


class EnginePlugin(WorkerPlugin):  # type: ignore[misc, unused-ignore]
    """Loads the speech model as a worker starts (and again after its nanny restarts it), before its first
    recording, and lets go of it when the batch ends or the worker closes (the last holder closes it)."""

    def __init__(self, settings: BatchSettings, cpu_threads: int):
        self.settings = settings
        self.cpu_threads = cpu_threads

    async def setup(self, worker: Any) -> None:
        """Load the model off the worker's event loop (Dask calls this as the worker starts)."""
        keep_large_allocations_mapped()
        await asyncio.get_running_loop().run_in_executor(None, hold_engine, self.settings, self.cpu_threads)

    def teardown(self, worker: Any) -> None:
        """Let go of it (Dask calls this when the plugin is removed or the worker closes)."""
        release_engine(self.settings, self.cpu_threads)


# glibc's M_MMAP_THRESHOLD and its ceiling on 64-bit systems (malloc.c: DEFAULT_MMAP_THRESHOLD_MAX)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20


def keep_large_allocations_mapped() -> None:
    """Let this process reuse large allocations instead of mapping and unmapping each one.

    Dask starts workers with ``MALLOC_TRIM_THRESHOLD_`` set (to give memory back), and setting it freezes glibc's
    mmap threshold at 128 KiB: every decode buffer above that became an ``mmap`` + ``munmap``, and a worker spent a
    third of its time in the kernel (8 LibriVox conversations: 11 s of system time against 1.4, 9.1x real time
    against 12.2). Raising the threshold to the ceiling glibc's own adaptive rule would reach restores the speed and
    keeps Dask's trimming. Only glibc has ``mallopt``; elsewhere this does nothing. (Done at run time, because the
    workers of a cluster started elsewhere cannot be given an environment variable from here.)"""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def on_dask(jobs: list[Job], *, client: Client | str | None, workers: int, settings: BatchSettings,
            bar: Progress) -> list[Outcome]:
    """Run ``jobs`` on ``client`` (a `Client` or a scheduler address), or on a `LocalCluster` of ``workers``
    processes started here and closed at the end; outcomes in the order of ``jobs``."""
    owned: list[Any] = []
    try:
        if client is None:
            # loopback only: the dashboard shows recordings' names, and the scheduler runs what it is sent
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0", env=dict(SERVER_ENV))
            owned.append(cluster)
            client = Client(cluster)
            owned.append(client)
            log.info("batch: a LocalCluster of %d workers; dashboard %s", workers, client.dashboard_link)
        elif isinstance(client, str):
            client = Client(client)
            owned.append(client)
        if settings.remote:
            return _gather(client, jobs, bar)
        name = f"{PLUGIN_NAME}-{uuid.uuid4().hex[:6]}"  # this batch's: another batch on the same client keeps its own
        client.register_plugin(EnginePlugin(settings, jobs[0].cpu_threads), name=name)
        try:
            return _gather(client, jobs, bar)
        finally:
            if client.status == "running":
                try:
                    client.unregister_worker_plugin(name)  # a long-lived cluster's workers free the model
                except Exception as exc:  # the results are in: a worker that cannot let go must not lose them
                    log.warning("batch: could not remove the model plugin from the workers: %s", exc)
    finally:
        for thing in reversed(owned):
            thing.close()


def _gather(client: Client, jobs: list[Job], bar: Progress) -> list[Outcome]:
    run = uuid.uuid4().hex[:6]  # a new key each batch: a finished task of an earlier one is never taken for this one's
    futures = client.map(run_job, jobs, key=[f"live-stt-{j.recording.name}-{j.recording.key}-{run}" for j in jobs],
                         pure=False)
    by_future = dict(zip(futures, jobs, strict=True))
    outcomes: dict[str, Outcome] = {}
    try:
        for future in as_completed(futures):
            job = by_future[future]
            try:
                outcome = future.result()
            except Exception as exc:  # e.g. KilledWorker: the recording killed every worker it ran on
                outcome = Outcome(key=job.recording.key, path=job.recording.path, error=f"{type(exc).__name__}: {exc}")
            outcomes[job.recording.key] = outcome
            bar.advance(failed=outcome.error is not None)
    finally:
        client.cancel([f for f in futures if not f.done()])
    return [outcomes[j.recording.key] for j in jobs]


__all__ = ["PLUGIN_NAME", "EnginePlugin", "keep_large_allocations_mapped", "on_dask"]
