#!/usr/bin/env python
"""Client-side cost of live streaming: CPU per second of audio, and final-turn bookkeeping latency.

Runs, in this order, each client in a fresh Python process against a loopback v3 replay server that
lives in ANOTHER process (so the server's CPU is never counted):

* ``ours-full``  ``Session(WavSource(wav), folder=tmp)``: the whole pipeline a user runs
                 (libsndfile decode + float->PCM16, audio.wav + turns.jsonl + meta.json writes,
                 transcript fold, sender/receiver/worker threads).
* ``ours-pcm``   ``Session(<pre-decoded 50 ms PCM16 chunks>, folder=None)``: same Session and
                 threads, fed exactly like the SDK below (no decoding, no disk): the fair comparison.
* ``ours-transport``  bare ``StreamingClient.stream()`` on the same chunks (no Session, no
                 transcript): the floor of the transport alone.
* ``sdk``        official ``assemblyai`` SDK ``streaming.v3.StreamingClient``, ``connect()``,
                 ``stream()`` of the same paced 50 ms chunks, a Turn handler, ``disconnect(terminate=True)``.
* ``pacer``, ``wavsource``  controls without any network (6 s, real time only): the bare 20 Hz pacing
                 loop (the machine's price of waking a thread), and the package's WavSource alone.

each in real-time pacing (what a live session does) and as fast as possible (secondary). CPU is
``time.process_time()`` of the client process from just before connect/start to just after the
session has ended (connect, Begin, streaming, Terminate, Termination and close all included),
divided by the seconds of audio streamed. Final-turn latency is measured with
``session.on_event``/``session.on_turn`` on the ``ours-*`` runs.

Usage::

    .venv/bin/python benchmarks/bench_client.py                 # full run (~2.5 min on 2 cores), writes out/results.json
    .venv/bin/python benchmarks/bench_client.py --summarize     # medians over the saved runs in out/
                                                                # (same settings and package commit)
    git worktree add /tmp/before <commit>                       # another version of the package, e.g. before a change,
    .venv/bin/python benchmarks/bench_client.py --baseline /tmp/before --rounds 3   # measured in the same run:
                                                                # each ours-* client alternates between this tree
                                                                # and the baseline (labelled "...@baseline")

The sub-commands ``_serve`` (the replay server process) and ``_worker`` (one measured client) are
internal. See benchmarks/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
API_KEY = "bench-key"
RATE = 16_000
CHUNK_MS = 50
CHUNK_BYTES = RATE * CHUNK_MS // 1000 * 2  # 1600 bytes: 50 ms of 16 kHz mono PCM16

CLIENTS = ("ours-full", "ours-pcm", "ours-transport", "sdk", "pacer", "wavsource")
DEFAULT_RT = CLIENTS
DEFAULT_FAST = ("ours-full", "ours-pcm", "ours-transport", "sdk")
CONTROL_MAX_S = 6.0  # the no-network controls need less audio

# ------------------------------------------------------------------------------------------------
# Test material: a synthetic WAV and a replay script with a turn every ~2.5 s
# ------------------------------------------------------------------------------------------------

TEXT = (
    "the quick brown fox jumps over a lazy dog while seven bright engineers measure every "
    "small delay between the socket and the notebook so that live captions never fall behind "
    "speakers who talk fast about latency budgets threads queues frames and disk writes"
)
WORDS = TEXT.split()


def sentences(count: int) -> list[str]:
    """Deterministic 4-7 word sentences."""
    out = []
    for i in range(count):
        n = 4 + i % 4
        out.append(" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(n)))
    return out


def scripted_turns(audio_s: float) -> list[Any]:
    """As many `even_turns` as fit before the audio ends (last final released before Terminate)."""
    from live_stt_kernel.v3.replay import even_turns

    texts = sentences(int(audio_s) + 10)
    turns = even_turns(texts, start_ms=500, word_ms=300, gap_ms=1000)
    limit = audio_s * 1000 - 500
    return [t for t in turns if t.end_ms + 240 <= limit]


def make_wav(path: Path, seconds: float, seed: int = 1) -> None:
    """16 kHz mono PCM16: a voiced-ish buzz in 'words' on the scripted grid, plus low noise."""
    import numpy as np
    import soundfile as sf

    n = round(seconds * RATE)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    audio = 0.01 * rng.standard_normal(n)
    envelope = ((t * 1000) % 2500 > 500) & ((t * 1000) % 300 < 260)
    audio += envelope * 0.3 * (np.sin(2 * np.pi * 140 * t) + 0.5 * np.sin(2 * np.pi * 280 * t))
    sf.write(str(path), np.clip(audio, -1, 1).astype(np.float32), RATE, subtype="PCM_16")


def decode_pcm(path: Path) -> list[bytes]:
    """The WAV as ready-to-send 50 ms PCM16 chunks (done before any measurement starts)."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="int16")
    assert rate == RATE and data.ndim == 1
    raw = data.astype("<i2").tobytes()
    return [raw[i : i + CHUNK_BYTES] for i in range(0, len(raw), CHUNK_BYTES)]


