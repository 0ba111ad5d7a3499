"""The transcript: a pure, immutable fold of events into final turns plus the live line.

Final turns are keyed by (session id, ``turn_order``) and upserted, so duplicate formatted finals
(behaviour A), re-transcribing partials (behaviour C) and speaker revisions all land in one row.
Only the session worker calls ``apply``; everyone else reads the snapshot it publishes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType
from typing import Any

from .events import Disconnected, Event, Reconnected, ServerWarning, SessionBegan, SessionEnded, SpeakerRevision, Turn, Word
from .v3.protocol import live_line

Key = tuple[str, int]

COLUMNS = [
    "session_id",
    "turn_index",
    "turn_order",
    "start",
    "end",
    "text",
    "words",
    "confidence",
    "speaker",
    "language",
    "formatted",
    "end_of_turn_latency",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnRecord:
    """One finished turn. ``start``/``end`` are seconds on the recording's clock (continuous
    across sessions); word times stay in the server's milliseconds for that session."""

    session_id: str
    turn_order: int
    turn_index: int
    text: str
    words: tuple[Word, ...]
    start: float | None
    end: float | None
    confidence: float | None
    speaker: str | None
    language: str | None
    formatted: bool
    end_of_turn_latency: float | None

    @property
    def key(self) -> Key:
        """The row's identity: (session id, ``turn_order``)."""
        return (self.session_id, self.turn_order)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (words as dicts): one line of ``turns.jsonl``."""
        data = asdict(self)
        data["words"] = [asdict(w) for w in self.words]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TurnRecord:
        """A record from `to_dict`'s output (a line of ``turns.jsonl``); unknown keys are ignored."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["words"] = tuple(Word(**w) for w in data.get("words") or ())
        return cls(**known)


def _timing(words: tuple[Word, ...], offset_ms: int) -> tuple[float | None, float | None, float | None]:
    """A row's ``start``, ``end`` (seconds on the session's clock) and mean ``confidence`` from its words."""
    if not words:
        return None, None, None
    return ((offset_ms + min(w.start_ms for w in words)) / 1000, (offset_ms + max(w.end_ms for w in words)) / 1000,
            sum(w.confidence for w in words) / len(words))


def _record(turn: Turn, session_id: str, index: int, offset_ms: int) -> TurnRecord:
    words = turn.words
    start, end, confidence = _timing(words, offset_ms)
    return TurnRecord(
        session_id=session_id,
        turn_order=turn.turn_order,
        turn_index=index,
        text=turn.transcript or live_line(words),
        words=words,
        start=start,
        end=end,
        confidence=confidence,
        speaker=turn.speaker,
        language=turn.language_code,
        formatted=turn.formatted,
        end_of_turn_latency=turn.latency_s,
    )


def _agreement(before: Sequence[Word], now: Sequence[Word]) -> int:
    """How many leading words two partials of a turn agree on (case and punctuation aside), never the last one."""
    n = 0
    for a, b in zip(before, now, strict=False):
        if a.text.strip(_PUNCTUATION).lower() != b.text.strip(_PUNCTUATION).lower():
            break
        n += 1
    return min(n, max(0, len(now) - 1))


_PUNCTUATION = ".,?!;:\"'"


