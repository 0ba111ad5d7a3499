"""A live session: one worker thread owns the transcript; everyone else reads snapshots.

Lifecycle::

    Session(...)   checks its arguments (the audio file's header, the microphone's existence) and
                   chooses the server; opens no connection, starts no process and no thread
    start()        makes the session folder, starts the worker (and the live translation's threads)
                   and returns at once; the worker resolves the server (starting the embedded one if
                   needed) and connects
    wait() / stop()  end-of-file (stop closes the source); the server flushes the last turn, the worker
                   ends, the last translations finish, every thread the session started ends, and any
                   failure is raised here

Stopping is bounded in every state: after `stop()` no new connection is tried, and a server that shows no
progress (no message, no heartbeat, no audio taken) for ``STOP_STALL_S`` is given up on; ``meta.json`` always
ends "completed" or "failed". A kernel interrupt in `wait()` stops the session, and sessions still running
when the interpreter exits are stopped then.

Data flows source -> sender -> server -> receiver -> worker: the worker folds each event into the
transcript, appends finished turns to the session folder, feeds the live translation, then tells
listeners. After a drop it connects again (`v3.reconnect`), through the same `_connect` as the first
time.
"""

from __future__ import annotations

import atexit
import html
import logging
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .audio.pcm import dbfs
from .audio.sources import AudioSource, MicSource, WavSource
from .endpoint import Endpoint, choose_endpoint, language_key
from .errors import SessionTimeout, StreamingError, TerminationTimeout
from .events import Disconnected, Event, Reconnected, SessionBegan, SessionEnded, SpeakerRevision, Turn
from .language.backends import Translator, as_translator
from .language.live import LiveTranslation, read_translations
from .language.llm import LLM
from .language.translation import with_translations
from .local.models import DEFAULT_MODEL
from .store import SessionStore, WavAppender, new_session_folder, read_turns
from .transcript import Transcript, TurnRecord
from .v3.client import StreamingClient
from .v3.protocol import StreamingParams, control_message, public_host, public_url
from .v3.reconnect import RECONNECT, ReconnectPolicy, ResumableAudio, resilient_stream

log = logging.getLogger(__name__)

AUTO = "auto"
STOP_STALL_S = 3.0  # after stop(), a server showing no progress for this long is given up on
LAST_TURNS = 3  # finished turns a notebook shows of a session

TurnListener = Callable[[TurnRecord], None]
EventListener = Callable[[Event], None]


def as_source(source: AudioSource | str | Path | None, *, realtime: bool = True) -> AudioSource:
    """``None`` or ``"mic"``: the kernel microphone; a path: that file; anything else is used as is."""
    if source is None or source == "mic":
        return MicSource()
    if isinstance(source, (str, Path)):
        return WavSource(source, realtime=realtime)
    return source


