"""A model's coaching analysis, checked against the transcript and the computed metrics. Pure.

A small model writes fluent coaching that is sometimes wrong: it "quotes" words nobody said, restates a
metric with another number, or finds "slower turns" in a talk whose every turn was within the comfortable
range. `check_analysis` reads the analysis sentence by sentence and **removes every sentence that makes a
claim the data contradicts**, recording each as a `Problem` (the report lists them under the analysis, so
nothing disappears silently). What is checked:

**Quotes.** Text in double quotes (``"…"`` or ``“…”``) of two words or more must appear in the transcript,
compared without case and punctuation (``’`` is ``'``); an ellipsis inside a quote (``…`` or ``...``) may
skip words, and each part must then appear in order. A quote in a *suggestion* is not a quote: it is
anything after a label ``Suggestion:`` (also ``Suggested:``, ``Rewrite:``, ``Try:``, ``Instead:``,
``Better:``, ``Alternative:``) or an arrow (``→``, ``->``, ``=>``) on the same line (or on the next line,
when the label stands alone on its line), a quote right after
"try", "try saying", "instead", "say instead", "you could say", and a quote after "as", "to", "with" or
"into" in a sentence that rephrases, rewrites, replaces or changes something ("replace "um" with "so"":
"um" is checked, "so" is not). Single-word quotes are terms ("filler"), not checked.

**Numbers next to a metric.** Outside quotes, a number (digits, or a number word up to twenty; "no" before
a metric's name is 0) with a metric's unit or name must match the computed value within its rounding:

- ``N wpm`` / ``N words per minute``, or ``pace (of|at|was) N``: the overall pace, a measured turn's pace
  (the referenced turn's when the sentence names exactly one turn), or a bound of the comfortable range;
- ``N fillers``, ``N hedges``, ``N questions``, ``N long sentences``, ``N repeated words``/``repeats``,
  ``N pauses`` (inside turns, all, or gaps), ``N gaps``, ``N turns``; also ``fillers: N`` and the like;
- ``N per 100 words`` or ``N%`` in a sentence about fillers or hedges: their rate;
- ``"um" … N times``: that term's count;
- ``N seconds`` / ``N s`` in a sentence about pauses, gaps or silences: a measured pause or a threshold;
- ``N-word sentence`` / ``sentence of N words``: a long sentence's length or the threshold.

A number after an advice word (aim, target, toward(s), to, under, below, over, above, fewer/less/more
than, at most, at least, up to, between, within, goal, ideal, keep) is a target, not a claim, and is not
checked.

**A count only when it is one.** Removing a true statement is worse than keeping one that cannot be
checked, so a number next to a metric's name is checked as that metric's count only when it clearly is
the count: not after an ordinal or a reference word ("your first two turns", "the three questions",
"each turn", "in two turns", "a single turn"), not before a superlative ("your two longest turns") or a
qualifier that picks a part ("3 fillers in your answer", "2 questions that…", "2 fillers per minute"; "in
total", "overall" and "altogether" keep it a count), and not in a sentence about one part of the talk
("turn 2", "in your first turn", "one of your turns"): there a count (also ``"um" … N times``) is that
part's, which the metrics do not hold. "one" (or 1) with a singular name is a count only after a
counting word ("you asked one question", "there was one long sentence", "only one filler"); "One
question stood out" is a reference. "about", "around", "roughly", "nearly" and "~" widen the tolerance to 5 % (counts: ±1).
"N fillers per 100 words" is a rate.

**Pace claims about turns.** A sentence that calls turns slow(er) or fast(er) (also "rushed", "quicker")
is checked against the per-turn pace of the measured turns (`TurnPace.measured`):

- "turn 2 was slower than turn 1": compared with that turn;
- with turn references ("turn 3", "#3"): each must be measured and below (slow) or above (fast) the
  comfortable range, or, with "than the average/overall/rest", below or above the overall pace;
- "some turns were slower than others": some measured turn at least 10 % below (above) the overall pace;
- "a few turns were slow": some measured turn below (above) the range; negated ("no turn was too fast"),
  none may be;
- about the overall pace ("your pace was a bit fast"): the overall verdict must agree.

"slow down", "speed up" and, without turn references, a sentence that advises ("you could speak faster",
"try", "keep", "aim", an imperative "Speak…") are advice, not claims.

**What is left.** A removed sentence's leading bold label ("**Overall**:") stays; a bullet or numbered line
left empty goes. A sentence's context (a label or arrow before it on its line) is only what stayed, so
checking the result again finds nothing.

What is not checked (say so rather than pretend): judgements ("clear", "confident"), claims about content,
quotes of one word, numbers without a metric's name or unit next to them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..transcript import TurnRecord
from .metrics import FILLER_TERMS, HEDGE_TERMS, SpeakingMetrics, TurnPace


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One claim that failed the check: ``kind`` is ``"quote"``, ``"number"`` or ``"pace"``; ``claim`` the
    offending quote or phrase; ``reason`` what the data says; ``sentence`` the sentence removed for it."""

    kind: str
    claim: str
    reason: str
    sentence: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedAnalysis:
    """The analysis with the failing sentences removed (``text``), and what was removed (``problems``).
    Checking ``text`` again finds no problem."""

    text: str
    problems: tuple[Problem, ...]


