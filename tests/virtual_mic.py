"""A PulseAudio virtual microphone: a pipe source fed in real time, so PortAudio records known audio.

Silence flows continuously (a pipe source with no writer never calls back); ``play(pcm)`` splices
audio in at the next block. See ../shared/TESTING.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

BLOCK = 640  # 20 ms of 16 kHz PCM16
LEAD_S = 0.05


class VirtualMic:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="virtmic-"))
        self.fifo = self.dir / "virtmic.fifo"
        self.env = dict(os.environ, PULSE_RUNTIME_PATH=str(self.dir), PULSE_SERVER=f"unix:{self.dir}/native")
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> VirtualMic:
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        subprocess.run(["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "--disallow-exit=yes", "-n",
                        "--load=module-native-protocol-unix"], env=self.env, check=True, timeout=20, capture_output=True)
        self._pactl("load-module", "module-null-sink", "sink_name=virtspk", "rate=16000", "channels=1")
        # the module makes the FIFO itself (it refuses one that already exists)
        self._pactl("load-module", "module-pipe-source", "source_name=virtmic", f"file={self.fifo}",
                    "format=s16le", "rate=16000", "channels=1")
        self._pactl("set-default-source", "virtmic")
        self._thread = threading.Thread(target=self._feed, name="virtual-mic-feeder", daemon=True)
        self._thread.start()

    def _pactl(self, *args: str) -> None:
        subprocess.run(["pactl", *args], env=self.env, check=True, timeout=20, capture_output=True)

    def play(self, pcm: bytes) -> None:
        """Splice PCM16 mono 16 kHz audio into the microphone stream, starting at the next block."""
        with self._lock:
            self._pending += pcm

    def _feed(self) -> None:
        with open(self.fifo, "wb", buffering=0) as pipe:
            started, blocks = time.monotonic(), 0
            while not self._stop.is_set():
                with self._lock:
                    chunk = bytes(self._pending[:BLOCK])
                    del self._pending[:BLOCK]
                try:
                    pipe.write(chunk + b"\x00" * (BLOCK - len(chunk)))
                except BrokenPipeError:  # PulseAudio went away first (stop()): nothing left to feed
                    return
                blocks += 1
                ahead = blocks * 0.02 - (time.monotonic() - started) - LEAD_S
                if ahead > 0:
                    self._stop.wait(ahead)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        subprocess.run(["pulseaudio", "--kill"], env=self.env, timeout=20, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
