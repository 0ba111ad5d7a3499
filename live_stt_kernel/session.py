"""A live session: one worker thread owns the transcript; everyone else reads snapshots.

``start()`` returns at once. Data flows source -> sender -> server -> receiver -> worker, and the
worker folds each event into the transcript, appends finished turns to the session folder, then
tells listeners. ``stop()`` is end-of-file: the source closes, the last turn is flushed by the
server, the worker ends, and any failure it met is raised here.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import protocol
from .backends import Translator, as_translator
from .events import Event, Reconnected, SessionBegan, SessionEnded, SpeakerRevision, Turn
from .live_translation import LiveTranslator
from .llm import LLM
from .protocol import StreamingParams
from .reconnect import RECONNECT, ReconnectPolicy, ResumableAudio, resilient_stream
from .sources import AudioSource, MicSource, WavSource
from .store import SessionStore, WavAppender, new_session_folder
from .transcript import Transcript, TurnRecord
from .translation import with_translations
from .transport import StreamingClient

log = logging.getLogger(__name__)

API_KEY_ENV = "ASSEMBLYAI_API_KEY"
AUTO = "auto"

TurnListener = Callable[[TurnRecord], None]
EventListener = Callable[[Event], None]


def resolve_endpoint(url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """Which server to talk to and with which key: an explicit URL wins; then the cloud with
    ``api_key`` or ``$ASSEMBLYAI_API_KEY``; with no key at all, the embedded local server."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    if url is not None:
        return url, key
    if key:
        return protocol.CLOUD_URL, key
    from .local.launcher import embedded_endpoint

    return embedded_endpoint()


def as_source(source: AudioSource | str | Path | None, *, realtime: bool = True) -> AudioSource:
    """``None`` or ``"mic"``: the kernel microphone; a path: that file; anything else is used as is."""
    if source is None or source == "mic":
        return MicSource()
    if isinstance(source, (str, Path)):
        return WavSource(source, realtime=realtime)
    return source


