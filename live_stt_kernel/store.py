"""The session folder: nothing a session produced is lost, even if the kernel dies.

``turns.jsonl``  one line per final turn (or later version of one), appended and flushed as it arrives
``audio.wav``    the audio sent, appended as it is sent; its header is rewritten after every block,
                 so the file is a valid WAV at every moment
``meta.json``    what the session was (server, parameters, times, ids, outcome), replaced atomically
``translations.jsonl``  one line per translation (or failure), appended as each one finishes
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .audio.pcm import BYTES_PER_SAMPLE, SAMPLE_RATE
from .errors import ConfigurationError, SavedSessionError
from .transcript import Transcript, TurnRecord, records_from_frame

T = TypeVar("T")

TURNS_FILE = "turns.jsonl"
AUDIO_FILE = "audio.wav"
META_FILE = "meta.json"
TRANSLATIONS_FILE = "translations.jsonl"  # written by the live translation (`language.live`)


HEADER_BYTES = 44


def wav_header(data_bytes: int, sample_rate: int = SAMPLE_RATE, channels: int = 1, bytes_per_sample: int = BYTES_PER_SAMPLE) -> bytes:
    """A 44-byte PCM WAV header for ``data_bytes`` of audio."""
    block_align = channels * bytes_per_sample
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, channels, sample_rate,
        sample_rate * block_align, block_align, bytes_per_sample * 8, b"data", data_bytes,
    )


class WavAppender:
    """A WAV file that stays valid while it grows: after each block of audio, the two size fields
    of the header are rewritten in place (positional writes, no buffering, three syscalls)."""

    def __init__(self, path: Path, *, sample_rate: int = SAMPLE_RATE):
        self.path = path
        self.sample_rate = sample_rate
        self.data_bytes = 0
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self._fd, wav_header(0, sample_rate))
        self._lock = threading.Lock()

    def append(self, pcm: bytes) -> None:
        """Write PCM16 audio and update the header's sizes (thread-safe; ignored after `close`)."""
        with self._lock:
            if self._fd is None or not pcm:
                return
            os.pwrite(self._fd, pcm, HEADER_BYTES + self.data_bytes)
            self.data_bytes += len(pcm)
            os.pwrite(self._fd, struct.pack("<I", 36 + self.data_bytes), 4)
            os.pwrite(self._fd, struct.pack("<I", self.data_bytes), 40)

    @property
    def seconds(self) -> float:
        """The length of the audio written so far, in seconds."""
        return self.data_bytes / (self.sample_rate * BYTES_PER_SAMPLE)

    def close(self) -> None:
        """Close the file (thread-safe; a second call does nothing)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class SessionStore:
    """Writes one session folder. Turns are appended by the session worker, audio by the sender.
    Raises `ConfigurationError` if the folder holds a session already or cannot be written."""

    def __init__(self, folder: str | Path, *, sample_rate: int = SAMPLE_RATE):
        self.folder = Path(folder)
        taken = [name for name in (TURNS_FILE, AUDIO_FILE) if (self.folder / name).exists()]
        if taken:
            raise ConfigurationError(
                f"{self.folder} already holds a session ({', '.join(taken)}); choose a new folder so nothing is overwritten"
            )
        if self.folder.is_file():
            raise ConfigurationError(f"cannot write a session folder at {self.folder}: it is a file")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._turns = open(self.folder / TURNS_FILE, "a", encoding="utf-8")  # noqa: SIM115 (open for the session: closed by close())
        except OSError as exc:
            raise ConfigurationError(f"cannot write a session folder at {self.folder}: {exc.strerror or exc}") from exc
        try:
            self.audio = WavAppender(self.folder / AUDIO_FILE, sample_rate=sample_rate)
        except OSError as exc:
            self._turns.close()
            raise ConfigurationError(f"cannot write a session folder at {self.folder}: {exc.strerror or exc}") from exc
        self.meta: dict[str, Any] = {}

    def append_turn(self, record: TurnRecord) -> None:
        """Append one final turn (or a later version of one) to ``turns.jsonl`` and flush it."""
        self._turns.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        self._turns.flush()

    def update_meta(self, **fields: Any) -> None:
        """Merge ``fields`` into the session's metadata and replace ``meta.json`` atomically."""
        self.meta.update(fields)
        write_json_atomic(self.folder / META_FILE, self.meta)

    def close(self) -> None:
        """Close the audio and turns files."""
        self.audio.close()
        self._turns.close()


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def new_session_folder(root: str | Path = "sessions") -> Path:
    """A fresh, sortable folder name under ``root``: ``2026-11-21T10-15-02`` (suffixed if taken)."""
    root = Path(root)
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    candidate = root / stamp
    n = 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    return candidate