# ---------------------------------------------------------------------------------------------
# Text helpers

_BOLD_LABEL = re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s+)?\*\*[^*\x00]{1,40}\*\*\s*:?\s*")
_QUOTE = re.compile(r"[\"“]([^\"“”\n]+)[\"”]")
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])\s+")
_ELLIPSIS = re.compile(r"\.\.\.|…|\[\s*(?:…|\.\.\.)\s*\]")
_LABEL = re.compile(r"(?i)\b(?:suggest(?:ion|ed)?(?:\s+\w+)?|rewrite|rephrased?|reword(?:ed)?|try|instead|better|"
                    r"alternative)\s*\**\s*[:：]|→|->|=>")
_CUE_DIRECT = re.compile(r"(?i)\b(?:try|try saying|trying|instead|say instead|say|saying)\s*\**[:,]?\s*\**$")
_CUE_SAY_OK = re.compile(r"(?i)\b(?:could|can|might|should|would|just|simply|rather|instead|try|to|please)\s+"
                         r"(?:say|saying)\s*\**[:,]?\s*\**$|^\W*(?:say|saying)\s*\**[:,]?\s*\**$")
_CUE_REWRITE = re.compile(r"(?i)\b(?:rephras\w*|reword\w*|rewrit\w*|replac\w*|chang\w*|swap\w*|shorten\w*|"
                          r"tighten\w*|simplif\w*)\b.{0,80}?\b(?:as|to|with|into)\s*\**[:,]?\s*\**$")

