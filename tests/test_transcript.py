"""The pure transcript reducer, fed the message sequences of each v3 behaviour."""

from __future__ import annotations

import json

import pytest

from live_stt_kernel.events import (
    Disconnected,
    Reconnected,
    Revision,
    SessionBegan,
    SessionEnded,
    SpeakerRevision,
    Turn,
    Word,
)
from live_stt_kernel.transcript import COLUMNS, Transcript, TurnRecord, TurnSettler
from live_stt_kernel.v3.protocol import parse
from live_stt_kernel.v3.replay import even_turns, turns_script

TEXTS = ["hello there my friend", "how are you today", "fine thanks"]


def messages(behaviour: str) -> list[dict]:
    return [step.action for step in turns_script(even_turns(TEXTS), behaviour).steps]


def fold(events, transcript: Transcript | None = None, *, session: str = "s1") -> tuple[Transcript, list[str]]:
    """Fold events after a Begin; return the transcript and the live line seen after each event."""
    t = (transcript or Transcript()).apply(SessionBegan(session_id=session))
    lines = []
    for event in events:
        t = t.apply(event)
        lines.append(t.partial)
    return t, lines


def parsed(behaviour: str):
    return [parse(json.dumps(m)) for m in messages(behaviour)]


@pytest.mark.parametrize("behaviour, texts", [
    ("A", ["Hello there my friend.", "How are you today.", "Fine thanks."]),
    ("B", ["Hello there my friend.", "How are you today.", "Fine thanks."]),
    ("C", TEXTS),
])
def test_each_behaviour_folds_into_one_row_per_turn(behaviour, texts):
    t, _ = fold(parsed(behaviour))
    assert [r.text for r in t.rows] == texts
    assert [r.turn_order for r in t.rows] == [0, 1, 2]
    assert [r.turn_index for r in t.rows] == [0, 1, 2]
    assert t.partial == ""


def test_behaviour_a_sends_two_finals_per_turn_and_the_formatted_one_wins():
    finals = [m for m in messages("A") if m.get("end_of_turn")]
    assert len(finals) == 6  # the naive client would translate six turns
    t, _ = fold(parsed("A"))
    assert all(r.formatted for r in t.rows) and len(t.rows) == 3


def test_behaviour_c_partials_replace_rather_than_append():
    _, lines = fold(parsed("C"))
    # early hypotheses were upper-cased and later revised: the line shows the latest hypothesis only
    # SpeechStarted, four partials (the first word revised by the last), then the final clears the line
    assert lines[:6] == ["", "HELLO", "HELLO there", "HELLO there my", "hello there my friend", ""]


def test_live_line_includes_the_non_final_last_word():
    _, lines = fold(parsed("A"))
    assert lines[:4] == ["hello", "hello there", "hello there my", "hello there my friend"]


def test_a_straggling_partial_or_a_late_unformatted_final_changes_nothing():
    t, _ = fold(parsed("A"))
    late_partial = Turn(turn_order=0, transcript="", words=(Word(text="noise", start_ms=0, end_ms=1, is_final=False),))
    late_unformatted = Turn(turn_order=0, transcript="hello there my friend", end_of_turn=True, formatted=False)
    assert t.apply(late_partial) == t
    assert t.apply(late_unformatted).rows[0].text == "Hello there my friend."


def test_rows_carry_times_confidence_and_latency():
    words = (Word(text="hi", start_ms=1000, end_ms=1400, confidence=0.5), Word(text="there", start_ms=1500, end_ms=2000, confidence=1.0))
    turn = Turn(turn_order=0, transcript="hi there", words=words, end_of_turn=True, latency_s=0.31, speaker="A", language_code="en")
    t = Transcript().apply(SessionBegan(session_id="abc")).apply(turn)
    row = t.rows[0]
    assert (row.session_id, row.start, row.end, row.confidence) == ("abc", 1.0, 2.0, 0.75)
    assert (row.end_of_turn_latency, row.speaker, row.language) == (0.31, "A", "en")


