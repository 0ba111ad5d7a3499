"""The notebook entry point: ``start()`` starts a session and, in a notebook, shows its live panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from IPython.display import display

from .audio.sources import AudioSource
from .progress import in_notebook
from .session import Session
from .widgets.panel import LivePanel


def start(source: AudioSource | str | Path | None = None, *, panel: bool | None = None, **options: Any) -> Session:
    """Start a session on ``source`` (kernel microphone by default; a file path; any `AudioSource`) and
    return it at once. In a notebook (or with ``panel=True``) the live panel is shown too;
    ``panel=False`` shows nothing. ``options`` go to `Session`."""
    session = Session(source, **options).start()
    if panel or (panel is None and in_notebook()):
        display(LivePanel(session))
    return session


__all__ = ["start"]
