"""A progress bar for batch work, drawn by tqdm (`tqdm.auto`): its widget bar in a notebook, its text bar on
a terminal, nothing elsewhere (a pipe, a log: tqdm's ``disable=None``). Failed items are counted and shown
beside the bar (``failed=N``). Updated from the calling thread only."""

from __future__ import annotations

from typing import Any, TextIO

from IPython import get_ipython
from tqdm.auto import tqdm  # type: ignore[import-untyped, unused-ignore]


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (where widgets can be shown)."""
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _Bar(tqdm):  # type: ignore[misc, unused-ignore]
    """tqdm without its monitor thread: items are counted from the caller's thread, and a library call leaves
    no thread running behind it."""

    monitor_interval = 0


class Progress:
    """``with Progress(total, "translating") as bar: ... bar.advance()``.

    ``enabled=False`` (or nothing to do) draws nothing; ``stream``: where a text bar goes (standard error by
    default; drawn only when it is a terminal). ``done`` and ``failed`` count the items whether drawn or not;
    ``bar`` is the tqdm object."""

    def __init__(self, total: int, label: str, *, enabled: bool = True, stream: TextIO | None = None):
        self.total, self.label, self.done, self.failed = total, label, 0, 0
        self.bar: Any = _Bar(total=total, desc=label, file=stream, unit="item", leave=True,
                             disable=None if enabled and total else True)

    def advance(self, *, failed: bool = False) -> None:
        """Count one item done (``failed=True``: done, but failed) and redraw."""
        self.done += 1
        if failed:
            self.failed += 1
            self.bar.set_postfix(failed=self.failed, refresh=False)  # shown with the next draw, just below
        self.bar.update(1)

    def close(self) -> None:
        """Finish the bar: tqdm's last draw and a newline on a terminal; in a notebook the bar turns green, or
        orange when an item failed."""
        self.bar.close()
        if self.failed:
            self.bar.colour = "orange"  # the notebook bar's colour (a terminal's bar is drawn already)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Progress", "in_notebook"]