class PacedChunks:
    """An AudioSource (iterable + close) of pre-cut chunks, paced to the wall clock like a live
    source. The same object feeds our Session and the SDK's ``stream()``."""

    sample_rate = RATE

    def __init__(self, chunks: list[bytes], *, realtime: bool, on_second: Callable[[float], None] | None = None):
        self.chunks = chunks
        self.realtime = realtime
        self.on_second = on_second
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[bytes]:
        started = time.monotonic()
        sent = 0
        per_second = 1000 // CHUNK_MS
        for i, chunk in enumerate(self.chunks):
            if self._stop.is_set():
                return
            if self.realtime:  # never ahead of real time: wait until the previous chunk has "played"
                ahead = sent / (2 * RATE) - (time.monotonic() - started)
                if ahead > 0 and self._stop.wait(ahead):
                    return
            sent += len(chunk)
            if self.on_second is not None and i % per_second == 0:
                self.on_second(sent / (2 * RATE))
            yield chunk


# ------------------------------------------------------------------------------------------------
# The replay server process
# ------------------------------------------------------------------------------------------------

def serve(args: argparse.Namespace) -> None:
    from live_stt_kernel.v3.replay import ReplayServer, turns_script

    servers = {}
    for name, seconds in (("rt", args.rt_seconds), ("fast", args.fast_seconds)):
        servers[name] = ReplayServer(turns_script(scripted_turns(seconds), "A"), api_key=API_KEY).start()

    def prune() -> None:  # keep the server's memory flat: drop recorded audio of finished clients
        while True:
            time.sleep(2)
            for server in servers.values():
                for record in list(server.clients):
                    if record.closed.is_set() and record.audio:
                        record.audio = bytearray()
                        record.frame_sizes.clear()
                        record.frame_times.clear()

    threading.Thread(target=prune, daemon=True).start()
    print(json.dumps({name: s.url for name, s in servers.items()}), flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    for server in servers.values():
        server.stop()


# ------------------------------------------------------------------------------------------------
# Measurement helpers (run inside a worker process)
# ------------------------------------------------------------------------------------------------

def _thread_times() -> dict[int, tuple[str, int]]:
    """Per-thread on-CPU nanoseconds from /proc/self/task/*/schedstat, with Python thread names."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        name = names.get(int(tid), f"native-{tid}")
        name = re.sub(r"^Thread-\d+ \((.*)\)$", r"\1", name)
        out[int(tid)] = (name, ns)
    return out


class Meter:
    """Process CPU (all threads) over a window, plus 1 Hz samples for a steady-state rate and an
    approximate per-thread split (threads that exit lose their last <1 s)."""

    def __init__(self, *, enabled: bool = True, threads_after_s: float = float("inf")) -> None:
        # Only real-time runs sample (1 Hz, ~1 us each); fast runs never do, so that no client pays
        # for sampling there. /proc is read only near the end of the audio (twice or so), when
        # every client thread has done nearly all its work, to keep the meter's own cost negligible.
        self.enabled = enabled
        self.threads_after_s = threads_after_s
        self.samples: list[tuple[float, float, float]] = []  # (wall, cpu, audio_s)
        self.threads: dict[int, tuple[str, int]] = {}
        self.baseline: dict[int, int] = {}

    def start(self) -> None:
        self.baseline = {tid: ns for tid, (_, ns) in _thread_times().items()}
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.wall0 = time.monotonic()
        self.cpu0 = time.process_time()

    def sample(self, audio_s: float) -> None:
        if not self.enabled:
            return
        self.samples.append((time.monotonic(), time.process_time(), audio_s))
        if audio_s >= self.threads_after_s:
            self.threads.update(_thread_times())

    def stop(self) -> None:
        self.cpu1 = time.process_time()
        self.wall1 = time.monotonic()
        self.ru1 = resource.getrusage(resource.RUSAGE_SELF)

    def result(self, audio_s: float) -> dict[str, Any]:
        cpu = self.cpu1 - self.cpu0
        user = self.ru1.ru_utime - self.ru0.ru_utime
        system = self.ru1.ru_stime - self.ru0.ru_stime
        steady = None
        window = [s for s in self.samples if 2.0 <= s[2] <= audio_s - 0.5]
        if len(window) >= 2 and window[-1][2] - window[0][2] >= 5:
            steady = (window[-1][1] - window[0][1]) / (window[-1][2] - window[0][2]) * 1000
        per_thread: dict[str, float] = {}
        for tid, (name, ns) in self.threads.items():
            ms = (ns - self.baseline.get(tid, 0)) / 1e6
            if ms > 0.05:
                per_thread[name] = round(per_thread.get(name, 0.0) + ms, 2)
        return {
            "audio_s": round(audio_s, 3),
            "wall_s": round(self.wall1 - self.wall0, 3),
            "cpu_s": round(cpu, 4),
            "user_s": round(user, 4),
            "sys_s": round(system, 4),
            "cpu_ms_per_audio_s": round(cpu / audio_s * 1000, 3),
            "core_pct": round(cpu / audio_s * 100, 3),
            "steady_cpu_ms_per_audio_s": None if steady is None else round(steady, 3),
            "ctx_switches_per_audio_s": round(
                ((self.ru1.ru_nvcsw - self.ru0.ru_nvcsw) + (self.ru1.ru_nivcsw - self.ru0.ru_nivcsw)) / audio_s, 1
            ),
            "thread_cpu_ms": dict(sorted(per_thread.items(), key=lambda kv: -kv[1])),
        }


def settle(seconds: float = 1.0) -> None:
    """Let the process go quiet before a measurement window opens: importing numpy starts an
    OpenBLAS worker thread that spins for a while (tens of ms of CPU) after the import."""
    time.sleep(seconds)


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    import numpy as np

    a = np.asarray(values) * 1000
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "max_ms": round(float(a.max()), 3),
        "mean_ms": round(float(a.mean()), 3),
    }


class LatencyProbe:
    """received_at of each final Turn (stamped by the receiver thread when it parsed the message)
    -> the moment our on_turn listener runs on the worker thread. The session calls turn listeners
    after the new snapshot is published and the row is appended + flushed to turns.jsonl, so at
    that moment the listener checks (after taking its timestamp) that the row is in
    ``session.transcript`` (what ``session.df`` is built from) and notes the size of turns.jsonl;
    after the run, the file's first ``size`` bytes must end with exactly this row."""

    def __init__(self, session: Any, turns_file: Path | None):
        from live_stt_kernel.events import Turn

        self._turn_type = Turn
        self.session = session
        self.turns_file = turns_file
        self.pending: Any = None
        self.latencies: list[float] = []
        self.on_disk: list[tuple[int, Any]] = []  # (turns.jsonl size when the listener ran, row)
        self.not_in_snapshot = 0
        self.mismatched_event = 0
        self.turn_calls = 0
        self._fd: int | None = None
        session.on_event(self._on_event)
        session.on_turn(self._on_turn)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, self._turn_type) and event.end_of_turn:
            self.pending = event

    def _on_turn(self, row: Any) -> None:
        now = time.monotonic()
        event, self.pending = self.pending, None
        self.turn_calls += 1
        if event is None or event.turn_order != row.turn_order:
            self.mismatched_event += 1
            return
        self.latencies.append(now - event.received_at)
        if self.session.transcript.get(row.key) is not row:
            self.not_in_snapshot += 1
        if self.turns_file is not None:
            if self._fd is None:
                self._fd = os.open(self.turns_file, os.O_RDONLY)
            self.on_disk.append((os.fstat(self._fd).st_size, row))

    def result(self) -> dict[str, Any]:
        not_on_disk = None
        if self.turns_file is not None:
            if self._fd is not None:
                os.close(self._fd)
            data = self.turns_file.read_bytes()
            not_on_disk = 0
            for size, row in self.on_disk:
                prefix = data[:size]
                last = prefix.rstrip(b"\n").rsplit(b"\n", 1)[-1]
                try:
                    ok = prefix.endswith(b"\n") and json.loads(last) == json.loads(json.dumps(row.to_dict()))
                except ValueError:
                    ok = False
                not_on_disk += not ok
        return {
            "final_to_listener": percentiles(self.latencies),
            "turn_listener_calls": self.turn_calls,
            "not_in_snapshot": self.not_in_snapshot,
            "not_on_disk": not_on_disk,
            "unmatched": self.mismatched_event,
        }


