#!/usr/bin/env python
"""A shared server for a class (issue 15): how many real-time sessions one ``live-stt serve`` holds per core.

``live-stt serve`` runs in its own process, pinned with ``taskset`` to ``--server-cpus`` (default: CPU 0, so one
core), with as many decode workers as it has cores. Each session is a separate client process (as each student's
kernel is), pinned to ``--client-cpus`` (default: CPU 1), that streams real speech in real time through our
``StreamingClient`` with its own per-user token from a ``--tokens`` file: the five LibriVox utterances of Debian's
pocketsphinx-testdata with 1.2 s pauses (31.9 s), rotated by the session's number so sessions say different things
at any moment, started ``--stagger`` seconds apart. The clients load everything first and start on one signal, so
their start-up never competes with the sessions.

For N = 1, 2, 3, ... (``--ladder``), in one server process:

- **latency**: end of each utterance's speech (energy threshold) as sent → its final Turn received, p50 / p95 over
  every utterance of every session (5 × N), and the WER of each session;
- **on time**: no errors, no utterance without a final, and final p95 ≤ ``--p95-limit`` (1.5 s);
- **CPU**: the server's user + system seconds over the run / wall seconds = cores busy;
- **memory**: the server's RSS with 0 sessions (after one warm-up session) and its peak RSS during the N sessions
  (sampled every 0.25 s); memory per session = (peak − idle) / N.

The ladder stops after the first N that is not on time (``--keep-going`` runs every N). The result: the largest N on
time, and that N divided by the server's cores (sessions per core).

Usage::

    .venv/bin/python benchmarks/bench_shared_server.py                      # server on CPU 0, clients on CPU 1
    .venv/bin/python benchmarks/bench_shared_server.py --server-cpus 0,1 --client-cpus 0,1 --ladder 2,4,6,8

Writes benchmarks/out/shared-server-results.json and a timestamped copy. ``_client`` is the internal sub-command a
client process runs. See benchmarks/README.md ("Shared server").
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

import bench_engine  # noqa: E402 - the engine benchmark's material, client and /proc helpers
from bench_engine import ServerProcess, analyse, check_schedule, conversation, machine, pct, serve_command, stream  # noqa: E402

CLIENT_TOKEN_ENV = "BENCH_CLIENT_TOKEN"  # how a client process gets its token (never on a command line)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def load_now() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ------------------------------------------------------------------------------------------------
# A client process: one kernel's session
# ------------------------------------------------------------------------------------------------


def client_main(args: argparse.Namespace) -> None:
    """Prepare the audio, say ``ready``, wait for ``go`` on stdin, stream in real time, print the analysis."""
    pcm, utterances = conversation([(args.index + k) % 5 for k in range(5)], args.gap)
    checks = check_schedule(pcm)
    from live_stt_kernel import StreamingClient  # noqa: F401 - imported before the signal, like a running kernel

    print(json.dumps({"ready": True}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    cpu0 = time.process_time()
    run = stream(args.url, os.environ[CLIENT_TOKEN_ENV], pcm, realtime=True, delay_s=args.delay)
    result = analyse(run, utterances, checks)
    result.pop("_turns", None)
    result["client_cpu_s"] = round(time.process_time() - cpu0, 3)
    print(json.dumps(result), flush=True)


class Client:
    """A client process pinned to ``cpus``; `go()` starts its session; `result()` waits for its analysis."""

    def __init__(self, index: int, url: str, token: str, *, cpus: str, gap_s: float, delay_s: float):
        command = [sys.executable, str(Path(__file__).resolve()), "_client", "--url", url, "--index", str(index),
                   "--gap", str(gap_s), "--delay", str(delay_s)]
        self.process = subprocess.Popen(["taskset", "-c", cpus, *command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                        env={**os.environ, CLIENT_TOKEN_ENV: token})
        self.lines: list[str] = []
        self.err: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.err.extend(self.process.stderr or ()), daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout or ():
            self.lines.append(line)

    def ready(self) -> bool:
        return any('"ready"' in line for line in self.lines)

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        time.sleep(0.1)
        results = [line for line in self.lines if line.startswith("{") and '"ready"' not in line]
        if not results:
            return {"error": f"client exited {self.process.returncode}: {''.join(self.err)[-1500:]}", "per_utterance": []}
        return dict(json.loads(results[-1]))


# ------------------------------------------------------------------------------------------------
# One rung of the ladder: N sessions at once
# ------------------------------------------------------------------------------------------------


class RssSampler:
    """The server's VmRSS every ``interval`` seconds while running: its peak (MB)."""

    def __init__(self, server: ServerProcess, interval: float = 0.25):
        self.server, self.interval = server, interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.server.memory_mb()["VmRSS"])
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def rung(server: ServerProcess, tokens: list[str], n: int, args: argparse.Namespace) -> dict[str, Any]:
    load_before = load_now()
    clients = [Client(i, server.url, tokens[i], cpus=args.client_cpus, gap_s=args.gap, delay_s=i * args.stagger)
               for i in range(n)]
    deadline = time.monotonic() + 120 + 10 * n  # client start-up (imports) on a busy core: a bound, not a pace
    while not all(c.ready() for c in clients):
        if time.monotonic() > deadline or any(c.process.poll() is not None for c in clients):
            for c in clients:
                c.process.kill()
            raise RuntimeError(f"clients did not get ready: {[''.join(c.err)[-500:] for c in clients]}")
        time.sleep(0.05)
    time.sleep(1.0)  # let their start-up's page faults settle
    idle_rss = server.memory_mb()["VmRSS"]
    sampler = RssSampler(server)
    cpu0, wall0 = server.cpu_s(), time.monotonic()
    for c in clients:
        c.go()
    results = [c.result(timeout=300) for c in clients]
    cpu1, wall1 = server.cpu_s(), time.monotonic()
    peak_rss = sampler.stop()
    latencies = [u["latency_speech_end_s"] for r in results for u in r.get("per_utterance", [])
                 if u.get("latency_speech_end_s") is not None]
    missing = sum(1 for r in results for u in r.get("per_utterance", []) if not u.get("turns"))
    errors = [r["error"] for r in results if r.get("error")]
    p50, p95 = pct(latencies, 50), pct(latencies, 95)
    on_time = not errors and missing == 0 and len(latencies) == 5 * n and p95 is not None and p95 <= args.p95_limit
    wers = [r.get("wer") for r in results]
    return {
        "sessions": n,
        "on_time": on_time,
        "errors": errors,
        "finals": len(latencies),
        "missing_utterances": missing,
        "latency_p50_ms": None if p50 is None else round(p50 * 1000),
        "latency_p95_ms": None if p95 is None else round(p95 * 1000),
        "latency_max_ms": round(max(latencies) * 1000) if latencies else None,
        "wer_mean": round(statistics.fmean(w for w in wers if w is not None), 4) if any(w is not None for w in wers) else None,
        "wer_max": max((w for w in wers if w is not None), default=None),
        "server_cpu_s": round(cpu1 - cpu0, 2),
        "wall_s": round(wall1 - wall0, 2),
        "server_cores_busy": round((cpu1 - cpu0) / (wall1 - wall0), 3),
        "client_cpu_s_each": [r.get("client_cpu_s") for r in results],
        "partials_each": [r.get("partials") for r in results],
        "server_rss_idle_mb": idle_rss,
        "server_rss_peak_mb": peak_rss,
        "rss_per_session_mb": round((peak_rss - idle_rss) / n, 1),
        "termination_after_last_audio_s": [r.get("termination_after_last_audio_s") for r in results],
        "load_before": load_before,
        "load_after": load_now(),
    }