class Session:
    """Stream one audio source to a v3 server and keep what comes back.

    ``folder``: ``"auto"`` makes a new folder under ``./sessions/``; a path uses that folder;
    ``None`` keeps nothing on disk. Listeners run on the worker thread and must be quick.

    ``translate_to``: a language (``"es"``) or several: each finished turn is translated once, off
    the stream, with ``translator`` (a `Translator`, an `LLM`, a backend name, or None for the
    default: the LLM Gateway with an AssemblyAI key, Apertium without). See `LiveTranslator`.

    ``reconnect``: when the connection drops after the session began, open a new one (a
    `ReconnectPolicy`, or the number of attempts; 0: never) and resend the audio since the last
    finished turn: nothing is lost and times run on. ``token`` may be a function that returns a
    fresh temporary token (one token opens one session).
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
        terminate_timeout: float = 10.0,
        on_turn: TurnListener | None = None,
        on_event: EventListener | None = None,
        translate_to: str | Sequence[str] | None = None,
        translator: Translator | LLM | str | None = None,
        translation_prompt: str | None = None,
        reconnect: ReconnectPolicy | int = RECONNECT,
    ):
        self.source = as_source(source, realtime=realtime)

        def new_client() -> StreamingClient:  # the embedded server is restarted here if it died
            server, key = resolve_endpoint(url, None if token else api_key)
            return StreamingClient(
                server, api_key=key, token=token() if callable(token) else token, params=params, frame_ms=frame_ms,
                connect_timeout=connect_timeout, begin_timeout=begin_timeout, terminate_timeout=terminate_timeout,
            )

        self.client = new_client()  # the current connection's client (a new one after each reconnect)
        self._clients = itertools.chain([self.client], iter(new_client, None))
        self.reconnect = reconnect if isinstance(reconnect, ReconnectPolicy) else ReconnectPolicy(attempts=reconnect)
        self.folder = None if folder is None else new_session_folder() if folder == AUTO else Path(folder)
        self.session_ids: list[str] = []
        self.callback_errors: list[BaseException] = []
        self._turn_listeners: list[TurnListener] = [on_turn] if on_turn else []
        self._event_listeners: list[EventListener] = [on_event] if on_event else []
        self._transcript = Transcript()
        self._store: SessionStore | None = None
        self._worker: threading.Thread | None = None
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._tap: TappedSource | None = None
        self._audio: ResumableAudio | None = None
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self.translations: LiveTranslator | None = None
        if translate_to:
            self.translations = LiveTranslator(
                as_translator(translator, api_key=api_key, prompt=translation_prompt), to=translate_to,
                prompt=translation_prompt, folder=self.folder, expect_formatted=bool(self.client.params.format_turns),
            )

    def __repr__(self) -> str:
        state = "failed" if self._error else "finished" if self._finished.is_set() else "running" if self._worker else "new"
        return f"<Session {state} turns={len(self._transcript.rows)} url={self.client.url!r} folder={str(self.folder)!r}>"

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
        return frame if self.translations is None else with_translations(frame, self.translations.translations, self.translations.targets)

    @property
    def partial(self) -> str:
        """The live line of the turn being spoken."""
        return self._transcript.partial

    @property
    def error(self) -> BaseException | None:
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
        return self._worker is not None and not self._finished.is_set()

    def on_turn(self, listener: TurnListener) -> TurnListener:
        """Call ``listener(record)`` for each finished turn (and each later version of it)."""
        self._turn_listeners.append(listener)
        return listener

    def on_event(self, listener: EventListener) -> EventListener:
        self._event_listeners.append(listener)
        return listener

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Session:
        """Start streaming in the background and return at once."""
        if self._worker is not None:
            return self
        if self.folder is not None:
            self._store = SessionStore(self.folder, sample_rate=self.client.params.sample_rate)
            self._store.update_meta(
                started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                server=self.client.url,
                params=self.client.params.query(),
                source=_describe(self.source),
                status="running",
                **({} if self.translations is None else {"translation": _describe_translation(self.translations)}),
            )
        self._started_at = time.monotonic()
        self._worker = threading.Thread(target=self._run, name="live-stt-session", daemon=True)
        self._worker.start()
        return self

    def wait(self, timeout: float | None = None) -> Session:
        """Block until the source ends by itself (e.g. a file) and the session is over, its last
        turns translated."""
        if self._worker is None:
            self.start()
        if not self._finished.wait(timeout):
            raise TimeoutError(f"session still running after {timeout:g} s")
        return self._finish_translations(timeout)._raise_failure()

    def stop(self, timeout: float = 30.0) -> Session:
        """End-of-file: close the source, let the server flush the last turn, wait (for the last
        translations too), re-raise any failure of the worker. Safe to call more than once."""
        if self._worker is None:
            self._finished.set()
            return self
        self.source.close()
        if not self._finished.wait(timeout):
            raise TimeoutError(f"session did not finish within {timeout:g} s after stop()")
        return self._finish_translations(timeout)._raise_failure()

    def _finish_translations(self, timeout: float | None) -> Session:
        if self.translations is not None and not self.translations.wait(timeout):
            log.warning("translations still pending after %s s; they keep arriving in session.df", timeout)
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

    def _raise_failure(self) -> Session:
        if self._error is not None:
            raise self._error
        return self

    # --- the worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            source = self._tap = TappedSource(self.source, None if self._store is None else self._store.audio)
            self._audio = ResumableAudio(source, sample_rate=self.client.params.sample_rate, keep_s=self.reconnect.keep_s)
            # the cloud wants audio no faster than real time, also when a new session catches up
            for event in resilient_stream(lambda: next(self._clients), self._audio, self.reconnect,
                                          max_speed=None if protocol.is_loopback(self.client.url) else 1.0,
                                          on_connect=self._use_client):
                self._handle(event)
        except BaseException as exc:
            self._error = exc
            self.source.close()  # e.g. let go of the microphone
        finally:
            if self.translations is not None:
                self.translations.feed(self._transcript, ended=True)
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

    def _use_client(self, client: Any) -> None:
        self.client = client

    def _handle(self, event: Event) -> None:
        before = self._transcript
        after = before.apply(event)
        self._transcript = after  # one reference swap: readers always see a whole snapshot
        if isinstance(event, SessionBegan):
            self.session_ids.append(event.session_id)
            if self._store is not None:
                self._store.update_meta(session_ids=self.session_ids, expires_at=event.expires_at)
        elif isinstance(event, Reconnected):
            log.warning("reconnected (%d) after: %s; resending from %.1f s", event.attempt, event.reason,
                        event.resume_at_ms / 1000)
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
        if self._audio is not None:
            for row in changed:
                if row.end is not None:
                    self._audio.settle(row.end * 1000)  # a new connection resends only what comes after
        if self.translations is not None and (changed or isinstance(event, SessionEnded)):
            self.translations.feed(after)
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


def dbfs(pcm: bytes) -> float:
    """The RMS level of PCM16 audio in dB below full scale (-inf for digital silence)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    if not len(samples):
        return float("-inf")
    rms = float(np.sqrt(np.mean(samples * samples))) / 32768.0
    return 20 * math.log10(rms) if rms > 0 else float("-inf")


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


def _describe_translation(live: LiveTranslator) -> dict[str, Any]:
    return {"targets": list(live.targets), "backend": live.translator.backend, "model": live.translator.model}


def _describe(source: AudioSource) -> str:
    if isinstance(source, WavSource):
        return f"file:{source.path.name}"
    return type(source).__name__


def start(source: AudioSource | str | Path | None = None, *, panel: bool | None = None, **options: Any) -> Session:
    """Start a session on ``source`` (kernel microphone by default) and return it at once. In a
    notebook (or with ``panel=True``) the live panel is shown too; ``panel=False`` shows nothing."""
    session = Session(source, **options).start()
    from .progress import in_notebook

    if panel or (panel is None and in_notebook()):
        from IPython.display import display

        from .widgets import LivePanel

        display(LivePanel(session))
    return session


__all__ = ["API_KEY_ENV", "Session", "resolve_endpoint", "start"]