def _wait_session(session: Any, meter: Meter) -> None:
    while True:
        try:
            session.wait(timeout=1.0)
            return
        except TimeoutError:
            meter.sample(session.client.bytes_sent / (2 * RATE))


# ------------------------------------------------------------------------------------------------
# Workers: one client run per process
# ------------------------------------------------------------------------------------------------

def worker(args: argparse.Namespace) -> dict[str, Any]:
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    realtime = args.mode == "rt"
    wav = Path(args.wav)
    chunks = decode_pcm(wav)
    audio_s = sum(len(c) for c in chunks) / (2 * RATE)
    expected_turns = args.expected_turns  # counted by the orchestrator: a baseline checkout may lay out its modules otherwise
    meter = Meter(enabled=realtime, threads_after_s=audio_s - 2.1)
    import live_stt_kernel

    result: dict[str, Any] = {"client": args.client, "mode": args.mode, "expected_turns": expected_turns,
                              "package": str(Path(live_stt_kernel.__file__).parent.parent)}

    if args.client in ("ours-full", "ours-pcm"):
        from live_stt_kernel import Session, WavSource

        if args.client == "ours-full":
            folder = Path(tempfile.mkdtemp(prefix="bench-session-", dir=args.tmp))
            source: Any = WavSource(wav, realtime=realtime)
            session = Session(source, url=args.url, api_key=API_KEY, folder=folder)
            probe = LatencyProbe(session, folder / "turns.jsonl")
        else:
            folder = None
            session = Session(PacedChunks(chunks, realtime=realtime), url=args.url, api_key=API_KEY, folder=None)
            probe = LatencyProbe(session, None)
        settle()
        meter.start()
        session.start()
        _wait_session(session, meter)
        meter.stop()
        result.update(meter.result(audio_s))
        result["latency"] = probe.result()
        frame_start = time.perf_counter()
        frame = session.df
        result["df_build_ms"] = round((time.perf_counter() - frame_start) * 1000, 3)
        result["final_rows"] = len(frame)
        result["all_formatted"] = bool(frame["formatted"].all()) if len(frame) else False
        result["audio_sent_s"] = round(session.client.bytes_sent / (2 * RATE), 3)
        if folder is not None:
            saved = (folder / "turns.jsonl").read_text(encoding="utf-8").splitlines()
            result["turns_jsonl_lines"] = len(saved)
            result["audio_wav_s"] = round(((folder / "audio.wav").stat().st_size - 44) / (2 * RATE), 3)
        result["ok"] = (
            result["final_rows"] == expected_turns and result["all_formatted"]
            and result["latency"]["not_in_snapshot"] == 0 and not result["latency"]["not_on_disk"]
            and result["latency"]["unmatched"] == 0
        )

    elif args.client == "ours-transport":
        from live_stt_kernel import StreamingClient
        from live_stt_kernel.events import Turn

        client = StreamingClient(args.url, api_key=API_KEY)
        finals = partials = 0
        settle()
        meter.start()
        for event in client.stream(PacedChunks(chunks, realtime=realtime, on_second=meter.sample)):
            if isinstance(event, Turn):
                if event.end_of_turn:
                    finals += 1
                else:
                    partials += 1
        meter.stop()
        result.update(meter.result(audio_s))
        result.update(finals=finals, partials=partials, audio_sent_s=round(client.bytes_sent / (2 * RATE), 3))
        result["ok"] = finals == 2 * expected_turns

    elif args.client == "sdk":
        import assemblyai
        from assemblyai.streaming.v3 import StreamingClient as SdkClient
        from assemblyai.streaming.v3 import (
            StreamingClientOptions,
            StreamingEvents,
            StreamingParameters,
        )

        client = SdkClient(StreamingClientOptions(api_key=API_KEY, api_host=args.url, terminate_timeout=60.0))
        turns: list[tuple[int, bool, bool, str]] = []
        errors: list[str] = []
        ended: list[Any] = []
        client.on(StreamingEvents.Turn, lambda c, ev: turns.append((ev.turn_order, ev.end_of_turn, ev.turn_is_formatted, ev.transcript)))
        client.on(StreamingEvents.Error, lambda c, err: errors.append(str(err)))
        client.on(StreamingEvents.Termination, lambda c, ev: ended.append(ev))
        settle()
        meter.start()
        client.connect(StreamingParameters(sample_rate=RATE, format_turns=True))
        client.stream(PacedChunks(chunks, realtime=realtime, on_second=meter.sample))
        client.disconnect(terminate=True)
        meter.stop()
        result.update(meter.result(audio_s))
        finals = sum(1 for t in turns if t[1])
        formatted_orders = {t[0] for t in turns if t[1] and t[2]}
        result.update(finals=finals, partials=len(turns) - finals, errors=errors, terminated=bool(ended),
                      sdk_version=assemblyai.__version__)
        result["ok"] = len(formatted_orders) == expected_turns and bool(ended) and not errors
    elif args.client in ("pacer", "wavsource"):
        # Controls without any network. pacer: the same 20 Hz pacing loop over pre-cut chunks,
        # i.e. the platform's cost of waking a Python thread 20 times a second (every real-time
        # client pays at least this). wavsource: the package's WavSource alone (libsndfile decode,
        # mono mix, float -> PCM16, pacing), i.e. what ours-full adds over ours-pcm besides disk.
        from live_stt_kernel import WavSource

        chunks = chunks[: int(CONTROL_MAX_S * 1000 / CHUNK_MS)]
        audio_s = sum(len(c) for c in chunks) / (2 * RATE)
        if args.client == "wavsource":
            import soundfile as sf

            short = Path(args.tmp) / "control.wav"
            sf.write(str(short), sf.read(str(wav), dtype="int16")[0][: int(audio_s * RATE)], RATE, subtype="PCM_16")
            blocks: Any = WavSource(short, realtime=realtime)
        else:
            blocks = PacedChunks(chunks, realtime=realtime)
        meter = Meter(enabled=False)
        settle()
        meter.start()
        got = sum(len(b) for b in blocks)
        meter.stop()
        result.update(meter.result(audio_s))
        result["ok"] = abs(got / (2 * RATE) - audio_s) < 0.06
    else:
        raise SystemExit(f"unknown client {args.client}")
    return result


