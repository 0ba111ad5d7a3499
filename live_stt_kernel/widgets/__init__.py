"""Notebook widgets: `LivePanel` (ipywidgets) and `BrowserMic` (anywidget: the page's microphone as a
source). See `panel.py` for who owns what."""

from .browser_mic import BrowserMic
from .panel import LivePanel

__all__ = ["BrowserMic", "LivePanel"]