def test_sessions_are_keyed_apart_and_offset_on_one_clock():
    t, _ = fold(parsed("B"), session="first")
    t, _ = fold(parsed("B"), t.apply(SessionEnded(audio_duration_seconds=10, session_duration_seconds=10)), session="second")
    assert len(t.rows) == 6  # same turn_order values, different sessions: no collision
    assert [r.turn_index for r in t.rows] == list(range(6))
    shifted = Transcript().apply(SessionBegan(session_id="x"), offset_ms=60_000).apply(parse(json.dumps(messages("B")[-1])))
    assert shifted.rows[0].start == pytest.approx(60 + messages("B")[-1]["words"][0]["start"] / 1000)


def test_speaker_revision_updates_the_row_and_its_words():
    t, _ = fold(parsed("B"))
    revised = t.apply(SpeakerRevision(revisions=(Revision(turn_order=1, speaker="B"), Revision(turn_order=99, speaker="C"))))
    assert revised.rows[1].speaker == "B" and {w.speaker for w in revised.rows[1].words} == {"B"}
    assert revised.rows[0] is t.rows[0]
    assert revised.changed_rows(t) == [revised.rows[1]]


def test_apply_never_mutates_the_snapshot():
    t, _ = fold(parsed("A")[:5])
    before = (t.rows, dict(t.positions), t.open_turn)
    t.apply(parse(json.dumps(messages("A")[5])))
    assert (t.rows, dict(t.positions), t.open_turn) == before


def test_records_round_trip_and_fold_by_key():
    t, _ = fold(parsed("A"))
    saved = [TurnRecord.from_dict(json.loads(json.dumps(r.to_dict()))) for r in t.rows]
    assert saved == list(t.rows)
    older = TurnRecord.from_dict(dict(t.rows[0].to_dict(), text="hello there my friend", formatted=False))
    again = Transcript.from_records([older, *saved])
    assert [r.text for r in again.rows] == [r.text for r in t.rows]


def test_frame_has_the_documented_columns_and_types():
    t, _ = fold(parsed("A"))
    df = t.to_frame()
    assert list(df.columns) == COLUMNS
    assert len(df) == 3 and df["text"].tolist()[0] == "Hello there my friend."
    assert str(df["start"].dtype) == "float64" and str(df["turn_index"].dtype) == "int64"
    assert str(df["text"].dtype) == "string" and df["speaker"].isna().all()
    assert df["words"][0][0]["text"] == "hello"
    empty = Transcript().to_frame()
    assert list(empty.columns) == COLUMNS and len(empty) == 0


def test_settler_releases_each_turn_once_after_its_formatted_final():
    settler = TurnSettler(expect_formatted=True, grace_s=1.5)
    t = Transcript().apply(SessionBegan(session_id="s"))
    released = []
    for now, event in enumerate(parsed("A")):
        t = t.apply(event)
        released += [(r.text, now) for r in settler.update(t, float(now) * 0.01)]
    assert [text for text, _ in released] == ["Hello there my friend.", "How are you today.", "Fine thanks."]


def test_settler_waits_for_formatting_only_as_long_as_the_grace_period():
    settler = TurnSettler(expect_formatted=True, grace_s=1.0)
    t = Transcript().apply(SessionBegan(session_id="s")).apply(Turn(turn_order=0, transcript="hi", end_of_turn=True))
    assert settler.update(t, 0.0) == []
    assert settler.update(t, 0.5) == []
    assert [r.text for r in settler.update(t, 1.0)] == ["hi"]
    assert settler.update(t, 5.0) == []
    unformatted_only = TurnSettler(expect_formatted=False)
    assert [r.text for r in unformatted_only.update(t, 0.0)] == ["hi"]
    ended = TurnSettler(expect_formatted=True)
    assert [r.text for r in ended.update(t, 0.0, ended=True)] == ["hi"]