# ------------------------------------------------------------------------------------------------
# Scaling of the per-final worker cost with transcript length (no server, no threads)
# ------------------------------------------------------------------------------------------------

def scaling(tmp: Path, marks: tuple[int, ...] = (10, 100, 1000, 3600)) -> dict[str, Any]:
    """Worker-thread cost of one final (fold + changed-rows scan + turns.jsonl append + listeners)
    when the transcript already holds N rows: a 3 h session with a turn every 3 s reaches 3600.
    Drives the private ``Session._handle`` (exactly what the worker runs per event)."""
    from live_stt_kernel import Session
    from live_stt_kernel.events import SessionBegan, Turn, Word
    from live_stt_kernel.store import SessionStore

    session = Session(PacedChunks([], realtime=False), url="ws://127.0.0.1:9", api_key=API_KEY,
                      folder=tmp / "scaling")
    if not hasattr(session, "_handle"):
        return {"skipped": "Session._handle not found"}
    session._store = SessionStore(session.folder)
    session._handle(SessionBegan(session_id="scaling"))
    _ = session.df  # import pandas outside the timings
    words = tuple(Word(text=w, start_ms=i * 300, end_ms=i * 300 + 260) for i, w in enumerate(WORDS[:6]))

    def final(order: int, formatted: bool) -> Turn:
        return Turn(turn_order=order, transcript=" ".join(WORDS[:6]), words=words, end_of_turn=True,
                    formatted=formatted, received_at=time.monotonic())

    out: dict[str, Any] = {}
    order = 0
    for mark in marks:
        while order < mark:
            session._handle(final(order, False))
            session._handle(final(order, True))
            order += 1
        costs = []
        for _ in range(10):  # 10 more turns (20 finals) at about this size
            for formatted in (False, True):
                started = time.perf_counter()
                session._handle(final(order, formatted))
                costs.append(time.perf_counter() - started)
            order += 1
        out[str(mark)] = {"median_us_per_final": round(statistics.median(costs) * 1e6, 1),
                          "max_us_per_final": round(max(costs) * 1e6, 1)}
        started = time.perf_counter()
        _ = session.df
        out[str(mark)]["df_build_ms"] = round((time.perf_counter() - started) * 1000, 2)
    session._store.close()
    return out