_NUMBER_WORDS = {w: i for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"))}
_NUMBER_WORDS.update({"once": 1, "twice": 2, "single": 1, "a single": 1, "no": 0, "none": 0})
_NUM = r"(?P<num>\d+(?:\.\d+)?|" + "|".join(sorted((w for w in _NUMBER_WORDS if " " not in w), key=len,
                                                  reverse=True)) + r")"
_APPROX = re.compile(r"(?i)(?:\babout|\baround|\broughly|\bnearly|\balmost|\bapproximately|\bsome|~)\s*$")
_ADVICE = re.compile(r"(?i)(?:\baim(?:ing)?(?: for)?|\btarget\w*|\btowards?|\bto|\bunder|\bbelow|\bover|\babove|"
                     r"\b(?:fewer|less|more|lower|higher) than|\bat most|\bat least|\bup to|\bbetween|\bwithin|"
                     r"\bgoal(?: of)?|\bideal(?:ly)?|\bkeep(?: it)?|\brange(?: of)?|\bno more than|\bfrom|"
                     r"\d\s*(?:–|-|and|to))\s*(?:about|around|roughly)?\s*$")

_ADJ = r"(?:(?!(?:of|the|in|at|on|per|and|or|to|from|than|for|with|by|that|which|were|was|are|is)\b)\w+\s+)"
_PLURAL_METRICS: list[tuple[str, str]] = [  # (regex after the number, metric key)
    (_ADJ + r"{0,2}?filler(?:s| words?| phrases?)?\b", "fillers"),
    (_ADJ + r"{0,2}?hedg(?:es?|ing)(?: words?| phrases?)?\b", "hedges"),
    (_ADJ + r"{0,2}?questions?\b", "questions"),
    (_ADJ + r"?long(?:er)? sentences?\b", "long_sentences"),
    (r"(?:sentences? (?:over|longer than|of more than) \d+ words)\b", "long_sentences"),
    (_ADJ + r"?(?:repeated words?|repeats?|repetitions?|restarts?)\b", "repeats"),
    (_ADJ + r"{0,2}?paus(?:es?)\b", "pauses"),
    (_ADJ + r"{0,2}?(?:gaps?|silences?)\b", "gaps"),
    (_ADJ + r"{0,2}?turns?\b", "turns"),
]
_NAME_FIRST = re.compile(r"(?i)\b(?P<name>fillers?|filler words|hedges|hedging words|questions|long sentences|"
                         r"repeated words|repeats|pauses|gaps|turns|pace|speed|speaking rate)"
                         r"(?:\s+count)?\s*(?:[:=(]|\bof\b|\bwas\b|\bwere\b|\bis\b|\bare\b|\bat\b|\btotall?ing\b|"
                         r"\btotall?ed\b)\s*(?:about|around|roughly|nearly|approximately|~)?\s*" + _NUM +
                         r"\b(?!-|\.\d|\s*(?:%|s\b|secs?\b|seconds?\b|words?\b|wpm\b|per\b|minutes?\b))")
_NAME_KEYS = {"filler": "fillers", "hedg": "hedges", "question": "questions", "long": "long_sentences",
              "repeat": "repeats", "pause": "pauses", "gap": "gaps", "turn": "turns", "pace": "pace",
              "speed": "pace", "speaking": "pace"}
_WPM = re.compile(r"(?i)\b" + _NUM + r"\s*(?:wpm\b|words? (?:per|a|each) minute\b|words?/min\w*)")
_RATE = re.compile(r"(?i)\b" + _NUM + r"\s*(?:%|percent\b|per (?:100|hundred|one hundred) words\b)")
_SECONDS = re.compile(r"(?i)\b" + _NUM + r"[- ]?(?:s|secs?|seconds?)\b")
_SENTENCE_WORDS = re.compile(r"(?i)\b" + _NUM + r"[- ]words?\b")
_TIMES = re.compile(r"(?i)\b" + _NUM + r"\s*(?:times?\b|[x×](?!\w))|\b(?P<word>once|twice)\b|×\s*(?P<num2>\d+)")
_PER_100 = re.compile(r"(?i)\s*(?:per|/|for every|in every)\s*(?:100|hundred|one hundred)\b")
_ADVISES = re.compile(r"(?i)\b(?:could|should|try|might|consider|aim|can|please|let's|keep|avoid|make sure|"
                      r"don't|do not|want to|need to|practi[cs]e)\b|^\W*(?:\*\*[^*]*\*\*\W*)?(?:speak|talk|slow|"
                      r"take|pause|focus|work on|vary)\b")
_TURN_REF = re.compile(r"(?i)\b(?:turns?\s*#?\s*|#)(\d+)(?:\s*(?:,|and|&)\s*#?(\d+))*")
_TURN_NUMBERS = re.compile(r"\d+")
_SLOW = re.compile(r"(?i)\b(?:slow(?:er|est|ly)?|sluggish|dragg(?:ed|ing))\b")
_FAST = re.compile(r"(?i)\b(?:fast(?:er|est)?|quick(?:er|est|ly)|rush(?:ed|ing)?|hurried|rapid(?:ly)?)\b")
_PACE_ADVICE = re.compile(r"(?i)\b(?:slow(?:ing)? down|speed(?:ing)? up|pick(?:ing)? up|faster onboarding|"
                          r"onboarding faster)\b")
_PACE_TOPIC = re.compile(r"(?i)\b(?:pace|paced|speed|spoke|speak|speaking|talk(?:ed|ing)?|deliver(?:y|ed)|wpm|"
                         r"words per minute|rate)\b")
_TURN_TOPIC = re.compile(r"(?i)\b(?:turns?|#\d+|segments?|parts?|moments?|sections?|passages?)\b")
_NEGATION = re.compile(r"(?i)\b(?:no|none|not|never|nor|without)\b|n't\b")
# a count of a part of the talk, not the metric's: "your first two turns", "in two turns", "a single turn"
_REFERENCE_BEFORE = re.compile(r"(?i)\b(?:first|second|third|fourth|fifth|last|next|previous|final|opening|closing|"
                               r"these|those|the|a|an|each|every|both|other|same|top|in|during|single|\d+(?:st|nd|rd|th))"
                               r"\s*$")
_SUPERLATIVE = re.compile(r"(?i)\b(?:\w+est|other|remaining|same|first|last|next|previous|final|opening|closing)\b")
_PART_AFTER = re.compile(r"(?i)^\s*(?:where|when|whenever|in which|that|which|who|with|without|in|during|from|after|"
                         r"before|at|on|inside|within|per|while|each|apiece|of)\b")
_TOTAL_AFTER = re.compile(r"(?i)^\s*(?:in total|in all|overall|altogether|total|in (?:the|this|your) (?:whole|entire)\b|"
                          r"across (?:all|the whole|the entire|your whole)\b|(?:in|during|from|across|of) (?:the|this|"
                          r"your) (?:talk|conversation|meeting|session|transcript|recording|presentation|call)\b)")
_COUNTING_BEFORE = re.compile(r"(?i)\b(?:used|use|asked|ask|had|have|has|made|make|said|say|gave|included?|contain(?:ed|s)?|"
                              r"counted|(?:there|it) (?:was|is|were)|only|just|exactly|total(?:led|ed)?(?: of)?)\s*"
                              r"(?:about|around|roughly|nearly|approximately|~)?\s*$")
_NARROWED = re.compile(r"(?i)\b(?:in|during|within|of|for)\s+(?:(?:a|an|one|the|your|that|this|each|every|single|same|"
                       r"first|second|third|last|final|next|previous|opening|closing|another|one of your|\w+est|"
                       r"two|three|four|five|\d+)\s+){1,3}(?:turns?|sentences?|answers?|moments?|parts?|sections?|"
                       r"passages?|segments?|minutes?|half|halves|places?|spots?)\b")
_THAN_OVERALL = re.compile(r"(?i)\bthan (?:the |your )?(?:average|overall|rest|others?|mean|usual|typical)")


def _plain(text: str) -> str:
    """Lower case, ``’`` as ``'``, every run of other punctuation and space one space."""
    return " ".join(re.sub(r"[^\w']+", " ", text.lower().replace("’", "'").replace("‘", "'")).split())


def _number(token: str) -> tuple[float, int] | None:
    """The value and its decimals (0 for words)."""
    token = token.lower()
    if token in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[token]), 0
    try:
        value = float(token)
    except ValueError:
        return None
    return value, len(token.split(".")[1]) if "." in token else 0


