"""The browser's microphone as an audio source, for kernels that have none (JupyterHub, Colab, Binder).

`BrowserMic` is an anywidget: its JavaScript (``browser_mic.js``) asks the page for the microphone
when the user clicks "Start microphone", downsamples to 16 kHz PCM16 in an AudioWorklet and sends
numbered 50 ms chunks over the widget's comm. Here they are decoded, put back in order by a
`ChunkAssembler` (gaps become silence of the right length) and pushed into a `QueueSource`, which a
`Session` reads like any other source::

    mic = BrowserMic()
    display(mic)                       # the user clicks "Start microphone"
    session = Session(mic.source).start()
    ...                                # "Stop" in the widget (or session.stop()) is end-of-file

Threads: the comm handler decodes, enqueues and updates this widget's own traits (it is their only
writer besides the page's ``lag_ms``; `stop` is the exception, for the notebook user). Where it runs
depends on the stack: on the kernel's main thread, only between cells, with ipykernel 6 and frontends
without kernel subshells (Colab, classic Notebook); on a subshell thread, concurrently with a running
cell, with ipykernel 7 and JupyterLab 4.4+ ("comms over subshells"). Either way a cell that keeps the
GIL (a long C call) stops it; the page then shows "kernel busy" and its chunks wait in the connection.
The session's sender thread only reads the `QueueSource`. A session that closes the source
(``session.stop()``) is noticed at the next chunk, which asks the page to stop.

Messages, browser -> kernel (custom comm messages):

- ``{"type": "start", "rec": id, "rate": 16000, "chunk_samples": 800, "device_rate": 48000, "device": label}``
- ``{"type": "chunk", "rec": id, "seq": n, "rate": 16000}`` with the PCM16 bytes as the one binary buffer,
  or with ``"b64": "<base64 PCM16>"`` in the content where binary buffers do not get through
- ``{"type": "stop", "rec": id, "last_seq": n, "reason": "user" | "ended" | "closed" | "kernel"}``
- ``{"type": "status", "state": "requesting" | "denied" | "insecure" | "error", "message": text}``

kernel -> browser: ``{"type": "ack", "rec": id, "seq": highest seq received, "received": count}`` every
``ack_every`` chunks (the browser shows "kernel busy" when these fall behind) and ``{"type": "stop"}``.
A chunk that arrives without its buffer switches the ``encoding`` trait to ``"base64"``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from ..audio.chunks import CHUNK_SAMPLES, ChunkAssembler, ChunkStats
from ..audio.pcm import SAMPLE_RATE
from ..audio.sources import QueueSource
from ..errors import ConfigurationError

log = logging.getLogger(__name__)

STATES = ("idle", "requesting", "recording", "denied", "insecure", "error", "stopped")
BROWSER_STATES = ("requesting", "denied", "insecure", "error")  # what the page may report by itself

IDLE_MESSAGE = "Press “Start microphone” and allow the browser to use it."
DEVICE_LOST = ("The microphone stopped delivering audio (unplugged, muted by the system, or taken by another "
               "application). Press “Start microphone” to go on recording into the same session.")


class BrowserMic(anywidget.AnyWidget):
    """A microphone button in the notebook whose audio reaches the kernel through the widget comm.

    ``source`` is the `QueueSource` of the current recording: give it to `Session`. Stopping in the
    widget closes it (end-of-file); a new session then gets a fresh one from ``source``.

    ``ack_every``: chunks between acknowledgements. ``window`` / ``timeout_s``: the reorder window
    of the `ChunkAssembler` (in chunks) and how long a missing chunk is waited for. ``encoding``:
    ``"binary"`` (comm buffers) or ``"base64"`` (in the message; for frontends that lose buffers).
    ``clock``: monotonic seconds for the reorder timeout (tests pass their own).
    """

    _esm = Path(__file__).with_name("browser_mic.js")
    _css = """
    .live-stt-mic { font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; padding: 4px 0; }
    .live-stt-mic-button { padding: 4px 12px; border-radius: 4px; border: 1px solid #2e7d32; background: #2e7d32;
                           color: white; cursor: pointer; }
    .live-stt-mic[data-state=recording] .live-stt-mic-button { background: #c62828; border-color: #c62828; }
    .live-stt-mic-button:disabled { opacity: 0.6; cursor: wait; }
    .live-stt-mic-level { display: inline-block; width: 8em; height: 0.7em; margin: 0 8px; vertical-align: middle;
                          background: #e0e0e0; border-radius: 3px; overflow: hidden; }
    .live-stt-mic-level span { display: block; height: 100%; width: 0; background: #43a047; }
    .live-stt-mic-state { font-weight: bold; }
    .live-stt-mic[data-state=denied] .live-stt-mic-state, .live-stt-mic[data-state=insecure] .live-stt-mic-state,
    .live-stt-mic[data-state=error] .live-stt-mic-state { color: var(--jp-error-color1, #b00020); }
    .live-stt-mic-message { margin-top: 4px; }
    .live-stt-mic-stats { color: var(--jp-ui-font-color2, #555); margin-top: 2px; }
    .live-stt-mic-busy .live-stt-mic-stats { color: var(--jp-warn-color1, #e65100); font-weight: bold; }
    """

    state = t.Enum(STATES, "idle", help="Written by the kernel, from the page's reports.").tag(sync=True)
    message = t.Unicode(IDLE_MESSAGE, help="What the user should know, in plain words.").tag(sync=True)
    encoding = t.Enum(("binary", "base64"), "binary", help="How the page sends PCM.").tag(sync=True)
    chunks = t.Int(0, help="Real 50 ms chunks handed to the source, this recording.").tag(sync=True)
    gaps = t.Int(0, help="Chunks that never came and were replaced by silence.").tag(sync=True)
    late = t.Int(0, help="Chunks that came after their slot was filled with silence (dropped).").tag(sync=True)
    duplicates = t.Int(0, help="Chunks received twice (dropped).").tag(sync=True)
    reordered = t.Int(0, help="Chunks that arrived out of order and were put back in place.").tag(sync=True)
    invalid = t.Int(0, help="Messages that could not be used (malformed, wrong rate, stale recording).").tag(sync=True)
    seconds = t.Float(0.0, help="Audio handed to the source, silence fillers included.").tag(sync=True)
    acked_seq = t.Int(-1, help="The highest chunk number acknowledged to the page.").tag(sync=True)
    lag_ms = t.Int(0, help="Audio the page has sent that the kernel has not acknowledged (set by the page).").tag(sync=True)
    device_rate = t.Int(0, help="The page's audio rate before downsampling.").tag(sync=True)
    device = t.Unicode("", help="The microphone's name, as the browser gives it.").tag(sync=True)

    def __init__(self, *, ack_every: int = 10, window: int = 40, timeout_s: float = 1.0,
                 encoding: str = "binary", clock: Callable[[], float] = time.monotonic, **kwargs: Any):
        if ack_every < 1:
            raise ConfigurationError("ack_every must be at least 1")
        super().__init__(encoding=encoding, **kwargs)
        self.ack_every = ack_every
        self.buffer_failures = 0  # chunk messages whose binary buffer did not arrive
        self._clock = clock
        self._assembler = ChunkAssembler(window=window, timeout_s=timeout_s)
        self._source = QueueSource()
        self._rec: int | None = None  # the page's id for the recording in progress
        self._since_ack = 0
        self._bytes = 0
        self.on_msg(self._on_msg)

    # --- what the rest of the toolkit uses -----------------------------------------------------

    @property
    def source(self) -> QueueSource:
        """The `AudioSource` of the current (or next) recording: once a recording has ended its session
        (its source is closed), the next session asking gets a fresh source, which the page's audio then
        feeds (a closed `QueueSource` would never yield again)."""
        self._renew_source()
        return self._source

    def _renew_source(self) -> None:
        if self._source.closed:
            self._source = QueueSource()

    @property
    def stats(self) -> ChunkStats:
        """The assembler's counts for the current recording."""
        return self._assembler.stats

    def stop(self) -> None:
        """End-of-file from the kernel's side: close the source and ask the page to stop recording
        (the last ~100 ms in flight are not waited for)."""
        self._source.close()
        if self.state in ("recording", "requesting"):
            self.send({"type": "stop"})
            self._set_state("stopped", "Stopped from the notebook.")

    def close(self) -> None:
        """Close the source (end-of-file) and the widget's comm."""
        self._source.close()
        super().close()

    # --- the comm handler (kernel thread) ------------------------------------------------------

    def _on_msg(self, _widget: Any, content: Any, buffers: Sequence[Any] | None) -> None:
        try:
            kind = content.get("type") if isinstance(content, dict) else None
            if kind == "chunk":
                self._chunk(content, list(buffers or ()))
            elif kind == "start":
                self._start(content)
            elif kind == "stop":
                self._stop(content)
            elif kind == "status":
                self._status(content)
            else:
                self.invalid += 1
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:  # a bad message must not break the comm
            log.debug("browser mic: unusable message %r: %s", content, exc)
            self.invalid += 1

    def _start(self, content: dict[str, Any]) -> None:
        if int(content.get("rate", SAMPLE_RATE)) != SAMPLE_RATE:
            raise ValueError("only 16 kHz audio is accepted")
        self._renew_source()  # the last recording ended its session: a new recording, a new source
        samples = int(content.get("chunk_samples", CHUNK_SAMPLES))
        self._assembler = ChunkAssembler(chunk_bytes=2 * samples, window=self._assembler.window,
                                         timeout_s=self._assembler.timeout_s)
        self._rec = content.get("rec")
        self._since_ack, self._bytes = 0, 0
        device = str(content.get("device") or "")
        with self.hold_sync():
            self.device, self.device_rate = device, int(content.get("device_rate") or 0)
            self._publish()
            self._set_state("recording", f"Recording from {device or 'the microphone'}.")
        self._ack()

    def _chunk(self, content: dict[str, Any], buffers: list[Any]) -> None:
        if not self._current(content) or int(content.get("rate", SAMPLE_RATE)) != SAMPLE_RATE:
            self.invalid += 1
            return
        seq = int(content["seq"])
        if buffers:
            pcm = bytes(buffers[0])  # a copy: the comm may reuse its memory
        elif "b64" in content:
            pcm = base64.b64decode(content["b64"], validate=True)
        else:  # this frontend drops binary buffers: the page switches to base64 when it sees this
            self.buffer_failures += 1
            if self.encoding != "base64":
                self.encoding = "base64"
            return
        if len(pcm) % 2:
            raise ValueError("PCM16 needs an even number of bytes")
        if self._source.closed:  # the session ended (session.stop()): stop the page too
            if self.state == "recording":
                self.send({"type": "stop"})
                self._set_state("stopped", "The session ended, so the microphone was stopped.")
            return
        self._emit(self._assembler.push(seq, pcm, self._clock()))
        self._since_ack += 1
        if self._since_ack >= self.ack_every:
            self._ack()

    def _stop(self, content: dict[str, Any]) -> None:
        if not self._current(content):
            return
        last = content.get("last_seq")
        self._emit(self._assembler.flush(None if last is None else int(last)))
        self._ack()
        if content.get("reason") == "ended":  # the device went away: keep the session open for a restart
            self._set_state("error", DEVICE_LOST)
        else:
            self._source.close()
            self._set_state("stopped", "Stopped: the recording went to the session. “Start microphone” records "
                                       "again, into a new source (mic.source) for a new session.")
        self._rec = None

    def _status(self, content: dict[str, Any]) -> None:
        state = content["state"]
        if state not in BROWSER_STATES:
            raise ValueError(f"unknown state {state!r}")
        self._set_state(state, str(content.get("message") or ""))

    # --- helpers ---------------------------------------------------------------------------------

    def _current(self, content: dict[str, Any]) -> bool:
        """Whether a message belongs to the recording in progress (chunks of an older one may trail in)."""
        rec = content.get("rec")
        return rec is None or self._rec is None or rec == self._rec

    def _emit(self, blocks: list[bytes]) -> None:
        for block in blocks:
            self._source.push(block)
            self._bytes += len(block)

    def _ack(self) -> None:
        self._since_ack = 0
        seq = self._assembler.highest_seq
        self.send({"type": "ack", "rec": self._rec, "seq": seq, "received": self._assembler.stats.received})
        with self.hold_sync():
            self.acked_seq = seq
            self._publish()

    def _publish(self) -> None:
        stats = self._assembler.stats
        self.chunks, self.gaps, self.late = stats.delivered, stats.gaps, stats.dropped
        self.duplicates, self.reordered = stats.duplicates, stats.reordered
        self.seconds = round(self._bytes / (2 * SAMPLE_RATE), 3)

    def _set_state(self, state: str, message: str) -> None:
        with self.hold_sync():
            self.message = message  # first: whoever observes ``state`` reads the new message with it
            self.state = state


__all__ = ["BROWSER_STATES", "STATES", "BrowserMic"]
