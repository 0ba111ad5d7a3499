"""A WebSocket server with its own asyncio event loop: the base of the replay server and the embedded server.

``start()`` runs it on a background thread and returns once it listens (``port=0`` picks a free
port, read back into ``self.port``); ``run()`` blocks in the foreground; ``stop()`` ends either.
Subclasses supply the connection handler, the handshake check and the server options.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, Self

from websockets.asyncio.server import serve

from ..errors import EmbeddedServerError
from .protocol import MAX_FRAME_BYTES


class LoopbackServer:
    """A WebSocket server running its own asyncio event loop; subclasses supply `_handle`, `_check_request` and ``max_queue``."""

    thread_name = "ws-server"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None):
        self.host, self.port = host, port
        self.ssl_context = ssl_context  # given: the server speaks TLS (wss://, and https:// for plain HTTP answers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        """The ``ws://host:port`` address, ``wss://`` with TLS (the real port once listening)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.ssl_context else 'ws'}://{host}:{self.port}"

    # --- what a subclass provides --------------------------------------------------------------

    async def _handle(self, ws: Any) -> None:
        raise NotImplementedError

    def _check_request(self, connection: Any, request: Any) -> Any:
        """Return an HTTP response to answer the request without a WebSocket, or None to accept."""
        return None

    max_queue: int | None = 64  # frames buffered per connection before reading pauses
    # a ping to each client this often: a heartbeat that says the server is alive while it works (clients
    # need not answer in time: a server pausing its reads for flow control would not see the pong)
    ping_interval: float | None = None
    receive_buffer: int | None = None  # SO_RCVBUF of each connection (None: the kernel's autotuned default)
    open_timeout = 5.0  # a connection that has not finished its handshake by then is dropped (half-open clients)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Self:
        """Serve on a daemon thread; returns once listening.

        Raises `EmbeddedServerError` when it is not listening within ``timeout`` seconds, or the failure that stopped it.
        """
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise EmbeddedServerError(f"{type(self).__name__} did not start within {timeout:g} s")
        if self._failure:
            raise self._failure
        return self

    def run(self, on_ready: Callable[[Self], None] | None = None) -> None:
        """Serve until ``stop()``; on a background thread a failure is kept for ``start()`` to raise."""
        try:
            asyncio.run(self._main(on_ready))
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            if self._thread is None:
                raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving (safe from any thread) and wait up to ``timeout`` seconds for the thread `start` made, if any."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def stopping(self) -> asyncio.Event:
        """Set when the server is told to stop (await it on the server's loop)."""
        assert self._stopping is not None, "not serving"
        return self._stopping

    def __enter__(self) -> Self:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _main(self, on_ready: Callable[[Self], None] | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with serve(self._handle, self.host, self.port, process_request=self._check_request,
                         max_size=MAX_FRAME_BYTES, max_queue=self.max_queue, ping_interval=self.ping_interval,
                         ping_timeout=None, open_timeout=self.open_timeout, ssl=self.ssl_context) as server:
            self.port = server.sockets[0].getsockname()[1]
            if self.receive_buffer is not None:
                for sock in server.sockets:  # accepted connections inherit it
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            self._ready.set()
            if on_ready is not None:
                on_ready(self)
            await self._stopping.wait()


__all__ = ["LoopbackServer"]