def _matches(stated: float, decimals: int, values: Iterable[float | int], *, approx: bool, count: bool = False,
             slack: float = 0.0) -> bool:
    for v in values:
        if count:
            if stated == v or (approx and abs(stated - v) <= 1):
                return True
            continue
        tolerance = max(0.5 * 10 ** -decimals + 1e-9, slack, (0.05 * abs(v)) if approx else 0.0)
        if abs(stated - v) <= tolerance:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# What the data says


@dataclass(frozen=True, slots=True)
class _Facts:
    spoken: str  # the whole transcript, plain, space-padded
    metrics: SpeakingMetrics
    terms: dict[str, int]  # plain filler/hedge term -> count

    @property
    def low(self) -> float:
        return self.metrics.thresholds.comfortable_wpm[0]

    @property
    def high(self) -> float:
        return self.metrics.thresholds.comfortable_wpm[1]

    def measured(self) -> list[TurnPace]:
        return [p for p in self.metrics.pace if p.measured and p.wpm is not None]

    def turn(self, index: int) -> TurnPace | None:
        return next((p for p in self.metrics.pace if p.turn == index), None)

    def counts(self, key: str) -> set[int]:
        m = self.metrics
        within = sum(1 for p in m.pauses if not p.between_turns)
        gaps = len(m.pauses) - within
        off = [p for p in self.measured() if not self.low <= (p.wpm or 0) <= self.high]
        return {
            "fillers": {len(m.fillers)},
            "hedges": {len(m.hedges)},
            "questions": {len(m.questions)},
            "long_sentences": {len(m.long_sentences)},
            "repeats": {len(m.repeats)},
            "pauses": {within, len(m.pauses), gaps},
            "gaps": {gaps},
            # a count of turns: all of them, the measured ones, or those outside the range (each side)
            "turns": {m.turns, len(self.measured()), m.turns - len(self.measured()), len(off),
                      sum(1 for p in off if (p.wpm or 0) < self.low), sum(1 for p in off if (p.wpm or 0) > self.high)},
        }.get(key, set())

    def say(self, key: str) -> str:
        """What the metrics count for ``key``, in words."""
        m = self.metrics
        within = sum(1 for p in m.pauses if not p.between_turns)

        def n(count: int, word: str) -> str:
            return f"{count} {word}" if count == 1 else f"{count} {word}s"

        return "the metrics count " + {
            "fillers": n(len(m.fillers), "filler"),
            "hedges": n(len(m.hedges), "hedge"),
            "questions": n(len(m.questions), "question"),
            "long_sentences": n(len(m.long_sentences), "long sentence"),
            "repeats": n(len(m.repeats), "repeated word"),
            "pauses": f"{n(within, 'pause')} inside turns and {n(len(m.pauses) - within, 'gap')} between",
            "gaps": f"{n(len(m.pauses) - within, 'gap')} between turns",
            "turns": f"{n(m.turns, 'turn')} ({len(self.measured())} measured, {m.turns - len(self.measured())} too short)",
        }.get(key, "something else")

    def paces(self, refs: Sequence[int], *, about_turns: bool) -> set[float]:
        """The paces a sentence may state: the one turn it names, else the overall pace and the range's
        bounds, and any measured turn's when it talks about turns."""
        if len(refs) == 1 and (p := self.turn(refs[0])) is not None and p.wpm is not None:
            return {p.wpm}
        out = {self.low, self.high} | ({self.metrics.wpm} if self.metrics.wpm is not None else set())
        return out | ({p.wpm for p in self.measured() if p.wpm is not None} if about_turns or refs else set())


