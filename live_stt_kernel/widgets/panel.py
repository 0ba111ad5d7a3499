"""The live panel: start/stop, source, level meter, status, the live line, finished turns with their
translations, translation controls, and a coach button, in ipywidgets.

Threads: widget callbacks (the kernel's thread) only put a command on a queue. One UI thread owns
every widget but the `Presenter` (see there): ``fps`` times a second at most it runs the commands,
builds the view from the session's snapshots (`view.build_view`) and sends only what changed
(`view.changes`), batched with ``hold_sync``. Nothing here prints or displays from a thread; the coaching report (slow: a model
call) is written by a helper thread and handed back to the UI thread as commands (the text so far
while the model writes, throttled, then the report). `LivePanel.close` ends both threads: the coaching
thread stops at the model's next piece (its ``on_text`` raises, and ``coach`` drops the stream), and
nothing is queued once the panel is closed.

Presentation (for a class): the turn list follows the newest turn like a chat, "Large text" and
"Full screen" act in the page (see `presenter.Presenter`); ``LivePanel(session, presentation=True)``
or ``panel.presentation = True`` turns on large text and hides the controls.

The translation controls show the session's real settings, also when they were changed from code
(``session.translation.configure(...)``): each frame copies them into the controls, unless the user
has changed a control since (then the user's choice stays until Apply).
"""

from __future__ import annotations

import html
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
from .presenter import Presenter
from .view import PanelView, Status, build_view, changes, live_html

log = logging.getLogger(__name__)

SOURCES = {"audio file": "file", "kernel microphone": "mic", "browser microphone": "browser"}
IDLE_S = 1.0  # with nothing streaming the UI thread looks for news once a second (a click wakes it at once)
COACH_TEXT_EVERY_S = 0.25  # the coaching text streams into the panel at most 4 times a second
CLOSE_UI_S = 2.0  # close() waits this long for the UI thread
CLOSE_COACH_S = 5.0  # and this long for the coaching thread (it stops at the model's next piece)
Command = tuple[str, Any]
Controls = tuple[str, str, str, str]  # target(s), backend, model, prompt: as the translation controls show them


def translation_settings(live: Any) -> Controls:
    """A live translation's current settings as the controls show them."""
    translator = live.translator
    return (", ".join(live.targets), str(getattr(translator, "backend", "")), str(getattr(translator, "model", "") or ""),
            live.prompt or "")


