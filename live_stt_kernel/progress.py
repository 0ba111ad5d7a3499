"""A progress bar for batch work: an ipywidgets bar in a notebook, a one-line bar on a terminal,
nothing elsewhere (a pipe, a log). Updated from the calling thread only."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import ipywidgets as widgets
from IPython import get_ipython
from IPython.display import display


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (where widgets can be shown)."""
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class Progress:
    """``with Progress(total, "translating") as bar: ... bar.advance()``."""

    def __init__(self, total: int, label: str, *, enabled: bool = True, stream: TextIO | None = None):
        self.total, self.label, self.done, self.failed = total, label, 0, 0
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._widget: Any = None
        self._terminal = False
        if not enabled or total == 0:
            return
        if in_notebook():
            self._bar = widgets.IntProgress(value=0, min=0, max=total, description=label[:20])
            self._text = widgets.Label(value=f"0/{total}")
            self._widget = widgets.HBox([self._bar, self._text])
            display(self._widget)
        elif self.stream.isatty():
            self._terminal = True
            self._draw()

    def advance(self, *, failed: bool = False) -> None:
        """Count one item done (``failed=True``: done, but failed) and redraw."""
        self.done += 1
        self.failed += failed
        if self._widget is not None:
            self._bar.value = self.done
            self._text.value = self._summary()
            if self.failed:
                self._bar.bar_style = "warning"
        elif self._terminal:
            self._draw()

    def _summary(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.done}/{self.total}{failed} ({time.monotonic() - self.started:.1f} s)"

    def _draw(self) -> None:
        width = 30
        filled = int(width * self.done / max(1, self.total))
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self._summary()}")
        self.stream.flush()

    def close(self) -> None:
        """Finish the bar: marked success (or warning if any item failed) in a notebook, a newline on a terminal."""
        if self._widget is not None:
            self._bar.bar_style = "warning" if self.failed else "success"
        elif self._terminal:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Progress", "in_notebook"]