def _facts(metrics: SpeakingMetrics, records: Iterable[TurnRecord]) -> _Facts:
    spoken = " " + " ".join(_plain(r.text or " ".join(w.text for w in r.words)) for r in records) + " "
    terms: dict[str, int] = {_plain(t): 0 for t in (*FILLER_TERMS, *HEDGE_TERMS)}
    for o in (*metrics.fillers, *metrics.hedges):
        terms[_plain(o.term)] = terms.get(_plain(o.term), 0) + 1
    return _Facts(spoken, metrics, terms)


# ---------------------------------------------------------------------------------------------
# The checks


def _quote_said(quote: str, facts: _Facts) -> bool:
    at = 0
    for part in _ELLIPSIS.split(quote):
        plain = _plain(part)
        if not plain:
            continue
        found = facts.spoken.find(f" {plain} ", at)
        if found < 0:
            return False
        at = found + len(plain) + 1
    return True


def _is_suggestion(before_in_line: str, before_in_sentence: str) -> bool:
    if _LABEL.search(before_in_line):
        return True
    return bool(_CUE_DIRECT.search(before_in_sentence) and (
        not re.search(r"(?i)\b(?:say|saying)\s*\**[:,]?\s*\**$", before_in_sentence)
        or _CUE_SAY_OK.search(before_in_sentence))) or bool(_CUE_REWRITE.search(before_in_sentence))


def _is_count(text: str, match: re.Match[str], noun: str) -> bool:
    """Whether ``match`` (a number, then up to two words and a metric's ``noun``) states that metric's count,
    rather than pointing at some of them ("your first two turns", "One question stood out")."""
    before, token = text[:match.start("num")], match.group("num").lower()
    if token == "single" or _REFERENCE_BEFORE.search(before):
        return False
    if _SUPERLATIVE.search(match.group()[match.end("num") - match.start():]):
        return False
    after = text[match.end():]
    if _PART_AFTER.match(after) and not _TOTAL_AFTER.match(after):
        return False
    singular = not re.search(r"(?i)(?:s|ing|words|phrases)$", noun) and token in ("one", "1")
    return not singular or bool(_COUNTING_BEFORE.search(before))