# ------------------------------------------------------------------------------------------------
# The orchestrator
# ------------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    try:
        from importlib.metadata import version

        for name in ("live_stt_kernel", "assemblyai", "websocket-client", "websockets", "numpy", "soundfile", "pandas"):
            try:
                versions[name] = version(name)
            except ValueError:  # PackageNotFoundError
                versions[name] = None
    except ImportError:
        pass
    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], check=False, cwd=HERE.parent, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    dirty = git("status", "--porcelain", "--", "live_stt_kernel")
    return {
        "package_commit": git("rev-parse", "--short", "HEAD"),
        "package_dirty": None if dirty is None else bool(dirty),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "switch_interval_s": sys.getswitchinterval(),
    }


def _steal_ticks() -> int | None:
    """Hypervisor steal time (all CPUs, clock ticks) from /proc/stat: high values mean a noisy host."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8])
    except (OSError, IndexError, ValueError):
        return None


def run_worker(client: str, mode: str, wav: Path, url: str, tmp: Path, switch_interval: float | None = None,
               package_root: Path | None = None) -> dict[str, Any]:
    """One measured client in a fresh process; ``package_root`` puts another checkout's package first on its path."""
    audio_s = sum(len(c) for c in decode_pcm(wav)) / (2 * RATE)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", "--client", client, "--mode", mode,
           "--wav", str(wav), "--url", url, "--tmp", str(tmp), "--expected-turns", str(len(scripted_turns(audio_s)))]
    if switch_interval:
        cmd += ["--switch-interval", str(switch_interval)]
    env = dict(os.environ)
    if package_root is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(package_root), *filter(None, [env.get("PYTHONPATH")])])
    steal0 = _steal_ticks()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, env=env)
    steal1 = _steal_ticks()
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"client": client, "mode": mode, "ok": False, "error": (proc.stderr or proc.stdout)[-2000:]}
    result = json.loads(lines[-1])
    result["host_steal_ticks"] = None if steal0 is None or steal1 is None else steal1 - steal0
    return result


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def tables(runs: list[dict[str, Any]], scale: dict[str, Any] | None = None) -> str:
    lines = ["### Client CPU per second of audio (whole session: connect ... close)", "",
             "| client | pacing | audio s | wall s | CPU ms / audio s | % of one core | steady-state ms / audio s | user / sys s | ctx sw / audio s | ok |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|:-:|"]
    for r in runs:
        if "cpu_s" not in r:
            lines.append(f"| {r['client']} | {r['mode']} | failed: {r.get('error', '')[:80]!r} |||||||| no |")
            continue
        lines.append(
            f"| {r['client']} | {'real time' if r['mode'] == 'rt' else 'fast'} | {r['audio_s']:.1f} | {r['wall_s']:.1f} | "
            f"{r['cpu_ms_per_audio_s']:.2f} | {r['core_pct']:.3f} % | {fmt(r['steady_cpu_ms_per_audio_s'])} | "
            f"{r['user_s']:.2f} / {r['sys_s']:.2f} | {r['ctx_switches_per_audio_s']:.0f} | {'yes' if r.get('ok') else 'NO'} |"
        )
    by = {(r["client"], r["mode"]): r for r in runs if "cpu_s" in r}
    lines += ["", "### Ours / SDK", "", "| pacing | ours-pcm / sdk (fair: same chunks, no disk) | ours-full / sdk (with decode + disk) | ours-transport / sdk |",
              "|---|---:|---:|---:|"]
    for mode in ("rt", "fast"):
        sdk = by.get(("sdk", mode))
        if not sdk:
            continue
        cells = []
        for client in ("ours-pcm", "ours-full", "ours-transport"):
            ours = by.get((client, mode))
            cells.append(f"{ours['cpu_s'] / sdk['cpu_s']:.2f}x" if ours and sdk["cpu_s"] > 0 else "n/a")
        lines.append(f"| {'real time' if mode == 'rt' else 'fast'} | " + " | ".join(cells) + " |")
    lines += ["", "### Final Turn received -> row in session.transcript/df and flushed to turns.jsonl (on_turn listener)", "",
              "| client | pacing | finals | p50 ms | p95 ms | max ms | mean ms | rows in snapshot | rows on disk |",
              "|---|---|---:|---:|---:|---:|---:|:-:|:-:|"]
    for r in runs:
        lat = r.get("latency")
        if not lat or not lat["final_to_listener"].get("n"):
            continue
        a = lat["final_to_listener"]
        disk = "n/a (folder=None)" if lat["not_on_disk"] is None else ("all" if lat["not_on_disk"] == 0 else f"{lat['not_on_disk']} missing")
        lines.append(
            f"| {r['client']} | {'real time' if r['mode'] == 'rt' else 'fast'} | {a['n']} | {a['p50_ms']:.3f} | {a['p95_ms']:.3f} | "
            f"{a['max_ms']:.3f} | {a['mean_ms']:.3f} | "
            f"{'all' if lat['not_in_snapshot'] == 0 else str(lat['not_in_snapshot']) + ' missing'} | {disk} |"
        )
    rt_threads = [r for r in runs if r.get("mode") == "rt" and r.get("thread_cpu_ms")]
    if rt_threads:
        lines += ["", "### Where the CPU goes (real time; ms on CPU per thread over the run, from /proc schedstat, approximate)", ""]
        for r in rt_threads:
            parts = ", ".join(f"{k} {v:.0f}" for k, v in r["thread_cpu_ms"].items())
            lines.append(f"- {r['client']}: {parts}")
    if scale and "skipped" not in scale:
        lines += ["", "### Worker cost per final vs transcript length (Session._handle, no server)", "",
                  "| rows already in transcript | median us / final | max us / final | session.df build ms |", "|---:|---:|---:|---:|"]
        for n, v in scale.items():
            lines.append(f"| {n} | {v['median_us_per_final']:.0f} | {v['max_us_per_final']:.0f} | {v['df_build_ms']:.1f} |")
    return "\n".join(lines)


