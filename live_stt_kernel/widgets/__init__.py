"""Notebook widgets: `LivePanel` (ipywidgets, with a small `Presenter` anywidget inside that keeps the
captions on the newest turn and offers large text and full screen) and `BrowserMic` (anywidget: the
page's microphone as a source). See `panel.py` for who owns what."""

from .browser_mic import BrowserMic
from .panel import LivePanel

__all__ = ["BrowserMic", "LivePanel"]