def _check_numbers(sentence: str, quotes: list[str], facts: _Facts) -> list[tuple[str, str, str]]:
    """(kind, claim, reason) for each number in ``sentence`` (quotes as placeholders) that the metrics
    contradict."""
    m = facts.metrics
    out: list[tuple[str, str, str]] = []
    text = _PLACEHOLDER.sub(" ", sentence)
    refs = [int(n) for r in _TURN_REF.finditer(text) for n in _TURN_NUMBERS.findall(r.group())]
    about_turns = bool(_TURN_TOPIC.search(text))
    narrowed = bool(refs or _NARROWED.search(text))  # counts here are a part's: "in turn 2 you said "um" twice"
    seen: set[tuple[int, int]] = set()

    def judge(match: re.Match[str], values: set[float] | set[int], what: str, *, count: bool = False,
              slack: float = 0.0) -> None:
        span = match.span("num")
        if span in seen or not values:
            return
        seen.add(span)
        parsed = _number(match.group("num"))
        if parsed is None:
            return
        before = text[:span[0]]
        if _ADVICE.search(before):
            return
        approx = bool(_APPROX.search(before))
        if not _matches(parsed[0], parsed[1], values, approx=approx, count=count, slack=slack):
            out.append(("number", match.group().strip(), what))

    one = facts.turn(refs[0]) if len(refs) == 1 else None
    pace_is = (f"turn {one.turn}'s pace is {one.wpm:.0f} wpm" if one is not None and one.wpm is not None else
               f"the computed pace is {m.wpm:.0f} wpm overall" if m.wpm is not None else "no pace was measured")
    for match in _WPM.finditer(text):
        judge(match, facts.paces(refs, about_turns=about_turns), pace_is, slack=1.0)
    lower = text.lower()
    about_filler, about_hedge = "filler" in lower, "hedg" in lower
    rates = ({round(m.filler_rate, 1)} if about_filler or not about_hedge else set()) | \
            ({round(m.hedge_rate, 1)} if about_hedge or not about_filler else set())
    if about_filler or about_hedge:
        for match in _RATE.finditer(text):
            judge(match, rates, f"the computed rates are {m.filler_rate:.1f} fillers and {m.hedge_rate:.1f} hedges "
                                "per 100 words")
    if re.search(r"(?i)\b(?:paus|gap|silen)", text):
        seconds = {p.seconds for p in m.pauses} | {m.thresholds.pause_s, m.thresholds.turn_gap_s}
        for match in _SECONDS.finditer(text):
            judge(match, seconds, "no pause of that length was measured")
    if re.search(r"(?i)\bsentences?\b", text):
        lengths = {float(s.words) for s in m.long_sentences} | {float(m.thresholds.long_sentence_words)}
        for match in _SENTENCE_WORDS.finditer(text):
            judge(match, lengths, "no long sentence has that many words", count=True)
    for pattern, key in _PLURAL_METRICS:
        for match in re.finditer(r"(?i)\b" + _NUM + r"(?!\.\d)(?:[- ]|\s+)" + pattern, text):
            if key == "turns" and re.match(r"(?i)\s*turns?\s*#", text[match.end("num"):]):
                continue
            if key in ("fillers", "hedges") and _PER_100.match(text[match.end():]):  # "3.3 fillers per 100 words"
                rate = m.filler_rate if key == "fillers" else m.hedge_rate
                judge(match, {round(rate, 1)}, f"the computed rate is {rate:.1f} {key} per 100 words")
                continue
            if not narrowed and _is_count(text, match, match.group().split()[-1]):
                judge(match, facts.counts(key), facts.say(key), count=True)
    for match in _NAME_FIRST.finditer(text):
        name = match.group("name").lower()
        key = next(v for k, v in _NAME_KEYS.items() if name.startswith(k))
        if key == "pace":
            judge(match, facts.paces(refs, about_turns=about_turns), pace_is, slack=1.0)
        elif not narrowed:
            judge(match, facts.counts(key), facts.say(key), count=True)
    # "um" ... 3 times: that term's count (not in a sentence about one part of the talk)
    for k, quote in enumerate(quotes if not narrowed else ()):
        term = _plain(quote)
        if term not in facts.terms:
            continue
        marker = f"\x00{k}\x00"
        if marker not in sentence:
            continue
        after = _PLACEHOLDER.sub(" ", sentence.split(marker, 1)[1].split("\x00", 1)[0])[:40]
        times = _TIMES.search(after)
        if times:
            token = times.group("num") or times.group("word") or times.group("num2")
            parsed = _number(token)
            if parsed is not None and parsed[0] != facts.terms[term]:
                out.append(("number", f"\"{quote}\" {times.group().strip()}",
                            f"the metrics count \"{quote}\" {facts.terms[term]} times"))
    return out