def summarize() -> None:
    """Medians over every saved run (out/results-*.json)."""
    def key(data: dict[str, Any]) -> tuple[Any, ...]:
        c, m = data["config"], data["machine"]
        return (c["rt_seconds"], c["fast_seconds"], c.get("switch_interval"),
                tuple(c.get("rt_clients", ())), tuple(c.get("fast_clients", ())),
                m.get("package_commit"), m.get("package_dirty"))

    if not (OUT / "results.json").exists():
        raise SystemExit("no saved runs in benchmarks/out/")
    latest = key(json.loads((OUT / "results.json").read_text()))
    # only runs made with the same settings and package commit as the latest one (experiments with
    # other flags, and runs of other versions of the package, are left out)
    files = [f for f in sorted(OUT.glob("results-*.json")) if key(json.loads(f.read_text())) == latest]
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for file in files:
        for r in json.loads(file.read_text())["runs"]:
            if "cpu_s" in r:
                grouped.setdefault((r["client"], r["mode"]), []).append(r)
    print(f"Medians over {len(files)} runs of live_stt_kernel {latest[5]}{' (uncommitted changes)' if latest[6] else ''}: "
          + ", ".join(f.name for f in files) + "\n")
    print("| client | pacing | runs | CPU ms / audio s (each run) | median % of one core | median steady ms / audio s | median final p50 / p95 / max ms |")
    print("|---|---|---:|---|---:|---:|---|")
    medians: dict[tuple[str, str], float] = {}
    for (client, mode), rs in sorted(grouped.items(), key=lambda kv: (kv[0][1] != "rt", CLIENTS.index(kv[0][0]))):
        each = ", ".join(f"{r['cpu_ms_per_audio_s']:.2f}" for r in rs)
        med = statistics.median(r["cpu_ms_per_audio_s"] for r in rs)
        medians[(client, mode)] = med
        steady = [r["steady_cpu_ms_per_audio_s"] for r in rs if r.get("steady_cpu_ms_per_audio_s") is not None]
        lat = [r["latency"]["final_to_listener"] for r in rs if r.get("latency", {}).get("final_to_listener", {}).get("n")]
        lat_s = (f"{statistics.median(x['p50_ms'] for x in lat):.2f} / {statistics.median(x['p95_ms'] for x in lat):.2f} / "
                 f"{statistics.median(x['max_ms'] for x in lat):.2f}") if lat else "n/a"
        print(f"| {client} | {'real time' if mode == 'rt' else 'fast'} | {len(rs)} | {each} | {med / 10:.3f} % | "
              f"{fmt(statistics.median(steady)) if steady else 'n/a'} | {lat_s} |")
    print("\n| pacing | ours-pcm / sdk | ours-full / sdk | ours-transport / sdk |\n|---|---:|---:|---:|")
    for mode in ("rt", "fast"):
        sdk = medians.get(("sdk", mode))
        if sdk:
            cells = [f"{medians[(c, mode)] / sdk:.2f}x" if (c, mode) in medians else "n/a" for c in ("ours-pcm", "ours-full", "ours-transport")]
            print(f"| {'real time' if mode == 'rt' else 'fast'} | " + " | ".join(cells) + " |")


