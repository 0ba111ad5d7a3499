"""The live panel without a browser: the pure view with data, then the real widgets following real
sessions streamed through the replay server (their values are what a browser would be sent)."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import API_KEY, wait_until

from live_stt_kernel import QueueSource, Session
from live_stt_kernel.events import SessionBegan, Turn, Word
from live_stt_kernel.language.translation import Translation
from live_stt_kernel.session import dbfs
from live_stt_kernel.transcript import Transcript
from live_stt_kernel.v3.replay import even_turns, turns_script
from live_stt_kernel.widgets import LivePanel
from live_stt_kernel.widgets.view import Status, build_view, changes, level_of

TEXTS = ["one two three", "four five six", "seven eight"]
STATUS = Status(engine="local", session_id="abcdef123456", elapsed_s=75.4, state="streaming")


def turn(order: int, text: str, *, final: bool = True) -> Turn:
    words = tuple(Word(text=t, start_ms=1000 * order + 100 * i, end_ms=1000 * order + 100 * i + 80)
                  for i, t in enumerate(text.split()))
    return Turn(turn_order=order, transcript=text if final else "", words=words, end_of_turn=final, formatted=final)


def transcript(*turns: Turn) -> Transcript:
    state = Transcript().apply(SessionBegan(session_id="s1"))
    for t in turns:
        state = state.apply(t)
    return state


def translated(order: int, text: str | None, error: str | None = None) -> Translation:
    return Translation(session_id="s1", turn_order=order, target="es", source="", text=text, backend="b", model="m", error=error)


# --- the pure view ---------------------------------------------------------------------------


def test_rows_show_each_turn_with_its_translation_escaped():
    state = transcript(turn(0, "Hello <script>alert(1)</script>"), turn(1, "Bye"), turn(2, "still talking", final=False))
    view = build_view(state, [translated(0, "Hola"), translated(1, None, "LLMRefused: 401")], STATUS, level_dbfs=-30.0)
    assert len(view.turns) == 2 and view.partial == "still talking"
    assert "&lt;script&gt;" in view.turns[0].html and "<script>" not in view.turns[0].html
    assert "es: Hola" in view.turns[0].html and "not translated (LLMRefused: 401)" in view.turns[1].html
    assert view.status == "<b>streaming</b> · local · 1:15 · session abcdef12" and view.level == 0.5


def test_errors_and_reconnects_read_in_plain_words():
    view = build_view(Transcript(), [], Status("cloud", None, 3, "failed", error="AuthenticationError: key refused", reconnects=2))
    assert "2 reconnects" in view.status and "AuthenticationError: key refused" in view.status and "failed" in view.status


def test_level_meter_scale():
    assert level_of(None) == 0.0 and level_of(float("-inf")) == 0.0 and level_of(-60) == 0.0
    assert level_of(0.0) == 1.0 and level_of(-15) == pytest.approx(0.75)
    assert dbfs(b"\x00\x00" * 160) == float("-inf") and dbfs(b"\xff\x7f" * 160) == pytest.approx(0.0, abs=0.01)


def test_only_what_changed_is_sent():
    one = build_view(transcript(turn(0, "a b")), [], STATUS)
    first = changes(None, one)
    assert first.appended == (one.turns[0].html,) and first.status and not first.rebuild
    assert changes(one, one).empty
    talking = build_view(transcript(turn(0, "a b"), turn(1, "c", final=False)), [], STATUS)
    only_partial = changes(one, talking)
    assert only_partial.partial == "c" and only_partial.status is None and not only_partial.appended and not only_partial.updated
    with_translation = build_view(transcript(turn(0, "a b")), [translated(0, "uno")], STATUS)
    update = changes(one, with_translation)
    assert update.updated == ((0, with_translation.turns[0].html),) and not update.appended
    two = build_view(transcript(turn(0, "a b"), turn(1, "c d")), [translated(0, "uno")], STATUS)
    assert changes(with_translation, two).appended == (two.turns[1].html,)


def test_old_rows_scroll_off_and_the_rows_are_rebuilt():
    before = build_view(transcript(*(turn(i, f"t{i}") for i in range(3))), [], STATUS, max_rows=3)
    after = build_view(transcript(*(turn(i, f"t{i}") for i in range(4))), [], STATUS, max_rows=3)
    diff = changes(before, after)
    assert diff.rebuild and len(diff.appended) == 3 and after.hidden_rows == 1 and "t3" in diff.appended[-1]


# --- the real widgets, following real sessions ---------------------------------------------------


def test_panel_follows_a_session_and_shows_translations_under_turns(serve, make_wav, tmp_path):
    replay = serve(turns_script(even_turns(TEXTS), "A"))
    session = Session(make_wav(6.0), url=replay.url, api_key=API_KEY, folder=None, realtime=True,
                      translate_to="es", translator="apertium")
    panel = LivePanel(session.start())
    partials: list[str] = []
    panel.partial.observe(lambda change: partials.append(change["new"]), names="value")
    session.wait(timeout=30)
    try:
        wait_until(lambda: len(panel.turns.children) == 3 and all("es: " in row.value for row in panel.turns.children), 10)
        rows = [row.value for row in panel.turns.children]
        assert "One two three." in rows[0] and "es: Uno dos tres." in rows[0] and "Seven eight." in rows[2]
        wait_until(lambda: "stopped" in panel.status.value, 10)
        assert "local" in panel.status.value
        assert any(p for p in partials)  # the live line showed words while the turns were spoken
        elapsed = session.elapsed_s + 1
        assert panel.frames <= 10 * elapsed + 2  # at most 10 updates a second
        assert panel.start_button.disabled is False and panel.stop_button.disabled is True
        idle_from = panel.wakeups
        time.sleep(1.5)
        assert panel.wakeups - idle_from <= 3  # a stopped panel looks once a second, not ten times
    finally:
        panel.close()


def test_buttons_only_enqueue_and_the_ui_thread_does_the_work(serve, make_wav, tmp_path):
    replay = serve(turns_script(even_turns(TEXTS), "B"))
    panel = LivePanel(file=make_wav(6.0), session_options={"url": replay.url, "api_key": API_KEY, "realtime": False,
                                                           "folder": tmp_path / "s"},
                      coach_options={"use_llm": False})
    try:
        panel.backend.value = "apertium"
        panel.start_button.click()  # on this thread: only a command is queued
        wait_until(lambda: panel.session is not None, 10)
        panel.session.wait(timeout=30)
        wait_until(lambda: len(panel.turns.children) == 3, 10)
        panel.coach_button.click()
        wait_until(lambda: panel.report.layout.display is None, 10)
        markdown = panel.report.outputs[0]["data"]["text/markdown"]
        assert markdown.startswith("# Speaking coach report") and "words per minute" in markdown
        assert panel.report.outputs[1]["data"]["image/svg+xml"].startswith("<svg")
        assert panel.command_threads == ["live-stt-ui", "live-stt-ui", "live-stt-ui"]  # start, coach, report
        assert threading.current_thread().name not in panel.command_threads
    finally:
        panel.close()


def test_translation_settings_change_from_the_panel(serve, make_wav, tmp_path):
    replay = serve(turns_script(even_turns(TEXTS), "B"))
    session = Session(make_wav(6.0), url=replay.url, api_key=API_KEY, folder=None, realtime=False,
                      translate_to="es", translator="apertium").start()
    panel = LivePanel(session)
    try:
        session.wait(timeout=30)
        panel.backend.value = "apertium"
        panel.target.value = "Spanish"
        panel.retranslate_button.click()
        wait_until(lambda: len(session.translation.results) == 6, 10)  # three turns, translated twice
        assert session.translation.targets == ("es",)
    finally:
        panel.close()


def test_the_browser_microphone_is_a_source_of_the_panel(serve, tmp_path):
    replay = serve(turns_script(even_turns(TEXTS), "B"))
    panel = LivePanel(session_options={"url": replay.url, "api_key": API_KEY, "folder": None})
    try:
        panel.source.value = "browser microphone"
        wait_until(lambda: len(panel.mic_slot.children) == 1, 10)
        assert type(panel.mic_slot.children[0]).__name__ == "BrowserMic" and panel.file.layout.display == "none"
        panel.start_button.click()
        wait_until(lambda: panel.session is not None and panel.session.running, 10)
        assert panel.session.source is panel.browser_mic.source  # the page's audio feeds this session
        panel.stop_button.click()
        panel.session.wait(timeout=20)  # end-of-file from the panel: the session ends cleanly
        assert panel.session.error is None and panel.session.source.closed
    finally:
        panel.close()


def test_a_followed_session_shows_its_own_source(serve, make_wav, tmp_path):
    replay = serve(turns_script(even_turns(TEXTS), "B"))
    wav = make_wav(1.0)
    for source, label, file_shown in ((wav, "audio file", True), (QueueSource(), "browser microphone", False)):
        session = Session(source, url=replay.url, api_key=API_KEY, folder=None)
        panel = LivePanel(session)
        try:
            assert panel.source.value == label and (panel.file.layout.display != "none") is file_shown
            if file_shown:
                assert panel.file.value == str(wav)
            # setting the picker queued nothing: following a session makes no microphone widget of its own
            assert panel.commands.empty() and panel.command_threads == [] and panel.mic_slot.children == ()
        finally:
            panel.close()