def _check_pace(sentence: str, facts: _Facts) -> list[tuple[str, str, str]]:
    text = _PLACEHOLDER.sub(" ", sentence)
    text = _PACE_ADVICE.sub(" ", text)
    slow, fast = _SLOW.search(text), _FAST.search(text)
    if not (slow or fast) or (slow and fast):
        return []
    word = (slow or fast).group()  # type: ignore[union-attr]
    side = "slow" if slow else "fast"
    low, high, overall = facts.low, facts.high, facts.metrics.wpm
    refs = [int(n) for r in _TURN_REF.finditer(text) for n in _TURN_NUMBERS.findall(r.group())]

    def on_side(wpm: float, *, relative: bool) -> bool:
        if relative and overall is not None:
            return wpm < overall if side == "slow" else wpm > overall
        return wpm < low if side == "slow" else wpm > high

    than_turn = re.search(r"(?i)\bthan (?:in )?(?:turn\s*#?\s*|#)(\d+)", text)
    if than_turn and (base := facts.turn(int(than_turn.group(1)))) is not None and base.wpm is not None:
        for ref in (r for r in refs if r != base.turn):
            p = facts.turn(ref)
            if p is None or p.wpm is None or not p.measured or (p.wpm >= base.wpm if side == "slow" else p.wpm <= base.wpm):
                shown = "unknown" if p is None or p.wpm is None else f"{p.wpm:.0f}"
                return [("pace", f"turn {ref} {word}", f"turn {ref} was {shown} wpm, turn {base.turn} {base.wpm:.0f}")]
        return []
    if not refs and _ADVISES.search(text):
        return []  # "you could speak a little faster": advice, not a claim about what was measured
    if refs:
        relative = bool(_THAN_OVERALL.search(text))
        for ref in refs:
            p = facts.turn(ref)
            if p is None:
                return [("pace", f"turn {ref} {word}", f"there is no turn {ref}")]
            if not p.measured or p.wpm is None:
                return [("pace", f"turn {ref} {word}", f"turn {ref} is too short to measure a pace")]
            if not on_side(p.wpm, relative=relative):
                return [("pace", f"turn {ref} {word}", (f"turn {ref} was {p.wpm:.0f} wpm "
                         f"(comfortable {low:.0f}-{high:.0f}, overall {overall or 0:.0f})"))]
        return []
    if _TURN_TOPIC.search(text):
        if re.search(r"(?i)\bthan\b", text):
            # "some turns were slower than the rest": some measured turn 10 % off the overall pace that way
            if overall is None:
                return []
            off = [p for p in facts.measured()
                   if ((p.wpm or 0) < 0.9 * overall if side == "slow" else (p.wpm or 0) > 1.1 * overall)]
            if bool(off) == bool(_NEGATION.search(text)):
                paces = ", ".join(f"#{p.turn} {p.wpm:.0f}" for p in facts.measured())
                return [("pace", f"{word} turns", f"no measured turn is 10 % {word} than the overall {overall:.0f} wpm"
                         f" ({paces})" if not off else f"turns {word}: {', '.join(f'#{p.turn}' for p in off)}")]
            return []
        any_on_side = any(on_side(p.wpm or 0, relative=False) for p in facts.measured())
        negated = bool(_NEGATION.search(text))
        if negated == any_on_side:
            found = ", ".join(f"#{p.turn} {p.wpm:.0f}" for p in facts.measured() if on_side(p.wpm or 0, relative=False))
            return [("pace", word + " turns", (f"turns {side}er than the comfortable {low:.0f}-{high:.0f} wpm: "
                     f"{found or 'none'}"))]
        return []
    if _PACE_TOPIC.search(text) and overall is not None and not re.search(r"(?i)\bthan\b", text):
        ok = (overall < low) if side == "slow" else (overall > high)
        if _NEGATION.search(text):
            ok = not ok
        if not ok:
            return [("pace", word, f"the overall pace was {overall:.0f} wpm (comfortable {low:.0f}-{high:.0f})")]
    return []


