"""The speech model on real speech: the careful decode that hears the previous turn, the quick draft for partials."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from speech import librivox, normalise, wer

from live_stt_kernel.local.recognizer import RecognizedWord, loops, plain, spread_words, trim_long_words


def test_words_without_times_are_laid_over_the_audio_by_length():
    words = spread_words(["a", "longer", "word."], 1000, 0.9)
    assert [(w.start_ms, w.end_ms) for w in words] == [(0, 132), (133, 599), (600, 999)]
    assert all(a.end_ms < b.start_ms for a, b in pairwise(words)) and {w.confidence for w in words} == {0.9}
    assert spread_words([], 1000, 0.5) == []


def test_a_draft_of_real_speech_is_close(whisper):
    audio, text = librivox()[0]
    words = whisper.draft(audio.tobytes())
    assert wer(text, " ".join(w.text for w in words)) <= 0.25, words
    assert words[-1].end_ms == len(audio) // 16 - 1
    assert all(0.3 < w.confidence <= 1 for w in words)  # the geometric mean of its tokens' probabilities


def test_a_draft_of_the_first_second_does_not_loop(whisper):
    audio, _ = librivox()[1]  # "He was not an ill-disposed young man ..."
    words = [plain(w.text) for w in whisper.draft(audio[:16000].tobytes())]
    # without a padded window and a token budget, greedy decoding repeated "he was not" to the length limit
    assert words[:2] == ["he", "was"] and len(words) <= 8, words
    assert whisper.draft(audio[:1000].tobytes()) == []  # under 100 ms: nothing to say


def test_the_previous_turn_is_heard_but_not_transcribed_again(whisper):
    (before, _), (audio, text) = librivox()[3:5]  # "Had he married ..." then "He might even have ..."
    words = whisper.transcribe(audio.tobytes(), context=before[-6 * 16000 :].tobytes())
    hypothesis = " ".join(w.text for w in words)
    assert wer(text, hypothesis) <= 0.15, hypothesis
    assert not set(normalise(hypothesis).split()) & {"married", "woman", "respectable"}, hypothesis
    # times are from the start of the turn's own audio, not of the context
    assert 0 <= words[0].start_ms < 1000 and words[-1].end_ms <= len(audio) // 16 + 100
    alone = whisper.transcribe(audio.tobytes())
    assert [plain(w.text) for w in alone][:3] == [plain(w.text) for w in words][:3]


def test_a_careful_decode_says_a_sentence_once_however_it_is_cut(whisper):
    audio, text = librivox()[4]  # "He might even have been made amiable himself."
    for lead_ms in (0, 160):
        for tail_ms in (40, 250, 800):  # a check; a final after min_turn_silence; one after max_turn_silence
            pcm = np.concatenate([np.zeros(16 * lead_ms, np.int16), audio[16 * 250 :], np.zeros(16 * tail_ms, np.int16)])
            hypothesis = " ".join(w.text for w in whisper.transcribe(pcm.tobytes()))
            # with 1 s of silence after the audio instead of 3, tiny.en said this sentence twice
            assert len(normalise(hypothesis).split()) <= len(normalise(text).split()), (lead_ms, tail_ms, hypothesis)
            assert wer(text, hypothesis) <= 0.15, (lead_ms, tail_ms, hypothesis)


def test_word_times_follow_the_speech(whisper):
    audio, _ = librivox()[0]
    pcm = np.concatenate([np.zeros(16_000, np.int16), audio]).tobytes()  # a second of silence first
    words = whisper.transcribe(pcm)
    # "And" starts about 1.25 s in; the alignment alone stretched it back to 0 over the silence
    assert 700 <= words[0].start_ms < 1600, words[0]
    assert all(a.start_ms <= a.end_ms <= b.start_ms for a, b in pairwise(words)), words
    assert words[-1].end_ms <= len(pcm) // 32 and words[-1].end_ms > len(pcm) // 32 - 1500, words[-1]


def test_a_loop_is_a_stretch_said_again_right_after_itself():
    assert loops("He might even have been made amiable himself. He might even have been made amiable himself.")
    assert loops("He was not an old-s-s-y-y-y-y-en?")
    assert loops("so we go so we go")  # three words said twice in a row: worth a second opinion
    assert not loops("It was the best of times, it was the worst of times, it was the age of wisdom.")
    # repeats of speech: a word or two again, a word with a repeated syllable
    for speech in ("No, no, no, no.", "That that is, is.", "Very very good.", "New York, New York.", "Ha ha ha ha.",
                   "Mississippi couscous in Walla Walla, bye bye.", ""):
        assert not loops(speech), speech


def test_words_stretched_over_the_pauses_around_a_sentence_are_trimmed():
    spans = [("So", 0, 1500), ("we", 1500, 1700), ("can", 1700, 1900), ("go.", 1900, 3000), ("Now", 3000, 3900),
             ("then", 3900, 4100), ("fine", 4100, 4300)]
    trimmed = trim_long_words([RecognizedWord(text, start, end, 0.9) for text, start, end in spans])
    # median length 200 ms: a sentence's first or last word longer than 400 ms is cut to 400 ms
    assert [(w.start_ms, w.end_ms) for w in trimmed] == [(1100, 1500), (1500, 1700), (1700, 1900), (1900, 2300),
                                                          (3500, 3900), (3900, 4100), (4100, 4300)]
    assert [w.text for w in trimmed] == [text for text, _, _ in spans] and trim_long_words([]) == []
