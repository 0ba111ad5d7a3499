"""Work on a whole conversation: any turns DataFrame (a live session's, a loaded session folder's,
your own with a ``text`` column), a `Transcript`, or a saved session's path.

``translate(df, to="es")``  every turn, a progress bar in a notebook or a terminal
``coach(df)``               speaking metrics and a model's written analysis (see `coaching`)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from . import coaching
from .backends import Translator, as_translator, resolve_llm
from .live_translation import Settings, normalise_targets, translate_one
from .llm import LLM
from .progress import Progress
from .transcript import Transcript, TurnRecord, records_from_frame
from .translation import Translation, TranslationCache, column_name


def as_records(data: Any) -> list[TurnRecord]:
    """Turns from a DataFrame, a `Transcript`, a list of `TurnRecord`, or a saved session's path."""
    if isinstance(data, (str, Path)):
        from .store import read_turns

        return list(read_turns(data).rows)
    if isinstance(data, Transcript):
        return list(data.rows)
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        if "text" not in data.columns:
            raise ValueError("a turns DataFrame needs a 'text' column")
        return records_from_frame(data)
    return list(data)


def translate_records(records: Sequence[TurnRecord], *, to: str | Sequence[str], translator: Translator,
                      prompt: str | None = None, workers: int = 4, progress: bool = True,
                      cache: TranslationCache | None = None) -> list[Translation]:
    """Every record into every target, ``workers`` at a time; failures come back with ``error``
    set, in input order."""
    settings = Settings(translator, normalise_targets(to), prompt)
    cache = cache or TranslationCache()
    jobs = [(i, row, target) for i, row in enumerate(records) for target in settings.targets]
    results: dict[int, Translation] = {}
    label = f"translating to {', '.join(settings.targets)}"
    with Progress(len(jobs), label, enabled=progress) as bar, ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(translate_one, row, target, settings, cache): n for n, (_, row, target) in enumerate(jobs)}
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


def coach(data: Any, *, llm: LLM | None = None, backend: str | None = None, base_url: str | None = None,
          model: str | None = None, api_key: str | None = None, use_llm: bool = True, prompt: str | None = None,
          **options: Any) -> coaching.CoachingReport:
    """A coaching report. The model: ``llm`` if given, else chosen by the backend rule (the LLM
    Gateway with an AssemblyAI key, ``base_url`` alone for an OpenAI-compatible server, else the
    local model); ``use_llm=False`` for the computed metrics only. A failed model call leaves a
    note in the report and every metric in it. ``options``: see `coaching.coach`."""
    if llm is None and use_llm:
        llm = resolve_llm(backend, base_url=base_url, model=model, api_key=api_key)
    return coaching.coach(as_records(data), llm=llm, prompt=prompt or coaching.DEFAULT_COACH_PROMPT, **options)


def save_report(report: coaching.CoachingReport, folder: str | Path) -> list[Path]:
    """``coaching.md``, ``coaching.json`` and ``coaching.svg`` in ``folder``; returns the paths."""
    import json

    folder = Path(folder)
    paths = [folder / "coaching.md", folder / "coaching.json", folder / "coaching.svg"]
    paths[0].write_text(report.to_markdown(), encoding="utf-8")
    paths[1].write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    paths[2].write_text(report.chart_svg(), encoding="utf-8")
    return paths


__all__ = ["as_records", "coach", "save_report", "translate", "translate_records"]
