"""Comparing what the kernel received with what the virtual microphone played.

Chromium's capture path occasionally inserts or drops one block of 1024 frames at the device rate
(23 ms at 44.1 kHz) between the microphone and the page's audio graph: seen in about half of the 10 s
recordings in a JupyterLab page on a 2-core machine, also with no widget at all on the page, never on a
bare page. Those blocks come before our code sees any audio, so the recording is compared piecewise:
each window is aligned on its own, the offset steps between windows are reported as capture glitches,
and a step that is not a whole number of such blocks (a lost 50 ms chunk would be 800 samples) fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

RATE = 16000


def locate(haystack: np.ndarray, needle: np.ndarray) -> tuple[int, float]:
    """Offset of ``needle`` in ``haystack`` and the normalised correlation there (FFT cross-correlation)."""
    h, n = haystack.astype(np.float64), needle.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(h) + len(n))))
    scores = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(n, size)), size)[: len(h) - len(n) + 1]
    offset = int(np.argmax(scores))
    window = h[offset : offset + len(n)]
    return offset, float(np.dot(window, n) / (np.linalg.norm(window) * np.linalg.norm(n) + 1e-9))


@dataclass(frozen=True)
class Comparison:
    whole_correlation: float  # the fed audio against the recording at one offset
    offset_s: float  # where the fed audio starts in the recording
    windows: list[tuple[float, int, float]]  # (time in the fed audio, offset, correlation) of voiced windows
    steps: list[int]  # offset changes between consecutive windows, in samples

    @property
    def window_correlations(self) -> np.ndarray:
        return np.array([c for _, _, c in self.windows])

    def summary(self) -> dict[str, object]:
        corr = self.window_correlations
        return {"whole_correlation": round(self.whole_correlation, 4), "offset_s": round(self.offset_s, 3),
                "windows": len(corr), "median_window_correlation": round(float(np.median(corr)), 4),
                "windows_below_0.9": int(np.sum(corr < 0.9)), "capture_glitch_steps": self.steps}


def compare(recorded: np.ndarray, fed: np.ndarray, *, window_s: float = 0.25, search_s: float = 0.3) -> Comparison:
    offset, whole = locate(recorded, fed)
    size, reach = int(window_s * RATE), int(search_s * RATE)
    windows: list[tuple[float, int, float]] = []
    center = offset
    for start in range(0, len(fed) - size + 1, size):
        piece = fed[start : start + size]
        if np.std(piece.astype(np.float64)) < 300:  # too quiet to align on
            continue
        lo = max(0, center + start - reach)
        hay = recorded[lo : lo + size + 2 * reach]
        if len(hay) < size:
            windows.append((start / RATE, center, 0.0))
            continue
        found, corr = locate(hay, piece)
        found += lo - start
        windows.append((start / RATE, found, corr))
        if corr > 0.9:
            center = found
    good = [o for _, o, c in windows if c > 0.9]
    # a glitch of 1024 frames at 44.1 kHz is 371.5 samples here: one window sees 371, the next 372;
    # such one-sample wobbles are alignment, not steps
    steps = [b - a for a, b in pairwise(good) if abs(b - a) > 2]
    return Comparison(whole, offset / RATE, windows, steps)


def is_capture_glitch(step: int, device_rate: int, *, blocks: int = 16) -> bool:
    """Whether an offset step is a whole number (up to ``blocks``) of 1024-frame device blocks. Runs of up to ten
    blocks were seen here (Chromium 156 on a 2-core machine, with the package before and after the layout redesign);
    lost 50 ms chunks (multiples of 800 samples) are never such a multiple at 44.1 or 48 kHz."""
    block = 1024 * RATE / device_rate
    k = round(abs(step) / block)
    return 1 <= k <= blocks and abs(abs(step) - k * block) <= 2
