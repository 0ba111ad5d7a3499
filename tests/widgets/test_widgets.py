"""The live panel without a browser: the pure view with data, then the real widgets following real
sessions streamed through the replay server (their values are what a browser would be sent)."""

from __future__ import annotations

import dataclasses
import html
import re
import threading
import time

import pytest
from helpers import API_KEY, wait_until

from live_stt_kernel import QueueSource, Session
from live_stt_kernel.events import SessionBegan, Turn, Word
from live_stt_kernel.language.backends import as_translator
from live_stt_kernel.language.translation import Translation
from live_stt_kernel.session import dbfs
from live_stt_kernel.transcript import Transcript
from live_stt_kernel.v3.replay import even_turns, turns_script
from live_stt_kernel.widgets import LivePanel
from live_stt_kernel.widgets.view import LARGE_TEXT_PX, STYLESHEET, Status, build_view, changes, level_of, live_html

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


def translated(order: int, text: str | None, error: str | None = None, target: str = "es") -> Translation:
    return Translation(session_id="s1", turn_order=order, target=target, source="", text=text, backend="b", model="m", error=error)


def text_of(markup: str) -> str:
    """What a browser shows of some HTML: the text, tags removed, blocks on their own lines."""
    return html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<div", "\n<div", markup))).strip()


def lines_under(view_html: str) -> list[str]:
    """The lines under a turn, as their text (the turn's own line first)."""
    return [line.strip() for line in text_of(view_html).splitlines()]


# --- the pure view ---------------------------------------------------------------------------


def test_rows_show_each_turn_with_its_translation_escaped():
    state = transcript(turn(0, "Hello <script>alert(1)</script>"), turn(1, "Bye"), turn(2, "still talking", final=False))
    view = build_view(state, [translated(0, "Hola"), translated(1, None, "LLMRefused: 401")], STATUS, level_dbfs=-30.0)
    assert len(view.turns) == 2 and view.partial == "still talking"
    assert "&lt;script&gt;" in view.turns[0].html and "<script>" not in view.turns[0].html
    assert lines_under(view.turns[0].html)[1] == "es: Hola"
    assert lines_under(view.turns[1].html)[1] == "es: not translated (LLMRefused: 401)"
    assert view.status == "<b>streaming</b> · local · 1:15 · session abcdef12" and view.level == 0.5


def test_errors_and_reconnects_read_in_plain_words():
    view = build_view(Transcript(), [], Status("cloud", None, 3, "failed", error="AuthenticationError: key refused", reconnects=2))
    assert "2 reconnects" in view.status and "AuthenticationError: key refused" in view.status and "failed" in view.status


def test_only_the_current_languages_show_under_each_turn():
    state = transcript(turn(0, "Hello"), turn(1, "Bye"))
    items = [translated(0, "Hola"), translated(0, "Bonjour", target="fr"), translated(1, "Adiós"), translated(1, "Au revoir", target="fr")]
    everything = build_view(state, items, STATUS)  # no live translation to ask: every language found
    assert lines_under(everything.turns[0].html)[1:] == ["es: Hola", "fr: Bonjour"]
    switched = build_view(state, items, STATUS, targets=("fr",))  # configure(to="fr"): French replaces Spanish
    assert [lines_under(t.html)[1:] for t in switched.turns] == [["fr: Bonjour"], ["fr: Au revoir"]]
    asked_for_all = build_view(state, items, STATUS, targets=("fr",), show_all=True)  # current first, then the rest
    assert lines_under(asked_for_all.turns[0].html)[1:] == ["fr: Bonjour", "es: Hola"]
    de_not_yet = build_view(state, items, STATUS, targets=("de",))
    assert [lines_under(t.html)[1:] for t in de_not_yet.turns] == [[], []]


def test_a_pending_translation_shows_as_pending_with_its_draft():
    state = transcript(turn(0, "Hello there"), turn(1, "How are you"), turn(2, "Fine"))
    pending = {(("s1", 0), "fr"): "", (("s1", 1), "fr"): "Comment <b>allez", (("s1", 2), "es"): ""}
    view = build_view(state, [translated(2, "Bien")], STATUS, targets=("fr", "es"), pending=pending)
    waiting, drafting, asked_again = (t.html for t in view.turns)
    assert 'class="lsk-pending"' in waiting and lines_under(waiting)[1:] == ["fr: … translating"]
    assert 'class="lsk-draft"' in drafting and "&lt;b&gt;" in drafting  # the draft so far, escaped
    assert lines_under(drafting)[1:] == ["fr: Comment <b>allez … translating"]
    # asked again (a re-translation): the old line stays, marked, until the new one comes
    assert "lsk-updating" in asked_again and lines_under(asked_again)[1:] == ["es: Bien … updating"]
    # pending lines are not translations: a reader of .lsk-translation never takes a draft for one
    assert "lsk-translation" not in waiting and "lsk-translation" not in drafting
    done = build_view(state, [translated(2, "Bien"), translated(0, "Salut", target="fr")], STATUS, targets=("fr", "es"))
    assert lines_under(done.turns[0].html)[1:] == ["fr: Salut"] and changes(view, done).updated[0][0] == 0


