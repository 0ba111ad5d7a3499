"""Live translation: each finished turn of a running session translated once, off the stream, as it settles.

Threads::

    session worker --feed(snapshot)--> inbox --> dispatcher thread (TurnSettler: once per turn)
                                                     |--live job--> work queue (live first, then backlog)
    retranslate() (any thread) ------------------------backlog jobs--^        |
                                                        `workers` threads <---'--> results, translations.jsonl,
                                                                                   listeners

The session worker only enqueues, so a slow or failing model never delays the transcript.

Scheduling. The work queue is ordered by priority, then by arrival: a turn that just settled always goes
ahead of a `retranslate` backlog, and the backlog runs on at most ``workers - 1`` threads at a time (at
least one), so a worker is free for the next live turn: it waits at most for the translations already
running (on a local model, which writes one answer at a time, that is at most one translation time).

Settings (targets, translator, prompt) are read when a turn settles: a change applies to the next turns;
`retranslate` applies it to the earlier ones. A change also drops the queued work it makes obsolete (a
language no longer wanted, another translator or prompt), and stops such work that is streaming: a turn
that was waiting for its live translation is queued again with the new settings; an obsolete backlog is
simply dropped. So a new language starts at once, and `close` is never held by work nobody wants: a
stream of ours is cut within ~50 ms, even while it still waits for its first token (`llm.stopped_by`).
A change of settings waits for no free slot: a turn still being queued takes the settings of the moment.

Errors. A worker never dies of one: whatever goes wrong with a job is logged and recorded as that
turn's failed `Translation` (``error``); a ``translations.jsonl`` that cannot be written is logged, and
the translations are still kept and shown.

Streaming. With a translator that can stream (`LLMTranslator` over a model with ``stream``), the draft
of each running translation grows in `in_progress` as tokens arrive (cleaned as it goes, see
`clean_draft`); listeners are called once, with the finished `Translation`.

The threads start with `start` (or the first work) and end with `close`; work asked for after `close`
starts them again.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigurationError, SavedSessionError
from ..store import TRANSLATIONS_FILE, read_jsonl
from ..transcript import Transcript, TurnRecord, TurnSettler
from .apertium import NO_PROMPT
from .backends import Translator, accepts_prompt, as_translator
from .llm import stopped_by
from .translation import Translation, TranslationCache, clean_draft, clean_reply, language_code, prompt_id, translation_problem

log = logging.getLogger(__name__)

TranslationListener = Callable[[Translation], None]
Slot = tuple[tuple[str, int], str]  # (turn key (session_id, turn_order), target code)

LIVE, BACKLOG = 0, 1  # queue priorities: lower first


@dataclass(frozen=True, slots=True)
class Settings:
    """What a turn is translated with; captured when the turn is submitted."""

    translator: Translator
    targets: tuple[str, ...]
    prompt: str | None

    def makes(self, target: str, other: Settings) -> bool:
        """Whether work on ``target`` asked for with ``other`` is still what these settings would ask for."""
        return target in self.targets and self.translator is other.translator and self.prompt == other.prompt


class _Cancelled(Exception):
    """A streamed translation stopped because its settings changed (inside this module only)."""


def translate_one(row: TurnRecord, target: str, settings: Settings, cache: TranslationCache, *,
                  on_draft: Callable[[str], None] | None = None,
                  cancelled: threading.Event | None = None) -> Translation:
    """Translate one turn (or take it from the cache); failures become a `Translation` with ``error``.

    A translator that can stream (``drafts``) has each draft so far, cleaned, passed to ``on_draft``;
    ``cancelled`` stops it between tokens (raises `_Cancelled`). A reply from a model is checked by
    `translation_problem`: a line that is still not a translation keeps its text with ``problem`` set."""
    translator = settings.translator
    key = (row.text, target, translator.backend, translator.model, settings.prompt or "")
    started = time.perf_counter()
    base = Translation(session_id=row.session_id, turn_order=row.turn_order, target=target, source=row.text,
                       text=None, backend=translator.backend, model=translator.model, prompt=prompt_id(settings.prompt))
    checks = bool(getattr(translator, "checks_replies", False))
    cached = cache.get(key)
    if cached is not None:
        return replace(base, text=cached, problem=translation_problem(row.text, cached, target) if checks else None)
    drafts = getattr(translator, "drafts", None)
    try:
        if drafts is not None and (on_draft is not None or cancelled is not None):
            text = _streamed(drafts(row.text, target=target, prompt=settings.prompt), row.text, on_draft, cancelled)
        else:
            text = translator.translate(row.text, target=target, prompt=settings.prompt)
    except _Cancelled:
        raise
    except Exception as exc:  # kept with the turn, shown to the user; the turn itself is never lost
        if cancelled is not None and cancelled.is_set():
            raise _Cancelled() from exc  # the stream was cut because nobody wants it any more
        return replace(base, error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - started)
    cache.put(key, text)
    return replace(base, text=text, seconds=time.perf_counter() - started,
                   problem=translation_problem(row.text, text, target) if checks and text else None)


def _streamed(drafts: Any, source: str, on_draft: Callable[[str], None] | None, cancelled: threading.Event | None) -> str:
    """Follow a translator's growing drafts of ``source`` to the end (the last is the whole reply), cleaning as it goes."""
    raw = ""
    try:
        # a stream of ours (`LLM.stream`) read inside `stopped_by` is cut as soon as ``cancelled`` is set,
        # even while it waits for its first token; a translator of the user's stops at its next draft
        with stopped_by(cancelled) if cancelled is not None else contextlib.nullcontext():
            for raw in drafts:
                if cancelled is not None and cancelled.is_set():
                    raise _Cancelled()
                if on_draft is not None:
                    on_draft(clean_draft(raw, source))
    finally:
        close = getattr(drafts, "close", None)
        if close is not None:
            close()  # a stream left early: its connection closes, and the local model stops writing
    return clean_reply(raw, source)