def _split_line(line: str) -> tuple[str, list[str]]:
    quotes: list[str] = []

    def hide(match: re.Match[str]) -> str:
        quotes.append(match.group())
        return f"\x00{len(quotes) - 1}\x00"

    return _QUOTE.sub(hide, line), quotes


def _restore(text: str, quotes: Sequence[str]) -> str:
    return _PLACEHOLDER.sub(lambda match: quotes[int(match.group(1))], text)


def check_analysis(text: str, metrics: SpeakingMetrics, records: Iterable[TurnRecord]) -> CheckedAnalysis:
    """Remove from ``text`` each sentence with a quote the transcript (``records``) does not contain, a
    number the metrics contradict, or a pace claim the per-turn pace contradicts (see the module's
    docstring); return what is left and the problems found."""
    facts = _facts(metrics, records)
    problems: list[Problem] = []
    kept_lines: list[str] = []
    label_line = False  # the previous line was only a label ("**Rewrite:**"): this line is what it labels
    for line in text.splitlines():
        hidden, quotes = _split_line(line)
        sentences = _SENTENCE_SPLIT.split(hidden)
        kept: list[str] = []
        changed = False
        line_so_far = "Suggestion: " if label_line else ""
        for sentence in sentences:
            found: list[tuple[str, str, str]] = []
            for match in _PLACEHOLDER.finditer(sentence):
                raw = quotes[int(match.group(1))]
                inner = raw[1:-1]
                if len(_plain(inner).split()) < 2:
                    continue
                before_sentence = _PLACEHOLDER.sub(" Q ", sentence[:match.start()])
                before_line = _PLACEHOLDER.sub(" Q ", line_so_far) + " " + before_sentence
                if _is_suggestion(before_line, before_sentence):
                    continue
                if not _quote_said(inner, facts):
                    found.append(("quote", inner, "not in the transcript"))
            suggestion_free = sentence
            label = _LABEL.search(_PLACEHOLDER.sub(lambda mm: "Q" * len(mm.group()), sentence))
            if label:  # numbers and pace words in a suggestion are advice, not claims
                suggestion_free = sentence[:label.start()]
            if not _LABEL.search(_PLACEHOLDER.sub(" Q ", line_so_far)):
                found += _check_numbers(suggestion_free, [q[1:-1] for q in quotes], facts)
                found += _check_pace(suggestion_free, facts)
            restored = _restore(sentence, quotes)
            if found:
                changed = True
                problems.extend(Problem(kind=k, claim=c, reason=r, sentence=restored.strip()) for k, c, r in found)
                label_kept = _BOLD_LABEL.match(sentence)
                if label_kept:  # "**Overall**: <removed>" keeps its label for what follows
                    kept.append(label_kept.group().rstrip())
            else:
                kept.append(sentence)
                # the context of what follows is what stays, so that checking the result again agrees
                line_so_far += sentence + " "
        if "".join(kept).strip():  # a line that is only a label ("**Rewrite:**") labels the next one
            label = _LABEL.search(" ".join(kept))
            label_line = label is not None and not re.sub(r"[\s*_]", "", " ".join(kept)[label.end():])
        if not changed:
            kept_lines.append(line)
            continue
        rebuilt = _restore(" ".join(kept), quotes).rstrip()
        marker = re.match(r"^\s*(?:[-*+]|\d+[.)])\s+", line)
        if not rebuilt.strip() or (marker and not rebuilt[marker.end():].strip() and rebuilt.strip() == line[:marker.end()].strip()):
            continue  # nothing left of this line
        if marker and not rebuilt.startswith(line[:marker.end()]):
            rebuilt = line[:marker.end()] + rebuilt.lstrip()
        kept_lines.append(rebuilt)
    cleaned = re.sub(r"\n{3,}", "\n\n", "\n".join(kept_lines)).strip()
    return CheckedAnalysis(text=cleaned, problems=tuple(problems))


__all__ = ["CheckedAnalysis", "Problem", "check_analysis"]
