"""The live panel's presentation controls: an anywidget inside the panel that carries the panel's
stylesheet, keeps the turn list pinned to the newest turn (unless the user scrolls up), and offers
"Large text" and "Full screen" buttons that act in the page at once, even while the kernel is busy.

Why an anywidget and not more ipywidgets: scrolling and the Fullscreen API happen in the page (the
latter only on a click there), and the few lines of JavaScript that do it (``presenter.js``) come with
the package. The turn rows stay ipywidgets HTML widgets, updated one by one by the panel's UI thread.

Threads: ``large`` and ``compact`` are written by the page (a click) and by `LivePanel.presentation` (the
notebook's thread), never by the panel's UI thread; ``fullscreen`` only by the page.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets as t

from .view import STYLESHEET


class Presenter(anywidget.AnyWidget):
    """Presentation controls for the `LivePanel` it is placed in (it finds the panel in the page)."""

    _esm = Path(__file__).with_name("presenter.js")
    _css = STYLESHEET

    large = t.Bool(False, help="Large text (turns, translations and the live line at 28 px or more).").tag(sync=True)
    compact = t.Bool(False, help="Hide the panel's controls: captions only.").tag(sync=True)
    fullscreen = t.Unicode("", help="Set by the page: '' (off), 'fullscreen' (the Fullscreen API) or "
                                    "'fullpage' (the panel covers the window where the API is refused).").tag(sync=True)


__all__ = ["Presenter"]