class Session:
    """Stream one audio source to a v3 server and keep what comes back.

    ``url`` / ``api_key`` / ``token``: the server (see `choose_endpoint`: an explicit URL, else the cloud
    with a key, else the embedded local server). ``token`` may be a function that returns a fresh
    temporary token (one token opens one session, and a reconnect needs a new one).

    ``folder``: ``"auto"`` makes a new folder under ``./sessions/``; a path uses that folder;
    ``None`` keeps nothing on disk. Listeners run on the worker thread and must be quick.

    ``translate_to``: a language (``"es"``) or several: each finished turn is translated once, off
    the stream, with ``translator`` (a `Translator`, an `LLM`, a backend name, or None for the
    default: the LLM Gateway with an AssemblyAI key, Apertium without). See `LiveTranslation`.

    ``stall_timeout``: a connection from which nothing at all (message, heartbeat, answer to a ping) comes for
    this long is taken as lost (and reconnected). See `StreamingClient` for the other timeouts.

    ``reconnect``: when the connection drops after the session began, open a new one (a
    `ReconnectPolicy`, or the number of attempts; 0: never) and resend the audio since the last
    finished turn: nothing is lost and times run on.
    """

    def __init__(
        self,
        source: AudioSource | str | Path | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        token: str | Callable[[], str] | None = None,
        params: StreamingParams | None = None,
        folder: str | Path | None = AUTO,
        realtime: bool = True,
        frame_ms: int = 50,
        connect_timeout: float = 10.0,
        begin_timeout: float = 10.0,
        terminate_timeout: float = 5.0,
        stall_timeout: float = 15.0,
        on_turn: TurnListener | None = None,
        on_event: EventListener | None = None,
        translate_to: str | Sequence[str] | None = None,
        translator: Translator | LLM | str | None = None,
        translation_prompt: str | None = None,
        reconnect: ReconnectPolicy | int = RECONNECT,
    ):
        self.source = as_source(source, realtime=realtime)
        self.endpoint: Endpoint = choose_endpoint(url, api_key, token=token is not None)
        self.params = params or StreamingParams()
        self.reconnect = reconnect if isinstance(reconnect, ReconnectPolicy) else ReconnectPolicy(attempts=reconnect)
        self.folder = None if folder is None else new_session_folder() if folder == AUTO else Path(folder)
        self.client: StreamingClient | None = None  # the current connection's client (a new one after each reconnect)
        self.session_ids: list[str] = []
        self.callback_errors: list[BaseException] = []
        self.translation: LiveTranslation | None = None
        if translate_to:
            self.translation = LiveTranslation(
                as_translator(translator, api_key=language_key(self.endpoint, translator), prompt=translation_prompt),
                to=translate_to,
                prompt=translation_prompt, folder=self.folder, expect_formatted=bool(self.params.format_turns),
                owns_translator=translator is None or isinstance(translator, str),
            )
        self._token = token
        self._client_options: dict[str, Any] = {"frame_ms": frame_ms, "connect_timeout": connect_timeout,
                                                    "begin_timeout": begin_timeout, "terminate_timeout": terminate_timeout,
                                                    "stall_timeout": stall_timeout}
        self._turn_listeners: list[TurnListener] = [on_turn] if on_turn else []
        self._event_listeners: list[EventListener] = [on_event] if on_event else []
        self._transcript = Transcript()
        self._store: SessionStore | None = None
        self._worker: threading.Thread | None = None
        self._finished = threading.Event()
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._tap: TappedSource | None = None
        self._started_at: float | None = None
        self._ended_at: float | None = None

    def __repr__(self) -> str:
        state = "failed" if self._error else "finished" if self._finished.is_set() else "running" if self._worker else "new"
        return (f"<Session {state} turns={len(self._transcript.rows)} server={self.endpoint.describe()!r} "
                f"folder={str(self.folder)!r}>")

    def _repr_html_(self) -> str:
        return self.summary().to_html()

    def summary(self, last: int = LAST_TURNS) -> SessionSummary:
        """What a notebook shows of the session now (its ``_repr_html_``): the state, the engine, the finished
        turns (the ``last`` ones' text), the translation targets, the folder and the error. Never a secret: the
        server is named by its host, and the key, the token and any URL's query are taken out of the error."""
        rows = self._transcript.rows
        client = self.client
        return SessionSummary(
            state=self.state, engine=_engine(self.endpoint, client.url if client is not None else self.endpoint.url),
            speech_model=f"Whisper {DEFAULT_MODEL}" if self.endpoint.kind == "embedded" else self.params.speech_model,
            turns=len(rows), last_turns=tuple((row.speaker, row.text) for row in rows[-last:] if last > 0),
            translate_to=() if self.translation is None else tuple(self.translation.targets),
            folder=None if self.folder is None else str(self.folder),
            error=None if self._error is None else self._hide_secrets(f"{type(self._error).__name__}: {self._error}"),
        )

    def _hide_secrets(self, text: str) -> str:
        """``text`` without this session's key or token, and with every URL in it cut to scheme, host and path."""
        for secret in (self.endpoint.api_key, self._token if isinstance(self._token, str) else None):
            if secret:
                text = text.replace(secret, "***")
        return _URL.sub(_public_match, text)

    # --- reading (any thread) -----------------------------------------------------------------

    @property
    def transcript(self) -> Transcript:
        """The latest immutable snapshot."""
        return self._transcript

    @property
    def df(self) -> Any:
        """Final turns as a pandas DataFrame, built now from the current snapshot, with a
        ``translation_<lang>`` column per target language when translating."""
        frame = self._transcript.to_frame()
        live = self.translation
        return frame if live is None else with_translations(frame, live.results, live.targets)

    @property
    def partial(self) -> str:
        """The live line of the turn being spoken."""
        return self._transcript.partial

    @property
    def error(self) -> BaseException | None:
        """What ended the session early, once the worker has met it (None while all is well)."""
        return self._error

    @property
    def level_dbfs(self) -> float | None:
        """The level of the audio block sent last (None before the first)."""
        return None if self._tap is None else self._tap.level_dbfs

    @property
    def elapsed_s(self) -> float:
        """Seconds since `start()` (frozen when the session ends)."""
        if self._started_at is None:
            return 0.0
        return (self._ended_at or time.monotonic()) - self._started_at

    @property
    def running(self) -> bool:
        """Started and not over yet."""
        return self._worker is not None and not self._finished.is_set()

    @property
    def state(self) -> str:
        """``"not started"``, ``"running"`` (``"reconnecting"`` while a new connection is tried), ``"stopped"``
        or ``"failed"``."""
        if self._error is not None:
            return "failed"
        if self._worker is None:
            return "not started"
        if self._finished.is_set():
            return "stopped"
        return "reconnecting" if self._transcript.disconnected else "running"

    def on_turn(self, listener: TurnListener) -> TurnListener:
        """Call ``listener(record)`` for each finished turn (and each later version of it), on the worker thread."""
        self._turn_listeners.append(listener)
        return listener

    def on_event(self, listener: EventListener) -> EventListener:
        """Call ``listener(event)`` for every event of the session, on the worker thread."""
        self._event_listeners.append(listener)
        return listener

    # --- steering (any thread) ----------------------------------------------------------------

    def update_configuration(self, **changes: Any) -> None:
        """Change parameters mid-session (``keyterms_prompt``, ``prompt``, ``min_turn_silence``,
        ``max_turn_silence``, ``end_of_turn_confidence_threshold``, ``vad_threshold``): sent to the
        server now if it is streaming (`UpdateConfiguration`), and used by every later connection."""
        message = control_message("UpdateConfiguration", **changes)  # validates before anything changes
        self.params = replace(self.params, **changes)
        client = self.client
        if client is not None and self.running:
            try:
                client.send_text(message)
            except StreamingError:
                pass  # between two connections: the next one opens with the new parameters

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Session:
        """Start streaming in the background and return at once (the kernel stays free)."""
        if self._worker is not None:
            return self
        if self.folder is not None:
            self._store = SessionStore(self.folder, sample_rate=self.params.sample_rate)
            self._store.update_meta(
                started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                server=self.endpoint.url or self.endpoint.kind,
                params=self.params.query(),
                source=_describe(self.source),
                status="running",
                **({} if self.translation is None else {"translation": _describe_translation(self.translation)}),
            )
        if self.translation is not None:
            self.translation.start()
        self._started_at = time.monotonic()
        self._worker = threading.Thread(target=self._run, name="live-stt-session", daemon=True)
        self._worker.start()
        _RUNNING.add(self)
        return self

    def wait(self, timeout: float | None = None) -> Session:
        """Block until the source ends by itself (e.g. a file) and the session is over, its last
        turns translated; re-raise any failure. Raises `SessionTimeout` if it runs longer."""
        if self._worker is None:
            self.start()
        try:
            if not self._finished.wait(timeout):
                raise SessionTimeout(f"session still running after {timeout:g} s")
        except KeyboardInterrupt:  # the kernel was interrupted: end the session too, then say so
            try:
                self.stop(STOP_STALL_S)
            except Exception as exc:  # the interrupt is what the user must see
                log.warning("session ended with an error after the interrupt: %s", exc)
            raise
        return self._wind_down(timeout)

    def stop(self, timeout: float = 30.0) -> Session:
        """End-of-file: close the source, let the server flush the last turn, wait (for the last
        translations too), end every thread the session started, re-raise any failure of the
        worker. Safe to call more than once.

        Bounded: no new connection is tried once stopping; a server that shows no progress for ``STOP_STALL_S``
        seconds (or a connection that has not begun by then), or is still busy after ``timeout``, is given up on
        and the session ends with that error (`TerminationTimeout`; `SessionTimeout` for the latter).
        Turns already finished are saved either way, and the audio is all in the session folder."""
        if self._worker is None:
            self._finished.set()
            return self._wind_down(timeout)
        self._stopping.set()
        self.source.close()
        stopped_at = time.monotonic()
        while not self._finished.wait(0.1):
            client = self.client
            since_stop = time.monotonic() - stopped_at
            if since_stop >= timeout:
                self._give_up(client, SessionTimeout(f"session did not finish within {timeout:g} s after stop()"))
            elif client is not None and min(since_stop, client.idle_s if client.streaming else since_stop) > STOP_STALL_S:
                self._give_up(client, TerminationTimeout(
                    f"stopped waiting for {client.url}: no progress for {STOP_STALL_S:g} s after stop() "
                    f"({'streaming' if client.streaming else 'not connected'}); the last turn may be missing "
                    "(its audio is in the session folder)"))
        return self._wind_down(timeout)

    def _give_up(self, client: StreamingClient | None, error: Exception) -> None:
        """End the stream now with ``error`` (stop()'s bound): the worker ends and records it."""
        if self._error is None:
            self._error = error
        if client is not None:
            client.abort(error if isinstance(error, StreamingError) else TerminationTimeout(str(error)))

    def _wind_down(self, timeout: float | None) -> Session:
        if self.translation is not None and not self.translation.close(timeout):
            log.warning("translations still pending after %s s; they keep arriving in session.df", timeout)
        if self._error is not None:
            raise self._error
        return self

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.stop()
        else:  # do not mask the error that left the block
            try:
                self.stop()
            except Exception as stop_error:
                log.warning("session ended with an error too: %s", stop_error)

    # --- the worker ---------------------------------------------------------------------------

    def _connect(self) -> StreamingClient:
        """A client for the next connection, the first and every reconnect (worker thread): the server is
        resolved again each time, so an embedded server that died is started anew."""
        url, key = self.endpoint.resolve()
        token = self._token() if callable(self._token) else self._token
        self.client = StreamingClient(url, api_key=key, token=token, params=self.params, **self._client_options)
        if self._store is not None and self._store.meta.get("server") != self.client.url:
            self._store.update_meta(server=self.client.url)
        return self.client

    def _run(self) -> None:
        try:
            source = self._tap = TappedSource(self.source, None if self._store is None else self._store.audio)
            audio = ResumableAudio(source, sample_rate=self.params.sample_rate, keep_s=self.reconnect.keep_s)
            # the cloud wants audio no faster than real time, also when a new session catches up
            for event in resilient_stream(self._connect, audio, self.reconnect, stopping=self._stopping,
                                          max_speed=None if self.endpoint.local else 1.0):
                self._handle(event)
        except BaseException as exc:
            self._error = self._error or exc
            self.source.close()  # e.g. let go of the microphone
        finally:
            if self.translation is not None:
                self.translation.feed(self._transcript, ended=True)
            if self._store is not None:
                self._store.update_meta(
                    ended_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    session_ids=self.session_ids,
                    audio_seconds=round(self._store.audio.seconds, 3),
                    turns=len(self._transcript.rows),
                    reconnects=self._transcript.reconnects,
                    status="failed" if self._error else "completed",
                    error=None if self._error is None else f"{type(self._error).__name__}: {self._error}",
                )
                self._store.close()
            self._ended_at = time.monotonic()
            self._finished.set()
            _RUNNING.discard(self)

    def _handle(self, event: Event) -> None:
        before = self._transcript
        after = before.apply(event)
        self._transcript = after  # one reference swap: readers always see a whole snapshot
        if isinstance(event, SessionBegan):
            self.session_ids.append(event.session_id)
            client = self.client
            log.info("connected to %s (session %s)", public_url(client.url) if client is not None else "the server", event.session_id)
            if self._store is not None:
                self._store.update_meta(session_ids=self.session_ids, expires_at=event.expires_at)
        elif isinstance(event, Disconnected):
            log.info("connection lost, reconnecting (attempt %d, in %.2g s): %s", event.attempt, event.retry_in_s,
                     self._hide_secrets(event.reason))
        elif isinstance(event, Reconnected):
            log.info("reconnected (reconnect %d) after: %s; resending from %.1f s", event.attempt,
                     self._hide_secrets(event.reason), event.resume_at_ms / 1000)
            if self._store is not None:
                self._store.update_meta(reconnects=after.reconnects)
        changed: list[TurnRecord] = []
        if isinstance(event, Turn) and event.end_of_turn:
            changed = after.changed_rows(before, [event.turn_order])
        elif isinstance(event, SpeakerRevision):
            changed = after.changed_rows(before, [r.turn_order for r in event.revisions])
        if changed and self._store is not None:
            for row in changed:
                self._store.append_turn(row)
        if self.translation is not None and (changed or isinstance(event, SessionEnded)):
            self.translation.feed(after)
        for listener in self._event_listeners:
            self._call(listener, event)
        for row in changed:
            for turn_listener in self._turn_listeners:
                self._call(turn_listener, row)

    def _call(self, listener: Callable[[Any], None], value: Any) -> None:
        try:
            listener(value)
        except Exception as exc:  # a broken callback must not end the transcription
            self.callback_errors.append(exc)
            log.exception("session callback %r failed", listener)


