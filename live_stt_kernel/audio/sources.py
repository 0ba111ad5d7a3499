"""Audio sources: iterables of 16 kHz mono PCM16 blocks.

An `AudioSource` is anything with ``__iter__`` (yielding ``bytes``) and ``close()``; ``close()``
may be called from another thread and ends the iteration (end-of-file), after which whatever was
already captured is still yielded. Hardware callbacks only copy and enqueue.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import soundfile as sf

from ..errors import AudioFileError, ConfigurationError, NoInputDevice, PortAudioMissing
from .pcm import SAMPLE_RATE, Resampler, float_to_pcm16

BROWSER_MIC_HINT = (
    "If the kernel runs on a remote server (JupyterHub, Colab, Binder) it has no microphone: "
    "use the browser microphone (source='browser') or an audio file instead."
)


@runtime_checkable
class AudioSource(Protocol):
    """What a `Session` reads: iterating yields 16 kHz mono PCM16 blocks (``bytes``) until ``close()`` ends it."""

    sample_rate: int

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None:
        """End the iteration (end-of-file); may be called from any thread."""
        ...


class QueueSource:
    """A source fed from another thread (the browser microphone, a PortAudio callback).

    ``push`` never blocks; ``close`` ends the stream after what was pushed so far.
    """

    sample_rate = SAMPLE_RATE
    _END = object()

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = threading.Event()

    def push(self, block: bytes) -> None:
        """Add a block; never blocks, any thread. Ignored once the source is closed."""
        if not self._closed.is_set():
            self._queue.put(block)

    def close(self) -> None:
        """End the stream after the blocks pushed so far (any thread; a second call does nothing)."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(self._END)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed.is_set()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is self._END:
                self._queue.put(self._END)  # so a second reader of a closed source also ends, never blocks
                return
            yield item