def test_a_line_that_is_not_a_translation_is_marked_unverified():
    item = dataclasses.replace(translated(0, "Ja, das macht Sinn.", target="de"), problem="answers instead of translating")
    view = build_view(transcript(turn(0, "Does that make sense?")), [item], STATUS, targets=("de",))
    row = view.turns[0].html
    assert 'class="lsk-unverified"' in row and "lsk-translation" not in row
    assert lines_under(row)[1:] == ["de: Ja, das macht Sinn. ⚠ unverified"]
    assert 'title="answers instead of translating"' in row


def test_large_text_is_28_px_or_more_for_every_line_a_class_reads():
    assert min(LARGE_TEXT_PX.values()) >= 28
    for name, px in LARGE_TEXT_PX.items():
        assert f".lsk-panel.lsk-large .{name} {{ font-size: {px}px; }}" in STYLESHEET
    state = transcript(turn(0, "Hello"), turn(1, "Bye"), turn(2, "still", final=False))
    view = build_view(state, [translated(0, "Hola"), translated(1, None, "boom")], STATUS, targets=("es", "fr"),
                      pending={(("s1", 0), "fr"): "Bon"})
    markup = "".join(t.html for t in view.turns) + live_html(view.partial)
    used = set(re.findall(r'class="([^"]+)"', markup))
    classes = {c for group in used for c in group.split()}
    # every element that carries words has a large size (failed lines are .lsk-translation too)
    assert {"lsk-turn", "lsk-translation", "lsk-pending", "lsk-live"} <= classes
    assert 'class="lsk-live"' in live_html("x") and live_html("").startswith('<div class="lsk-live">')


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
        wait_until(lambda: len(panel.turns.children) == 3
                   and all("es: " in text_of(row.value) for row in panel.turns.children), 10)
        rows = [text_of(row.value) for row in panel.turns.children]
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
        wait_until(lambda: panel.coach_button.description == "Coach" and panel.report.layout.display is None, 10)
        markdown = panel.report.outputs[0]["data"]["text/markdown"]
        assert markdown.startswith("# Speaking coach report")  # the metrics only (use_llm=False)
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


def test_the_controls_show_settings_changed_from_code_but_never_undo_the_users_choice(serve, make_wav, gateway):
    llm = gateway()
    replay = serve(turns_script(even_turns(TEXTS), "B"))
    session = Session(make_wav(6.0), url=replay.url, api_key=API_KEY, folder=None, realtime=False,
                      translate_to="es", translator="apertium").start()
    panel = LivePanel(session)
    try:
        session.wait(timeout=30)
        wait_until(lambda: panel.controls() == ("es", "apertium", "apertium", ""), 10, what="the session's settings")
        prompt = "Translate into {language} for a class."
        session.translation.configure(to=["fr", "de"], translator="openai", base_url=llm.url, api_key="k", model="m1",
                                      prompt=prompt)
        wait_until(lambda: panel.controls() == ("fr, de", "openai", "m1", prompt), 10, what="settings changed from code")
        panel.target.value = "it"  # the user starts choosing: frames no longer touch the controls
        session.translation.configure(to="ca")
        time.sleep(0.5)
        assert panel.target.value == "it" and session.translation.targets == ("ca",)
        translator = session.translation.translator
        panel.apply_button.click()  # the user's choice applies, and only what they changed
        wait_until(lambda: session.translation.targets == ("it",), 10, what="apply")
        assert session.translation.translator is translator and session.translation.prompt == prompt
        assert "failed" not in panel.status.value
        session.translation.configure(to="es")
        wait_until(lambda: panel.target.value == "es", 10, what="the controls following code again after Apply")
    finally:
        panel.close()


def test_presentation_mode_from_code(serve, make_wav):
    replay = serve(turns_script(even_turns(TEXTS), "B"))
    session = Session(make_wav(1.0), url=replay.url, api_key=API_KEY, folder=None)
    panel = LivePanel(session, presentation=True)
    try:
        assert panel.presentation and panel.presenter.large and panel.presenter.compact
        panel.presentation = False  # at once: the page's buttons and this property are the presenter's only writers
        assert not panel.presenter.large and not panel.presenter.compact and not panel.presentation
        panel.presenter.large = True  # the page's "Large text" alone is not presentation mode
        assert not panel.presentation and panel.commands.empty()
        assert panel.presenter in panel.widget.children[2].children  # beside the status line
        assert "lsk-controls" in panel.widget.children[0]._dom_classes
        assert panel.widget.children.index(panel.turns) + 1 == panel.widget.children.index(panel.partial)
    finally:
        panel.close()


