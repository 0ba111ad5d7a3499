"""The speech models' message behaviours on the embedded server, message by message, and the turn parameters.

Universal-Streaming (``universal-streaming-english``, the default without ``speech_model``): unformatted partials
with a settled prefix, an unformatted final then a formatted one. The pro models (``u3-rt-pro``, ``universal-3-5-pro``
...): `SpeechStarted` when speech begins, every partial the whole turn with all words non-final, one formatted final
with ``end_of_turn_confidence`` 1.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import soundfile as sf
from helpers import raw_session, read_all
from speech import espeak, normalise

from live_stt_kernel.events import SpeechStarted, Turn
from live_stt_kernel.local.engine import vad_settings
from live_stt_kernel.local.messages import end_of_turn_confidence
from live_stt_kernel.v3.protocol import SessionConfig

TWO_SENTENCES = "Good morning everyone. Let us begin the lesson now."


@pytest.fixture(scope="module")
def lesson(tmp_path_factory) -> np.ndarray:
    path = espeak(tmp_path_factory.mktemp("pro") / "lesson.wav", TWO_SENTENCES)
    return sf.read(path, dtype="int16")[0]


def _session(server, query: str, audio: np.ndarray, *, realtime: bool) -> tuple[list[dict], int | None]:
    """Stream ``audio`` in 100 ms frames (at the speaking pace when ``realtime``), then Terminate; every message."""
    ws = raw_session(server, query=query)
    started = time.monotonic()
    for n, i in enumerate(range(0, len(audio), 1600)):
        ws.send_binary(audio[i : i + 1600].tobytes().ljust(3200, b"\0"))
        if realtime:  # pacing, as a microphone sends: frame n goes out n * 100 ms after the first
            time.sleep(max(0.0, started + (n + 1) * 0.1 - time.monotonic()))
    ws.send(json.dumps({"type": "Terminate"}))
    messages, code, _ = read_all(ws)
    return messages, code


def _blocks(audio: np.ndarray) -> list[bytes]:
    return [audio[i : i + 1600].tobytes() for i in range(0, len(audio), 1600)]


def test_a_pro_model_speaks_the_pro_protocol(server, lesson):
    padded = np.concatenate([lesson, np.zeros(16000, np.int16)])  # a second of silence: the last turn ends on its own
    messages, code = _session(server, "sample_rate=16000&speech_model=u3-rt-pro&format_turns=true", padded, realtime=True)
    assert code == 1000 and messages[-1]["type"] == "Termination"
    begin = messages[0]
    assert begin["type"] == "Begin"
    assert begin["configuration"]["model"] == "u3-rt-pro" and begin["configuration"]["api_version"] == "v3"
    turns = [m for m in messages if m["type"] == "Turn"]
    assert turns and any(not t["end_of_turn"] for t in turns)  # spoken in real time: partials too
    for order in sorted({t["turn_order"] for t in turns}):
        mine = [t for t in turns if t["turn_order"] == order]
        *partials, final = mine
        assert [t["end_of_turn"] for t in mine] == [False] * len(partials) + [True]  # exactly one final, last
        for partial in partials:  # each the whole turn, re-transcribed: nothing settled
            assert not any(w["word_is_final"] for w in partial["words"])
            assert partial["transcript"] == " ".join(w["text"] for w in partial["words"])
            assert partial["end_of_turn_confidence"] == 0.0
        assert final["turn_is_formatted"] is True and final["end_of_turn_confidence"] == 1.0
        assert all(w["word_is_final"] for w in final["words"]) and final["transcript"][:1].isupper()
        first_turn = messages.index(mine[0])
        started = [m for m in messages[:first_turn] if m["type"] == "SpeechStarted"]
        assert len(started) == order + 1  # one per turn, before the turn's first message
        assert started[-1]["timestamp"] <= final["words"][0]["start"] + 300 and started[-1]["confidence"] == 1.0
    text = normalise(" ".join(t["transcript"] for t in turns if t["end_of_turn"]))
    assert text.startswith("good morning everyone") and "lesson" in text, text  # words, not accuracy: tiny.en on espeak varies


def test_universal_streaming_keeps_its_own_behaviour(server, lesson):
    messages, code = _session(server, "sample_rate=16000&speech_model=universal-streaming-english&format_turns=true", lesson,
                              realtime=False)
    assert code == 1000
    assert not [m for m in messages if m["type"] == "SpeechStarted"]
    finals = [m for m in messages if m["type"] == "Turn" and m["end_of_turn"]]
    for order in {f["turn_order"] for f in finals}:
        assert [f["turn_is_formatted"] for f in finals if f["turn_order"] == order] == [False, True]
    assert finals and all(f["end_of_turn_confidence"] == 0.9 for f in finals)  # each ends a sentence


def test_begin_says_what_the_session_runs_with_and_what_it_does_not_apply(server):
    ws = raw_session(server, query="sample_rate=16000&speech_model=universal-3-5-pro&language_detection=true&speaker_labels=true"
                                   "&end_of_turn_confidence_threshold=0.7&vad_threshold=0.5&mode=balanced")
    configuration = json.loads(ws.recv())["configuration"]
    ws.close()
    assert configuration["model"] == "universal-3-5-pro" and configuration["mode"] == "balanced"
    assert configuration["language_detection"] is True and configuration["languages"] == ["en"]  # tiny.en: English only
    assert configuration["not_applied"] == ["speaker_labels"]
    assert (configuration["end_of_turn_confidence_threshold"], configuration["vad_threshold"]) == (0.7, 0.5)
    assert (configuration["min_turn_silence"], configuration["max_turn_silence"]) == (400, 800)  # the server's, unset here


def test_update_configuration_changes_the_end_of_turn_threshold_mid_session(server, tmp_path):
    first, second = (sf.read(espeak(tmp_path / f"{i}.wav", text), dtype="int16")[0]
                     for i, text in enumerate(["Good morning everyone.", "Let us begin the lesson now."]))
    audio = np.concatenate([first, np.zeros(11200, np.int16), second])

    def finals(update: dict | None) -> int:
        query = "sample_rate=16000&speech_model=u3-rt-pro&max_turn_silence=3000&end_of_turn_confidence_threshold=1"
        ws = raw_session(server, query=query)
        if update:
            ws.send(json.dumps({"type": "UpdateConfiguration", **update}))
        for i in range(0, len(audio), 1600):
            ws.send_binary(audio[i : i + 1600].tobytes().ljust(3200, b"\0"))
        ws.send(json.dumps({"type": "Terminate"}))
        messages, _, _ = read_all(ws)
        return sum(1 for m in messages if m["type"] == "Turn" and m["end_of_turn"])

    assert finals(None) == 1  # threshold 1 and max_turn_silence 3 s: the pause between the sentences ends nothing
    assert finals({"end_of_turn_confidence_threshold": 0.1}) == 2  # every pause's check is sure enough now


def test_the_official_sdk_parses_begins_configuration(server):
    from assemblyai.streaming.v3 import StreamingClient, StreamingClientOptions, StreamingEvents, StreamingParameters

    begins = []
    client = StreamingClient(StreamingClientOptions(api_key=server.token, api_host=server.url))
    client.on(StreamingEvents.Begin, lambda _c, e: begins.append(e))
    client.connect(StreamingParameters(sample_rate=16000, speech_model="u3-rt-pro"))
    client.stream([b"\0" * 1600])
    client.disconnect(terminate=True)
    assert len(begins) == 1 and begins[0].configuration.model == "u3-rt-pro" and begins[0].configuration.api_version == "v3"


def test_language_detection_names_each_turns_language(server, lesson):
    messages, _ = _session(server, "sample_rate=16000&speech_model=u3-rt-pro&language_detection=true", lesson, realtime=False)
    finals = [m for m in messages if m["type"] == "Turn" and m["end_of_turn"]]
    assert finals and all(f["language_code"] == "en" for f in finals)


@pytest.mark.parametrize("encoding", ["opus", "ogg_opus", "aac"])
def test_a_compressed_encoding_is_refused_plainly(server, encoding):
    messages, code, _ = read_all(raw_session(server, query=f"sample_rate=16000&encoding={encoding}"))
    assert code == 3006 and messages[0]["type"] == "Error"
    assert "pcm_s16le" in messages[0]["error"] and encoding in messages[0]["error"]


def test_the_end_of_turn_threshold_decides_which_pauses_end_a_turn(engine, tmp_path):
    first, second = (sf.read(espeak(tmp_path / f"{i}.wav", text), dtype="int16")[0]
                     for i, text in enumerate(["Good morning everyone.", "Let us begin the lesson now."]))
    pause = np.zeros(int(0.7 * 16000), np.int16)  # with the files' own padding: over a second between the sentences
    audio = np.concatenate([first, pause, second])

    def finals(threshold: float) -> list[str]:
        config = SessionConfig(format_turns=True, end_of_turn_confidence_threshold=threshold, max_turn_silence=3000)
        return [e.transcript for e in engine.transcribe(_blocks(audio), config=config) if isinstance(e, Turn) and e.formatted]

    # max_turn_silence 3 s is never reached: a turn ends at a pause only when the check is confident enough
    assert len(finals(0.1)) == 2  # every pause's check is: the pause between the sentences ends the first
    together = finals(1.0)  # none is: the turn goes on to the end of the audio
    assert len(together) == 1 and normalise(together[0]).startswith("good morning"), together


def test_a_high_vad_threshold_ignores_quiet_speech(engine, lesson):
    quiet = (lesson.astype(np.float32) * 10 ** (-25 / 20)).astype(np.int16)  # 25 dB down: a distant voice

    def turns(vad_threshold: float | None) -> int:
        config = SessionConfig(format_turns=True, vad_threshold=vad_threshold)
        return sum(1 for e in engine.transcribe(_blocks(quiet), config=config) if isinstance(e, Turn) and e.formatted)

    assert turns(None) >= 1 and turns(1.0) == 0


def test_end_of_turn_confidence_and_vad_settings():
    assert end_of_turn_confidence("We are done.") == 0.9 and end_of_turn_confidence("Are we done?") == 0.9
    assert end_of_turn_confidence("It was the age of.") == 0.3 and end_of_turn_confidence("and then") == 0.1
    assert vad_settings(None) == (3, 0.0) and vad_settings(0.1) == (1, 0.0) and vad_settings(0.4) == (3, 0.0)
    mode, floor = vad_settings(1.0)
    assert mode == 3 and 10 * np.log10(floor / 32768**2) == pytest.approx(-30)


def test_speech_started_comes_once_per_turn_before_its_turn_even_when_one_push_holds_several_turns(engine, tmp_path):
    first, second = (sf.read(espeak(tmp_path / f"{i}.wav", text), dtype="int16")[0]
                     for i, text in enumerate(["Good morning everyone.", "Let us begin the lesson now."]))
    audio = np.concatenate([first[: -12000], second[4000:]])  # espeak's padding cut to half a second between the sentences
    config = SessionConfig(speech_model="u3-rt-pro", min_turn_silence=100, max_turn_silence=100)
    pushes = [audio[i : i + 64000].tobytes() for i in range(0, len(audio), 64000)]  # 4 s pushes: a whole turn and the next one's start
    events = [e for e in engine.transcribe(pushes, config=config) if isinstance(e, (SpeechStarted, Turn))]
    orders = [e.turn_order for e in events if isinstance(e, Turn)]
    assert len(set(orders)) >= 2, orders
    for order in sorted(set(orders)):
        first_turn = next(i for i, e in enumerate(events) if isinstance(e, Turn) and e.turn_order == order)
        assert sum(isinstance(e, SpeechStarted) for e in events[:first_turn]) == order + 1, events
    assert sum(isinstance(e, SpeechStarted) for e in events) == len(set(orders))
