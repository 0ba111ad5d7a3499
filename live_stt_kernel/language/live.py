"""Live translation: each finished turn of a running session translated once, off the stream, as it settles.

Threads::

    session worker --feed(snapshot)--> queue --> dispatcher thread (TurnSettler: once per turn)
                                                     |--submit--> translation pool (bounded) --> results,
                                                                  translations.jsonl, listeners

The session worker only enqueues, so a slow or failing model never delays the transcript. Settings
(targets, translator, prompt) are read when a turn settles: a change applies to the next turns;
`retranslate` applies it to the earlier ones. The threads start with `start` (or the first work) and
end with `close`; work asked for after `close` starts them again.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from ..errors import SavedSessionError
from ..store import TRANSLATIONS_FILE, read_jsonl
from ..transcript import Transcript, TurnRecord, TurnSettler
from .backends import Translator, as_translator
from .translation import Translation, TranslationCache, language_code, prompt_id

log = logging.getLogger(__name__)

TranslationListener = Callable[[Translation], None]


@dataclass(frozen=True, slots=True)
class Settings:
    """What a turn is translated with; captured when the turn is submitted."""

    translator: Translator
    targets: tuple[str, ...]
    prompt: str | None


def translate_one(row: TurnRecord, target: str, settings: Settings, cache: TranslationCache) -> Translation:
    """Translate one turn (or take it from the cache); failures become a `Translation` with ``error``."""
    translator = settings.translator
    key = (row.text, target, translator.backend, translator.model, settings.prompt or "")
    started = time.perf_counter()
    base = Translation(session_id=row.session_id, turn_order=row.turn_order, target=target, source=row.text,
                       text=None, backend=translator.backend, model=translator.model, prompt=prompt_id(settings.prompt))
    cached = cache.get(key)
    if cached is not None:
        return replace(base, text=cached)
    try:
        text = translator.translate(row.text, target=target, prompt=settings.prompt)
    except Exception as exc:  # kept with the turn, shown to the user; the turn itself is never lost
        return replace(base, error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - started)
    cache.put(key, text)
    return replace(base, text=text, seconds=time.perf_counter() - started)


class LiveTranslation:
    """Translates the settled turns of a live transcript into one or more languages.

    ``to``: a language or several; ``translator`` a `Translator`; ``prompt`` for LLM translators
    (``{language}`` is the target's name); ``folder``: where ``translations.jsonl`` is appended;
    ``expect_formatted``: whether a turn's formatted final is worth waiting for; ``owns_translator``:
    close the translator (e.g. Apertium's pipelines) with `close`, because this object made it.
    """

    def __init__(
        self,
        translator: Translator,
        *,
        to: str | Sequence[str],
        prompt: str | None = None,
        workers: int = 2,
        max_pending: int = 256,
        folder: str | Path | None = None,
        expect_formatted: bool = True,
        cache: TranslationCache | None = None,
        owns_translator: bool = False,
    ):
        self._settings = Settings(translator, normalise_targets(to), prompt)
        self.owns_translator = owns_translator
        self.workers = workers
        self.cache = cache or TranslationCache()
        self.settler = TurnSettler(expect_formatted=expect_formatted)
        self.folder = None if folder is None else Path(folder)
        self._slots = threading.BoundedSemaphore(max_pending)
        self._inbox: queue.Queue[tuple[Transcript, bool] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._done: list[Translation] = []
        self._pending = 0
        self._settled: list[TurnRecord] = []
        self._listeners: list[TranslationListener] = []
        self._file: TextIO | None = None  # opened with the first result
        self._pool: ThreadPoolExecutor | None = None
        self._dispatcher: threading.Thread | None = None

    def __repr__(self) -> str:
        s = self._settings
        return f"<LiveTranslation to={list(s.targets)} {s.translator!r} done={len(self._done)} pending={self._pending}>"

    # --- settings (any thread) ----------------------------------------------------------------

    @property
    def targets(self) -> tuple[str, ...]:
        """The languages turns are translated into, as codes."""
        return self._settings.targets

    @property
    def translator(self) -> Translator:
        """Who translates the next turns."""
        return self._settings.translator

    @property
    def prompt(self) -> str | None:
        """The prompt for the next turns (None: the built-in one)."""
        return self._settings.prompt

    def configure(self, *, to: str | Sequence[str] | None = None, translator: Translator | str | None = None,
                  prompt: str | None = None, default_prompt: bool = False, **choice: Any) -> None:
        """Change targets, translator or prompt for the turns that settle from now on.

        ``translator`` may be a `Translator` or a backend name; ``choice`` (``model``, ``base_url``,
        ``api_key``) picks a model for a backend name, as in `resolve_translator`;
        ``default_prompt=True`` goes back to the built-in prompt."""
        s = self._settings
        chosen = s.translator
        if translator is not None or choice:
            chosen = as_translator(translator if translator is not None else s.translator.backend, **choice)
            self.owns_translator = not isinstance(translator, Translator)
            if self._dispatcher is not None:
                _warm_up(chosen)
        self._settings = Settings(chosen, normalise_targets(to) if to is not None else s.targets,
                                  None if default_prompt else prompt if prompt is not None else s.prompt)

    def on_translation(self, listener: TranslationListener) -> TranslationListener:
        """Call ``listener(translation)`` on a pool thread as each one finishes; keep it quick."""
        self._listeners.append(listener)
        return listener

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> LiveTranslation:
        """Start the dispatcher and the pool (and warm a local model up); safe to call again."""
        self._ensure_pool()
        with self._lock:
            if self._dispatcher is not None:
                return self
            self._dispatcher = threading.Thread(target=self._dispatch, name="live-stt-translate-dispatch", daemon=True)
            self._dispatcher.start()
        _warm_up(self.translator)
        return self

    def _ensure_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="live-stt-translate")
            return self._pool

    def close(self, timeout: float | None = 30.0) -> bool:
        """Finish what was fed (within ``timeout``), then end the threads and close the file. True if
        nothing was left undone. Later work starts the threads again."""
        finished = self.wait(timeout)
        with self._lock:
            dispatcher, pool = self._dispatcher, self._pool
            self._dispatcher = self._pool = None
        if dispatcher is not None:
            self._inbox.put(None)
            dispatcher.join(timeout=5)
        if pool is not None:  # what is still queued runs to the end (and is saved) on the pool's threads, which then end
            pool.shutdown(wait=finished)
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
        close_translator = getattr(self.translator, "close", None)
        if self.owns_translator and finished and close_translator is not None:
            close_translator()  # e.g. Apertium's pipelines; a later retranslate() starts them again
        return finished

    # --- feeding (session worker) ---------------------------------------------------------------

    def feed(self, transcript: Transcript, *, ended: bool = False) -> None:
        """Hand over the latest snapshot; returns at once."""
        self.start()
        self._inbox.put((transcript, ended))

    def retranslate(self, *, to: str | Sequence[str] | None = None) -> int:
        """Translate every settled turn again with the current settings (the cache answers
        whatever did not change). Returns the number of requests queued. Works after the session
        ended too (the pool starts again; `close` ends it)."""
        with self._lock:
            rows = list(self._settled)
        settings = self._settings
        targets = normalise_targets(to) if to is not None else settings.targets
        for row in rows:
            for target in targets:
                self._submit(row, target, settings)
        return len(rows) * len(targets)

    # --- reading (any thread) ---------------------------------------------------------------

    @property
    def results(self) -> list[Translation]:
        """Every finished translation so far, in the order they finished (failures included)."""
        with self._lock:
            return list(self._done)

    @property
    def pending(self) -> int:
        """Translations asked for and not finished yet."""
        return self._pending

    def wait(self, timeout: float | None = None) -> bool:
        """Until every fed turn is settled and translated; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._inbox.unfinished_tasks or self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # the dispatcher does not notify: look again soon
                self._idle.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    # --- the threads ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        latest: Transcript | None = None
        ended = False
        while True:
            try:
                item = self._inbox.get(timeout=0.2)
            except queue.Empty:  # a tick: turns that never get a formatted final settle after a grace time
                self._settle(latest, ended)
                continue
            if item is None:
                self._inbox.task_done()
                return
            latest, ended = item[0], ended or item[1]
            self._settle(latest, ended)
            self._inbox.task_done()

    def _settle(self, latest: Transcript | None, ended: bool) -> None:
        if latest is None:
            return
        for row in self.settler.update(latest, time.monotonic(), ended=ended):
            with self._lock:
                self._settled.append(row)
            settings = self._settings
            for target in settings.targets:
                self._submit(row, target, settings)

    def _submit(self, row: TurnRecord, target: str, settings: Settings) -> None:
        self._slots.acquire()  # bounded: the dispatcher waits here, never the stream
        with self._lock:
            self._pending += 1
        self._ensure_pool().submit(self._work, row, target, settings)

    def _work(self, row: TurnRecord, target: str, settings: Settings) -> None:
        try:
            result = translate_one(row, target, settings, self.cache)
            with self._lock:
                self._done.append(result)
                if self._file is None and self.folder is not None:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    self._file = open(self.folder / TRANSLATIONS_FILE, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
                if self._file is not None:
                    self._file.write(jsonl_line(result))
                    self._file.flush()
            for listener in self._listeners:
                try:
                    listener(result)
                except Exception:
                    log.exception("translation listener %r failed", listener)
        finally:
            self._slots.release()
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()


def _warm_up(translator: Translator) -> None:
    warm_up = getattr(translator, "warm_up", None)
    if warm_up is not None:
        warm_up()  # the first turn should not wait seconds for a local model to load


def normalise_targets(to: str | Sequence[str]) -> tuple[str, ...]:
    """Target languages as codes, each once, in the order given."""
    items = [to] if isinstance(to, str) else list(to)
    return tuple(dict.fromkeys(language_code(t) for t in items))


def read_translations(folder: str | Path) -> list[Translation]:
    """The translations saved in a session folder; none if there are none."""
    path = Path(folder) / TRANSLATIONS_FILE
    return read_jsonl(path, Translation.from_dict, what="translation") if path.exists() else []


def jsonl_line(item: Translation) -> str:
    """One saved translation: the line format of ``translations.jsonl``."""
    return json.dumps(item.to_dict(), ensure_ascii=False) + "\n"


def append_translations(folder: str | Path, items: Iterable[Translation]) -> None:
    """Add translations to a session folder's ``translations.jsonl``."""
    target = Path(folder)
    if not target.is_dir():
        raise SavedSessionError(f"no saved session at {target}")
    with open(target / TRANSLATIONS_FILE, "a", encoding="utf-8") as f:
        f.writelines(jsonl_line(item) for item in items)


__all__ = ["LiveTranslation", "Settings", "append_translations", "normalise_targets",
           "read_translations", "translate_one"]
