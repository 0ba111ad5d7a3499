"""The offline speech model: faster-whisper (CTranslate2), loaded once and shared by every session.

``Recognizer.transcribe(pcm)`` turns 16 kHz PCM16 into words with times in ms from the start of
that audio: the careful decode that finals are made of (beam search, aligned word times, optionally
the audio before the turn as context). ``Recognizer.draft(pcm)`` is the cheap one for partials:
greedy, no timestamps, no alignment. Both encode only the audio itself plus a few seconds of silence,
not the 30 s window faster-whisper always pads to. Calls may come from several threads at
once: the model runs ``workers`` decodes in parallel, each on ``cpu_threads`` threads (one thread per
decode was fastest on small machines).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import ModelError
from .models import DEFAULT_MODEL, resolve_model


@dataclass(frozen=True, slots=True)
class RecognizedWord:
    """One recognized word; times are ms from the start of the audio decoded."""

    text: str  # as the model wrote it: cased and punctuated
    start_ms: int
    end_ms: int
    confidence: float


class Recognizer(Protocol):
    """A speech model for the embedded server (`WhisperRecognizer`); may be called from several threads at once."""

    def transcribe(self, pcm: bytes, *, prompt: str | None = None, keyterms: Sequence[str] = (),
                   context: bytes = b"", alone: bool = False) -> list[RecognizedWord]:
        """The words in ``pcm`` (16 kHz PCM16 mono), times in ms from its start; ``prompt`` and ``keyterms`` bias the
        decoding; ``context`` is the audio just before ``pcm``, heard but not transcribed; ``alone``: no other decode
        is running, so this one may use every core."""
        ...

    def draft(self, pcm: bytes, *, prompt: str | None = None, keyterms: Sequence[str] = ()) -> list[RecognizedWord]:
        """A quick, rougher guess at the words in ``pcm`` (for partials); word times may be estimates."""
        ...


# Whisper's habit on near-silence: drop segments it is unsure contain speech
NO_SPEECH_PROB = 0.6
MIN_AVG_LOGPROB = -1.0
# Finals decode with beam search: on the suite's recordings it cut the word errors of continuous reading by a fifth
# for little extra time (tiny.en's decoder is small next to its encoder; benchmarks/README.md)
FINAL_BEAM = 5
# Decodes encode the audio plus this much silence instead of faster-whisper's 30 s window (Whisper ends a clipped
# window badly), and stop after so many tokens per second of audio: without the window, greedy decoding otherwise
# loops ("He was not. He was not."). A careful decode with 1 s of silence said 1 turn in 15 again ("... himself. He
# might even ... himself."); 3 s matched the 30 s window's word errors at a quarter of its time (benchmarks/README.md)
DRAFT_PAD_S = 1.0
FINAL_PAD_S = 3.0
DRAFT_TOKENS_PER_S = 7  # English; a multilingual model gets twice as many (other scripts take more tokens per word)
FINAL_TOKENS_PER_S = 10  # a careful decode also writes two timestamps per segment
LOOP_CHARS = 8  # a stretch repeated right after itself over this many letters is a loop (see `loops`)
DRAFT_NO_REPEAT = 8  # tokens: a loop is cut, a phrase said twice ("it was the best ..., it was the worst ...") is not


class WhisperRecognizer:
    """Whisper through faster-whisper on the CPU (int8): ``workers`` decodes run in parallel, each on ``cpu_threads``
    threads; a decode that runs alone uses ``alone_threads`` (default: every core, at most 4) through a second copy of
    the model (CTranslate2 fixes a model's threads when it loads it). One thread per decode is fastest when many run;
    when one runs, the other cores would idle: on 2 cores a second thread cut a LibriVox decode from 1.41 to 0.94 s
    and a single session's final p50 from 2.09 to 1.52 s, for 130 MB more peak memory (384 -> 514 MB) and about 5 %
    more CPU (benchmarks/README.md, "Peers"). ``alone_threads=1`` (``live-stt serve --alone-threads 1``) turns it off.

    The model is resolved (see `resolve_model`), loaded and warmed up here; raises `ModelError` without faster-whisper
    or usable weights.
    """

    def __init__(self, model: str | os.PathLike[str] = DEFAULT_MODEL, *, cpu_threads: int = 1, workers: int = 2,
                 alone_threads: int | None = None):
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
        except ImportError:
            raise ModelError("the embedded engine needs faster-whisper: pip install 'faster-whisper>=1.2.1'") from None
        self.model_name = os.fspath(model)
        path = resolve_model(model)
        self._model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=cpu_threads, num_workers=workers)
        alone_threads = min(4, len(os.sched_getaffinity(0))) if alone_threads is None else alone_threads
        self._alone = (WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=alone_threads, num_workers=1)
                       if alone_threads > cpu_threads else self._model)
        self.multilingual = bool(self._model.model.is_multilingual)  # the model says, whatever its folder is named
        # for drafts: an English-only model's start of transcript names no language; a multilingual one's names it
        # itself (the language given here is never used)
        self._tokenizer = Tokenizer(self._model.hf_tokenizer, self.multilingual, task="transcribe", language="en")
        # the first decodes are slow: pay for them before any session waits
        self.transcribe(b"\x00\x00" * 16_000)
        if self._alone is not self._model:
            self.transcribe(b"\x00\x00" * 16_000, alone=True)
        self.draft(b"\x00\x00" * 16_000)

    def transcribe(self, pcm: bytes, *, prompt: str | None = None, keyterms: Sequence[str] = (),
                   context: bytes = b"", alone: bool = False) -> list[RecognizedWord]:
        """The words in ``pcm`` (16 kHz PCM16 mono), times in ms from its start; none for under 100 ms of audio.

        ``prompt`` and ``keyterms`` go into Whisper's initial prompt; a decode that finds no words with them is redone
        without. ``context``, the audio right before ``pcm`` (e.g. the previous turn of the same sentence), is decoded
        with it, and the words whose middle falls in it are dropped: a clause decoded alone loses the sentence it
        belongs to (on a reading paused at every comma, 6 s of context cut the word errors by a third). ``alone``: no
        other decode runs, use the model copy with ``alone_threads``. Safe to call from several threads at once.
        """
        if len(pcm) < 3200:  # under 100 ms: nothing to say
            return []
        audio = _samples(context + pcm)
        shift_ms = len(context) // 32
        hint, model = _hint(prompt, keyterms), self._alone if alone else self._model

        def heard(prompt: str | None) -> list[RecognizedWord]:  # the words of ``pcm`` itself, on its clock
            return [RecognizedWord(w.text, max(0, w.start_ms - shift_ms), w.end_ms - shift_ms, w.confidence)
                    for w in self._decode(model, audio, prompt) if w.start_ms + w.end_ms >= 2 * shift_ms]

        words = heard(hint)
        return words if words or not hint else heard(None)  # a prompt can make Whisper stop at once: again without

    def draft(self, pcm: bytes, *, prompt: str | None = None, keyterms: Sequence[str] = ()) -> list[RecognizedWord]:
        """A quick guess at the words in ``pcm`` for a partial: greedy, without timestamps and word alignment (the times
        are spread over the audio by word length; confidences are the geometric mean of its tokens' probabilities). On
        2-7 s of speech this took 70-330 ms where a careful decode of a padded 30 s window took 1.4 s (tiny.en, one
        thread)."""
        if len(pcm) < 3200:
            return []
        tokens = self._start_tokens(_hint(prompt, keyterms))
        budget = int(DRAFT_TOKENS_PER_S * (2 if self.multilingual else 1) * len(pcm) / 32_000) + 10
        result = self._model.model.generate(
            _encode(self._model, _samples(pcm), DRAFT_PAD_S), [tokens], beam_size=1, max_length=len(tokens) + budget,
            no_repeat_ngram_size=DRAFT_NO_REPEAT, return_scores=True)[0]
        text = self._tokenizer.decode(result.sequences_ids[0]).split()
        confidence = math.exp(result.scores[0]) if result.scores else 0.0
        return spread_words(text, len(pcm) // 32, round(confidence, 4))

    def _start_tokens(self, hint: str | None, *, timestamps: bool = False) -> list[int]:
        tokenizer = self._tokenizer
        previous = [tokenizer.sot_prev, *tokenizer.encode(" " + hint.strip())[-223:]] if hint else []
        # a multilingual model first names the language itself (and may add the task and timestamps)
        if self.multilingual:
            return [*previous, tokenizer.sot]
        return [*previous, *tokenizer.sot_sequence, *(() if timestamps else (tokenizer.no_timestamps,))]

    def _decode(self, model: Any, audio: np.ndarray, prompt: str | None) -> list[RecognizedWord]:
        """Beam search over the audio's own frames (plus ``FINAL_PAD_S`` of silence) with timestamps, then word times from
        the model's cross-attention (`find_alignment`, the step faster-whisper's ``word_timestamps`` runs).

        faster-whisper's ``transcribe`` always encodes a 30 s window; encoding only the turn made a careful decode
        2-3 times cheaper on the suite's turns (tiny.en) and was as accurate (benchmarks/README.md, "Careful decodes on
        the turn's own frames"). Past the audio's end Whisper sometimes says the turn again; with timestamps those
        repeats start at or after the end and are dropped. Audio too long for one window, and a multilingual model's
        (whose language is detected first), go through ``transcribe``.
        """
        if self.multilingual or len(audio) + FINAL_PAD_S * 16_000 > 30 * 16_000:
            return self._decode_window(model, audio, prompt)  # faster-whisper detects the language too
        encoded = _encode(model, audio, FINAL_PAD_S)
        tokens = self._start_tokens(prompt, timestamps=True)
        budget = int(FINAL_TOKENS_PER_S * len(audio) / 16_000) + 10
        result = model.model.generate(encoded, [tokens], beam_size=FINAL_BEAM, max_length=min(448, len(tokens) + budget),
                                      no_repeat_ngram_size=DRAFT_NO_REPEAT, return_scores=True,
                                      return_no_speech_prob=True)[0]
        if result.no_speech_prob > NO_SPEECH_PROB and (result.scores or [0.0])[0] < MIN_AVG_LOGPROB:
            return []
        segments = self._segments(result.sequences_ids[0], len(audio) / 16_000)
        text = [token for tokens in segments for token in tokens]
        if not text:
            return []
        if loops(self._tokenizer.decode(text)):
            return self._decode_window(model, audio, prompt)  # the 30 s window rarely loops: a second opinion
        aligned = model.find_alignment(self._tokenizer, [text], encoded, len(audio) // 160)[0]
        return trim_long_words(join_pieces([RecognizedWord(w["word"], round(w["start"] * 1000), round(w["end"] * 1000),
                                                           float(w["probability"])) for w in aligned]))

    def _segments(self, sequence: Sequence[int], duration_s: float) -> list[list[int]]:
        """The text tokens of each segment that starts inside the audio (a segment starting at or past its end, or one
        cut off there by the token budget, is Whisper repeating itself into the padding)."""
        tokenizer = self._tokenizer
        kept: list[list[int]] = []
        segment: list[int] = []
        start: float | None = None
        for token in sequence:
            if token >= tokenizer.timestamp_begin:
                if start is None:
                    start = (token - tokenizer.timestamp_begin) * 0.02
                    continue
                if segment and start < duration_s - 0.1:
                    kept.append(segment)
                segment, start = [], None
            elif token < tokenizer.eot:
                segment.append(token)
        if segment and (start is None or start < duration_s - 0.1):
            kept.append(segment)
        return kept

    def _decode_window(self, model: Any, audio: np.ndarray, prompt: str | None) -> list[RecognizedWord]:
        segments, _ = model.transcribe(
            audio,
            language=None if self.multilingual else "en",
            beam_size=FINAL_BEAM,
            temperature=0.0,  # no fallback re-decodes at higher temperatures: they doubled some decodes' cost
            word_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
            initial_prompt=prompt,
        )
        words: list[RecognizedWord] = []
        for segment in segments:
            if segment.no_speech_prob > NO_SPEECH_PROB and segment.avg_logprob < MIN_AVG_LOGPROB:
                continue
            words += join_pieces([RecognizedWord(w.word, round(w.start * 1000), round(w.end * 1000), float(w.probability))
                                  for w in segment.words or ()])
        return words


def loops(text: str, *, span: int = LOOP_CHARS) -> bool:
    """Whether some stretch of ``text`` (lower case, no punctuation) comes again right after itself, the repeats
    covering at least ``span`` characters: Whisper looping on audio it cannot finish ("... himself. He might even ...
    himself.", "old-s-s-y-y-y-y-en"; tokens differ between the copies, so the letters are compared). A speaker who
    says a phrase twice ("bye bye") is caught too; the caller then only pays for a second opinion."""
    chars = plain(text).replace(" ", "")
    n = len(chars)
    for period in range(1, n // 2 + 1):
        run = 0  # characters so far equal to the one a period earlier
        for i in range(period, n):
            run = run + 1 if chars[i] == chars[i - period] else 0
            if run + period >= span and run >= period:
                return True
    return False


def _encode(model: Any, audio: np.ndarray, pad_s: float) -> Any:
    """The encoder's output for ``audio`` plus ``pad_s`` of silence: its own frames, not a 30 s window."""
    padded = np.concatenate([audio, np.zeros(int(pad_s * 16_000), np.float32)])
    features = model.feature_extractor(padded, padding=0)
    return model.encode(features[:, : features.shape[-1] // 2 * 2])  # the encoder halves the frames


def trim_long_words(words: Sequence[RecognizedWord]) -> list[RecognizedWord]:
    """Word times with the silence around sentences taken out: the alignment stretches the first word of a sentence
    back over the pause before it, and a sentence's last word over the pause after it. Such a word is cut to twice the
    median word length (at most 1.4 s; the rule faster-whisper applies to its own alignments). The engine drops the
    words whose middle lies in the previous turn's audio, so a first word stretched back into it would be lost."""
    lengths = sorted(w.end_ms - w.start_ms for w in words if w.end_ms > w.start_ms)
    if not lengths:
        return list(words)
    longest = 2 * min(700, lengths[len(lengths) // 2])
    trimmed: list[RecognizedWord] = []
    for i, word in enumerate(words):
        start, end = word.start_ms, word.end_ms
        if end - start > longest and (i == 0 or words[i - 1].text.endswith(_SENTENCE_ENDS)):
            start = end - longest
        if end - start > longest and word.text.endswith(_SENTENCE_ENDS):
            end = start + longest
        trimmed.append(RecognizedWord(word.text, start, end, word.confidence))
    return trimmed


_SENTENCE_ENDS = (".", "?", "!", "。", "？", "！")


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def _hint(prompt: str | None, keyterms: Sequence[str]) -> str | None:
    """Whisper's initial prompt: the user's prompt and the key terms (faster-whisper's ``hotwords`` silenced tiny.en
    in our tests; the prompt works)."""
    return " ".join(p for p in (prompt, f"Key terms: {', '.join(keyterms)}." if keyterms else "") if p) or None


def spread_words(texts: Sequence[str], duration_ms: int, confidence: float) -> list[RecognizedWord]:
    """Words without times laid over ``duration_ms`` in proportion to their length (a draft has no alignment)."""
    total = max(1, sum(len(t) + 1 for t in texts))
    words, chars, at = [], 0, 0
    for text in texts:
        chars += len(text) + 1
        end = chars * duration_ms // total
        words.append(RecognizedWord(text, at, max(at, end - 1), confidence))
        at = end
    return words


def join_pieces(pieces: Sequence[RecognizedWord]) -> list[RecognizedWord]:
    """One segment's word pieces as words: a piece that does not start with a space and starts with punctuation or a
    digit (or follows a hyphen) continues the word before it.

    Whisper splits some words at punctuation it treats as leading ("ill" "-disposed", "cold" "-hearted", "1" ",000");
    written with a space between them they read as two words on screen and in the word error rate. Letters right after
    a piece are left alone: in languages written without spaces every piece starts without one. The joined word spans
    both pieces and is as confident as its least confident piece.
    """
    words: list[RecognizedWord] = []
    for piece in pieces:
        text = piece.text.strip()
        if not text:
            continue
        if words and not piece.text[:1].isspace() and (not text[0].isalpha() or words[-1].text.endswith("-")):
            last = words[-1]
            words[-1] = RecognizedWord(last.text + text, last.start_ms, max(last.end_ms, piece.end_ms),
                                       min(last.confidence, piece.confidence))
        else:
            words.append(RecognizedWord(text, piece.start_ms, piece.end_ms, piece.confidence))
    return words


_PUNCTUATION = re.compile(r"[^\w'-]+")


def plain(text: str) -> str:
    """Universal-Streaming's unformatted style: lower case, no punctuation."""
    return _PUNCTUATION.sub("", text).lower()


__all__ = ["RecognizedWord", "Recognizer", "WhisperRecognizer", "join_pieces", "plain", "spread_words"]