def write_tokens(folder: Path, count: int) -> tuple[Path, list[str]]:
    tokens = [secrets.token_urlsafe(24) for _ in range(count)]
    path = folder / "tokens"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"student{i:02d} {t}\n" for i, t in enumerate(tokens))
    return path, tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    c = sub.add_parser("_client")
    c.add_argument("--url", required=True)
    c.add_argument("--index", type=int, required=True)
    c.add_argument("--gap", type=float, default=1.2)
    c.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list for the server (default 0)")
    parser.add_argument("--client-cpus", default="1", help="taskset CPU list for the client processes (default 1)")
    parser.add_argument("--workers", type=int, default=None, help="the server's decode workers (default: its cores)")
    parser.add_argument("--ladder", default="1,2,3,4,5,6,8", help="session counts to try, in order")
    parser.add_argument("--p95-limit", type=float, default=1.5, help="finals on time: p95 end of speech -> final (s)")
    parser.add_argument("--stagger", type=float, default=0.5, help="seconds between the sessions' starts")
    parser.add_argument("--gap", type=float, default=1.2, help="silence around each utterance (s)")
    parser.add_argument("--keep-going", action="store_true", help="run every N even after one is late")
    parser.add_argument("--label", default="", help="a note kept in the results")
    args = parser.parse_args(argv)
    if args.command == "_client":
        client_main(args)
        return 0

    server_cores = len(os.sched_getaffinity(0) & set(_cpu_list(args.server_cpus)))
    workers = args.workers or server_cores
    ladder = [int(n) for n in args.ladder.split(",")]
    results: dict[str, Any] = {"machine": machine(), "label": args.label, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                               "nproc": os.cpu_count(), "load_at_start": load_now(),
                               "settings": {"server_cpus": args.server_cpus, "server_cores": server_cores,
                                            "client_cpus": args.client_cpus, "workers": workers,
                                            "p95_limit_s": args.p95_limit, "stagger_s": args.stagger, "gap_s": args.gap,
                                            "ladder": ladder}}
    say(f"load average {results['load_at_start']} on {os.cpu_count()} CPUs; server on CPUs {args.server_cpus} "
        f"({server_cores} cores, {workers} workers), clients on {args.client_cpus}")
    with tempfile.TemporaryDirectory() as tmp:
        roster, tokens = write_tokens(Path(tmp), max(ladder))
        command = ["taskset", "-c", args.server_cpus, *serve_command(), "--tokens", str(roster), "--workers", str(workers),
                   "--alone-threads", str(server_cores), "--max-sessions", str(max(ladder) + 2)]
        server = ServerProcess(command)
        results["server_ready_s"] = round(server.ready_s, 2)
        results["server_rss_after_start_mb"] = server.memory_mb()["VmRSS"]
        try:
            warm = rung(server, tokens, 1, args)  # warm-up: the first session's lazy allocations
            results["warm_up"] = warm
            say(f"warm-up: p50/p95 {warm['latency_p50_ms']}/{warm['latency_p95_ms']} ms, RSS {warm['server_rss_peak_mb']} MB")
            results["rungs"] = []
            for n in ladder:
                r = rung(server, tokens, n, args)
                results["rungs"].append(r)
                say(f"N={n}: on time {r['on_time']}, p50/p95 {r['latency_p50_ms']}/{r['latency_p95_ms']} ms, "
                    f"cores busy {r['server_cores_busy']}, RSS {r['server_rss_idle_mb']} -> {r['server_rss_peak_mb']} MB "
                    f"({r['rss_per_session_mb']} MB/session), WER mean {r['wer_mean']}, errors {len(r['errors'])}, "
                    f"load {r['load_before']} -> {r['load_after']}")
                if not r["on_time"] and not args.keep_going:
                    break
            results["server_vmhwm_mb"] = server.memory_mb().get("VmHWM")
        finally:
            server.stop()
    on_time = [r["sessions"] for r in results["rungs"] if r["on_time"]]
    best = max(on_time, default=0)
    results["largest_n_on_time"] = best
    results["sessions_per_core"] = round(best / server_cores, 2) if server_cores else None
    say(f"largest N with finals on time (p95 <= {args.p95_limit:g} s): {best}; sessions per core: {results['sessions_per_core']}")
    OUT.mkdir(exist_ok=True)
    text = json.dumps(results, indent=2)
    (OUT / "shared-server-results.json").write_text(text)
    (OUT / f"shared-server-results-{time.strftime('%Y%m%dT%H%M%S')}.json").write_text(text)
    return 0


def _cpu_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


if __name__ == "__main__":
    bench_engine.SERVER_ENV.update({})  # the server's environment: the launcher's limits come from live-stt serve itself
    sys.exit(main())
