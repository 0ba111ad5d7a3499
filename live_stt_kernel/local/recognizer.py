"""The offline speech model: faster-whisper (CTranslate2), loaded once and shared by every session.

``Recognizer.transcribe(pcm)`` turns 16 kHz PCM16 into words with times in ms from the start of
that audio. Calls may come from several threads at once: the model runs ``workers`` decodes in
parallel, each on ``cpu_threads`` threads (one thread per decode was fastest on small machines).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

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
    """A speech model for the embedded server (`WhisperRecognizer`); ``transcribe`` may be called from several threads at once."""

    def transcribe(self, pcm: bytes, *, prompt: str | None = None, keyterms: Sequence[str] = ()) -> list[RecognizedWord]:
        """The words in ``pcm`` (16 kHz PCM16 mono), times in ms from its start; ``prompt`` and ``keyterms`` bias the decoding."""
        ...


# Whisper's habit on near-silence: drop segments it is unsure contain speech
NO_SPEECH_PROB = 0.6
MIN_AVG_LOGPROB = -1.0


class WhisperRecognizer:
    """Whisper through faster-whisper on the CPU (int8): ``workers`` decodes run in parallel, each on ``cpu_threads`` threads.

    The model is resolved (see `resolve_model`), loaded and warmed up with one decode here; raises `ModelError` without
    faster-whisper or usable weights.
    """

    def __init__(self, model: str | os.PathLike[str] = DEFAULT_MODEL, *, cpu_threads: int = 1, workers: int = 2):
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise ModelError("the embedded engine needs faster-whisper: pip install 'faster-whisper>=1.2.1'") from None
        self.model_name = os.fspath(model)
        path = resolve_model(model)
        self.english_only = self.model_name.endswith(".en") or path.rstrip("/").endswith(".en")
        self._model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=cpu_threads, num_workers=workers)
        self.transcribe(b"\x00\x00" * 16_000)  # the first decode is slow: pay for it before any session waits

    def transcribe(self, pcm: bytes, *, prompt: str | None = None, keyterms: Sequence[str] = ()) -> list[RecognizedWord]:
        """The words in ``pcm`` (16 kHz PCM16 mono), times in ms from its start; none for under 100 ms of audio.

        ``prompt`` and ``keyterms`` go into Whisper's initial prompt; a decode that finds no words with them is redone
        without. Safe to call from several threads at once.
        """
        audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        if len(audio) < 1600:  # under 100 ms: nothing to say
            return []
        # key terms bias decoding through the prompt (faster-whisper's ``hotwords`` silenced tiny.en in our
        # tests); a prompt can also make Whisper stop at once, so an empty result is decoded again without it
        hint = " ".join(p for p in (prompt, f"Key terms: {', '.join(keyterms)}." if keyterms else "") if p)
        words = self._decode(audio, hint or None)
        return words if words or not hint else self._decode(audio, None)

    def _decode(self, audio: np.ndarray, prompt: str | None) -> list[RecognizedWord]:
        segments, _ = self._model.transcribe(
            audio,
            language="en" if self.english_only else None,
            beam_size=1,
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


__all__ = ["RecognizedWord", "Recognizer", "WhisperRecognizer", "join_pieces", "plain"]
