"""A folder of recordings four ways, in one run on the same files: a plain loop of live sessions (``lsk.start(path,
realtime=False)`` one after another against the embedded server: what a user wrote before `batch`), `batch` in this
process (``workers=0``), and `batch` on a Dask `LocalCluster` of 1 and 2 worker processes.

    .venv/bin/python benchmarks/bench_batch.py [--recordings 24] [--repeat 2]

The loop and one worker run on one core, then every way on two (``taskset``), to show how each scales with cores.
Each way runs in a fresh Python process and starts cold, as a user's run does (imports, the loop's server, the
cluster and its workers' models are part of its time), into a fresh output folder. Reports audio hours per wall-clock hour, the ratio to the loop, the speed of one
worker once started (audio seconds per second it spent on recordings), word error rate against the LibriVox
transcripts, and the peak memory of each worker process (resident set, sampled every 0.2 s).
Results go to ``benchmarks/out/batch-results.json``; the table is printed in Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/speech.py: librivox(), conversation(), wer()

from speech import conversation, librivox, wer  # noqa: E402

import live_stt_kernel as lsk  # noqa: E402


def make_recordings(folder: Path, count: int) -> dict[str, str]:
    """``count`` conversations of three to five LibriVox utterances each (in turning orders, with pauses that differ,
    so no two files are the same bytes: `batch` would do such a pair once); reference text by stem."""
    utterances = librivox()
    refs = {}
    for n in range(count):
        picked = [utterances[(n + k) % len(utterances)] for k in range(3 + n % 3)]
        refs[f"talk{n:02d}"] = conversation(folder / f"talk{n:02d}.wav", picked, gap_s=1.0 + 0.05 * n)
    return refs


class PeakMemory:
    """Samples the resident set of this process's children (Dask workers, the embedded server) and of itself."""

    def __init__(self) -> None:
        self.peaks: dict[int, float] = {}
        self.own_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.2):
            self.own_peak = max(self.own_peak, me.memory_info().rss / 2**20)
            for child in me.children(recursive=True):
                try:
                    rss = child.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                self.peaks[child.pid] = max(self.peaks.get(child.pid, 0.0), rss)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def heavy(self) -> list[float]:
        """Peaks of the children that held a model (over 100 MB), largest first."""
        return sorted((p for p in self.peaks.values() if p > 100), reverse=True)


def plain_loop(paths: list[Path], out: Path) -> tuple[dict[str, str], float]:
    """Texts by stem, and the seconds spent in the recordings' sessions (the rest is start-up)."""
    texts, busy = {}, 0.0
    for path in paths:
        started = time.perf_counter()
        session = lsk.start(path, realtime=False, panel=False, folder=out / path.stem).wait()
        busy += time.perf_counter() - started
        texts[path.stem] = " ".join(session.df["text"])
    return texts, busy


def with_batch(paths: list[Path], out: Path, **options: Any) -> tuple[dict[str, str], float]:
    """Texts by stem, and the seconds the workers spent on recordings (their sum over the workers)."""
    result = lsk.batch(paths, out=out, progress=False, **options)
    assert not result.failed and len(result.done) == len(paths), result.summary()
    turns = result.turns
    texts = {name: " ".join(group.sort_values("turn_order")["text"]) for name, group in turns.groupby("name")}
    return texts, float(result.metrics["seconds"].sum())


WAYS = ["plain loop of live sessions (embedded server)", "batch, in this process (workers=0)",
        "batch, LocalCluster 1 worker", "batch, LocalCluster 2 workers"]
# (way, CPUs it may use): the loop and one worker on one core, then every way on two: how each scales with cores
PLAN = [(0, "0"), (2, "0"), (0, "0,1"), (1, "0,1"), (2, "0,1"), (3, "0,1")]


def run_way(way: int, folder: Path) -> dict[str, Any]:
    """One way, timed in this (fresh) process: its wall time, texts and memory."""
    paths = sorted(folder.glob("*.wav"))
    runs: list[Callable[[Path], tuple[dict[str, str], float]]] = [
        lambda out: plain_loop(paths, out),
        lambda out: with_batch(paths, out, workers=0),
        lambda out: with_batch(paths, out, workers=1),
        lambda out: with_batch(paths, out, workers=2),
    ]
    out = Path(tempfile.mkdtemp(prefix="out-", dir=folder.parent))
    with PeakMemory() as memory:
        started = time.perf_counter()
        texts, busy = runs[way](out)
        wall = time.perf_counter() - started
    return {"way": WAYS[way], "wall_s": round(wall, 2), "busy_s": round(busy, 2), "texts": texts,
            "child_peaks_mb": [round(p) for p in memory.heavy()], "own_peak_mb": round(memory.own_peak)}


def measure(way: int, cpus: str, folder: Path, refs: dict[str, str], audio_s: float) -> dict[str, Any]:
    child = subprocess.run(["taskset", "-c", cpus, sys.executable, __file__, "--way", str(way), "--folder", str(folder)],
                           capture_output=True, text=True, check=True)
    row = json.loads(child.stdout.strip().splitlines()[-1])
    texts = row.pop("texts")
    row["cores"] = len(cpus.split(","))
    row["wer"] = round(statistics.mean(wer(refs[name], texts.get(name, "")) for name in refs), 4)
    row["audio_hours_per_hour"] = round(audio_s / row["wall_s"], 2)
    # per worker, once started: audio seconds per second a worker (or the loop) spent on recordings
    row["per_worker_speed"] = round(audio_s / row["busy_s"], 2)
    print(f"  {row['way']} on {row['cores']} core(s): {row['wall_s']:.1f} s, {row['audio_hours_per_hour']:.1f} audio h/h, "
          f"WER {row['wer']:.3f}, peaks {row['child_peaks_mb']} MB (own {row['own_peak_mb']} MB)", file=sys.stderr, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recordings", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=1, help="runs of every way (their order alternates)")
    parser.add_argument("--way", type=int, help=argparse.SUPPRESS)  # a child process: run this one way
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way is not None:
        print(json.dumps(run_way(args.way, args.folder)))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    folder = work / "in"
    folder.mkdir()
    refs = make_recordings(folder, args.recordings)
    paths = sorted(folder.glob("*.wav"))
    audio_s = sum(lsk.WavSource(p).duration for p in paths)
    print(f"{len(paths)} recordings, {audio_s / 60:.1f} min of audio; {os.cpu_count()} cores", file=sys.stderr)
    rows = []
    for repeat in range(args.repeat):
        for way, cpus in PLAN if repeat % 2 == 0 else PLAN[::-1]:
            rows.append(measure(way, cpus, folder, refs, audio_s))
    for row in rows:  # against the loop on as many cores
        base = statistics.median(r["audio_hours_per_hour"] for r in rows if r["way"] == WAYS[0] and r["cores"] == row["cores"])
        row["vs_loop"] = round(row["audio_hours_per_hour"] / base, 2)
    results = {"machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                           "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
               "recordings": len(paths), "audio_s": round(audio_s, 1), "load_before": os.getloadavg(), "rows": rows}
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "batch-results.json").write_text(json.dumps(results, indent=2))
    print("| way | cores | wall s | audio hours per hour | vs the loop on as many cores | per worker, once started | WER | "
          "peak MB: model processes (this process) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        peaks = ", ".join(map(str, r["child_peaks_mb"])) or "-"
        print(f"| {r['way']} | {r['cores']} | {r['wall_s']} | {r['audio_hours_per_hour']} | {r['vs_loop']} | "
              f"{r['per_worker_speed']} | {r['wer']:.3f} | {peaks} ({r['own_peak_mb']}) |")


if __name__ == "__main__":
    main()