def orchestrate(args: argparse.Namespace) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = os.getloadavg()  # anything else busy on the machine skews real-time numbers
    rt_clients = [c for c in args.rt_clients.split(",") if c]
    fast_clients = [c for c in args.fast_clients.split(",") if c]
    with tempfile.TemporaryDirectory(prefix="live-stt-bench-") as tmp_name:
        tmp = Path(tmp_name)
        rt_wav, fast_wav = tmp / "rt.wav", tmp / "fast.wav"
        make_wav(rt_wav, args.rt_seconds, seed=1)
        make_wav(fast_wav, args.fast_seconds, seed=2)
        server = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "_serve", "--rt-seconds", str(args.rt_seconds),
             "--fast-seconds", str(args.fast_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert server.stdout is not None
            urls = json.loads(server.stdout.readline())
            print(f"replay server pid {server.pid}: {urls}", file=sys.stderr)
            runs = []
            baseline = Path(args.baseline).resolve() if args.baseline else None
            for _ in range(args.rounds):
                for mode, clients, wav in (("rt", rt_clients, rt_wav), ("fast", fast_clients, fast_wav)):
                    for client in clients:
                        roots = [None, baseline] if baseline is not None and client.startswith("ours") else [None]
                        for root in roots:  # alternating, so a drift of the machine hits both alike
                            label = client if root is None else f"{client}@baseline"
                            print(f"  {label:24s} {mode:4s} ...", end="", file=sys.stderr, flush=True)
                            r = run_worker(client, mode, wav, urls[mode], tmp, args.switch_interval, package_root=root)
                            r["client"] = label
                            runs.append(r)
                            print(f" {r.get('cpu_ms_per_audio_s', 'FAILED')} ms CPU / audio s, ok={r.get('ok')}",
                                  file=sys.stderr)
            scale = scaling(tmp) if not args.no_scaling else None
        finally:
            if server.stdin:
                server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    result = {
        "when": stamp,
        "machine": machine(),
        "config": {"rt_seconds": args.rt_seconds, "fast_seconds": args.fast_seconds, "chunk_ms": CHUNK_MS,
                   "baseline": args.baseline, "rounds": args.rounds,
                   "switch_interval": args.switch_interval, "rt_clients": rt_clients, "fast_clients": fast_clients,
                   "turns_rt": len(scripted_turns(args.rt_seconds)), "turns_fast": len(scripted_turns(args.fast_seconds)),
                   "behaviour": "A (partials per word, unformatted final, then formatted final)"},
        "runs": runs,
        "scaling": scale,
        "bench_wall_s": round(time.monotonic() - started, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    text = json.dumps(result, indent=2)
    (OUT / "results.json").write_text(text)
    (OUT / f"results-{stamp}.json").write_text(text)
    m = result["machine"]
    print(f"## live_stt_kernel client benchmark ({stamp})\n")
    print(f"live_stt_kernel at {m['package_commit']}{' + uncommitted changes' if m['package_dirty'] else ''}; "
          f"{m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, "
          + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + "\n")
    print(f"Audio: {args.rt_seconds:g} s real time ({result['config']['turns_rt']} turns), {args.fast_seconds:g} s fast "
          f"({result['config']['turns_fast']} turns); behaviour A; 50 ms frames. Bench wall time {result['bench_wall_s']} s.\n")
    print(f"Load average before / after: {load_before[0]:.2f} / {result['loadavg_after'][0]:.2f} (1 min).\n")
    print(tables(runs, scale))
    if args.baseline:
        print(versus_baseline(runs))
    print(f"\nwrote {OUT / 'results.json'}")


def versus_baseline(runs: list[dict[str, Any]]) -> str:
    """Medians of this tree against the baseline checkout, same run, same server, same audio."""
    lines = ["", "### This tree against the baseline (medians over the rounds)", "",
             "| client | pacing | CPU ms / audio s: tree | baseline | tree / baseline | final to listener p50 ms: tree | baseline | ok |",
             "|---|---|---:|---:|---:|---:|---:|:-:|"]
    for mode in ("rt", "fast"):
        for client in dict.fromkeys(r["client"] for r in runs if r["client"].endswith("@baseline")):
            name = client.removesuffix("@baseline")
            mine = [r for r in runs if r["client"] == name and r["mode"] == mode and "cpu_ms_per_audio_s" in r]
            theirs = [r for r in runs if r["client"] == client and r["mode"] == mode and "cpu_ms_per_audio_s" in r]
            if not mine or not theirs:
                continue
            cpu = [statistics.median(r["cpu_ms_per_audio_s"] for r in group) for group in (mine, theirs)]

            def p50(group: list[dict[str, Any]]) -> float | None:
                values = [r["latency"]["final_to_listener"]["p50_ms"] for r in group if r.get("latency")]
                return statistics.median(values) if values else None

            ok = all(r.get("ok") for r in mine + theirs)
            lines.append(f"| {name} | {'real time' if mode == 'rt' else 'fast'} | {cpu[0]:.2f} | {cpu[1]:.2f} | "
                         f"{cpu[0] / cpu[1]:.2f}x | {fmt(p50(mine), 3)} | {fmt(p50(theirs), 3)} | {'yes' if ok else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rt-seconds", type=float, default=30.0, help="audio length of the real-time runs (default 30)")
    parser.add_argument("--fast-seconds", type=float, default=300.0, help="audio length of the fast runs (default 300)")
    parser.add_argument("--rt-clients", default=",".join(DEFAULT_RT), help=f"comma list from {CLIENTS}")
    parser.add_argument("--fast-clients", default=",".join(DEFAULT_FAST), help=f"comma list from {CLIENTS}")
    parser.add_argument("--no-scaling", action="store_true", help="skip the per-final cost vs transcript length table")
    parser.add_argument("--switch-interval", type=float, default=None,
                        help="sys.setswitchinterval() in the client processes (experiment; default: Python's 5 ms)")
    parser.add_argument("--summarize", action="store_true", help="print medians over all saved runs and exit")
    parser.add_argument("--baseline", metavar="DIR", default=None,
                        help="another checkout of the project (its package is measured too, alternating with this tree's)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every client this many times (default 1)")
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("_serve")
    s.add_argument("--rt-seconds", type=float, required=True)
    s.add_argument("--fast-seconds", type=float, required=True)
    w = sub.add_parser("_worker")
    w.add_argument("--client", choices=CLIENTS, required=True)
    w.add_argument("--mode", choices=("rt", "fast"), required=True)
    w.add_argument("--wav", required=True)
    w.add_argument("--url", required=True)
    w.add_argument("--tmp", required=True)
    w.add_argument("--switch-interval", type=float, default=None)
    w.add_argument("--expected-turns", type=int, required=True)
    args = parser.parse_args()
    if args.command == "_serve":
        serve(args)
    elif args.command == "_worker":
        print(json.dumps(worker(args)), flush=True)
    elif args.summarize:
        summarize()
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