_RUNNING: weakref.WeakSet[Session] = weakref.WeakSet()  # started and not finished: stopped at exit


@atexit.register
def _stop_running_sessions() -> None:
    """At interpreter exit (a kernel restart too), end what still runs, so every session folder ends in a final state."""
    for session in list(_RUNNING):
        try:
            session.stop(STOP_STALL_S)
        except Exception as exc:  # exiting: say it, never raise from atexit
            log.warning("session %r ended with an error at exit: %s", session, exc)


class TappedSource:
    """A source seen by the sender thread: each block's level is kept (for a meter) and, with a
    session folder, the block is appended to its WAV."""

    def __init__(self, source: AudioSource, audio: WavAppender | None):
        self.source, self.audio = source, audio
        self.sample_rate = source.sample_rate
        self.level_dbfs: float | None = None

    def __iter__(self) -> Iterator[bytes]:
        for block in self.source:
            self.level_dbfs = dbfs(block)  # one float swap: readers on any thread see a whole value
            if self.audio is not None:
                self.audio.append(block)
            yield block


_URL = re.compile(r"\b(?:wss?|https?)://[^\s'\"<>]+")


def _public_match(match: re.Match[str]) -> str:
    """A URL found in a text, made public; punctuation that ends the sentence stays outside it."""
    url = match.group(0).rstrip(".,;:!)]")
    return public_url(url) + match.group(0)[len(url):]


