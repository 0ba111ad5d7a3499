"""The sans-I/O v3 protocol: URL and auth, frames, every server message, close codes."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from live_stt_kernel.errors import ConfigurationError, ProtocolError
from live_stt_kernel.events import (
    Heartbeat,
    LLMGatewayResponse,
    ServerError,
    ServerWarning,
    SessionBegan,
    SessionEnded,
    SpeakerRevision,
    SpeechStarted,
    Turn,
)
from live_stt_kernel.v3 import protocol
from live_stt_kernel.v3.protocol import (
    Action,
    Chunker,
    StreamingParams,
    classify_close,
    parse,
)


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_url_sends_speech_model_lists_as_json_and_lowercase_booleans():
    params = StreamingParams(keyterms_prompt=["Jupyter", "AssemblyAI"], speaker_labels=True, format_turns=False,
                             min_turn_silence=400, llm_gateway={"model": "gemini-2.5-flash-lite"})
    url = protocol.build_url("wss://streaming.assemblyai.com", params)
    assert url.startswith("wss://streaming.assemblyai.com/v3/ws?")
    q = query_of(url)
    assert q["speech_model"] == "u3-rt-pro"  # the model AssemblyAI's guides use
    assert q["sample_rate"] == "16000" and q["encoding"] == "pcm_s16le"
    assert json.loads(q["keyterms_prompt"]) == ["Jupyter", "AssemblyAI"]
    assert q["speaker_labels"] == "true" and q["format_turns"] == "false"
    assert q["min_turn_silence"] == "400"
    assert json.loads(q["llm_gateway"]) == {"model": "gemini-2.5-flash-lite"}
    assert "prompt" not in q and "token" not in q  # None means "server default": not sent


def test_url_keeps_an_explicit_path_and_adds_token_and_extras():
    params = StreamingParams(speech_model="u3-rt-pro", extra={"future_flag": True})
    url = protocol.build_url("ws://127.0.0.1:8765/v3/ws", params, token="tmp-token")
    assert urlsplit(url).path == "/v3/ws"
    q = query_of(url)
    assert q["token"] == "tmp-token" and q["speech_model"] == "u3-rt-pro" and q["future_flag"] == "true"
    assert "tmp-token" not in protocol.redact_url(url)


@pytest.mark.parametrize("bad", ["http://example.com", "streaming.assemblyai.com", "ws://", ""])
def test_url_must_be_a_websocket_url(bad):
    with pytest.raises(ConfigurationError, match="ws://"):
        protocol.build_url(bad, StreamingParams())


def test_auth_header_is_the_raw_key():
    assert protocol.auth_headers("abc") == {"Authorization": "abc"}
    assert protocol.auth_headers(None) == {}


@pytest.mark.parametrize("kwargs", [
    {"encoding": "mp3"}, {"sample_rate": 0}, {"inactivity_timeout": 2},
    {"keyterms_prompt": ["x" * 51]}, {"keyterms_prompt": [str(i) for i in range(101)]}, {"keyterms_prompt": "one string"},
])
def test_params_reject_what_the_server_would(kwargs):
    with pytest.raises(ConfigurationError):
        StreamingParams(**kwargs)


@pytest.mark.parametrize("blocks", [[1], [7, 3201, 5, 999], [16000], [1600] * 5, [3333] * 7])
def test_chunker_makes_exact_50ms_frames_and_keeps_every_byte(blocks):
    data = bytes(range(256)) * (sum(blocks) // 256 + 1)
    chunker, frames, pos = Chunker(), [], 0
    for size in blocks:
        frames += chunker.feed(data[pos : pos + size])
        pos += size
    assert all(len(f) == 1600 for f in frames)
    tail = chunker.flush()
    assert chunker.flush() == b""
    sent = b"".join(frames) + tail
    assert sent[:pos] == data[:pos]
    assert set(sent[pos:]) <= {0}  # only silence padding after the real bytes
    if tail:
        assert len(tail) >= 1600 and len(tail) % 2 == 0


def test_chunker_frame_length_is_configurable_within_limits():
    assert Chunker(frame_ms=100).frame_size == 3200
    assert Chunker(frame_ms=1000).frame_size == 32000
    for bad in (20, 49, 1001):
        with pytest.raises(ConfigurationError, match="between 50 and 1000"):
            Chunker(frame_ms=bad)


def test_client_messages():
    assert json.loads(protocol.control_message("Terminate")) == {"type": "Terminate"}
    assert json.loads(protocol.control_message("ForceEndpoint")) == {"type": "ForceEndpoint"}
    assert json.loads(protocol.control_message("KeepAlive")) == {"type": "KeepAlive"}
    update = json.loads(protocol.control_message("UpdateConfiguration", keyterms_prompt=["x"], max_turn_silence=900))
    assert update == {"type": "UpdateConfiguration", "keyterms_prompt": ["x"], "max_turn_silence": 900}
    with pytest.raises(ConfigurationError, match="sample_rate"):
        protocol.control_message("UpdateConfiguration", sample_rate=8000)
    with pytest.raises(ConfigurationError, match="keyterms_prompt"):
        protocol.control_message("UpdateConfiguration", keyterms_prompt="not a list")
    with pytest.raises(ConfigurationError, match="takes no parameters"):
        protocol.control_message("Terminate", prompt="x")
    with pytest.raises(ConfigurationError, match="unknown control message"):
        protocol.control_message("Hello")  # type: ignore[arg-type]


TURN = {
    "type": "Turn", "turn_order": 3, "turn_is_formatted": False, "end_of_turn": False, "transcript": "hi my",
    "end_of_turn_confidence": 0.001, "utterance": "",
    "words": [{"start": 1920, "end": 2000, "text": "hi", "confidence": 0.87, "word_is_final": True},
              {"start": 2960, "end": 3040, "text": "name", "confidence": 0.99, "word_is_final": False}],
}


def test_parse_turn():
    turn = parse(json.dumps(TURN), received_at=12.5)
    assert isinstance(turn, Turn)
    assert (turn.turn_order, turn.transcript, turn.end_of_turn, turn.formatted) == (3, "hi my", False, False)
    assert [(w.text, w.start_ms, w.end_ms, w.is_final) for w in turn.words] == [("hi", 1920, 2000, True), ("name", 2960, 3040, False)]
    assert turn.received_at == 12.5
    assert protocol.live_line(turn.words) == "hi name"


def test_parse_turn_with_speaker_and_language():
    message = dict(TURN, speaker_label="B", language_code="es", language_confidence=0.93, end_of_turn=True)
    message["words"] = [dict(w, speaker="B") for w in TURN["words"]]
    turn = parse(json.dumps(message))
    assert turn.speaker == "B" and turn.language_code == "es" and turn.language_confidence == 0.93
    assert {w.speaker for w in turn.words} == {"B"}


@pytest.mark.parametrize("message, expected", [
    ({"type": "Begin", "id": "abc", "expires_at": 1700000000},
     SessionBegan(session_id="abc", expires_at=1700000000)),
    ({"type": "Begin", "id": "abc", "expires_at": 1, "configuration": {"speech_model": "u3-rt-pro"}},
     SessionBegan(session_id="abc", expires_at=1, configuration={"speech_model": "u3-rt-pro"})),
    ({"type": "Termination", "audio_duration_seconds": 7, "session_duration_seconds": 8},
     SessionEnded(audio_duration_seconds=7, session_duration_seconds=8)),
    ({"type": "Error", "error_code": 3008, "error": "Session Expired: Maximum session duration exceeded"},
     ServerError(message="Session Expired: Maximum session duration exceeded", code=3008)),
    ({"error": "Invalid API key"}, ServerError(message="Invalid API key")),
    ({"type": "SpeechStarted", "timestamp": 1840, "confidence": 0.7}, SpeechStarted(timestamp_ms=1840, confidence=0.7)),
    ({"type": "Warning", "warning": "speech model deprecated", "warning_code": 5},
     ServerWarning(message="speech model deprecated", code=5)),
    ({"type": "Heartbeat"}, Heartbeat()),
])
def test_parse_every_message_type(message, expected):
    assert parse(json.dumps(message)) == expected


def test_parse_llm_gateway_response_and_speaker_revision():
    llm = parse(json.dumps({"type": "LLMGatewayResponse", "turn_order": 2, "transcript": "hola",
                            "data": {"choices": [{"message": {"role": "assistant", "content": "hello"}}]}}))
    assert isinstance(llm, LLMGatewayResponse) and (llm.turn_order, llm.content) == (2, "hello")
    revision = parse(json.dumps({"type": "SpeakerRevision", "revisions": [
        {"turn_order": 0, "speaker_label": "A"},
        {"turn_order": 1, "speaker_label": "B", "words": [{"text": "yes", "start": 10, "end": 20, "speaker": "B"}]},
    ]}))
    assert isinstance(revision, SpeakerRevision)
    assert [(r.turn_order, r.speaker) for r in revision.revisions] == [(0, "A"), (1, "B")]
    assert revision.revisions[0].words is None and revision.revisions[1].words[0].speaker == "B"


def test_unknown_message_types_are_ignored():
    assert parse('{"type": "SomethingNew", "x": 1}') is None
    assert parse('{"no_type": true}') is None


@pytest.mark.parametrize("garbled", ['{"type": "Turn", ', "not json", b"\xff\xfe", "[1, 2]", '"Turn"'])
def test_garbled_messages_are_protocol_errors(garbled):
    with pytest.raises(ProtocolError, match="server sent"):
        parse(garbled)


def test_a_turn_missing_required_fields_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="malformed Turn"):
        parse('{"type": "Turn", "transcript": "no turn order"}')


@pytest.mark.parametrize("code, reason, error_text, action", [
    (1000, "", "", Action.DONE),
    (None, "", "", Action.RECONNECT),
    (1006, "", "", Action.RECONNECT),
    (1008, "Unauthorized Connection: Invalid API key", "", Action.STOP_AUTH),
    (1008, "Unauthorized connection: Too many concurrent sessions", "", Action.BACK_OFF),
    (1009, "", "", Action.CLIENT_BUG),
    (1011, "", "", Action.RECONNECT),
    (3005, "Internal server error", "", Action.RECONNECT),
    (3005, "See Error message for details", "Session Expired: Maximum session duration exceeded", Action.NEW_SESSION),
    (3005, "See Error message for details", "Too many concurrent sessions", Action.BACK_OFF),
    (3005, "Input Duration Violation: 20 ms. Expected between 50 and 1000 ms", "", Action.CLIENT_BUG),
    (3006, "Invalid Message Type: Foo", "", Action.CLIENT_BUG),
    (3006, "Inactivity timeout", "", Action.IDLE),
    (3007, "Input Duration Violation", "", Action.CLIENT_BUG),
    (3008, "Session Expired", "", Action.NEW_SESSION),
    (3009, "Too many concurrent sessions", "", Action.BACK_OFF),
    (4999, "", "", Action.RECONNECT),
])
def test_close_code_table_reads_the_text_too(code, reason, error_text, action):
    verdict = classify_close(code, reason, error_text)
    assert verdict.action is action
    assert verdict.meaning
