"""The embedded server's turn detector and messages, fed data (no model, no sockets)."""

from __future__ import annotations

import numpy as np

from live_stt_kernel.local.messages import final_messages, partial_message, stable_prefix
from live_stt_kernel.local.recognizer import RecognizedWord, join_pieces, plain
from live_stt_kernel.local.turns import CHECK, DUE, FINAL, PARTIAL, TurnDetector, TurnSettings, reads_finished


def energy_vad(frame: bytes) -> bool:
    return float(np.abs(np.frombuffer(frame, dtype="<i2")).mean()) > 500


def audio(*spans: tuple[str, int]) -> bytes:
    """("speech" | "silence", ms) spans as 16 kHz PCM16."""
    out = []
    for kind, ms in spans:
        n = ms * 16
        out.append((np.full(n, 3000, dtype="<i2") if kind == "speech" else np.zeros(n, dtype="<i2")).tobytes())
    return b"".join(out)


def feed(detector: TurnDetector, pcm: bytes, block: int = 1600) -> list:
    requests = []
    for i in range(0, len(pcm), block):
        more = detector.push(pcm[i : i + block])
        while more:  # the detector pauses after each due verdict
            requests += more
            more = detector.push(b"")
    return requests


def test_a_turn_gets_partials_then_a_check_then_a_final_when_unfinished():
    detector = TurnDetector(is_speech=energy_vad, settings=TurnSettings())
    requests = feed(detector, audio(("silence", 500), ("speech", 2500), ("silence", 1000)))
    kinds = [r.kind for r in requests]
    assert kinds == [PARTIAL] * 5 + [CHECK, DUE, FINAL]
    # the turn opens 120 ms into the speech (at 620 ms); the first partial 250 ms later (at the next 20 ms frame),
    # then every 500 ms
    assert [r.end_ms for r in requests[:5]] == [880, 1380, 1880, 2380, 2880]
    check, due, final = requests[-3:]
    # the check's audio ends 40 ms into the silence, its verdict is due at 400 ms
    assert (check.end_ms, due.end_ms, due.pcm) == (3040, 3400, b"")
    # opened 200 ms (pre-roll) before the 120 ms of speech that confirmed it; ends 200 ms into the silence
    assert (final.turn_order, final.start_ms, final.end_ms) == (0, 300, 3200)
    assert len(final.pcm) == (final.end_ms - final.start_ms) * 32
    assert detector.turn_order == 1


def test_a_one_second_utterance_gets_a_partial():
    detector = TurnDetector(is_speech=energy_vad)
    requests = feed(detector, audio(("silence", 300), ("speech", 1000), ("silence", 1000)))
    assert [r.kind for r in requests][:2] == [PARTIAL, PARTIAL] and requests[0].end_ms - 300 <= 400


def test_a_full_stop_after_a_word_no_sentence_ends_with_does_not_end_the_turn():
    assert reads_finished("It was the age of wisdom.") and reads_finished("Does that make sense?")
    assert reads_finished("I think so.") and reads_finished("That's how it was!") and reads_finished("I love her.")
    assert reads_finished("What are you afraid of?")  # a question may end with one
    # Whisper's full stop after a clause cut at a pause
    assert not reads_finished("It was the age of.") and not reads_finished("We lose most users and.")
    assert not reads_finished("It was the age of wisdom,") and not reads_finished("and then...")
    assert not reads_finished("") and not reads_finished(".")


def test_a_check_that_reads_finished_ends_the_turn_early():
    detector = TurnDetector(is_speech=energy_vad)
    requests = feed(detector, audio(("silence", 300), ("speech", 1500), ("silence", 460)))
    assert [r.kind for r in requests[-2:]] == [CHECK, DUE] and reads_finished("That is all.")
    detector.end_turn()
    more = [r for r in feed(detector, audio(("silence", 1000), ("speech", 800), ("silence", 1000))) if r.kind != PARTIAL]
    assert [r.kind for r in more] == [CHECK, DUE, FINAL] and more[-1].turn_order == 1


