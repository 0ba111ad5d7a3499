"""The speech model on real speech: the careful decode that hears the previous turn, the quick draft for partials."""

from __future__ import annotations

from itertools import pairwise

from speech import librivox, normalise, wer

from live_stt_kernel.local.recognizer import plain, spread_words


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
