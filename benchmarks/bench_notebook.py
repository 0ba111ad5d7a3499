#!/usr/bin/env python3
"""The notebook experience, measured on a real kernel: while a session streams the bundled sample in real time
with the live panel shown (``lsk.start(..., panel=True)`` on the embedded default), how many widget messages per
second reach the front end, and how long a trivial cell takes to come back; the same cell's round trip on the same
kernel with no session is the baseline.

    .venv/bin/python benchmarks/bench_notebook.py [--rounds 3]

A real ipykernel is started with jupyter_client; messages are counted on its IOPub channel, which is what
JupyterLab receives. No browser: browser-side numbers (audio-to-screen latency) need the Playwright set-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from jupyter_client.manager import start_new_kernel

START = (
    "import live_stt_kernel as lsk\n"
    "from live_stt_kernel.samples import sample_wav\n"
    "session = lsk.start(sample_wav(), panel=True, folder=None)\n"
)


def execute(client: Any, code: str, timeout: float = 120.0) -> float:
    """Run ``code``; seconds from the request to its ``execute_reply``."""
    started = time.perf_counter()
    msg_id = client.execute(code)
    while True:
        reply = client.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            if reply["content"]["status"] != "ok":
                raise RuntimeError(reply["content"])
            return time.perf_counter() - started


def drain_iopub(client: Any, counts: Counter[str], seconds: float, stamps: list[float]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            msg = client.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        except Exception:
            continue
        kind = msg["header"]["msg_type"]
        counts[kind] += 1
        if kind == "comm_msg":  # when the kernel sent it (receipt times bunch up while a cell runs)
            stamps.append(msg["header"]["date"].timestamp())


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def round_trips(client: Any, n: int, counts: Counter[str], stamps: list[float]) -> list[float]:
    times = []
    for _ in range(n):
        times.append(execute(client, "1 + 1"))
        drain_iopub(client, counts, 0.25, stamps)
    return times


def one_round(client: Any) -> dict[str, Any]:
    idle_counts: Counter[str] = Counter()
    idle = round_trips(client, 20, idle_counts, [])
    counts: Counter[str] = Counter()
    stamps: list[float] = []
    start_cell = execute(client, START)
    busy = round_trips(client, 30, counts, stamps)  # ~8 s of the 11 s sample
    execute(client, "session.wait(timeout=60)")
    drain_iopub(client, counts, 1.0, stamps)
    window = max(stamps) - min(stamps) if len(stamps) > 1 else 0.0
    per_second = Counter(int(s - min(stamps)) for s in stamps)
    return {
        "start_cell_s": round(start_cell, 3),
        "idle_rtt_ms": [round(t * 1000, 1) for t in idle],
        "busy_rtt_ms": [round(t * 1000, 1) for t in busy],
        "comm_msgs": len(stamps),
        "comm_window_s": round(window, 2),
        "comm_msgs_per_s_mean": round(len(stamps) / window, 1) if window else None,
        "comm_msgs_per_s_max": max(per_second.values()) if per_second else 0,
        "iopub_types": dict(counts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="fresh kernels (default 3)")
    args = parser.parse_args()
    results = []
    for n in range(args.rounds):
        manager, client = start_new_kernel(kernel_name="python3")
        try:
            execute(client, "import live_stt_kernel")  # imports are not what we measure
            results.append(one_round(client))
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
        r = results[-1]
        print(f"round {n + 1}: idle RTT p50 {statistics.median(r['idle_rtt_ms']):.1f} ms, with a session p50 "
              f"{statistics.median(r['busy_rtt_ms']):.1f} / p95 {pct(r['busy_rtt_ms'], 0.95):.1f} ms; widget messages "
              f"{r['comm_msgs_per_s_mean']}/s mean, {r['comm_msgs_per_s_max']} in the busiest second")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "notebook-results.json").write_text(json.dumps(results, indent=2))
    idle = [t for r in results for t in r["idle_rtt_ms"]]
    busy = [t for r in results for t in r["busy_rtt_ms"]]
    print("\n| | p50 ms | p95 ms | max ms |\n|---|---:|---:|---:|")
    print(f"| trivial cell, no session (baseline) | {statistics.median(idle):.1f} | {pct(idle, 0.95):.1f} | {max(idle):.1f} |")
    print(f"| trivial cell, session + panel streaming | {statistics.median(busy):.1f} | {pct(busy, 0.95):.1f} | {max(busy):.1f} |")
    print(f"\nratio (p50, with a session / baseline): {statistics.median(busy) / statistics.median(idle):.2f}")
    print("widget messages per second (mean, busiest second): "
          + ", ".join(f"{r['comm_msgs_per_s_mean']} / {r['comm_msgs_per_s_max']}" for r in results))


if __name__ == "__main__":
    main()