def test_speech_before_the_verdict_drops_the_check():
    detector = TurnDetector(is_speech=energy_vad)
    pcm = audio(("speech", 800), ("silence", 100), ("speech", 400), ("silence", 1000))
    requests = [r for r in feed(detector, pcm) if r.kind != PARTIAL]
    assert [r.kind for r in requests] == [CHECK, CHECK, DUE, FINAL]  # the first pause was too short for a verdict
    assert requests[0].end_ms < requests[1].end_ms and requests[2].turn_order == requests[1].turn_order


def test_the_detector_reads_no_audio_past_a_due_verdict_until_asked():
    detector = TurnDetector(is_speech=energy_vad)
    first = detector.push(audio(("speech", 800), ("silence", 1000)))  # one big block
    assert [r.kind for r in first] == [PARTIAL, CHECK, DUE] and len(detector.pending) > 0
    detector.end_turn()  # the check read finished
    assert detector.push(b"") == [] and detector.turn_order == 1  # no FINAL for the closed turn


def test_the_same_audio_gives_the_same_requests_in_any_block_size():
    pcm = audio(("silence", 400), ("speech", 3000), ("silence", 300), ("speech", 1200), ("silence", 1500))
    runs = [[(r.kind, r.start_ms, r.end_ms) for r in feed(TurnDetector(is_speech=energy_vad), pcm, block)] for block in (640, 1600, 32000)]
    assert runs[0] == runs[1] == runs[2]


def test_no_turn_during_silence_or_a_click_and_long_turns_are_cut():
    detector = TurnDetector(is_speech=energy_vad, settings=TurnSettings(max_turn_ms=3000))
    assert feed(detector, audio(("silence", 2000), ("speech", 60), ("silence", 2000))) == []
    requests = feed(detector, audio(("speech", 10_000)))
    finals = [r for r in requests if r.kind == FINAL]
    # no pause anywhere: cut where the audio is, max_turn_ms + cap_grace_ms in
    assert len(finals) == 1 and finals[0].end_ms - finals[0].start_ms == 3000 + TurnSettings().cap_grace_ms


def test_an_over_long_turn_is_cut_at_its_longest_pause_not_mid_word():
    detector = TurnDetector(is_speech=energy_vad)
    pcm = audio(("silence", 500), ("speech", 4000), ("silence", 80), ("speech", 5000), ("silence", 160),
                ("speech", 7000), ("silence", 100), ("speech", 4000), ("silence", 1000))
    finals = [r for r in feed(detector, pcm) if r.kind == FINAL]
    assert len(finals) == 2
    first, second = finals
    # the 160 ms pause (9580..9740 ms) is the longest in the turn's last two thirds: the cut is in its middle
    assert 9580 < first.end_ms < 9740 and first.end_ms - first.start_ms <= 15_000
    assert second.start_ms == first.end_ms and second.turn_order == first.turn_order + 1
    assert len(first.pcm) == (first.end_ms - first.start_ms) * 32 and len(second.pcm) == (second.end_ms - second.start_ms) * 32


def test_past_the_cap_the_turn_is_cut_at_the_next_pause():
    detector = TurnDetector(is_speech=energy_vad, settings=TurnSettings(max_turn_ms=3000))
    finals = [r for r in feed(detector, audio(("speech", 4000), ("silence", 100), ("speech", 2000), ("silence", 1000)))
              if r.kind == FINAL]
    assert len(finals) == 2 and 4000 < finals[0].end_ms < 4100 and finals[1].start_ms == finals[0].end_ms


def test_force_endpoint_closes_the_open_turn_only():
    detector = TurnDetector(is_speech=energy_vad)
    assert detector.force_endpoint() == []
    feed(detector, audio(("speech", 700)))
    (request,) = detector.force_endpoint()
    assert request.kind == FINAL and detector.turn_order == 1 and detector.force_endpoint() == []


