"""Notebook widgets: `LivePanel` (ipywidgets). See `panel.py` for who owns what."""

from .panel import LivePanel

__all__ = ["LivePanel"]
