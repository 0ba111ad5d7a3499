"""The embedded default: with no API key, sessions use local servers started on first use.

Two kinds, one mechanism: the speech server (AssemblyAI v3 over a WebSocket) and the LLM server
(OpenAI-compatible chat). At most one of each per Python process (a kernel), reused by every caller,
each with a fresh token that never leaves the two processes (it travels in the child's environment).
The child watches its stdin: when this process ends, for any reason, the pipe closes and the server
stops with it.

Threads: any thread may ask for an endpoint; a lock per kind makes the first caller start the server
while the others wait, and starting one kind never waits for the other (the LLM takes seconds to load).
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from ..errors import EmbeddedServerError
from ..extras import LLM, LOCAL, Extra, require
from . import llm_server
from .models import DEFAULT_MODEL, cache_dir

TOKEN_ENV = "LIVE_STT_SERVER_TOKEN"
# numpy's BLAS threads spin during feature extraction: one thread saved 14-25 % of the server's CPU
SERVER_ENV = {"OPENBLAS_NUM_THREADS": "1"}
READY_PREFIX = "live-stt server ready at "


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServerKind:
    """How to start one kind of local server and read the address it announces on its first stdout line."""

    what: str  # "speech" or "LLM": names the server in messages and in the registry
    module: tuple[str, ...]  # ``python -m`` this, then the common options
    ready_prefix: str
    url_suffix: str  # cut from the announced URL to give the endpoint callers use
    token_env: str
    env: Mapping[str, str]
    log_name: str  # the child's stderr, in the cache folder
    default_model: str | None  # None: the server's own default
    timeout: float  # seconds to wait for the ready line
    extra: Extra  # the pip extra the server needs


SPEECH_SERVER = ServerKind(what="speech", module=("live_stt_kernel.cli", "serve"), ready_prefix=READY_PREFIX,
                    url_suffix="/v3/ws", token_env=TOKEN_ENV, env=SERVER_ENV, log_name="server.log",
                    default_model=DEFAULT_MODEL, timeout=120.0, extra=LOCAL)
# the first start assembles and hashes 1.1 GB of weights before loading them: allow for a slow disk
LLM_SERVER = ServerKind(what="LLM", module=("live_stt_kernel.local.llm_server",), ready_prefix=llm_server.READY_PREFIX,
                 url_suffix="", token_env=llm_server.TOKEN_ENV, env={}, log_name="llm-server.log",
                 default_model=None, timeout=300.0, extra=LLM)


class EmbeddedServer:
    """A server child process of one `ServerKind`; ``url`` and ``token`` are set once it is ready."""

    def __init__(self, *, model: str | None = None, timeout: float | None = None, kind: ServerKind = SPEECH_SERVER):
        self.kind = kind
        model = model if model is not None else kind.default_model
        self.token = secrets.token_urlsafe(24)
        self.log_path = cache_dir() / kind.log_name
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *kind.module, "--port", "0", *(["--model", model] if model else []), "--watch-stdin"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                env={**os.environ, **kind.env, kind.token_env: self.token}, text=True,
            )
        self.url = self._await_ready(kind.timeout if timeout is None else timeout)

    def __repr__(self) -> str:
        return f"<EmbeddedServer {self.kind.what} {self.url} pid={self.process.pid}>"

    def _await_ready(self, timeout: float) -> str:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline() if self.process.stdout else ""), daemon=True)
        reader.start()
        reader.join(timeout)
        text = line[0].strip() if line else ""
        if not text.startswith(self.kind.ready_prefix):
            self.stop()
            tail = _tail(self.log_path)
            raise EmbeddedServerError(
                f"the embedded {self.kind.what} server did not start{'' if line else f' within {timeout:g} s'}: "
                f"{tail or 'no output'} (log: {self.log_path})"
            )
        return text[len(self.kind.ready_prefix):].removesuffix(self.kind.url_suffix)

    @property
    def alive(self) -> bool:
        """The child process is still running."""
        return self.process.poll() is None

    def stop(self) -> None:
        """Close the child's stdin (its cue to stop), wait up to 10 s for it to exit, then kill it."""
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


_locks = {kind.what: threading.Lock() for kind in (SPEECH_SERVER, LLM_SERVER)}
_servers: dict[str, EmbeddedServer] = {}  # by ServerKind.what


def _endpoint(kind: ServerKind, model: str | None) -> tuple[str, str]:
    require(kind.extra, f"the embedded {kind.what} server (used when no API key or endpoint is given)")
    with _locks[kind.what]:
        server = _servers.get(kind.what)
        if server is None or not server.alive:
            server = _servers[kind.what] = EmbeddedServer(model=model, kind=kind)
            atexit.register(server.stop)
        return server.url, server.token


def _stop(kind: ServerKind) -> None:
    with _locks[kind.what]:
        server = _servers.pop(kind.what, None)
        if server is not None:
            server.stop()


def embedded_endpoint(*, model: str = DEFAULT_MODEL) -> tuple[str, str]:
    """The URL (``ws://127.0.0.1:PORT``) and token of this process's speech server, started (or restarted) as needed."""
    return _endpoint(SPEECH_SERVER, model)


def stop_embedded_server() -> None:
    """Stop this process's speech server, if it runs; the next `embedded_endpoint` starts a new one."""
    _stop(SPEECH_SERVER)


def embedded_llm_endpoint(*, model: str | None = None) -> tuple[str, str]:
    """The base URL (``http://127.0.0.1:PORT/v1``) and token of this process's LLM server, started as needed.

    ``model`` is a GGUF file; by default the packaged Qwen2.5-Coder-1.5B-Instruct, verified before loading.
    """
    return _endpoint(LLM_SERVER, model)


def stop_embedded_llm_server() -> None:
    """Stop this process's LLM server, if it runs; the next `embedded_llm_endpoint` starts a new one."""
    _stop(LLM_SERVER)


__all__ = ["LLM_SERVER", "SPEECH_SERVER", "EmbeddedServer", "ServerKind", "embedded_endpoint",
           "embedded_llm_endpoint", "stop_embedded_llm_server", "stop_embedded_server"]