@dataclass(frozen=True, slots=True)
class Transcript:
    """Immutable snapshot. ``apply`` returns a new one and never mutates this."""

    session_id: str | None = None
    offset_ms: int = 0
    rows: tuple[TurnRecord, ...] = ()
    positions: Mapping[Key, int] = field(default_factory=lambda: MappingProxyType({}))
    open_turn: Turn | None = None
    ended: bool = False
    reconnects: int = 0
    disconnected: str | None = None  # why, while a new connection is being tried
    warning: str | None = None  # the server's latest Warning, until the next final turn (e.g. "decoding is behind")
    agreed: int = 0  # leading words of the open turn its last two partials agreed on (for servers that mark none final)

    @property
    def partial(self) -> str:
        """The live line: words of the turn still being spoken, or "" between turns."""
        return live_line(self.open_turn.words) if self.open_turn else ""

    @property
    def partial_parts(self) -> tuple[str, str]:
        """The live line in two parts: its leading words the server says it will not change (show them steady) and
        the tentative rest (its latest guess; show it lighter, or not at all where guesses must not flicker). The pro
        models mark no partial word final (each partial re-transcribes the turn): then the words the last two
        partials agree on are the steady part."""
        words = self.open_turn.words if self.open_turn else ()
        settled = next((i for i, w in enumerate(words) if not w.is_final), len(words)) or self.agreed
        return live_line(words[:settled]), live_line(words[settled:])

    def get(self, key: Key) -> TurnRecord | None:
        """The row for ``(session id, turn_order)``, or None."""
        position = self.positions.get(key)
        return None if position is None else self.rows[position]

    def apply(self, event: Event, *, offset_ms: int | None = None) -> Transcript:
        """Fold one event. ``offset_ms`` (with `SessionBegan`) places a new session's clock after
        the audio of the previous ones."""
        if isinstance(event, Turn):
            return self._apply_turn(event)
        if isinstance(event, SessionBegan):
            return replace(self, session_id=event.session_id, offset_ms=self.offset_ms if offset_ms is None else offset_ms,
                           open_turn=None, ended=False, warning=None)
        if isinstance(event, Disconnected):
            return replace(self, open_turn=None, disconnected=event.reason, warning=None)
        if isinstance(event, Reconnected):  # the next session's clock starts where its audio starts
            return replace(self, offset_ms=event.resume_at_ms, open_turn=None, reconnects=self.reconnects + 1,
                           disconnected=None, warning=None)
        if isinstance(event, SpeakerRevision):
            return self._apply_revision(event)
        if isinstance(event, SessionEnded):
            return replace(self, open_turn=None, ended=True)
        if isinstance(event, ServerWarning):
            return replace(self, warning=event.message or None)
        return self

    def _apply_turn(self, turn: Turn) -> Transcript:
        session_id = self.session_id or ""
        key = (session_id, turn.turn_order)
        existing = self.get(key)
        if not turn.end_of_turn:
            if existing is not None:  # a straggling partial of a finished turn changes nothing
                return self
            same_turn = self.open_turn is not None and self.open_turn.turn_order == turn.turn_order
            return replace(self, open_turn=turn, agreed=_agreement(self.open_turn.words, turn.words) if same_turn and self.open_turn else 0)
        open_turn = None if self.open_turn is None or self.open_turn.turn_order == turn.turn_order else self.open_turn
        if existing is not None:
            if existing.formatted and not turn.formatted:
                return replace(self, open_turn=open_turn)
            updated = _record(turn, session_id, existing.turn_index, self.offset_ms)
            if updated.end_of_turn_latency is None:
                updated = replace(updated, end_of_turn_latency=existing.end_of_turn_latency)
            rows = list(self.rows)
            rows[self.positions[key]] = replace(updated, speaker=updated.speaker or existing.speaker)
            return replace(self, rows=tuple(rows), open_turn=open_turn)
        record = _record(turn, session_id, len(self.rows), self.offset_ms)
        positions = dict(self.positions)
        positions[key] = len(self.rows)
        return replace(self, rows=(*self.rows, record), positions=MappingProxyType(positions), open_turn=open_turn,
                       warning=None)

    def _apply_revision(self, event: SpeakerRevision) -> Transcript:
        rows = list(self.rows)
        for revision in event.revisions:
            position = self.positions.get((self.session_id or "", revision.turn_order))
            if position is None:
                continue
            row = rows[position]
            if revision.words is not None:  # new words: their times and confidence with them
                start, end, confidence = _timing(revision.words, self.offset_ms)
                rows[position] = replace(row, speaker=revision.speaker or row.speaker, words=revision.words, start=start,
                                         end=end, confidence=confidence)
                continue
            words = tuple(replace(w, speaker=revision.speaker) if revision.speaker else w for w in row.words)
            rows[position] = replace(row, speaker=revision.speaker or row.speaker, words=words)
        return replace(self, rows=tuple(rows))

    def changed_rows(self, before: Transcript, turn_orders: Iterable[int] | None = None) -> list[TurnRecord]:
        """Rows that are new or replaced since an earlier snapshot; only ``turn_orders`` of the
        current session are looked at when given (cheap on long transcripts)."""
        if turn_orders is None:
            candidates: Iterable[TurnRecord] = self.rows
        else:
            candidates = [row for row in (self.get((self.session_id or "", order)) for order in dict.fromkeys(turn_orders)) if row]
        return [row for row in candidates if before.get(row.key) is not row]

    @classmethod
    def from_records(cls, records: Iterable[TurnRecord]) -> Transcript:
        """Fold saved rows (later versions of a key win) back into a transcript."""
        latest: dict[Key, TurnRecord] = {}
        for record in records:
            latest[record.key] = record
        rows = tuple(sorted(latest.values(), key=lambda r: r.turn_index))
        positions = {row.key: i for i, row in enumerate(rows)}
        return cls(rows=rows, positions=MappingProxyType(positions))

    def to_frame(self) -> Any:
        """A pandas DataFrame with one row per final turn (built on demand, never appended to).

        Text columns use pandas' nullable ``string`` dtype (missing = ``pd.NA``) so the frame is the
        same under pandas 2 and 3, live or loaded from disk."""
        import pandas as pd

        values = {name: [getattr(row, name) for row in self.rows] for name in COLUMNS}
        values["words"] = [[asdict(w) for w in row.words] for row in self.rows]
        return pd.DataFrame({name: pd.Series(values[name], dtype=_DTYPES[name]) for name in COLUMNS})