@dataclass(eq=False)
class _Job:
    """One translation asked for: a turn, a target, the settings it was asked with."""

    row: TurnRecord
    target: str
    settings: Settings
    priority: int
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def slot(self) -> Slot:
        return ((self.row.session_id, self.row.turn_order), self.target)


class LiveTranslation:
    """Translates the settled turns of a live transcript into one or more languages.

    ``to``: a language or several; ``translator`` a `Translator`; ``prompt`` for LLM translators (the
    instruction inside the fixed template, ``{language}`` is the target's name; a translator that cannot
    use one, Apertium, raises `ConfigurationError`); ``workers``: translation threads; ``max_pending``:
    live turns queued at most (the dispatcher waits beyond that, never the stream; a backlog holds at most
    one job per turn and target); ``folder``: where ``translations.jsonl`` is appended;
    ``expect_formatted``: whether a turn's formatted final is worth waiting for; ``owns_translator``:
    close the translator (e.g. Apertium's pipelines) with `close`, because this object made it (a
    translator made by `configure` from a backend name is owned too; one that `configure` replaces is
    closed as soon as no queued or running work uses it, and `close` closes them once the workers are
    done with them, even when it returns before they are).
    ``fifo=True`` serves everything in arrival order with no priority and drops nothing (the old
    behaviour, kept to measure against).
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
        fifo: bool = False,
    ):
        if workers < 1 or max_pending < 1:
            raise ConfigurationError(f"LiveTranslation needs workers >= 1 and max_pending >= 1, not {workers}, {max_pending}")
        self._settings = _checked(Settings(translator, normalise_targets(to), prompt))
        self.owns_translator = owns_translator
        self.workers = workers
        self.max_pending = max_pending
        self.fifo = fifo
        self.cache = cache or TranslationCache()
        self.settler = TurnSettler(expect_formatted=expect_formatted)
        self.folder = None if folder is None else Path(folder)
        self._inbox: queue.Queue[tuple[Transcript, bool] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # the queue, the running set or the results changed
        self._queue: list[tuple[int, int, _Job]] = []  # a heap: (priority, arrival, job)
        self._arrivals = itertools.count()
        self._running: set[_Job] = set()
        self._asked: Counter[Slot] = Counter()  # slot -> jobs queued or running for it
        self._drafts: dict[Slot, str] = {}
        self._done: list[Translation] = []
        self._settled: list[TurnRecord] = []
        self._listeners: list[TranslationListener] = []
        self._file: TextIO | None = None  # opened with the first result
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._dispatcher: threading.Thread | None = None
        self._dispatch_stop = threading.Event()  # the running dispatcher's own (each has its own)
        self._settling = threading.Lock()  # one dispatcher at a time reads the inbox's snapshots into the settler
        self._latest: Transcript | None = None  # the newest snapshot fed, and whether the session ended
        self._ended = False
        self._retired: list[Translator] = []  # owned translators replaced by configure(), closed once unused
        self._close_owned = False  # close(): the last worker out closes the owned translators

    def __repr__(self) -> str:
        s = self._settings
        return f"<LiveTranslation to={list(s.targets)} {s.translator!r} done={len(self._done)} pending={self.pending}>"

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
        """Change targets, translator or prompt for the turns that settle from now on, and drop the
        queued work the change makes obsolete (see the module's docstring).

        ``translator`` may be a `Translator` or a backend name; ``choice`` (``model``, ``base_url``,
        ``api_key``) picks a model for a backend name, as in `resolve_translator`;
        ``default_prompt=True`` goes back to the built-in prompt. A prompt with a translator that
        cannot use it (Apertium) raises `ConfigurationError` and changes nothing."""
        s = self._settings
        chosen = s.translator
        owns = self.owns_translator
        if translator is not None or choice:
            chosen = as_translator(translator if translator is not None else s.translator.backend, **choice)
            owns = not isinstance(translator, Translator)
        new = _checked(Settings(chosen, normalise_targets(to) if to is not None else s.targets,
                                None if default_prompt else prompt if prompt is not None else s.prompt))
        if chosen is not s.translator and self._dispatcher is not None:
            _warm_up(chosen)
        with self._lock:
            old, self._settings = self._settings, new
            if chosen is not old.translator and self.owns_translator:
                self._retired.append(old.translator)  # ours: closed once no work uses it (`_close_retired`)
            self.owns_translator = owns
            if not self.fifo:
                self._drop_obsolete(new)
        self._close_retired()

    def on_translation(self, listener: TranslationListener) -> TranslationListener:
        """Call ``listener(translation)`` on a worker thread as each one finishes; keep it quick."""
        self._listeners.append(listener)
        return listener

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> LiveTranslation:
        """Start the dispatcher and the workers (and warm a local model up); safe to call again."""
        with self._lock:
            self._ensure_workers()
            if self._dispatcher is not None:
                return self
            # its own stop event: one that close() gave up joining ends at its next look, and never takes
            # this one's work (both settle under `_settling`, from the same `_latest` snapshot)
            self._dispatch_stop = stop = threading.Event()
            self._dispatcher = threading.Thread(target=self._dispatch, args=(stop,), name="live-stt-translate-dispatch",
                                                daemon=True)
            self._dispatcher.start()
        _warm_up(self.translator)
        return self

    def close(self, timeout: float | None = 30.0) -> bool:
        """Finish what was fed (within ``timeout``), then end the threads and close the file. True if
        nothing was left undone; else the workers finish what is queued (and save it), then end. Later
        work starts the threads again."""
        finished = self.wait(timeout)
        with self._lock:
            dispatcher, self._dispatcher = self._dispatcher, None
            self._dispatch_stop.set()
            threads = list(self._threads)
            self._closing = True
            self._close_owned = True  # by the last worker out, or below if none is left
            self._changed.notify_all()
        if dispatcher is not None:
            self._inbox.put(None)  # wakes it; it ends, having settled what it had (see `_dispatch`)
            dispatcher.join(timeout=5)
        if finished:
            for thread in threads:
                thread.join(timeout=5)
        with self._lock:
            idle = not self._running and not any(t.is_alive() for t in self._threads)
            if finished and self._file is not None:
                self._file.close()
                self._file = None
            owned = self._owned_to_close() if idle else []
        _close_all(owned)  # e.g. Apertium's pipelines; a later retranslate() starts them again
        return finished

    # --- feeding (session worker) ---------------------------------------------------------------

    def feed(self, transcript: Transcript, *, ended: bool = False) -> None:
        """Hand over the latest snapshot; returns at once."""
        self.start()
        self._inbox.put((transcript, ended))

    def retranslate(self, *, to: str | Sequence[str] | None = None) -> int:
        """Translate every settled turn again with the current settings (the cache answers whatever
        did not change), behind any live turn. Returns the number of requests queued (a turn and
        target already queued with these settings is not queued twice). Returns at once; works after
        the session ended too (the workers start again; `close` ends them)."""
        chosen = normalise_targets(to) if to is not None else None
        with self._lock:
            settings = self._settings
            targets = chosen if chosen is not None else settings.targets
            if chosen is not None:
                settings = Settings(settings.translator, targets, settings.prompt)
            rows = list(self._settled)
            queued = {(job.slot, id(job.settings.translator), job.settings.prompt) for _, _, job in self._queue}
            count = 0
            for row in rows:
                for target in targets:
                    job = _Job(row, target, settings, BACKLOG)
                    if (job.slot, id(settings.translator), settings.prompt) not in queued:
                        self._enqueue(job)
                        count += 1
            self._ensure_workers()
        return count

    # --- reading (any thread) ---------------------------------------------------------------

    @property
    def results(self) -> list[Translation]:
        """Every finished translation so far, in the order they finished (failures included)."""
        with self._lock:
            return list(self._done)

    @property
    def pending(self) -> int:
        """Translations asked for and not finished yet (queued or running)."""
        with self._lock:
            return len(self._queue) + len(self._running)

    @property
    def in_progress(self) -> dict[Slot, str]:
        """Every translation asked for and not finished: ``{((session_id, turn_order), target): draft}``,
        the draft being the text streamed so far, cleaned ("" while queued, or before the first words)."""
        with self._lock:
            return {slot: self._drafts.get(slot, "") for slot in self._asked}

    def wait(self, timeout: float | None = None) -> bool:
        """Until every fed turn is settled and translated; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self._inbox.unfinished_tasks or self._queue or self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                # the dispatcher does not notify: look again soon
                self._changed.wait(0.05 if remaining is None else min(remaining, 0.05))
        return True

    # --- the queue (callers hold the lock) -------------------------------------------------------

    def _enqueue(self, job: _Job) -> None:
        priority = LIVE if self.fifo else job.priority
        heapq.heappush(self._queue, (priority, next(self._arrivals), job))
        self._asked[job.slot] += 1
        self._changed.notify_all()

    def _forget(self, job: _Job) -> None:
        self._asked[job.slot] -= 1
        if self._asked[job.slot] <= 0:
            del self._asked[job.slot]
            self._drafts.pop(job.slot, None)

    def _ensure_workers(self) -> None:
        self._closing = False
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self.workers:
            thread = threading.Thread(target=self._serve, name=f"live-stt-translate-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _owned_to_close(self) -> list[Translator]:
        """The translators to close now that no worker uses them (lock held): every retired one, and the
        current one if ours; each handed out once."""
        if not self._close_owned:
            return []
        self._close_owned = False
        owned, self._retired = self._retired, []
        return [*owned, self._settings.translator] if self.owns_translator else owned

    def _close_retired(self) -> None:
        """Close the replaced translators of ours that no queued or running job uses any more."""
        with self._lock:
            busy = {id(job.settings.translator) for job in self._running}
            busy |= {id(job.settings.translator) for _, _, job in self._queue}
            unused = [t for t in self._retired if id(t) not in busy and t is not self._settings.translator]
            self._retired = [t for t in self._retired if not any(t is u for u in unused)]
        _close_all(unused)

    def _drop_obsolete(self, settings: Settings) -> None:
        """Drop queued work these settings would not ask for, stop such work that is streaming, and ask
        again, with these settings, for the live turns that were waiting."""
        again: dict[tuple[str, int], TurnRecord] = {}
        kept = []
        for entry in self._queue:
            job = entry[2]
            if settings.makes(job.target, job.settings):
                kept.append(entry)
                continue
            self._forget(job)
            if job.priority == LIVE:
                again[job.slot[0]] = job.row
        for job in self._running:
            if not settings.makes(job.target, job.settings) and getattr(job.settings.translator, "drafts", None):
                job.cancelled.set()  # its stream is cut within ~50 ms (see `_streamed`), and the worker lets go of it
                self._drafts.pop(job.slot, None)  # its draft was in the old settings
                if job.priority == LIVE:
                    again[job.slot[0]] = job.row
        heapq.heapify(kept)
        self._queue = kept
        busy = {(job.slot, job.priority) for _, _, job in self._queue}
        for row in again.values():
            for target in settings.targets:
                job = _Job(row, target, settings, LIVE)
                if (job.slot, LIVE) not in busy:
                    self._enqueue(job)
        self._changed.notify_all()

    def _take(self) -> _Job | None:
        """The next job a worker may start (lock held): live first; the backlog only while another
        worker stays free for live turns."""
        if not self._queue:
            return None
        priority, _, job = self._queue[0]
        if priority == BACKLOG and self.workers > 1:
            backlog_running = sum(1 for j in self._running if j.priority == BACKLOG)
            if backlog_running >= self.workers - 1:
                return None
        heapq.heappop(self._queue)
        self._running.add(job)
        self._changed.notify_all()
        return job

    # --- the threads ----------------------------------------------------------------------------

    def _dispatch(self, stop: threading.Event) -> None:
        """Settle turns from the fed snapshots; once ``stop`` (this dispatcher's own) is set, it ends at the
        next ``None`` or as soon as the inbox is empty, having settled everything fed before."""
        while True:
            try:
                item = self._inbox.get(timeout=0.2)
            except queue.Empty:  # a tick: turns that never get a formatted final settle after a grace time
                if stop.is_set():
                    return
                self._settle_safely(stop)
                continue
            try:
                if item is None:  # close()'s wake-up call (for this dispatcher, or an older one still ending)
                    if stop.is_set():
                        return
                    continue
                with self._settling:
                    self._latest, self._ended = item[0], self._ended or item[1]
                self._settle_safely(stop)
            finally:
                self._inbox.task_done()

    def _settle_safely(self, stop: threading.Event) -> None:
        try:
            self._settle(stop)
        except Exception:  # a dispatcher that died would leave wait() to its timeout
            log.exception("settling turns for translation failed")

    def _settle(self, stop: threading.Event) -> None:
        with self._settling:
            if self._latest is None:
                return
            for row in self.settler.update(self._latest, time.monotonic(), ended=self._ended):
                with self._changed:
                    self._settled.append(row)
                    self._ask_live(row, stop)
                    self._ensure_workers()

    def _ask_live(self, row: TurnRecord, stop: threading.Event) -> None:
        """Queue ``row``'s live translations (lock held), with the settings of the moment each is queued:
        a configure() during a wait for a free slot applies to the targets not queued yet (and drops or
        asks again for those queued before it, see `_drop_obsolete`)."""
        asked: set[tuple[str, int, str | None]] = set()
        while True:
            settings = self._settings
            busy = {job.target for _, _, job in self._queue if job.row.key == row.key and job.priority == LIVE
                    and settings.makes(job.target, job.settings)}
            busy |= {job.target for job in self._running if job.row.key == row.key and settings.makes(job.target, job.settings)}
            todo = [t for t in settings.targets
                    if t not in busy and (t, id(settings.translator), settings.prompt) not in asked]
            if not todo:
                return
            # bounded: the dispatcher waits here, never the stream; once told to stop it queues the rest at once
            if sum(1 for p, _, _ in self._queue if p == LIVE) >= self.max_pending and not stop.is_set():
                self._changed.wait(0.2)
                continue
            self._enqueue(_Job(row, todo[0], settings, LIVE))
            asked.add((todo[0], id(settings.translator), settings.prompt))

    def _serve(self) -> None:
        me = threading.current_thread()
        while True:
            owned: list[Translator] = []
            with self._changed:
                job = self._take()
                while job is None:
                    if self._closing and not self._queue:
                        if me in self._threads:
                            self._threads.remove(me)
                        if not self._threads and not self._running:  # the last one out, after close() gave up waiting
                            if self._file is not None:
                                self._file.close()
                                self._file = None
                            owned = self._owned_to_close()
                        break
                    self._changed.wait(0.5)
                    job = self._take()
            if job is None:
                _close_all(owned)
                return
            try:
                self._work(job)
            except Exception as exc:  # never lose the worker: the job is recorded as failed, and the rest go on
                log.exception("translating turn %s into %s failed", job.row.turn_order, job.target)
                self._record(_failed(job, exc))
            finally:
                with self._changed:
                    self._running.discard(job)
                    self._forget(job)
                    self._changed.notify_all()
            if self._retired:
                self._close_retired()

    def _work(self, job: _Job) -> None:
        if job.cancelled.is_set():
            return

        def draft(text: str) -> None:
            with self._lock:
                if job.slot in self._asked and not job.cancelled.is_set():
                    self._drafts[job.slot] = text

        try:
            result = translate_one(job.row, job.target, job.settings, self.cache, on_draft=draft, cancelled=job.cancelled)
        except _Cancelled:
            return
        self._record(result)

    def _record(self, result: Translation) -> None:
        """Keep a finished translation, save it, and tell the listeners. A file that cannot be written is
        logged, not fatal: the translation is still kept (and shown)."""
        with self._lock:
            self._done.append(result)
            try:
                if self._file is None and self.folder is not None:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    self._file = open(self.folder / TRANSLATIONS_FILE, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
                if self._file is not None:
                    self._file.write(jsonl_line(result))
                    self._file.flush()
            except (OSError, ValueError):
                log.exception("could not save a translation in %s", self.folder)
        for listener in self._listeners:
            try:
                listener(result)
            except Exception:
                log.exception("translation listener %r failed", listener)


def _failed(job: _Job, exc: BaseException) -> Translation:
    translator = job.settings.translator
    return Translation(session_id=job.row.session_id, turn_order=job.row.turn_order, target=job.target,
                       source=job.row.text, text=None, backend=str(getattr(translator, "backend", "?")),
                       model=str(getattr(translator, "model", "?")), prompt=prompt_id(job.settings.prompt),
                       error=f"{type(exc).__name__}: {exc}")


def _close_all(translators: Iterable[Translator]) -> None:
    for translator in translators:
        close = getattr(translator, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing translator %r failed", translator)


def _checked(settings: Settings) -> Settings:
    if settings.prompt and not accepts_prompt(settings.translator):
        raise ConfigurationError(NO_PROMPT)
    return settings


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
