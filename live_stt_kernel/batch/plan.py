"""What a batch is made of, decided without running anything: the recordings, their keys, and where each output goes.

A recording's **key** is a hash of its bytes and of the settings that shape its output (model, turn settings,
targets, coaching), so a renamed or moved file is still done, and changed settings make new outputs. The output
folder (``out``)::

    sessions/<name>-<key>/   one session folder per recording, the same files a live session writes
                             (``load_session`` reads it); its presence is what "done" means
    turns/<key>.parquet      the recording's turns, with ``recording`` and ``path`` columns: together a Parquet
                             dataset (``pd.read_parquet(out / "turns")``)
    metrics/<key>.parquet    one row of speaking metrics per recording: a dataset too
    errors/<key>.json        why a recording failed (gone once it succeeds)
    .partial/                work in progress: a worker writes here, then renames into place
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigurationError
from ..local.models import DEFAULT_MODEL
from ..local.turns import TurnSettings

# what libsndfile reads (`WavSource`); a directory is searched for these, a file named outright is taken as is
AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                            ".au", ".snd", ".caf", ".w64", ".rf64"})
HASH_CHUNK = 1 << 20
KEY_CHARS = 16  # 64 bits of SHA-256: a collision in a semester of recordings is not a worry


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchSettings:
    """Everything that shapes a recording's outputs; part of its key. ``url`` is not: the same engine behind
    another address gives the same turns."""

    model: str = DEFAULT_MODEL
    turns: TurnSettings = field(default_factory=TurnSettings)
    keyterms: tuple[str, ...] = ()
    translate_to: tuple[str, ...] = ()
    translator: str | None = None
    coach: bool = False
    remote: str = ""  # "cloud" or "server": streamed to AssemblyAI or a v3 server (``model`` is then theirs, "")

    def digest(self) -> str:
        """A short, stable hash of the settings."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:KEY_CHARS]


@dataclass(frozen=True, slots=True)
class Recording:
    """One input file: ``key`` names its outputs, ``name`` makes its folder readable."""

    path: str
    key: str
    name: str


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a batch's outputs live under ``out``."""

    out: Path

    @property
    def sessions(self) -> Path:
        """One session folder per recording done."""
        return self.out / "sessions"

    @property
    def turns(self) -> Path:
        """The turns dataset: a Parquet file per recording."""
        return self.out / "turns"

    @property
    def metrics(self) -> Path:
        """The metrics dataset: a one-row Parquet file per recording."""
        return self.out / "metrics"

    @property
    def errors(self) -> Path:
        """A JSON file per recording that failed."""
        return self.out / "errors"

    @property
    def partial(self) -> Path:
        """Scratch space of the recordings in progress."""
        return self.out / ".partial"

    def session(self, recording: Recording) -> Path:
        """The session folder of ``recording``."""
        return self.sessions / f"{recording.name}-{recording.key}"

    def done_keys(self) -> set[str]:
        """The keys of the recordings whose session folder is in place."""
        if not self.sessions.is_dir():
            return set()
        return {p.name.rsplit("-", 1)[-1] for p in self.sessions.iterdir() if p.is_dir() and "-" in p.name}

    def failed_for_good(self) -> set[str]:
        """The keys of the recordings that failed in a way that depends only on their bytes (an unreadable file)."""
        keys = set()
        for path in self.errors.glob("*.json") if self.errors.is_dir() else ():
            try:
                if json.loads(path.read_text(encoding="utf-8")).get("permanent"):
                    keys.add(path.stem)
            except (OSError, ValueError):  # a damaged record: try the recording again
                continue
        return keys

    def make(self) -> None:
        """Create the folders (raises `ConfigurationError` if ``out`` cannot be written)."""
        try:
            for folder in (self.sessions, self.turns, self.metrics, self.errors, self.partial):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot write the batch output folder {self.out}: {exc.strerror or exc}") from exc


def find_audio(inputs: str | Path | Iterable[str | Path], *, outside: Sequence[Path] = ()) -> list[Path]:
    """The files named by ``inputs``: a directory (searched recursively for audio files), a glob pattern
    (``"lectures/**/*.flac"``), a file, or a list of these; each file once, in a stable order. Files under the
    folders ``outside`` (a batch's own session folders, whose ``audio.wav`` files are no inputs) are left out. Raises
    `ConfigurationError` when nothing matches."""
    specs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    found: dict[Path, None] = {}
    for spec in specs:
        text = str(spec)
        path = Path(text).expanduser()
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                             and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        else:
            raise ConfigurationError(f"no such file, folder or pattern: {text}")
        for match in matches:
            resolved = match.resolve()
            if not any(resolved.is_relative_to(folder.resolve()) for folder in outside):
                found.setdefault(resolved, None)
    if not found:
        raise ConfigurationError(f"no audio files in {', '.join(map(str, specs)) or 'an empty list'}")
    return list(found)


def content_hash(path: Path) -> str:
    """SHA-256 of the file's bytes (raises `OSError` if it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def recording(path: Path, content: str, settings: BatchSettings) -> Recording:
    """The recording of ``path``, whose bytes hash to ``content``."""
    key = hashlib.sha256(f"{content}:{settings.digest()}".encode()).hexdigest()[:KEY_CHARS]
    return Recording(str(path), key, safe_name(path.stem))


def safe_name(stem: str) -> str:
    """A file name's stem as a folder-name prefix: letters, digits, ``._`` and single dashes, at most 60 characters."""
    cleaned = re.sub(r"[^\w.]+", "-", stem, flags=re.ASCII).strip("-.")
    return cleaned[:60] or "recording"


def pending(recordings: Sequence[Recording], done: set[str]) -> tuple[list[Recording], list[Recording]]:
    """``(to do, already done)``: a key seen before in the list (the same bytes under another name) is done."""
    todo: list[Recording] = []
    skipped: list[Recording] = []
    seen = set(done)
    for rec in recordings:
        (skipped if rec.key in seen else todo).append(rec)
        seen.add(rec.key)
    return todo, skipped


__all__ = ["AUDIO_SUFFIXES", "BatchSettings", "Layout", "Recording", "content_hash", "find_audio", "pending",
           "recording", "safe_name"]