def test_coaching_progress_streams_into_the_panel(serve, make_wav, gateway, tmp_path):
    from gateway_server import Reply

    words = " ".join(f"word{i}" for i in range(40))
    llm = gateway(Reply(gap_s=0.05), respond=lambda body: f"## Analysis\n{words}")
    replay = serve(turns_script(even_turns(TEXTS), "B"))
    session = Session(make_wav(6.0), url=replay.url, api_key=API_KEY, folder=None, realtime=False).start()
    panel = LivePanel(session, coach_options={"backend": "openai", "base_url": llm.url, "api_key": "k"})
    seen: list[str] = []
    panel.coach_button.observe(lambda change: seen.append(change["new"]), names="description")
    try:
        session.wait(timeout=30)
        panel.coach_button.click()
        wait_until(lambda: seen and seen[-1] == "Coach", 30, what="the report")
        progress = [d for d in seen if d.startswith("Coaching… ") and d.endswith(" words")]
        assert len(progress) >= 2, seen  # the text so far was shown while the model wrote, more than once
        assert "word39" in panel.report.outputs[0]["data"]["text/markdown"]
    finally:
        panel.close()


def test_closing_the_panel_stops_the_coaching_thread_and_queues_nothing_more(serve, make_wav, gateway):
    from gateway_server import Reply

    words = " ".join(f"word{i}" for i in range(400))
    llm = gateway(Reply(gap_s=0.1), respond=lambda body: f"## Analysis\n{words}")  # 40 s of writing
    replay = serve(turns_script(even_turns(TEXTS), "B"))
    session = Session(make_wav(6.0), url=replay.url, api_key=API_KEY, folder=None, realtime=False).start()
    panel = LivePanel(session, coach_options={"backend": "openai", "base_url": llm.url, "api_key": "k"})
    try:
        session.wait(timeout=30)
        panel.coach_button.click()
        wait_until(lambda: panel.coach_button.description.startswith("Coaching… "), 30, what="the model writing")
        coaching = next(t for t in threading.enumerate() if t.name == "live-stt-coach")
        started = time.monotonic()
        panel.close()
        assert not coaching.is_alive() and time.monotonic() - started < 3  # stopped at the model's next piece
        left = panel.commands.qsize()  # queued before close(), if the UI thread had not run it yet
        time.sleep(0.5)  # the model would have written five more pieces by now
        assert panel.closed and panel.commands.qsize() == left  # nothing queued for a UI thread that is gone
        panel.enqueue("coach")  # nor from a click
        assert panel.commands.qsize() == left
        assert "word399" not in str(panel.report.outputs) and panel.coach_button.description != "Coach"
    finally:
        panel.close()


def test_a_translation_in_progress_shows_as_pending_until_it_lands(serve, make_wav, gateway):
    from gateway_server import Reply

    llm = gateway(*[Reply(delay_s=1.0, gap_s=0.1) for _ in range(3)])  # a slow model: 1 s before the first word
    replay = serve(turns_script(even_turns(TEXTS), "B"))
    session = Session(make_wav(6.0), url=replay.url, api_key=API_KEY, folder=None, realtime=False, translate_to="fr",
                      translator=as_translator("openai", base_url=llm.url, api_key="k", model="m"))
    panel = LivePanel(session.start())
    rows = lambda: [row.value for row in panel.turns.children]  # noqa: E731
    try:
        wait_until(lambda: any("lsk-pending" in row and "… translating" in text_of(row) for row in rows()), 20,
                   what="a pending translation on screen")
        session.wait(timeout=30)
        wait_until(lambda: len(rows()) == 3 and all("lsk-pending" not in row and "fr: " in text_of(row) for row in rows()),
                   20, what="every translation landed")
        assert "One two three." in text_of(rows()[0]).splitlines()[1]  # the model's answer under its turn
    finally:
        panel.close()


def test_a_prompt_apertium_cannot_use_is_refused_on_the_status_line(serve, make_wav):
    replay = serve(turns_script(even_turns(TEXTS), "B"))
    session = Session(make_wav(6.0), url=replay.url, api_key=API_KEY, folder=None, realtime=False,
                      translate_to="es", translator="apertium").start()
    panel = LivePanel(session)
    try:
        session.wait(timeout=30)
        wait_until(lambda: panel.controls()[1] == "apertium", 10)
        panel.prompt.value = "Translate into {language}, politely."
        panel.apply_button.click()
        wait_until(lambda: "apply failed" in panel.status.value, 10)
        time.sleep(1.5)  # frames go on: the refusal stays where the user looks
        assert "apply failed: ConfigurationError" in panel.status.value and "LLM backend" in panel.status.value
        assert session.translation.prompt is None  # nothing was changed
        panel.prompt.value = ""
        panel.apply_button.click()
        wait_until(lambda: "failed" not in panel.status.value, 10)
    finally:
        panel.close()


def test_the_live_line_shows_settled_words_steady_and_the_guess_lighter_hidden_in_large_text():
    words = (Word(text="hello", start_ms=0, end_ms=300, is_final=True), Word(text="<and>", start_ms=300, end_ms=500, is_final=False))
    state = transcript(turn(0, "a b")).apply(Turn(turn_order=1, transcript="hello", words=words))
    view = build_view(state, [], STATUS)
    assert view.partial == 'hello <span class="lsk-tentative">&lt;and&gt;</span>'
    assert ".lsk-panel.lsk-large .lsk-tentative { display: none; }" in STYLESHEET