class WavSource:
    """Any file libsndfile reads (WAV, FLAC, OGG, MP3, ...; any rate, channels and sample format),
    converted to 16 kHz mono PCM16 as it is read.

    ``realtime=True`` paces blocks to the wall clock, as a live server requires; ``False`` reads as
    fast as the consumer takes them (for local servers and tests). Paced files come in 100 ms blocks
    (sent as two 50 ms frames): each wake-up costs more CPU than the work it does.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, path: str | Path, *, realtime: bool = True, block_ms: int = 100):
        self.path = Path(path)
        self.realtime = realtime
        if block_ms <= 0:
            raise ConfigurationError("block_ms must be positive")
        self.block_ms = block_ms
        self._stop = threading.Event()
        self.info = _open_info(self.path)
        self.duration = self.info.frames / self.info.samplerate

    def close(self) -> None:
        """Stop reading (any thread): the iteration ends before the next block, also during a paced wait."""
        self._stop.set()

    def __iter__(self) -> Iterator[bytes]:
        resample = Resampler(self.info.samplerate)
        block_frames = max(1, self.info.samplerate * self.block_ms // 1000)
        sent_samples = 0
        started = time.monotonic()
        with sf.SoundFile(str(self.path)) as f:
            for block in _blocks(f, block_frames):
                if self._stop.is_set():
                    return
                pcm = float_to_pcm16(resample(block.mean(axis=1)))
                sent_samples += len(pcm) // 2
                if self.realtime:
                    # a block is released once its last sample "has happened", as from a microphone
                    ahead = sent_samples / SAMPLE_RATE - (time.monotonic() - started)
                    if ahead > 0 and self._stop.wait(ahead):
                        return
                if pcm:
                    yield pcm
            tail = float_to_pcm16(resample(np.zeros(0, dtype=np.float32), last=True))
            if tail:
                yield tail


def _blocks(f: Any, frames: int) -> Iterator[np.ndarray]:
    if f.format == "MP3":  # libsndfile 1.2 decodes MP3 wrongly when read in pieces: decode whole, then slice
        whole = f.read(dtype="float32", always_2d=True)
        return (whole[i : i + frames] for i in range(0, len(whole), frames))
    return cast(Iterator[np.ndarray], f.blocks(blocksize=frames, dtype="float32", always_2d=True))


def _open_info(path: Path) -> Any:
    if not path.exists():
        raise AudioFileError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioFileError(f"expected an audio file, got a directory: {path}")
    if path.stat().st_size == 0:
        raise AudioFileError(f"audio file is empty (0 bytes): {path}")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioFileError(f"not an audio file this toolkit can read ({path.name}): {exc}") from exc
    if info.frames <= 0:
        raise AudioFileError(f"audio file contains no samples: {path}")
    return info


class MicSource:
    """The kernel machine's microphone through PortAudio (sounddevice), 16 kHz mono PCM16.

    The PortAudio callback only copies its block into a queue. ``device`` is an index or a
    substring of the device name; ``None`` is the system default input.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, *, device: int | str | None = None, block_ms: int = 50):
        self._sd = import_sounddevice()
        self.device = _pick_input(self._sd, device)
        self.block_ms = block_ms
        self.overflows = 0
        self._queue = QueueSource()
        self._rate = SAMPLE_RATE
        try:
            self._sd.check_input_settings(device=self.device, channels=1, dtype="int16", samplerate=SAMPLE_RATE)
        except Exception:  # the device cannot do 16 kHz itself: record natively, resample off the callback
            self._rate = int(self._sd.query_devices(self.device)["default_samplerate"])

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        if status.input_overflow:
            self.overflows += 1
        self._queue.push(bytes(indata))

    def __iter__(self) -> Iterator[bytes]:
        """Open the device, yield what it records until ``close()``, then release it."""
        resample = Resampler(self._rate)
        stream = self._sd.RawInputStream(
            device=self.device, channels=1, dtype="int16", samplerate=self._rate,
            blocksize=self._rate * self.block_ms // 1000, callback=self._callback,
        )
        stream.start()
        try:
            for block in self._queue:
                if self._rate == SAMPLE_RATE:
                    yield block
                else:
                    mono = np.frombuffer(block, dtype="<i2").astype(np.float32) / 32768.0
                    yield float_to_pcm16(resample(mono))
        finally:
            stream.stop()
            stream.close()

    def close(self) -> None:
        """Stop recording (any thread): blocks already captured are still yielded, then the device is released."""
        self._queue.close()


def import_sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:
        raise PortAudioMissing(
            "The PortAudio library is not installed, so the kernel cannot record "
            "(Debian/Ubuntu: apt-get install libportaudio2; conda: conda install -c conda-forge portaudio). "
            + BROWSER_MIC_HINT
        ) from exc
    return sounddevice


def input_devices() -> list[dict[str, Any]]:
    """The input devices PortAudio sees: ``[{"index", "name", "channels", "default_samplerate"}]``."""
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
    except Exception:
        return []
    return [
        {"index": i, "name": d["name"], "channels": d["max_input_channels"], "default_samplerate": d["default_samplerate"]}
        for i, d in enumerate(devices)
        if d["max_input_channels"] > 0
    ]


def _pick_input(sd: Any, device: int | str | None) -> int:
    inputs = input_devices()
    if not inputs:
        raise NoInputDevice("No microphone found: PortAudio lists no input devices on the kernel's machine. " + BROWSER_MIC_HINT)
    if device is None:
        try:
            default = sd.default.device[0]
        except Exception:
            default = -1
        if default is not None and default >= 0 and any(d["index"] == default for d in inputs):
            return int(default)
        return int(inputs[0]["index"])
    if isinstance(device, int):
        if any(d["index"] == device for d in inputs):
            return device
    else:
        matches = [d for d in inputs if device.lower() in d["name"].lower()]
        if matches:
            return int(matches[0]["index"])
    names = ", ".join(f"{d['index']}: {d['name']}" for d in inputs)
    raise NoInputDevice(f"No input device matches {device!r}. Available inputs: {names}")


__all__ = ["AudioSource", "MicSource", "QueueSource", "WavSource", "input_devices"]