def _engine(endpoint: Endpoint, url: str | None) -> str:
    """Which server, in words, with its host: AssemblyAI's cloud, the embedded local server, or another."""
    host = public_host(url) if url else ""
    if endpoint.kind == "embedded":
        where = "embedded local server"
    elif endpoint.cloud:
        where = "AssemblyAI cloud"
    else:
        where = "local server" if endpoint.local else "server"
    return f"{where} ({host})" if host else where


_STATE_COLOURS = {"running": "var(--jp-success-color1,#1b7f3b)", "reconnecting": "var(--jp-warn-color1,#b26a00)",
                  "failed": "var(--jp-error-color1,#b00020)"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSummary:
    """What a notebook shows of a `Session` (`Session.summary`): plain values, none of them a secret.
    ``last_turns``: (speaker or None, text) of the last finished turns, oldest first."""

    state: str
    engine: str
    speech_model: str
    turns: int
    last_turns: tuple[tuple[str | None, str], ...] = ()
    translate_to: tuple[str, ...] = ()
    folder: str | None = None
    error: str | None = None

    def to_html(self) -> str:
        """The summary as a small HTML block, every value escaped."""
        e = html.escape
        colour = _STATE_COLOURS.get(self.state, "var(--jp-ui-font-color2,#666)")
        rows = [("Engine", f"{e(self.engine)} · {e(self.speech_model)}"), ("Finished turns", str(self.turns))]
        if self.translate_to:
            rows.append(("Translating to", e(", ".join(self.translate_to))))
        rows.append(("Folder", f"<code>{e(self.folder)}</code>" if self.folder else "none (nothing kept on disk)"))
        if self.error:
            rows.append(("Error", f'<span style="color:{_STATE_COLOURS["failed"]}">{e(self.error)}</span>'))
        table = "".join(f'<tr><th style="text-align:left;padding-right:1em">{k}</th><td style="text-align:left">{v}</td></tr>'
                        for k, v in rows)
        first = self.turns - len(self.last_turns)
        turns = "".join(f"<li>{f'<b>{e(speaker)}:</b> ' if speaker else ''}{e(text)}</li>" for speaker, text in self.last_turns)
        shown = f'<ol start="{first + 1}" style="margin:0.3em 0">{turns}</ol>' if turns else ""
        return (f'<div class="lsk-session"><b>Session</b> <span style="color:{colour}">{e(self.state)}</span>'
                f'<table style="margin:0.3em 0">{table}</table>{shown}</div>')


def _describe_translation(live: LiveTranslation) -> dict[str, Any]:
    return {"targets": list(live.targets), "backend": live.translator.backend, "model": live.translator.model}


def _describe(source: AudioSource) -> str:
    if isinstance(source, WavSource):
        return f"file:{source.path.name}"
    return type(source).__name__


def load_session(path: str | Path) -> Any:
    """The DataFrame of a saved session (folder or ``turns.jsonl``), duplicates folded, with its
    translations as ``translation_<lang>`` columns: the same frame ``session.df`` gave."""
    path = Path(path)
    return with_translations(read_turns(path).to_frame(), read_translations(path if path.is_dir() else path.parent))


__all__ = ["AUTO", "Session", "SessionSummary", "TappedSource", "as_source", "load_session"]