def read_jsonl(file: Path, parse: Callable[[dict[str, Any]], T], *, what: str = "record") -> list[T]:
    """Every record of an append-only JSONL file, each line a JSON object given to ``parse``.

    Crash-safe: a torn last line (the process died mid-write: no newline after it, the start of an
    object that does not parse) is skipped with a warning. Any other bad line, or a file that cannot
    be read, raises `SavedSessionError` naming the file and line; ``parse`` signals a bad record with
    ``ValueError``, ``TypeError`` or ``KeyError``."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise SavedSessionError(f"cannot read {file}: {exc.strerror or exc}") from exc
    items = []
    # split on b"\n" only: JSON leaves U+2028 and friends unescaped, and a torn line may end mid-character
    lines = data.split(b"\n")
    unterminated = bool(lines[-1].strip())  # the file does not end with a newline: its last line may be torn
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError too
            if number == len(lines) and unterminated and line.lstrip().startswith(b"{"):
                warnings.warn(f"{file}:{number}: skipped an incomplete last line (being written, or cut short when the "
                              "session stopped abruptly)", stacklevel=2)
                break
            raise SavedSessionError(f"{file}:{number}: not a saved {what}: {exc}") from exc
        if not isinstance(value, dict):
            raise SavedSessionError(f"{file}:{number}: not a saved {what}: a JSON {_json_kind(value)}, not an object")
        try:
            items.append(parse(value))
        except (ValueError, TypeError, KeyError) as exc:
            raise SavedSessionError(f"{file}:{number}: not a saved {what}: {exc}") from exc
    return items


_JSON_NAMES: dict[type, str] = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
                                float: "number", type(None): "null"}


def _json_kind(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


# the JSON types of a saved turn's fields (`TurnRecord`, and `Word` inside ``words``), checked on reading
_NUMBER = (int, float)
_TURN_FIELDS: dict[str, tuple[type, ...]] = {
    "session_id": (str,), "turn_order": (int,), "turn_index": (int,), "text": (str,), "words": (list, type(None)),
    "start": (*_NUMBER, type(None)), "end": (*_NUMBER, type(None)), "confidence": (*_NUMBER, type(None)),
    "speaker": (str, type(None)), "language": (str, type(None)), "formatted": (bool,),
    "end_of_turn_latency": (*_NUMBER, type(None)),
}
_WORD_FIELDS: dict[str, tuple[type, ...]] = {
    "text": (str,), "start_ms": (int,), "end_ms": (int,), "confidence": _NUMBER, "is_final": (bool,),
    "speaker": (str, type(None)),
}


def _check_fields(data: Mapping[str, Any], types: Mapping[str, tuple[type, ...]], where: str) -> None:
    for name, allowed in types.items():
        if name not in data:
            continue  # a missing field: the record's constructor says which
        value = data[name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            expected = " or ".join(dict.fromkeys(_JSON_NAMES[t] for t in allowed))
            raise TypeError(f"{where}{name} should be {expected}, not {_json_kind(value)} {value!r:.60}")
        if type(value) is int and not -(2**63) <= value < 2**63:  # a DataFrame column holds 64-bit numbers
            raise ValueError(f"{where}{name} is out of range: {value!r:.60}")


def _turn_record(data: Mapping[str, Any]) -> TurnRecord:
    """One line of ``turns.jsonl`` as a `TurnRecord`, its fields' types checked (``TypeError`` if one
    is wrong or missing)."""
    _check_fields(data, _TURN_FIELDS, "")
    for i, word in enumerate(data.get("words") or ()):
        if not isinstance(word, dict):
            raise TypeError(f"words[{i}] is a JSON {_json_kind(word)}, not an object")
        _check_fields(word, _WORD_FIELDS, f"words[{i}].")
    return TurnRecord.from_dict(data)


def read_turns(path: str | Path) -> Transcript:
    """The transcript saved in a session folder or a turns JSONL file (`SavedSessionError` if there
    is none, or a line is not a saved turn)."""
    path = Path(path)
    file = path / TURNS_FILE if path.is_dir() else path
    if not file.exists():
        raise SavedSessionError(f"no saved session at {path}: {file.name} not found")
    return Transcript.from_records(read_jsonl(file, _turn_record, what="turn"))


def as_records(data: Any) -> list[TurnRecord]:
    """Turns from a DataFrame (any with a ``text`` column), a `Transcript`, a list of `TurnRecord`,
    or a saved session's path."""
    if isinstance(data, (str, Path)):
        return list(read_turns(data).rows)
    if isinstance(data, Transcript):
        return list(data.rows)
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        if "text" not in data.columns:
            raise ConfigurationError("a turns DataFrame needs a 'text' column")
        return records_from_frame(data)
    records = list(data)
    if not all(isinstance(r, TurnRecord) for r in records):
        raise ConfigurationError("expected a turns DataFrame, a Transcript, a list of TurnRecord or a session folder")
    return records


__all__ = ["AUDIO_FILE", "META_FILE", "TRANSLATIONS_FILE", "TURNS_FILE", "SessionStore", "WavAppender", "as_records",
           "new_session_folder", "read_jsonl", "read_turns", "wav_header"]
