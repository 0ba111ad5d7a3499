#!/usr/bin/env python
"""Soak: a long recording through the embedded server faster than real time, with periodic faults.

``live-stt serve`` runs in its own process; the session connects through a TCP proxy in this process that
cuts every connection (a TCP reset, as when Wi-Fi drops) every ``--drop-every`` seconds, and the server itself
is killed (SIGKILL) and started again on the same port once, halfway. The recording is the five LibriVox
utterances of Debian's pocketsphinx-testdata repeated to ``--minutes`` minutes, with 1.2 s pauses, so the
whole reference text is known. Sampled every few seconds: the RSS of this process (the client) and of the
server. At the end: WER of all the turns against the reference, whether audio.wav holds the whole recording,
how many reconnects, and how memory moved (first sample after warm-up vs the last).

Usage::

    .venv/bin/python benchmarks/bench_soak.py --minutes 60   # about 0.3-0.7x the audio's length on 2 cores

Writes benchmarks/out/soak-results.json. See benchmarks/README.md ("Soak").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_engine import ServerProcess  # noqa: E402 - the same server process helper as the engine benchmark
from speech import librivox, wer  # noqa: E402

from live_stt_kernel import Session  # noqa: E402

OUT = ROOT / "benchmarks" / "out"


class CuttingProxy:
    """Forward TCP from a local port to ``upstream``; `cut()` resets every open connection."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> int:
        """Reset every open connection; how many there were."""
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
        return len(pairs)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def recording(path: Path, minutes: float) -> tuple[str, float]:
    """The LibriVox utterances with 1.2 s pauses, repeated to ``minutes``; the reference text and seconds."""
    utterances = librivox()
    gap = np.zeros(int(16000 * 1.2), dtype=np.int16)
    audio, texts, total = [gap], [], len(gap) / 16000
    while total < minutes * 60:
        for samples, text in utterances:
            audio += [samples, gap]
            texts.append(text)
            total += (len(samples) + len(gap)) / 16000
    sf.write(path, np.concatenate(audio), 16000, subtype="PCM_16")
    return " ".join(texts), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of audio (default 60)")
    parser.add_argument("--drop-every", type=float, default=45.0, help="cut the connection every this many seconds")
    parser.add_argument("--no-kill", action="store_true", help="do not kill and restart the server halfway")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    reference, seconds = recording(work / "long.wav", args.minutes)
    command = [str(Path(sys.executable).parent / "live-stt"), "serve", "--port", "0"]
    server = ServerProcess(command)
    port = int(server.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(("127.0.0.1", port))
    session = Session(work / "long.wav", url=f"ws://127.0.0.1:{proxy.port}", api_key=server.token, folder=work / "session",
                      realtime=False)
    samples: list[dict[str, float]] = []
    cuts, killed_at = 0, None
    started = time.monotonic()
    session.start()
    next_cut = started + args.drop_every
    while session.running:
        time.sleep(5.0)
        now = time.monotonic()
        samples.append({"t": round(now - started, 1), "client_mb": round(rss_mb(os.getpid()), 1),
                        "server_mb": round(rss_mb(server.pid), 1), "turns": len(session.transcript.rows)})
        if now >= next_cut:
            cuts += proxy.cut()
            next_cut = now + args.drop_every
        done_s = (session.transcript.rows[-1].end or 0.0) if session.transcript.rows else 0.0
        if not args.no_kill and killed_at is None and done_s > seconds / 2:
            killed_at = round(now - started, 1)
            os.kill(server.pid, signal.SIGKILL)
            server.process.wait()
            server = ServerProcess([*command[:-1], str(port)], token=server.token)  # the same port and token: the session reconnects
    wall = time.monotonic() - started
    error = None
    try:
        session.wait(timeout=60)
    except Exception as exc:  # reported, not raised: the numbers say what was lost
        error = f"{type(exc).__name__}: {exc}"
    frame = session.df
    saved, rate = sf.read(work / "session" / "audio.wav", dtype="int16")
    warm = samples[min(3, len(samples) - 1)] if samples else {}
    result = {
        "audio_s": round(seconds, 1), "wall_s": round(wall, 1), "speed": round(seconds / wall, 2),
        "turns": len(frame), "wer": round(wer(reference, " ".join(frame["text"])), 4),
        "audio_wav_s": round(len(saved) / rate, 2), "reconnects": session.transcript.reconnects,
        "cuts": cuts, "server_killed_at_s": killed_at, "error": error,
        "client_mb": {"after_warm_up": warm.get("client_mb"), "end": samples[-1]["client_mb"] if samples else None,
                      "max": max((s["client_mb"] for s in samples), default=None)},
        "server_mb": {"after_warm_up": warm.get("server_mb"), "end": samples[-1]["server_mb"] if samples else None,
                      "max": max((s["server_mb"] for s in samples), default=None)},
        "samples": samples,
    }
    server.stop()
    OUT.mkdir(exist_ok=True)
    (OUT / "soak-results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
