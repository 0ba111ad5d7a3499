"""Properties of the transcript fold and the settler (hypothesis), on any sequence of events.

A small reference model keeps what the fold promises (`transcript` module docstring and `Transcript._apply_turn`):
one row per (session id, turn_order) in the order of each turn's first final; a later final replaces the row,
except that an unformatted final never replaces a formatted one; partials never touch the rows, and the live
line is the latest partial's words, replaced rather than accumulated; snapshots are never mutated.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from live_stt_kernel.events import (
    Disconnected,
    Event,
    Heartbeat,
    Reconnected,
    Revision,
    SessionBegan,
    SessionEnded,
    SpeakerRevision,
    Turn,
    Word,
)
from live_stt_kernel.transcript import Transcript, TurnSettler
from live_stt_kernel.v3.protocol import live_line

FAST = settings(max_examples=75, deadline=None, database=None)  # bounded; no .hypothesis/ folder left behind

texts = st.sampled_from(["", "hello", "Hello.", "there", "how are you", "HOW"])
speakers = st.none() | st.sampled_from(["A", "B"])
words = st.lists(st.builds(Word, text=texts, start_ms=st.integers(0, 9_000), end_ms=st.integers(0, 9_000),
                           confidence=st.floats(0, 1), is_final=st.booleans(), speaker=speakers), max_size=3).map(tuple)
turns = st.builds(Turn, turn_order=st.integers(0, 4), transcript=texts, words=words, end_of_turn=st.booleans(),
                  formatted=st.booleans(), speaker=speakers, latency_s=st.none() | st.floats(0, 5))
events = st.lists(st.one_of(
    turns, turns, turns, turns,  # mostly turns
    st.builds(SessionBegan, session_id=st.sampled_from(["s1", "s2"])),
    st.builds(SessionEnded, audio_duration_seconds=st.just(1.0), session_duration_seconds=st.just(1.0)),
    st.builds(Disconnected, reason=st.just("dropped"), attempt=st.integers(1, 3), retry_in_s=st.just(0.5)),
    st.builds(Reconnected, attempt=st.integers(1, 3), reason=st.just("dropped"), resume_at_ms=st.integers(0, 60_000)),
    st.builds(SpeakerRevision, revisions=st.lists(
        st.builds(Revision, turn_order=st.integers(0, 4), speaker=speakers, words=st.none() | words), max_size=2).map(tuple)),
    st.just(Heartbeat()),
), max_size=20)


@dataclass
class Row:
    text: str
    formatted: bool
    speaker: str | None
    latency: float | None


class Model:
    """What the rows must be, kept the plain way."""

    def __init__(self) -> None:
        self.session = ""
        self.rows: dict[tuple[str, int], Row] = {}  # insertion order: the order of first finals

    def apply(self, event: Event) -> None:
        if isinstance(event, SessionBegan):
            self.session = event.session_id
        elif isinstance(event, Turn) and event.end_of_turn:
            key = (self.session, event.turn_order)
            text = event.transcript or live_line(event.words)
            old = self.rows.get(key)
            if old is None:
                self.rows[key] = Row(text, event.formatted, event.speaker, event.latency_s)
            elif event.formatted or not old.formatted:  # an unformatted final never replaces a formatted one
                self.rows[key] = Row(text, event.formatted, event.speaker or old.speaker,
                                     old.latency if event.latency_s is None else event.latency_s)
        elif isinstance(event, SpeakerRevision):
            for revision in event.revisions:
                row = self.rows.get((self.session, revision.turn_order))
                if row is not None:
                    row.speaker = revision.speaker or row.speaker


def fold(history: list[Event]) -> list[Transcript]:
    """Every snapshot, the empty one first."""
    snapshots = [Transcript()]
    for event in history:
        snapshots.append(snapshots[-1].apply(event))
    return snapshots


@FAST
@given(history=events)
def test_the_fold_keeps_one_row_per_turn_as_the_model_says(history):
    model = Model()
    t = Transcript()
    for event in history:
        before, rows_before, positions_before, open_before = t, t.rows, dict(t.positions), t.open_turn
        t = t.apply(event)
        model.apply(event)
        # the old snapshot is untouched
        assert (before.rows, dict(before.positions), before.open_turn) == (rows_before, positions_before, open_before)
        # the rows: the model's, in the order of first finals, each at its own index
        assert [row.key for row in t.rows] == list(model.rows)
        assert [(r.text, r.formatted, r.speaker, r.end_of_turn_latency) for r in t.rows] == [
            (m.text, m.formatted, m.speaker, m.latency) for m in model.rows.values()]
        assert [row.turn_index for row in t.rows] == list(range(len(t.rows)))
        assert dict(t.positions) == {row.key: i for i, row in enumerate(t.rows)}
        assert [r.key for r in t.rows[: len(before.rows)]] == [r.key for r in before.rows]  # rows are never reordered or lost
        if not isinstance(event, (Turn, SpeakerRevision)):
            assert t.rows == before.rows
        changed = {row.key for row in t.changed_rows(before)}
        if isinstance(event, Turn):
            assert changed <= {(t.session_id or "", event.turn_order)}
        elif isinstance(event, SpeakerRevision):
            assert changed <= {(t.session_id or "", r.turn_order) for r in event.revisions}
        else:
            assert not changed


@FAST
@given(history=events)
def test_partials_replace_the_live_line_and_never_touch_the_rows(history):
    snapshots = fold(history)
    for event, before, after in zip(history, snapshots, snapshots[1:]):
        if isinstance(event, Turn) and not event.end_of_turn:
            if before.get((before.session_id or "", event.turn_order)) is not None:
                assert after == before  # a straggling partial of a finished turn changes nothing
            else:
                assert after.rows == before.rows
                assert after.open_turn == event and after.partial == live_line(event.words)  # replaced, not appended
        elif isinstance(event, Turn):  # a final closes its own turn's live line, not a later one's
            if before.open_turn is None or before.open_turn.turn_order == event.turn_order:
                assert after.open_turn is None and after.partial == ""
            else:
                assert after.open_turn == before.open_turn
        elif isinstance(event, (SessionBegan, SessionEnded, Disconnected, Reconnected)):
            assert after.open_turn is None and after.partial == ""
            if isinstance(event, (SessionEnded, SessionBegan)):  # ended from Termination until the next session begins
                assert after.ended == isinstance(event, SessionEnded)
            else:
                assert after.ended == before.ended
        if isinstance(event, Reconnected):
            assert after.reconnects == before.reconnects + 1 and after.offset_ms == event.resume_at_ms
            assert after.disconnected is None


@FAST
@given(history=events)
def test_saved_rows_fold_back_into_the_same_transcript_rows(history):
    final = fold(history)[-1]
    assert Transcript.from_records(final.rows).rows == final.rows
    assert Transcript.from_records([*final.rows, *final.rows]).rows == final.rows  # a later version of a key wins
    for row in final.rows:
        if row.words:
            assert row.start is not None and row.end is not None and row.confidence is not None
        else:
            assert row.start is None and row.end is None and row.confidence is None


@FAST
@given(history=events, steps=st.lists(st.floats(0, 1), min_size=21, max_size=21), expect_formatted=st.booleans())
def test_the_settler_gives_each_row_once_and_all_of_them_by_the_end(history, steps, expect_formatted):
    settler = TurnSettler(expect_formatted=expect_formatted, grace_s=1.5)
    now, first_seen, given_out = 0.0, {}, []
    snapshots = fold(history)
    for snapshot, step in zip(snapshots, steps):
        now += step
        for row in snapshot.rows:
            first_seen.setdefault(row.key, now)
        out = settler.update(snapshot, now)
        assert [r.turn_index for r in out] == sorted(r.turn_index for r in out)  # in turn order
        for row in out:
            assert (snapshot.ended or not expect_formatted or row.formatted or row.turn_index < len(snapshot.rows) - 1
                    or now - first_seen[row.key] >= 1.5)
        given_out += [r.key for r in out]
    given_out += [r.key for r in settler.update(snapshots[-1], now, ended=True)]
    assert len(given_out) == len(set(given_out))  # each once
    assert set(given_out) >= {row.key for row in snapshots[-1].rows}  # and every row by the end