def test_partial_words_become_final_once_two_decodes_agree():
    words = [RecognizedWord("Hello,", 0, 300, 0.9), RecognizedWord("world", 300, 600, 0.8), RecognizedWord("again", 600, 900, 0.7)]
    first = partial_message(0, words[:2], 1000, [])
    assert first["transcript"] == "" and [w["word_is_final"] for w in first["words"]] == [False, False]
    second = partial_message(0, words, 1000, ["hello", "world"])
    assert second["transcript"] == "hello world"
    assert [w["word_is_final"] for w in second["words"]] == [True, True, False]
    assert second["words"][0] == {"start": 1000, "end": 1300, "text": "hello", "confidence": 0.9, "word_is_final": True}
    assert stable_prefix(["a", "b"], ["a", "c"]) == 1 and plain("Don't!") == "don't"


def test_finals_come_unformatted_then_formatted_with_the_same_turn_order():
    words = [RecognizedWord("Hi", 0, 200, 0.9), RecognizedWord("there.", 200, 500, 0.9)]
    unformatted, formatted = final_messages(4, words, 2000, format_turns=True)
    assert (unformatted["turn_order"], formatted["turn_order"]) == (4, 4)
    assert unformatted["transcript"] == "hi there" and not unformatted["turn_is_formatted"]
    assert formatted["transcript"] == "Hi there." and formatted["turn_is_formatted"]
    assert all(m["end_of_turn"] for m in (unformatted, formatted))
    assert [w["start"] for w in formatted["words"]] == [2000, 2200]
    assert len(final_messages(4, words, 0, format_turns=False)) == 1


def test_whisper_pieces_without_a_leading_space_continue_the_word_before():
    pieces = [RecognizedWord(" Unless", 0, 300, 0.9), RecognizedWord(" cold", 300, 500, 0.8),
              RecognizedWord("-hearted", 500, 900, 0.6), RecognizedWord(" it", 900, 1000, 0.9),
              RecognizedWord("'s", 1000, 1100, 0.7), RecognizedWord(" 1", 1100, 1200, 0.9), RecognizedWord(",000.", 1200, 1500, 0.9)]
    words = join_pieces(pieces)
    assert [w.text for w in words] == ["Unless", "cold-hearted", "it's", "1,000."]
    assert (words[1].start_ms, words[1].end_ms, words[1].confidence) == (300, 900, 0.6)
    assert join_pieces([RecognizedWord("-dashed", 0, 100, 0.5)])[0].text == "-dashed"  # nothing to join to
    # languages written without spaces: pieces of letters stay words of their own
    japanese = join_pieces([RecognizedWord("こんにちは", 0, 500, 0.9), RecognizedWord("世界", 500, 900, 0.9)])
    assert [w.text for w in japanese] == ["こんにちは", "世界"]
    assert [w.text for w in join_pieces([RecognizedWord(" well-", 0, 300, 0.9), RecognizedWord("known", 300, 600, 0.9)])] == ["well-known"]


def test_a_turn_that_reaches_the_cap_during_a_pause_is_cut_there_and_the_silence_makes_no_turn():
    detector = TurnDetector(is_speech=energy_vad, settings=TurnSettings(max_turn_ms=3000))
    requests = feed(detector, audio(("speech", 2950), ("silence", 1500), ("speech", 1000), ("silence", 1000)))
    finals = [r for r in requests if r.kind == FINAL]
    # the first is cut in the pause it reached the cap in; the silence after the cut is no turn; then the next words
    assert len(finals) == 2 and 2950 < finals[0].end_ms < 3100, finals
    assert finals[1].start_ms > 4000 and all(f.end_ms > f.start_ms for f in finals)
    assert all(len(f.pcm) == (f.end_ms - f.start_ms) * 32 for f in finals)
    assert [r for r in requests if r.end_ms < r.start_ms] == []
