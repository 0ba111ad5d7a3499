"""Speaking metrics from finished turns: pace, fillers, hedges, pauses, long sentences, questions
and repeated words.

Pure and deterministic: no I/O, no clock. Every quote is a verbatim slice of a turn's ``text``
(so a reader, or a language model told to quote, can find it), and every time is in seconds on
the recording's clock, like ``TurnRecord.start``.

Word timings live in ``TurnRecord.words`` (milliseconds from the start of *that* session), while
quotes come from ``TurnRecord.text`` (which may be formatted: cased and punctuated). The two are
lined up token by token, so a filler found in the text gets the time of the word that said it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from difflib import SequenceMatcher
from typing import Any, NamedTuple

from ..errors import ConfigurationError
from ..events import Word
from ..transcript import TurnRecord

# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True, kw_only=True)
class Occurrence:
    """One filler, hedge, question or repeat: ``quote`` is verbatim from the turn's text and
    ``span`` is where the term sits inside the quote (character offsets)."""

    term: str
    turn: int
    time: float | None
    quote: str
    span: tuple[int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    """A silence of ``seconds`` starting at ``time``. ``before``/``after`` are the words around it;
    ``mid_sentence`` is None where the text has no punctuation to judge by."""

    turn: int
    time: float | None
    seconds: float
    before: str
    after: str
    between_turns: bool
    mid_sentence: bool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LongSentence:
    """A sentence of more than ``Thresholds.long_sentence_words`` words, quoted verbatim from the turn's text; ``time`` is
    when it starts (seconds on the recording's clock; None when unknown).
    """

    turn: int
    time: float | None
    words: int
    quote: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnPace:
    """``seconds`` is the span from the first word's start to the last word's end (turn
    start/end when there are no word timings); None when unknown, and then ``wpm`` is None.

    ``measured`` is False for a turn too short to measure a pace from (fewer than
    ``Thresholds.min_pace_words`` words or ``Thresholds.min_pace_s`` seconds: "Stuck." alone is one
    word in 0.3 s, "200 wpm" by arithmetic and by nothing else). Its ``wpm`` is still the arithmetic,
    but the overall pace, the chart and the report's verdicts leave it out."""

    turn: int
    start: float | None
    words: int
    seconds: float | None
    wpm: float | None
    measured: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """The limits the metrics were measured with (see `compute_metrics`): pauses in seconds, sentences in words, pace in
    words per minute.
    """

    pause_s: float = 1.0
    turn_gap_s: float = 2.0
    long_sentence_words: int = 30
    comfortable_wpm: tuple[float, float] = (120.0, 160.0)
    # A pace needs a few words over a few seconds: a word's timing is off by ~0.1 s, which is 5 % of 2 s
    # but 30 % of one word's 0.3 s.
    min_pace_words: int = 4
    min_pace_s: float = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakingMetrics:
    """Everything measured. ``wpm`` is words over speaking time, both from the turns whose pace
    could be measured (`TurnPace.measured`); ``speaking_seconds`` counts every turn whose duration
    is known. Pauses between turns are not speaking time."""

    turns: int
    words: int
    speaking_seconds: float
    wpm: float | None
    pace: tuple[TurnPace, ...]
    fillers: tuple[Occurrence, ...]
    hedges: tuple[Occurrence, ...]
    pauses: tuple[Pause, ...]
    long_sentences: tuple[LongSentence, ...]
    questions: tuple[Occurrence, ...]
    repeats: tuple[Occurrence, ...]
    punctuated: bool  # some turn has sentence punctuation; otherwise sentence lengths are unknown
    thresholds: Thresholds

    @property
    def filler_counts(self) -> dict[str, int]:
        """Count per filler, most frequent first (ties alphabetically)."""
        return _counts(self.fillers)

    @property
    def hedge_counts(self) -> dict[str, int]:
        """Count per hedge, most frequent first (ties alphabetically)."""
        return _counts(self.hedges)

    @property
    def filler_rate(self) -> float:
        """Fillers per 100 words."""
        return 100 * len(self.fillers) / self.words if self.words else 0.0

    @property
    def hedge_rate(self) -> float:
        """Hedges per 100 words."""
        return 100 * len(self.hedges) / self.words if self.words else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (`dataclasses.asdict`), plus the filler and hedge counts and rates (rates rounded to 2 places)."""
        data = asdict(self)
        data.update(filler_counts=self.filler_counts, hedge_counts=self.hedge_counts,
                    filler_rate=round(self.filler_rate, 2), hedge_rate=round(self.hedge_rate, 2))
        return data


def _counts(items: Iterable[Occurrence]) -> dict[str, int]:
    counter = Counter(o.term for o in items)
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0].lower())))


# ---------------------------------------------------------------------------------------------
# Vocabularies. Matching is on lower-cased tokens with edge punctuation removed.


@dataclass(frozen=True, slots=True)
class _Term:
    """A phrase, and the neighbours that make it mean something else ("do you know", "what kind of")."""

    words: tuple[str, ...]
    not_after: frozenset[str] = frozenset()
    not_before: frozenset[str] = frozenset()


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


def _term(phrase: str, not_after: str = "", not_before: str = "") -> tuple[str, _Term]:
    return phrase, _Term(tuple(phrase.lower().split()), _set(not_after), _set(not_before))


# "kind of"/"sort of" after these is a noun phrase ("what kind of car"), not a softener.
_DETERMINERS = ("a an the this that these those what which some any every each one same other another no my "
                "your his her its our their whatever different all new certain particular right wrong only")
_FILLER_PHRASES = dict([
    _term("you know", "do does did don't didn't if whether as what how who when where why",
          "how what where who why whether that if about him her them me us"),
    _term("I mean", "what do did don't if", "it to by what"),
    _term("kind of", _DETERMINERS),
    _term("sort of", _DETERMINERS),
    _term("basically"),
    _term("actually"),
    _term("literally"),
])
_HEDGE_PHRASES = dict([
    _term("I think"), _term("I guess"), _term("I suppose"), _term("I feel like"), _term("not sure"),
    _term("it seems"), _term("maybe"), _term("perhaps"), _term("probably"), _term("possibly"),
    _term("hopefully"), _term("might"), _term("somewhat"), _term("a bit"), _term("a little bit"),
    _term("just", "", "as like now"),  # "just as", "just like", "just now" compare or tell time
])
# Vocal fillers in their spellings: "umm", "uhh", "hmmm".
_VOCAL = [("erm", re.compile(r"e+r+m+")), ("er", re.compile(r"e+r+")), ("um", re.compile(r"u+m+")),
          ("uh", re.compile(r"u+h+")), ("ah", re.compile(r"a+h+")), ("hmm", re.compile(r"h+m+"))]
# "like" is a verb or a comparison after these ("I like", "looks like", "something like").
_LIKE_HEADS = _set(
    "i you we they he she would 'd i'd you'd we'd they'd he'd she'd feel feels felt look looks looked looking "
    "seem seems seemed sound sounds sounded just something anything nothing more much things stuff really "
    "don't didn't doesn't not people to also do does did might will can could should wouldn't"
)
_QUOTATIVE_HEADS = _set("i'm he's she's they're we're you're")
# "he was like a brother" compares; "he was like what" quotes.
_COMPARED = _set("a an the this that these those my your his her its our their to")
_BE = _set("was were is am are")
_SUBJECTS = _set("i he she they we you")
_NUMBER_WORDS = _set("two three four five six seven eight nine ten eleven twelve fifteen twenty thirty "
                     "forty fifty sixty hundred thousand million half")
# Words people double on purpose ("very very", "no no", "had had"): not reported as repeats.
_DELIBERATE = _set("very really so no yes yeah bye ha that had well okay ok")
_WH = _set("what why how when where who which whose")
_AUX = _set("do does did can could would will should shall is are was were am have has may "
           "don't doesn't didn't can't couldn't wouldn't won't shouldn't isn't aren't wasn't haven't")
_QUESTION_SUBJECTS = _set("i you we they he she it there that this")
_ABBREVIATIONS = _set("mr. mrs. ms. dr. prof. st. vs. e.g. i.e. jr. sr.")

_QUOTE_WORDS = 25  # a sentence up to this long is quoted whole; longer ones get a window
_WINDOW = 6  # words either side of a term in a window quote

# ---------------------------------------------------------------------------------------------
# Tokens and sentences


class _Token(NamedTuple):
    start: int  # offsets of the whole whitespace-delimited token in the text
    end: int
    core_start: int  # offsets of the word inside it, without surrounding punctuation
    core_end: int
    norm: str
    ends_sentence: bool
    comma_after: bool


_SPACE_TOKEN = re.compile(r"\S+")
_CORE = re.compile(r"[\w'’](?:.*[\w'’])?")
_SENTENCE_END = re.compile(r"[.?!]+[\"'”’)\]]*$")


def _norm(text: str) -> str:
    match = _CORE.search(text)
    return match.group().lower().replace("’", "'").strip("'") if match else ""


def _tokenize(text: str) -> list[_Token]:
    """Word tokens with their offsets; punctuation-only tokens mark the previous word instead."""
    tokens: list[_Token] = []
    for m in _SPACE_TOKEN.finditer(text):
        raw = m.group()
        ends = bool(_SENTENCE_END.search(raw)) and raw.lower() not in _ABBREVIATIONS
        core = _CORE.search(raw)
        if core is None or not _norm(raw):
            if tokens and (ends or raw.startswith(",")):
                tokens[-1] = tokens[-1]._replace(ends_sentence=tokens[-1].ends_sentence or ends,
                                                 comma_after=tokens[-1].comma_after or raw.startswith(","))
            continue
        tokens.append(_Token(m.start(), m.end(), m.start() + core.start(), m.start() + core.end(), _norm(raw),
                             ends, raw[core.end():].startswith(",")))
    return tokens


def _sentences(tokens: Sequence[_Token]) -> list[tuple[int, int]]:
    """(first, last) token index of each sentence; unpunctuated text is one sentence."""
    out, first = [], 0
    for i, token in enumerate(tokens):
        if token.ends_sentence or i == len(tokens) - 1:
            out.append((first, i))
            first = i + 1
    return out


@dataclass(frozen=True, slots=True)
class _Turn:
    """A turn prepared for scanning: tokens, sentences, a time per token, words aligned to tokens."""

    record: TurnRecord
    text: str
    tokens: list[_Token]
    sentences: list[tuple[int, int]]
    sentence_of: list[tuple[int, int]]
    times: list[float | None]
    token_of_word: list[int | None]
    punctuated: bool

    def quote(self, first: int, last: int) -> tuple[str, tuple[int, int]]:
        """A verbatim quote around tokens first..last: their sentence if short, else a window."""
        a, b = self.sentence_of[first]
        if b - a + 1 > _QUOTE_WORDS:
            a, b = max(a, first - _WINDOW), min(b, last + _WINDOW)
        start = self.tokens[a].start
        return (self.text[start:self.tokens[b].end],
                (self.tokens[first].core_start - start, self.tokens[last].core_end - start))

    def occurrence(self, term: str, first: int, last: int) -> Occurrence:
        quote, span = self.quote(first, last)
        return Occurrence(term=term, turn=self.record.turn_index, time=self.times[first], quote=quote, span=span)

    def slice(self, first: int, last: int) -> str:
        return self.text[self.tokens[first].start:self.tokens[last].end]


def _prepare(record: TurnRecord) -> _Turn:
    words = [w for w in record.words if _norm(w.text)]
    text = record.text if record.text.strip() else " ".join(w.text for w in words)
    tokens = _tokenize(text)
    sentences = _sentences(tokens)
    sentence_of = [s for s in sentences for _ in range(s[0], s[1] + 1)]
    word_of_token: list[int | None] = [None] * len(tokens)
    token_of_word: list[int | None] = [None] * len(words)
    matcher = SequenceMatcher(None, [t.norm for t in tokens], [_norm(w.text) for w in words], autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            word_of_token[block.a + k], token_of_word[block.b + k] = block.b + k, block.a + k
    return _Turn(record, text, tokens, sentences, sentence_of, _token_times(record, words, word_of_token),
                 token_of_word, any(t.ends_sentence for t in tokens))


def _token_times(record: TurnRecord, words: Sequence[Word], word_of_token: list[int | None]) -> list[float | None]:
    """Seconds on the recording clock for each token. Unmatched tokens take the previous matched
    word's time; without word timings, times are spread evenly over the turn's start..end."""
    n = len(word_of_token)
    if words:
        origin = min(w.start_ms for w in words)
        base = record.start if record.start is not None else origin / 1000
        times: list[float | None] = []
        last = 0
        for j in word_of_token:
            last = j if j is not None else last
            times.append(round(base + (words[last].start_ms - origin) / 1000, 3))
        return times
    if record.start is None:
        return [None] * n
    span = (record.end - record.start) if record.end is not None else 0.0
    return [round(record.start + span * i / max(n, 1), 3) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Detectors


def _context(turn: _Turn, i: int, j: int) -> tuple[str | None, str | None]:
    """Words just before token i and just after token j, within the sentence (None at its edges)."""
    a, b = turn.sentence_of[i]
    return (turn.tokens[i - 1].norm if i > a else None, turn.tokens[j + 1].norm if j < b else None)


def _phrases(turn: _Turn, terms: dict[str, _Term]) -> list[tuple[int, Occurrence]]:
    """Each match of a term, keyed by its first token (for ordering)."""
    found = []
    norms = [t.norm for t in turn.tokens]
    for i in range(len(norms)):
        for label, term in terms.items():
            j = i + len(term.words) - 1
            if tuple(norms[i:j + 1]) != term.words or turn.sentence_of[i] != turn.sentence_of[min(j, len(norms) - 1)]:
                continue
            before, after = _context(turn, i, j)
            # set off by a comma ("I mean, it works") the phrase is a filler whatever follows
            after = None if turn.tokens[j].comma_after else after
            if before not in term.not_after and after not in term.not_before:
                found.append((i, turn.occurrence(label, i, j)))
    return found


def _in_order(found: list[tuple[int, Occurrence]]) -> list[Occurrence]:
    return [o for _, o in sorted(found, key=lambda pair: pair[0])]


def _vocal(norm: str) -> str | None:
    return next((label for label, pattern in _VOCAL if pattern.fullmatch(norm)), None)


def _filler_like(turn: _Turn, i: int) -> bool:
    """Is this "like" a filler? Yes when set off by a comma ("it was, like, huge"), before a number
    ("like twenty minutes"), next to a vocal filler ("um like"), or quotative ("I was like what").
    Never after a verb or comparison head ("I like", "looks like", "something like")."""
    before, after = _context(turn, i, i)
    if turn.tokens[i].comma_after and before not in _SUBJECTS:  # "I like, ..." is still the verb
        return True
    if before in _LIKE_HEADS:
        return False
    if after is not None and (after in _NUMBER_WORDS or after[:1].isdigit()):
        return True
    if (before and _vocal(before)) or (after and _vocal(after)):
        return True
    a, _ = turn.sentence_of[i]
    before2 = turn.tokens[i - 2].norm if i - 2 >= a else None
    quotative = before in _QUOTATIVE_HEADS or (before in _BE and before2 in _SUBJECTS)
    return quotative and after is not None and after not in _COMPARED


def _fillers(turn: _Turn) -> list[Occurrence]:
    found = _phrases(turn, _FILLER_PHRASES)
    for i, token in enumerate(turn.tokens):
        label = _vocal(token.norm) or ("like" if token.norm == "like" and _filler_like(turn, i) else None)
        if label:
            found.append((i, turn.occurrence(label, i, i)))
    return _in_order(found)


def _repeats(turn: _Turn) -> list[Occurrence]:
    """Immediate repetitions ("the the", "I, I"), one per run, within a sentence."""
    found, i, tokens = [], 0, turn.tokens
    while i < len(tokens) - 1:
        j = i
        while j + 1 < len(tokens) and tokens[j + 1].norm == tokens[i].norm and not tokens[j].ends_sentence:
            j += 1
        if j > i and tokens[i].norm not in _DELIBERATE and not _vocal(tokens[i].norm):
            found.append(turn.occurrence(tokens[i].norm, i, j))
        i = j + 1
    return found


def _questions(turn: _Turn) -> list[Occurrence]:
    """Sentences ending in "?"; in unpunctuated text, a turn that opens like a question
    ("what do", "do you", "is it") is counted, conservatively, once."""
    if turn.punctuated:
        out = []
        for a, b in turn.sentences:
            # up to the next word, so a detached " ?" counts too
            stop = turn.tokens[b + 1].start if b + 1 < len(turn.tokens) else len(turn.text)
            if "?" in turn.text[turn.tokens[b].core_end:stop]:
                quote = turn.text[turn.tokens[a].start:stop].rstrip()
                out.append(Occurrence(term="?", turn=turn.record.turn_index, time=turn.times[a], quote=quote,
                                      span=(len(quote) - 1, len(quote))))
        return out
    first, second = ([t.norm for t in turn.tokens[:2]] + ["", ""])[:2]
    if (first in _WH and second in _AUX) or (first in _AUX and second in _QUESTION_SUBJECTS):
        quote = turn.slice(0, min(len(turn.tokens), 12) - 1)
        return [Occurrence(term=first, turn=turn.record.turn_index, time=turn.times[0], quote=quote,
                           span=(0, turn.tokens[0].core_end - turn.tokens[0].start))]
    return []


def _long_sentences(turn: _Turn, limit: int) -> list[LongSentence]:
    if not turn.punctuated:  # a whole unpunctuated turn is not a sentence
        return []
    return [LongSentence(turn=turn.record.turn_index, time=turn.times[a], words=b - a + 1, quote=turn.slice(a, b))
            for a, b in turn.sentences if b - a + 1 > limit]


def _edge(turn: _Turn, first: int, last: int) -> str:
    """The words of tokens first..last (clamped), verbatim."""
    first, last = max(first, 0), min(last, len(turn.tokens) - 1)
    return turn.slice(first, last) if first <= last else ""


def _pauses_within(turn: _Turn, threshold_s: float) -> list[Pause]:
    words = [w for w in turn.record.words if _norm(w.text)]
    found = []
    for k in range(1, len(words)):
        gap = (words[k].start_ms - words[k - 1].end_ms) / 1000
        if gap < threshold_s:
            continue
        i, j = turn.token_of_word[k - 1], turn.token_of_word[k]
        if i is not None and j is not None:
            # the words around the pause, within their sentences
            before = _edge(turn, max(i - 4, turn.sentence_of[i][0]), i)
            after = _edge(turn, j, min(j + 4, turn.sentence_of[j][1]))
            mid = (not turn.tokens[i].ends_sentence) if turn.punctuated else None
        else:  # the text and the words disagree here: fall back to the words themselves
            before = " ".join(w.text for w in words[max(k - 5, 0):k])
            after = " ".join(w.text for w in words[k:k + 5])
            mid = None
        origin = min(w.start_ms for w in words)
        base = turn.record.start if turn.record.start is not None else origin / 1000
        found.append(Pause(turn=turn.record.turn_index, time=round(base + (words[k - 1].end_ms - origin) / 1000, 3),
                           seconds=round(gap, 3), before=before, after=after, between_turns=False, mid_sentence=mid))
    return found


def _pause_between(prev: _Turn, turn: _Turn, threshold_s: float) -> Pause | None:
    end, start = prev.record.end, turn.record.start
    if end is None or start is None or start - end < threshold_s:
        return None
    n = len(prev.tokens)
    return Pause(turn=turn.record.turn_index, time=round(end, 3), seconds=round(start - end, 3),
                 before=_edge(prev, n - 5, n - 1), after=_edge(turn, 0, 4), between_turns=True,
                 mid_sentence=(not prev.tokens[-1].ends_sentence) if prev.punctuated else None)


def _pace(turn: _Turn, thresholds: Thresholds) -> TurnPace:
    record, words = turn.record, [w for w in turn.record.words if _norm(w.text)]
    seconds = (max(w.end_ms for w in words) - min(w.start_ms for w in words)) / 1000 if words else None
    if (seconds is None or seconds <= 0) and record.start is not None and record.end is not None:
        seconds = record.end - record.start
    seconds = round(seconds, 3) if seconds is not None and seconds > 0 else None
    n = len(turn.tokens)
    measured = seconds is not None and n >= thresholds.min_pace_words and seconds >= thresholds.min_pace_s
    return TurnPace(turn=record.turn_index, start=record.start if record.start is not None else turn.times[0], words=n,
                    seconds=seconds, wpm=round(60 * n / seconds, 1) if seconds else None, measured=measured)


# ---------------------------------------------------------------------------------------------


def compute_metrics(
    records: Iterable[TurnRecord],
    *,
    pause_s: float = 1.0,
    turn_gap_s: float = 2.0,
    long_sentence_words: int = 30,
    comfortable_wpm: tuple[float, float] = (120.0, 160.0),
    min_pace_words: int = 4,
    min_pace_s: float = 2.0,
) -> SpeakingMetrics:
    """Measure finished turns (in the order given). Turns without words are skipped.

    ``pause_s``: shortest silence between two words of a turn that counts as a pause;
    ``turn_gap_s``: the same between turns; ``long_sentence_words``: a sentence with more words
    than this is long; ``comfortable_wpm``: the pace range the report judges against;
    ``min_pace_words``/``min_pace_s``: a turn with fewer words or seconds is too short to measure a
    pace from (see `TurnPace.measured`).

    Turns are measured as given; `coaching.fragments.merge_fragments` first joins a sentence that a
    turn-length cap cut in two (`coach` does).
    """
    low, high = comfortable_wpm
    if (pause_s <= 0 or turn_gap_s <= 0 or long_sentence_words < 1 or not 0 < low < high or min_pace_words < 1
            or min_pace_s < 0):
        raise ConfigurationError("coaching thresholds must be positive, and comfortable_wpm a (low, high) range")
    thresholds = Thresholds(pause_s=pause_s, turn_gap_s=turn_gap_s, long_sentence_words=long_sentence_words,
                            comfortable_wpm=(float(low), float(high)), min_pace_words=min_pace_words,
                            min_pace_s=float(min_pace_s))
    turns = [t for t in map(_prepare, records) if t.tokens]
    pace = tuple(_pace(t, thresholds) for t in turns)
    timed = [p for p in pace if p.measured]
    speaking = sum(p.seconds or 0.0 for p in pace if p.seconds)
    measured_s = sum(p.seconds or 0.0 for p in timed)
    pauses: list[Pause] = []
    for k, turn in enumerate(turns):
        between = _pause_between(turns[k - 1], turn, turn_gap_s) if k else None
        pauses.extend(([between] if between else []) + _pauses_within(turn, pause_s))
    return SpeakingMetrics(
        turns=len(turns),
        words=sum(p.words for p in pace),
        speaking_seconds=round(speaking, 3),
        wpm=round(60 * sum(p.words for p in timed) / measured_s, 1) if measured_s else None,
        pace=pace,
        fillers=tuple(o for t in turns for o in _fillers(t)),
        hedges=tuple(o for t in turns for o in _in_order(_phrases(t, _HEDGE_PHRASES))),
        pauses=tuple(pauses),
        long_sentences=tuple(s for t in turns for s in _long_sentences(t, long_sentence_words)),
        questions=tuple(q for t in turns for q in _questions(t)),
        repeats=tuple(r for t in turns for r in _repeats(t)),
        punctuated=any(t.punctuated for t in turns),
        thresholds=thresholds,
    )


FILLER_TERMS = ("um", "uh", "er", "erm", "ah", "hmm", "like", *_FILLER_PHRASES)
HEDGE_TERMS = tuple(_HEDGE_PHRASES)

__all__ = [
    "FILLER_TERMS",
    "HEDGE_TERMS",
    "LongSentence",
    "Occurrence",
    "Pause",
    "SpeakingMetrics",
    "Thresholds",
    "TurnPace",
    "compute_metrics",
]
