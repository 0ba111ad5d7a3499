"""The embedded default: with no API key, sessions use a local server started on first use.

One server process per Python process (a kernel), reused by every session, with a fresh token that
never leaves the two processes (it travels in the child's environment). The child watches its stdin:
when this process ends, for any reason, the pipe closes and the server stops with it.
"""

from __future__ import annotations

import atexit
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

from ..errors import LiveSTTError
from .models import DEFAULT_MODEL, cache_dir

TOKEN_ENV = "LIVE_STT_SERVER_TOKEN"
# numpy's BLAS threads spin during feature extraction: one thread saved 14-25 % of the server's CPU
SERVER_ENV = {"OPENBLAS_NUM_THREADS": "1"}
READY_PREFIX = "live-stt server ready at "


class EmbeddedServerError(LiveSTTError):
    """The local server could not be started."""


class EmbeddedServer:
    def __init__(self, *, model: str = DEFAULT_MODEL, timeout: float = 120.0):
        self.token = secrets.token_urlsafe(24)
        self.log_path = cache_dir() / "server.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "live_stt_kernel.cli", "serve", "--port", "0", "--model", model, "--watch-stdin"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env={**os.environ, **SERVER_ENV, TOKEN_ENV: self.token},
                text=True,
            )
        self.url = self._await_ready(timeout)

    def __repr__(self) -> str:
        return f"<EmbeddedServer {self.url} pid={self.process.pid}>"

    def _await_ready(self, timeout: float) -> str:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline() if self.process.stdout else ""), daemon=True)
        reader.start()
        reader.join(timeout)
        text = line[0].strip() if line else ""
        if not text.startswith(READY_PREFIX):
            self.stop()
            tail = _tail(self.log_path)
            raise EmbeddedServerError(
                f"the embedded speech server did not start{'' if line else f' within {timeout:g} s'}: {tail or 'no output'} "
                f"(log: {self.log_path})"
            )
        return text[len(READY_PREFIX):].removesuffix("/v3/ws")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()  # the server's cue to stop
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


_lock = threading.Lock()
_server: EmbeddedServer | None = None


def embedded_endpoint(*, model: str = DEFAULT_MODEL) -> tuple[str, str]:
    """The URL and token of this process's local server, started (or restarted) as needed."""
    global _server
    with _lock:
        if _server is None or not _server.alive:
            _server = EmbeddedServer(model=model)
            atexit.register(_server.stop)
        return _server.url, _server.token


def stop_embedded_server() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None


__all__ = ["EmbeddedServer", "EmbeddedServerError", "embedded_endpoint", "stop_embedded_server"]