def test_a_revision_with_new_words_brings_their_times_and_confidence():
    began = Transcript().apply(SessionBegan(session_id="s", expires_at=0, received_at=0.0))
    empty = began.apply(Turn(turn_order=0, transcript="", words=(), end_of_turn=True))
    word = Word(text="hi", start_ms=1200, end_ms=1500, confidence=0.5, is_final=True)
    revised = empty.apply(SpeakerRevision(revisions=(Revision(turn_order=0, speaker="A", words=(word,)),)))
    row = revised.rows[0]
    assert row.words == (word,) and (row.start, row.end, row.confidence, row.speaker) == (1.2, 1.5, 0.5, "A")


def test_the_live_line_splits_into_settled_words_and_a_tentative_tail():
    words = (Word(text="hello", start_ms=0, end_ms=300, is_final=True), Word(text="and", start_ms=300, end_ms=400, is_final=True),
             Word(text="wellcome", start_ms=400, end_ms=800, is_final=False), Word(text="to", start_ms=800, end_ms=900, is_final=False))
    t = Transcript().apply(SessionBegan(session_id="s")).apply(Turn(turn_order=0, transcript="hello and", words=words))
    assert t.partial_parts == ("hello and", "wellcome to") and t.partial == "hello and wellcome to"
    first_guess = Turn(turn_order=0, transcript="", words=tuple(Word(text=w.text, start_ms=0, end_ms=1, is_final=False) for w in words))
    assert Transcript().apply(SessionBegan(session_id="s")).apply(first_guess).partial_parts == ("", "hello and wellcome to")
    assert Transcript().partial_parts == ("", "")


def test_pro_partials_mark_no_word_final_so_the_words_two_partials_agree_on_are_steady():
    def partial(order: int, *texts: str) -> Turn:
        words = tuple(Word(text=w, start_ms=i * 300, end_ms=i * 300 + 250, is_final=False) for i, w in enumerate(texts))
        return Turn(turn_order=order, transcript=" ".join(texts), words=words)

    t = Transcript().apply(SessionBegan(session_id="s")).apply(partial(0, "Hello"))
    assert t.partial_parts == ("", "Hello")
    t = t.apply(partial(0, "Hello,", "there"))  # punctuation and case aside, the first word agrees
    assert t.partial_parts == ("Hello,", "there")
    t = t.apply(partial(0, "Hello", "there,", "my", "friend"))
    assert t.partial_parts == ("Hello there,", "my friend")
    t = t.apply(partial(0, "Hello", "their", "friends"))  # a re-transcription that changes a word: steady up to it
    assert t.partial_parts == ("Hello", "their friends")
    assert t.apply(partial(1, "Next", "one")).partial_parts == ("", "Next one")  # a new turn agrees with nothing yet


def test_a_server_warning_shows_until_the_next_final_turn():
    from live_stt_kernel.local.messages import behind_message
    from live_stt_kernel.widgets.view import Status, status_line

    events = parsed("A")
    first_final = next(i for i, e in enumerate(events) if isinstance(e, Turn) and e.end_of_turn)
    warning = parse(json.dumps(behind_message(3400)))
    t, _ = fold([*events[: first_final + 1], warning])
    assert t.warning is not None and "3.4 s behind" in t.warning and len(t.rows) == 1
    line = status_line(Status(engine="local", session_id="s1", elapsed_s=5, state="streaming", warning=t.warning))
    assert "⚠ decoding is 3.4 s behind" in line
    later, _ = fold(events[first_final + 1 :], t)
    assert later.warning is None and len(later.rows) == 3  # the next final: caught up, or warned again
    # a drop ends what the warning was about, and so does the session that takes over
    assert t.apply(Disconnected(reason="closed", attempt=1, retry_in_s=0.2)).warning is None
    assert t.apply(Reconnected(attempt=1, reason="closed", resume_at_ms=3000)).warning is None
    assert t.apply(SessionBegan(session_id="s2")).warning is None
