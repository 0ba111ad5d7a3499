"""The live panel: start/stop, source, level meter, status, the live line, finished turns with their
translations, translation controls, and a coach button, in ipywidgets.

Threads: widget callbacks (the kernel's thread) only put a command on a queue. One UI thread owns
every widget: ``fps`` times a second at most it runs the commands, builds the view from the session's
snapshots (`view.build_view`) and sends only what changed (`view.changes`), batched with
``hold_sync``. Nothing here prints or displays from a thread; the coaching report (slow: a model
call) is written by a helper thread and handed back to the UI thread as a command.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as w

from ..audio.sources import MicSource, QueueSource, WavSource
from ..coaching.report import coach
from ..language.backends import TRANSLATORS, as_translator
from ..samples import sample_wav
from ..session import Session
from .browser_mic import BrowserMic
from .view import PanelView, Status, build_view, changes

log = logging.getLogger(__name__)

SOURCES = {"audio file": "file", "kernel microphone": "mic", "browser microphone": "browser"}
IDLE_S = 1.0  # with nothing streaming the UI thread looks for news once a second (a click wakes it at once)
Command = tuple[str, Any]


def source_choice(source: Any) -> tuple[str, str | None]:
    """The picker's label for a session's source, and its file if it has one."""
    if isinstance(source, WavSource):
        return "audio file", str(source.path)
    if isinstance(source, MicSource):
        return "kernel microphone", None
    if isinstance(source, QueueSource):  # audio pushed from elsewhere: the browser microphone
        return "browser microphone", None
    return f"{type(source).__name__} (from code)", None


class LivePanel:
    """``LivePanel(session)`` follows a running session; ``LivePanel()`` lets the user pick a source
    and press Start. Display it in a notebook (it is the widget's ``_repr_mimebundle_``)."""

    def __init__(self, session: Session | None = None, *, file: str | Path | None = None, translate_to: str = "es",
                 session_options: dict[str, Any] | None = None, coach_options: dict[str, Any] | None = None,
                 fps: float = 10.0):
        self.session = session
        self.session_options = dict(session_options or {})  # for sessions started with the Start button
        self.coach_options = dict(coach_options or {})  # e.g. backend=, use_llm=False
        self.interval = 1.0 / fps
        self.commands: queue.Queue[Command] = queue.Queue()
        self.frames = 0  # batches of widget updates sent (for tests and benchmarks)
        self.wakeups = 0  # times the UI thread woke up
        self.command_threads: list[str] = []  # where commands ran (the UI thread, by design)
        self._view: PanelView | None = None
        self._closed = threading.Event()
        self._wake = threading.Event()  # a command is waiting
        self._coaching = False

        self.source = w.Dropdown(options=list(SOURCES), value="audio file", description="Source")
        self.file = w.Text(value=str(file or sample_wav()), description="File", layout=w.Layout(width="28em"))
        self.start_button = w.Button(description="Start", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.level = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="Level",
                                     layout=w.Layout(width="20em"))
        self.status = w.HTML(value="<b>ready</b>")
        self.partial = w.HTML(value="", layout=w.Layout(min_height="1.6em"))
        self.turns = w.VBox(layout=w.Layout(max_height="24em", overflow="auto"))
        self.target = w.Text(value=translate_to, description="Translate", layout=w.Layout(width="12em"))
        self.backend = w.Dropdown(options=["default", *TRANSLATORS], value="default", description="Backend")
        self.model = w.Text(value="", placeholder="model (optional)", layout=w.Layout(width="16em"))
        self.prompt = w.Textarea(value="", placeholder="translation prompt; {language} = the target (LLM backends)",
                                 layout=w.Layout(width="44em", height="4em"))
        self.apply_button = w.Button(description="Apply to next turns", icon="check", layout=w.Layout(width="13em"))
        self.retranslate_button = w.Button(description="Re-translate all", icon="refresh", layout=w.Layout(width="13em"))
        self.coach_button = w.Button(description="Coach", icon="graduation-cap", button_style="info")
        self.report = w.Output(layout=w.Layout(border="1px solid #ddd", padding="4px"))
        self.report.layout.display = "none"
        for widget, name in ((self.status, "status"), (self.partial, "partial"), (self.turns, "turns"),
                             (self.level, "level"), (self.report, "report")):
            widget.add_class(f"lsk-{name}")  # stable names for the page's CSS and for browser tests
        self.browser_mic: Any = None  # a BrowserMic, made when that source is picked
        self.mic_slot = w.Box()  # where the browser microphone's button appears

        if session is not None:  # show what the session records (before the picker's observer exists)
            label, path = source_choice(session.source)
            if label not in SOURCES:
                self.source.options = [*SOURCES, label]
            self.source.value = label
            self.file.value = path or self.file.value
            self.file.layout.display = None if path else "none"

        self.start_button.on_click(lambda _: self.enqueue("start"))
        self.stop_button.on_click(lambda _: self.enqueue("stop"))
        self.apply_button.on_click(lambda _: self.enqueue("apply"))
        self.retranslate_button.on_click(lambda _: self.enqueue("retranslate"))
        self.coach_button.on_click(lambda _: self.enqueue("coach"))
        self.source.observe(lambda change: self.enqueue("source", change["new"]), names="value")

        self.widget = w.VBox([
            w.HBox([self.source, self.file, self.start_button, self.stop_button]),
            self.mic_slot,
            w.HBox([self.level, self.status]),
            self.partial,
            self.turns,
            w.HBox([self.target, self.backend, self.model]),
            w.HBox([self.prompt, w.VBox([self.apply_button, self.retranslate_button])]),
            self.coach_button,
            self.report,
        ])
        self.widget.add_class("lsk-panel")
        if session is not None:
            self._follow(session)
        self._thread = threading.Thread(target=self._loop, name="live-stt-ui", daemon=True)
        self._thread.start()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def enqueue(self, name: str, value: Any = None) -> None:
        """Ask the UI thread to run ``_do_<name>(value)`` (any thread; returns at once)."""
        self.commands.put((name, value))
        self._wake.set()

    def close(self) -> None:
        """Stop the UI thread (waits up to 2 s for it); the widgets stay but no longer update."""
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=2)

    # --- the UI thread --------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._closed.is_set():
            started = time.monotonic()
            self.wakeups += 1
            self._wake.clear()
            try:
                self._run_commands()
                self.render()
            except Exception:  # the panel must outlive any one bad frame
                log.exception("live panel frame failed")
            if self.session is None or not self.session.running:  # idle: until a command, or a second
                self._wake.wait(max(0.0, IDLE_S - (time.monotonic() - started)))
            self._closed.wait(max(0.0, self.interval - (time.monotonic() - started)))  # never over fps

    def _run_commands(self) -> None:
        while True:
            try:
                name, value = self.commands.get_nowait()
            except queue.Empty:
                return
            self.command_threads.append(threading.current_thread().name)
            handler: Callable[[Any], None] = getattr(self, f"_do_{name}")
            try:
                handler(value)
            except Exception as exc:
                self.status.value = f'<span style="color:var(--jp-error-color1,#b00020)">{name} failed: {type(exc).__name__}: {exc}</span>'
                self._view = None  # redraw the status next frame

    def render(self) -> None:
        """One frame: send what changed since the last one (UI thread)."""
        session = self.session
        if session is None:
            return
        transcript = session.transcript
        state = ("failed" if session.error else "stopped" if not session.running
                 else "reconnecting" if transcript.disconnected else "streaming")
        error = (f"{type(session.error).__name__}: {session.error}" if session.error
                 else f"connection lost ({transcript.disconnected}); trying a new one" if state == "reconnecting" else None)
        status = Status(engine=session.endpoint.describe(), session_id=session.session_ids[-1] if session.session_ids else None,
                        elapsed_s=session.elapsed_s, state=state, reconnects=transcript.reconnects, error=error)
        items = session.translation.results if session.translation is not None else []
        view = build_view(transcript, items, status, level_dbfs=session.level_dbfs if session.running else None)
        diff = changes(self._view, view)
        self._view = view
        if diff.empty:
            return
        self.frames += 1
        with self.status.hold_sync(), self.partial.hold_sync(), self.level.hold_sync():
            if diff.status is not None:
                self.status.value = diff.status
            if diff.partial is not None:
                self.partial.value = f"<i>{diff.partial}</i>" if diff.partial else ""
            if diff.level is not None:
                self.level.value = diff.level
        rows = list(self.turns.children)
        if diff.rebuild:
            rows = []
        for position, value in diff.updated:
            rows[position].value = value
        if diff.appended or diff.rebuild:
            self.turns.children = tuple(rows) + tuple(w.HTML(value=value) for value in diff.appended)
        running = session.running
        self.start_button.disabled, self.stop_button.disabled = running, not running

    # --- commands (UI thread) ---------------------------------------------------------------

    def _follow(self, session: Session) -> None:
        self.session, self._view = session, None
        self.turns.children = ()

    def _do_source(self, choice: str) -> None:
        """Show the browser microphone's button when it is the source (the page asks for the microphone
        on a click in that widget: browsers require a user gesture)."""
        browser = SOURCES.get(choice) == "browser"
        if browser and self.browser_mic is None:
            self.browser_mic = BrowserMic()
        self.mic_slot.children = (self.browser_mic,) if browser else ()
        self.file.layout.display = None if SOURCES.get(choice) == "file" else "none"

    def _do_start(self, _: Any) -> None:
        if self.session is not None and self.session.running:
            return
        kind = SOURCES.get(self.source.value, "file")
        if kind == "browser":
            self._do_source(self.source.value)
            source: Any = self.browser_mic.source
        else:
            source = None if kind == "mic" else self.file.value
        options = {"translate_to": self.target.value or None, **self.translation_choice(), **self.session_options}
        self._follow(Session(source, **options).start())

    def _do_stop(self, _: Any) -> None:
        if self.session is not None and self.session.running:
            if self.browser_mic is not None and self.session.source is self.browser_mic.source:
                self.browser_mic.stop()  # also asks the page to stop recording
            self.session.source.close()  # end-of-file; the worker finishes in the background

    def translation_choice(self) -> dict[str, Any]:
        """The translator and prompt picked in the panel's controls, as `Session` options."""
        backend = None if self.backend.value == "default" else self.backend.value
        prompt = self.prompt.value.strip() or None
        return {"translator": as_translator(backend, model=self.model.value or None, prompt=prompt),
                "translation_prompt": prompt}

    def _do_apply(self, _: Any) -> None:
        live = self.session.translation if self.session is not None else None
        if live is None:
            return
        choice = self.translation_choice()
        live.configure(to=self.target.value, translator=choice["translator"], prompt=choice["translation_prompt"],
                       default_prompt=choice["translation_prompt"] is None)

    def _do_retranslate(self, _: Any) -> None:
        self._do_apply(None)
        if self.session is not None and self.session.translation is not None:
            self.session.translation.retranslate()

    def _do_coach(self, _: Any) -> None:
        if self.session is None or self._coaching:
            return
        self._coaching = True
        self.coach_button.description = "Coaching…"
        frame = self.session.df

        def work() -> None:  # a model call takes seconds: off the UI thread, result handed back
            try:
                self.enqueue("report", coach(frame, **self.coach_options))
            except Exception as exc:
                self.enqueue("report", exc)

        threading.Thread(target=work, name="live-stt-coach", daemon=True).start()

    def _do_report(self, report: Any) -> None:
        self._coaching = False
        self.coach_button.description = "Coach"
        if isinstance(report, Exception):
            outputs: tuple[dict[str, Any], ...] = ({"output_type": "stream", "name": "stderr",
                                                    "text": f"coaching failed: {report}\n"},)
        else:
            outputs = ({"output_type": "display_data", "metadata": {},
                        "data": {"text/markdown": report.to_markdown(), "text/plain": report.to_markdown()}},
                       {"output_type": "display_data", "metadata": {},
                        "data": {"image/svg+xml": report.chart_svg(), "text/plain": "<coaching chart>"}})
        self.report.outputs = outputs
        self.report.layout.display = None


__all__ = ["LivePanel"]