class _PanelClosed(Exception):
    """Raised by the coaching thread's ``on_text`` once the panel is closed: ``coach`` then drops the
    model's stream and the thread ends without a report."""


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
                 fps: float = 10.0, presentation: bool = False):
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
        self._enqueue_lock = threading.Lock()  # nothing is queued once close() has set _closed
        self._coach_thread: threading.Thread | None = None
        self._wake = threading.Event()  # a command is waiting
        self._coaching = False
        self._coach_text_at = 0.0  # when the coaching text was last handed to the UI thread
        self._controls_shown: Controls | None = None  # the settings last copied into the controls
        self._failed: dict[str, str] = {}  # command -> why it failed last time (shown until it succeeds)

        self.source = w.Dropdown(options=list(SOURCES), value="audio file", description="Source")
        self.file = w.Text(value=str(file or sample_wav()), description="File", layout=w.Layout(width="28em"))
        self.start_button = w.Button(description="Start", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.level = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="Level",
                                     layout=w.Layout(width="20em"))
        self.status = w.HTML(value="<b>ready</b>")
        self.partial = w.HTML(value=live_html(""))
        self.turns = w.VBox(layout=w.Layout(max_height="24em", overflow="auto"))
        self.presenter = Presenter(large=presentation, compact=presentation)
        self.target = w.Text(value=translate_to, description="Translate", layout=w.Layout(width="12em"))
        self.backend = w.Dropdown(options=["default", *TRANSLATORS], value="default", description="Backend")
        self.model = w.Text(value="", placeholder="model (optional)", layout=w.Layout(width="16em"))
        self.all_languages = w.Checkbox(value=False, description="all languages", indent=False,
                                        layout=w.Layout(width="9em"))
        self.prompt = w.Textarea(value="", placeholder="translation prompt; {language} = the target (LLM backends)",
                                 layout=w.Layout(width="44em", height="4em"))
        self.apply_button = w.Button(description="Apply to next turns", icon="check", layout=w.Layout(width="13em"))
        self.retranslate_button = w.Button(description="Re-translate all", icon="refresh", layout=w.Layout(width="13em"))
        self.coach_button = w.Button(description="Coach", icon="graduation-cap", button_style="info",
                                     layout=w.Layout(width="16em"))  # room for "Coaching… 123 words"
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

        controls = [
            w.HBox([self.source, self.file, self.start_button, self.stop_button]),
            w.HBox([self.target, self.backend, self.model, self.all_languages]),
            w.HBox([self.prompt, w.VBox([self.apply_button, self.retranslate_button])]),
            self.coach_button,
        ]
        for box in controls:
            box.add_class("lsk-controls")  # hidden in presentation and full screen
        # the live line under the turns, like a chat: the newest turn lands right above it
        self.widget = w.VBox([
            controls[0],
            self.mic_slot,
            w.HBox([self.level, self.status, self.presenter], layout=w.Layout(width="100%")),
            self.turns,
            self.partial,
            *controls[1:],
            self.report,
        ])
        self.widget.add_class("lsk-panel")
        if session is not None:
            self._follow(session)
        self._thread = threading.Thread(target=self._loop, name="live-stt-ui", daemon=True)
        self._thread.start()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def presentation(self) -> bool:
        """Large text and no controls: captions for a class (the page's "Full screen" button adds the whole
        screen; its "Show controls" button brings the controls back)."""
        return self.presenter.large and self.presenter.compact

    @presentation.setter
    def presentation(self, on: bool) -> None:
        # the notebook's thread writes the presenter's traits (as the page does on a click); the UI thread
        # never touches them, so there is no race with it
        with self.presenter.hold_sync():
            self.presenter.large = self.presenter.compact = bool(on)

    def enqueue(self, name: str, value: Any = None) -> None:
        """Ask the UI thread to run ``_do_<name>(value)`` (any thread; returns at once). Nothing once the
        panel is closed."""
        with self._enqueue_lock:
            if self._closed.is_set():
                return
            self.commands.put((name, value))
        self._wake.set()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed.is_set()

    def close(self) -> None:
        """Stop the UI thread (waits up to `CLOSE_UI_S` for it) and a coaching report being written (it
        stops at the model's next piece; waits up to `CLOSE_COACH_S`); the widgets stay but no longer
        update."""
        with self._enqueue_lock:
            self._closed.set()
        self._wake.set()
        self._thread.join(timeout=CLOSE_UI_S)
        coaching = self._coach_thread
        if coaching is not None:
            coaching.join(timeout=CLOSE_COACH_S)
            if coaching.is_alive():  # a model silent for that long: it ends at its next piece or its timeout
                log.warning("the coaching thread is still waiting for the model %.0f s after close()", CLOSE_COACH_S)

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
            except Exception as exc:  # said on the status line until a command of that kind succeeds
                self._failed[name] = f"{name} failed: {type(exc).__name__}: {exc}"
                self.status.value = f'<span style="color:var(--jp-error-color1,#b00020)">{html.escape(self._failed[name])}</span>'
            else:
                for kind in ("apply", "retranslate") if name in ("apply", "retranslate") else (name,):
                    self._failed.pop(kind, None)

    def render(self) -> None:
        """One frame: send what changed since the last one (UI thread)."""
        session = self.session
        if session is None:
            return
        transcript = session.transcript
        state = ("failed" if session.error else "stopped" if not session.running
                 else "reconnecting" if transcript.disconnected else "streaming")
        error = (f"{type(session.error).__name__}: {session.error}" if session.error
                 else f"connection lost ({transcript.disconnected}); trying a new one" if state == "reconnecting"
                 else " · ".join(self._failed.values()) or None)
        status = Status(engine=session.endpoint.describe(), session_id=session.session_ids[-1] if session.session_ids else None,
                        elapsed_s=session.elapsed_s, state=state, reconnects=transcript.reconnects, error=error,
                        warning=transcript.warning if session.running else None)
        live = session.translation
        items = live.results if live is not None else []
        pending = live.in_progress if live is not None else None  # asked for, not finished: drafts so far
        if live is not None:
            self._show_settings(live)
        view = build_view(transcript, items, status, level_dbfs=session.level_dbfs if session.running else None,
                          pending=pending, targets=live.targets if live is not None else None,
                          show_all=self.all_languages.value)
        diff = changes(self._view, view)
        self._view = view
        if diff.empty:
            return
        self.frames += 1
        with self.status.hold_sync(), self.partial.hold_sync(), self.level.hold_sync():
            if diff.status is not None:
                self.status.value = diff.status
            if diff.partial is not None:
                self.partial.value = live_html(diff.partial)
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

    def controls(self) -> Controls:
        """What the translation controls show now."""
        return (self.target.value, self.backend.value, self.model.value, self.prompt.value)

    def _show_settings(self, live: Any) -> None:
        """Copy the live translation's settings into the controls, unless the user changed one since they
        were last copied (their choice waits for Apply). UI thread."""
        shown = self.controls()
        if self._controls_shown is not None and shown != self._controls_shown:
            return  # the user is choosing
        settings = translation_settings(live)
        if settings != shown:
            target, backend, model, prompt = settings
            if backend not in self.backend.options:  # a translator made in code: shown by its own name
                self.backend.options = [*self.backend.options, backend]
            self.target.value, self.backend.value, self.model.value, self.prompt.value = target, backend, model, prompt
        self._controls_shown = self.controls()

    def _follow(self, session: Session) -> None:
        self.session, self._view = session, None
        self._controls_shown = None
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
        options = {"translate_to": targets_of(self.target.value) or None, **self.translation_choice(),
                   **self.session_options}
        self._follow(Session(source, **options).start())

    def _do_stop(self, _: Any) -> None:
        if self.session is not None and self.session.running:
            if self.browser_mic is not None and self.session.source is self.browser_mic.source:
                self.browser_mic.stop()  # also asks the page to stop recording
            self.session.source.close()  # end-of-file; the worker finishes in the background

    def translation_choice(self) -> dict[str, Any]:
        """The translator and prompt picked in the panel's controls, as `Session` options."""
        backend = self.backend.value if self.backend.value in TRANSLATORS else None
        prompt = self.prompt.value.strip() or None
        return {"translator": as_translator(backend, model=self.model.value.strip() or None, prompt=prompt),
                "translation_prompt": prompt}

    def _do_apply(self, _: Any) -> None:
        """Apply what the user changed in the controls (and only that: a translator made in code stays
        unless the backend or model was changed)."""
        live = self.session.translation if self.session is not None else None
        if live is None:
            return
        target, backend, model, prompt = self.controls()
        before = self._controls_shown or translation_settings(live)
        options: dict[str, Any] = {}
        if targets_of(target) and targets_of(target) != targets_of(before[0]):
            options["to"] = targets_of(target)
        if (backend, model) != before[1:3]:
            name = backend if backend in TRANSLATORS else None
            same_model = model == before[2] and backend != before[1]  # a new backend: its own default model
            options["translator"] = as_translator(name, model=None if same_model else model.strip() or None,
                                                  prompt=prompt.strip() or None)
        if prompt != before[3]:
            options["prompt"] = prompt.strip() or None
            options["default_prompt"] = not prompt.strip()
        if options:  # a prompt Apertium cannot follow raises ConfigurationError (NO_PROMPT) and changes nothing
            live.configure(**options)
        self._controls_shown = None  # the next frame shows the settings as they now are

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

        self._coach_text_at = 0.0
        self._show_report(({"output_type": "stream", "name": "stdout",
                            "text": "Computing the metrics and asking the model…\n"},))
        # never a display() from the coaching thread (progress=False): the panel shows the text as it streams
        options = {"progress": False, **self.coach_options}
        if options.get("use_llm", True):
            options.setdefault("on_text", self._coach_text)

        def work() -> None:  # a model call takes seconds: off the UI thread, result handed back
            try:
                self.enqueue("report", coach(frame, **options))
            except _PanelClosed:
                return  # the panel was closed while the model wrote: nobody is waiting for the report
            except Exception as exc:
                self.enqueue("report", exc)

        self._coach_thread = threading.Thread(target=work, name="live-stt-coach", daemon=True)
        self._coach_thread.start()

    def _coach_text(self, text: str) -> None:
        """``coach``'s ``on_text``: the text so far, on the coaching thread; handed to the UI thread at
        most every `COACH_TEXT_EVERY_S` (each call carries the whole text, so skipping some loses nothing).
        Once the panel is closed it raises `_PanelClosed`, which ends the model's stream and the thread."""
        if self._closed.is_set():
            raise _PanelClosed("the panel was closed")
        now = time.monotonic()
        if now - self._coach_text_at >= COACH_TEXT_EVERY_S:
            self._coach_text_at = now
            self.enqueue("coach_text", text)

    def _do_coach_text(self, text: str) -> None:
        if self._coaching:  # not after the report
            words = len(text.split())
            self.coach_button.description = f"Coaching… {words} words"
            self._show_report(({"output_type": "display_data", "metadata": {},
                                "data": {"text/markdown": f"*The model is writing…*\n\n{text}",
                                         "text/plain": text}},))

    def _show_report(self, outputs: tuple[dict[str, Any], ...]) -> None:
        self.report.outputs = outputs
        self.report.layout.display = None

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
        self._show_report(outputs)


def targets_of(text: str) -> list[str]:
    """The target languages typed in the control: one, or several separated by commas."""
    return [part.strip() for part in text.split(",") if part.strip()]


__all__ = ["LivePanel"]