def records_from_frame(frame: Any) -> list[TurnRecord]:
    """Turn rows back into records, from any turns DataFrame (a live session's, a loaded folder's,
    one read back from CSV without words). Missing columns get empty values."""
    import pandas as pd

    records = []
    for position, row in enumerate(frame.to_dict("records")):
        # cells may hold lists, or numpy arrays (a frame read back from Parquet): only scalars can be missing
        data: dict[str, Any] = {k: (v if hasattr(v, "__len__") and not isinstance(v, str) else None if pd.isna(v) else v)
                                for k, v in row.items()}
        words = data.get("words")
        records.append(TurnRecord(
            session_id=str(data.get("session_id") or ""),
            turn_order=int(data["turn_order"]) if data.get("turn_order") is not None else position,
            turn_index=int(data["turn_index"]) if data.get("turn_index") is not None else position,
            text=str(data.get("text") or ""),
            words=tuple(Word(**w) for w in words) if words is not None and not isinstance(words, str) else (),
            start=data.get("start"),
            end=data.get("end"),
            confidence=data.get("confidence"),
            speaker=data.get("speaker"),
            language=data.get("language"),
            formatted=bool(data.get("formatted")),
            end_of_turn_latency=data.get("end_of_turn_latency"),
        ))
    return records


_DTYPES = {
    "session_id": "string", "turn_index": "int64", "turn_order": "int64", "start": "float64", "end": "float64",
    "text": "string", "words": "object", "confidence": "float64", "speaker": "string", "language": "string",
    "formatted": "bool", "end_of_turn_latency": "float64",
}


class TurnSettler:
    """Decides when a final turn will not change any more, so it is printed or translated once.

    With ``format_turns`` a server may send an unformatted final and then a formatted one
    (behaviour A). A turn is settled when it is formatted, when formatting is not expected, when a
    later turn has finished, when the session ended, or ``grace_s`` after its first final (servers
    that never format). Pure: the caller passes the clock.
    """

    def __init__(self, *, expect_formatted: bool, grace_s: float = 1.5):
        self.expect_formatted = expect_formatted
        self.grace_s = grace_s
        self._first_seen: dict[Key, float] = {}
        self._settled: set[Key] = set()

    def update(self, transcript: Transcript, now: float, *, ended: bool = False) -> list[TurnRecord]:
        """Rows that became settled since the last call, in turn order, each exactly once."""
        out = []
        last_index = len(transcript.rows) - 1
        for row in transcript.rows:
            if row.key in self._settled:
                continue
            first = self._first_seen.setdefault(row.key, now)
            if (
                ended
                or transcript.ended
                or not self.expect_formatted
                or row.formatted
                or row.turn_index < last_index
                or now - first >= self.grace_s
            ):
                self._settled.add(row.key)
                out.append(row)
        return out


__all__ = ["COLUMNS", "Transcript", "TurnRecord", "TurnSettler", "records_from_frame"]
