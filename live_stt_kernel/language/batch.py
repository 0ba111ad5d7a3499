"""Translating a whole conversation at once: any turns DataFrame (a live session's, a loaded session
folder's, your own with a ``text`` column), a `Transcript`, or a saved session's path, every turn
into every target, a few at a time, with a progress bar in a notebook or a terminal."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from ..progress import Progress
from ..store import as_records
from ..transcript import Transcript, TurnRecord
from .backends import Translator, as_translator
from .live import Settings, normalise_targets, translate_one
from .llm import LLM
from .translation import Translation, TranslationCache, column_name


def translate_records(records: Sequence[TurnRecord], *, to: str | Sequence[str], translator: Translator,
                      prompt: str | None = None, workers: int = 4, progress: bool = True,
                      cache: TranslationCache | None = None) -> list[Translation]:
    """Every record into every target, ``workers`` at a time; failures come back with ``error``
    set, in input order (record by record, targets in the order given)."""
    settings = Settings(translator, normalise_targets(to), prompt)
    cache = cache or TranslationCache()
    jobs = [(row, target) for row in records for target in settings.targets]
    results: dict[int, Translation] = {}
    label = f"translating to {', '.join(settings.targets)}"
    with Progress(len(jobs), label, enabled=progress) as bar, ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(translate_one, row, target, settings, cache): n for n, (row, target) in enumerate(jobs)}
        for future in as_completed(futures):
            result = future.result()
            results[futures[future]] = result
            bar.advance(failed=result.error is not None)
    return [results[n] for n in range(len(jobs))]


def translate(data: Any, to: str | Sequence[str], *, translator: Translator | LLM | str | None = None,
              base_url: str | None = None, model: str | None = None, api_key: str | None = None,
              prompt: str | None = None, workers: int = 4, progress: bool = True) -> Any:
    """A copy of the turns DataFrame with a ``translation_<lang>`` column per target.

    ``translator``: a `Translator`, an `LLM`, a backend name (``"apertium"``, ``"gateway"``,
    ``"openai"``, ``"lemur"``, ``"local"``) or None: the LLM Gateway with an AssemblyAI key, else
    Apertium. Turns that fail keep ``<NA>`` and a warning says how many and why.
    """
    import pandas as pd

    frame = data if hasattr(data, "columns") else Transcript.from_records(as_records(data)).to_frame()
    records = as_records(frame)
    chosen = as_translator(translator, base_url=base_url, model=model, api_key=api_key, prompt=prompt)
    targets = normalise_targets(to)
    results = translate_records(records, to=targets, translator=chosen, prompt=prompt, workers=workers, progress=progress)
    out = frame.copy()
    for k, target in enumerate(targets):
        column = results[k::len(targets)]
        out[column_name(target)] = pd.Series([r.text for r in column], index=out.index, dtype="string")
    failed = [r for r in results if r.error]
    if failed:
        warnings.warn(f"{len(failed)} of {len(results)} translations failed (their cells are <NA>); first: {failed[0].error}",
                      stacklevel=2)
    return out


__all__ = ["translate", "translate_records"]
