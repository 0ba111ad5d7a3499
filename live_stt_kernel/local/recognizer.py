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
# window badly), and stop after so many new tokens per second of audio (+ 5): without the window, greedy decoding
# otherwise loops ("He was not. He was not."). A careful decode with 1 s of silence said 1 turn in 15 again ("...
# himself. He might even ... himself."); 3 s matched the 30 s window's word errors at a quarter of its time
# (benchmarks/README.md). English speech is 3-4 tokens a second; timestamps add two per segment.
DRAFT_PAD_S = 1.0
FINAL_PAD_S = 3.0
DRAFT_TOKENS_PER_S = 4  # English; a multilingual model gets twice as many (other scripts take more tokens per word)
FINAL_TOKENS_PER_S = 8
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
                    for w in trim_long_words(self._decode(model, audio, prompt))
                    if w.start_ms + w.end_ms >= 2 * shift_ms]

        words = heard(hint)
        return words if words or not hint else heard(None)  # a prompt can make Whisper stop at once: again without

    def draft(self, pcm: bytes, *, prompt: str | None = None, keyterms: Sequence[str] = ()) -> list[RecognizedWord]:
        """A quick guess at the words in ``pcm`` for a partial: greedy, without timestamps and word alignment (the times
        are spread over the audio by word length; confidences are the geometric mean of its tokens' probabilities). On
        2-7 s of speech this took 70-330 ms where a careful decode of a padded 30 s window took 1.4 s (tiny.en, one
        thread)."""
        if len(pcm) < 3200:
            return []
        encoded = _encode(self._model, _samples(pcm), DRAFT_PAD_S)
        tokens = self._start_tokens(_hint(prompt, keyterms), language=self._language(encoded))
        budget = int(DRAFT_TOKENS_PER_S * (2 if self.multilingual else 1) * len(pcm) / 32_000) + 5
        result = self._model.model.generate(encoded, [tokens], beam_size=1, max_length=_max_length(tokens, budget),
                                            no_repeat_ngram_size=DRAFT_NO_REPEAT, return_scores=True)[0]
        text = self._tokenizer.decode(result.sequences_ids[0]).split()
        confidence = math.exp(result.scores[0]) if result.scores else 0.0
        return spread_words(text, len(pcm) // 32, round(confidence, 4))

    def _language(self, encoded: Any) -> int | None:
        """A multilingual model's language token for the audio (``None`` for an English-only model): CTranslate2's
        timestamp rules would not let the model name it itself after a bare start-of-transcript."""
        if not self.multilingual:
            return None
        token, _ = self._model.model.detect_language(encoded)[0][0]  # the likeliest, e.g. "<|de|>"
        return int(self._tokenizer.tokenizer.token_to_id(token))

    def _start_tokens(self, hint: str | None, *, timestamps: bool = False, language: int | None = None) -> list[int]:
        """The decoder's prompt: the hint as previous text, start of transcript, the language and task (multilingual
        models only) and, unless ``timestamps``, no-timestamps."""
        tokenizer = self._tokenizer
        previous = [tokenizer.sot_prev, *tokenizer.encode(" " + hint.strip())[-223:]] if hint else []
        start = [tokenizer.sot, language, tokenizer.transcribe] if language is not None else [tokenizer.sot]
        return [*previous, *start, *(() if timestamps else (tokenizer.no_timestamps,))]

    def _decode(self, model: Any, audio: np.ndarray, prompt: str | None) -> list[RecognizedWord]:
        """Beam search over the audio's own frames (plus ``FINAL_PAD_S`` of silence) with timestamps, then word times from
        the model's cross-attention (`find_alignment`, the step faster-whisper's ``word_timestamps`` runs).

        faster-whisper's ``transcribe`` always encodes a 30 s window; encoding only the turn made a careful decode
        about four times cheaper on the suite's turns (tiny.en) and was as accurate (benchmarks/README.md, "Careful
        decodes on the turn's own frames"). Past the audio's end Whisper sometimes says the turn again: a segment that
        starts within 100 ms of the end or later is dropped, and a repeat inside a segment (`loops`) is decoded again
        on the window. Audio too long for one window, and a multilingual model's (whose language is detected first),
        go through ``transcribe``.
        """
        if self.multilingual or len(audio) + FINAL_PAD_S * 16_000 > 30 * 16_000:
            return self._decode_window(model, audio, prompt)  # faster-whisper detects the language too
        encoded = _encode(model, audio, FINAL_PAD_S)
        tokens = self._start_tokens(prompt, timestamps=True)
        budget = int(FINAL_TOKENS_PER_S * len(audio) / 16_000) + 5
        result = model.model.generate(encoded, [tokens], beam_size=FINAL_BEAM, max_length=_max_length(tokens, budget),
                                      no_repeat_ngram_size=DRAFT_NO_REPEAT, return_scores=True,
                                      return_no_speech_prob=True)[0]
        if result.no_speech_prob > NO_SPEECH_PROB and (result.scores or [0.0])[0] < MIN_AVG_LOGPROB:
            return []
        segments = self._segments(result.sequences_ids[0], len(audio))
        text = [token for tokens in segments for token in tokens]
        if not text:
            return []
        if loops(self._tokenizer.decode(text)):
            return self._decode_window(model, audio, prompt)  # the 30 s window rarely loops: a second opinion
        aligned = model.find_alignment(self._tokenizer, [text], encoded, len(audio) // 160)[0]
        return join_pieces([RecognizedWord(w["word"], round(w["start"] * 1000), round(w["end"] * 1000),
                                           float(w["probability"])) for w in aligned])

    def _segments(self, sequence: Sequence[int], samples: int) -> list[list[int]]:
        """The text tokens of each segment that starts inside the audio, more than 100 ms before its end (a segment
        starting later, or one cut off there by the token budget, is Whisper repeating itself into the padding).
        Timestamps count 20 ms (320 samples)."""
        tokenizer = self._tokenizer
        kept: list[list[int]] = []
        segment: list[int] = []
        start: int | None = None  # in samples
        for token in sequence:
            if token >= tokenizer.timestamp_begin:
                if start is None:
                    start = (token - tokenizer.timestamp_begin) * 320
                    continue
                if segment and start < samples - 1600:
                    kept.append(segment)
                segment, start = [], None
            elif token < tokenizer.eot:
                segment.append(token)
        if segment and (start is None or start < samples - 1600):
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


def loops(text: str) -> bool:
    """Whether ``text`` looks like Whisper looping on audio it cannot finish: a stretch of at least ``LOOP_WORDS``
    words said again right after itself ("... himself. He might even have been made amiable himself."), or one word
    made of a short piece repeated ("old-s-s-y-y-y-y-en"). Words are compared without case and punctuation (the copies'
    tokens differ). A speaker who repeats three words in a row is caught too; the caller then only pays for a second
    opinion."""
    words = [word for word in map(plain, text.split()) if word]
    if any(_STUTTER.search(word) for word in words):
        return True
    for period in range(LOOP_WORDS, len(words) // 2 + 1):
        run = 0  # words so far equal to the word a period earlier
        for i in range(period, len(words)):
            run = run + 1 if words[i] == words[i - period] else 0
            if run >= period:
                return True
    return False


LOOP_WORDS = 3
_STUTTER = re.compile(r"(.{1,3}?)\1{3,}")  # a piece of 1-3 characters four times or more in a row: "-y-y-y-y"


def _max_length(prompt: Sequence[int], new_tokens: int) -> int:
    """CTranslate2's Whisper ``max_length`` that lets ``new_tokens`` be generated after ``prompt``: it stops after
    ``min(max_length // 2, max_length - (len(prompt) - 1))`` new tokens (measured: 60 gave 30), within the
    decoder's 448 positions."""
    return min(448, max(2 * new_tokens, len(prompt) - 1 + new_tokens))


def _encode(model: Any, audio: np.ndarray, pad_s: float) -> Any:
    """The encoder's output for ``audio`` plus ``pad_s`` of silence: its own frames, not a 30 s window."""
    padded = np.concatenate([audio, np.zeros(int(pad_s * 16_000), np.float32)])
    features = model.feature_extractor(padded, padding=0)
    return model.encode(features[:, : features.shape[-1] // 2 * 2])  # the encoder halves the frames


def trim_long_words(words: Sequence[RecognizedWord]) -> list[RecognizedWord]:
    """Word times with the silence around sentences taken out: the alignment stretches the first word of a sentence
    back over the pause before it, and a sentence's last word over the pause after it. Such a word is cut to twice the
    median word length (at most 1.4 s; the rule faster-whisper applies to its own alignments). `transcribe` drops the
    words whose middle lies in the previous turn's audio: a first word stretched back into it would be lost, a last
    word of it stretched over the pause would be kept."""
    lengths = [w.end_ms - w.start_ms for w in words if w.end_ms > w.start_ms]
    if not lengths:
        return list(words)
    longest = 2 * min(700, int(np.median(lengths)))
    trimmed: list[RecognizedWord] = []
    for i, word in enumerate(words):
        start, end = word.start_ms, word.end_ms
        if end - start > longest and (i == 0 or _ends_sentence(words[i - 1].text)):
            start = end - longest
        if end - start > longest and _ends_sentence(word.text):
            end = start + longest
        trimmed.append(RecognizedWord(word.text, start, end, word.confidence))
    return trimmed


def _ends_sentence(text: str) -> bool:
    return text.rstrip("\"'”’)»").endswith((".", "?", "!", "。", "？", "！"))


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
