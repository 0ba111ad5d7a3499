"""The sans-I/O v3 connection in both roles, tested with data alone: no socket, no thread, no clock."""

from __future__ import annotations

import json

import pytest

from live_stt_kernel.errors import AuthenticationError, ConnectionLost, ServerRefused, StreamingError, TooManySessions
from live_stt_kernel.events import ServerError, SessionBegan, SessionEnded, Turn
from live_stt_kernel.v3 import protocol
from live_stt_kernel.v3.connection import ClientConnection, ServerConnection, State
from live_stt_kernel.v3.protocol import Refusal, StreamingParams, turn_message, word_message


def client() -> ClientConnection:
    return ClientConnection(StreamingParams(), frame_ms=50)


def test_the_client_sends_legal_frames_then_a_padded_tail_and_terminate():
    conn = client()
    assert conn.frames(b"\x01" * 1000) == []  # 31 ms: not a frame yet
    frames = conn.frames(b"\x02" * 3000)  # 4000 bytes: two whole 50 ms frames
    assert [len(f) for f in frames] == [1600, 1600]
    for i, frame in enumerate(frames):
        conn.sent(frame, at=10.0 + i)
    assert conn.bytes_sent == 3200 and conn.frames_sent == 2
    tail, terminate = conn.end()
    assert len(tail) == 1600 and tail[:800] == b"\x02" * 800 and set(tail[800:]) == {0}  # padded to 50 ms
    assert json.loads(terminate) == {"type": "Terminate"} and conn.state is State.ENDING


def test_states_follow_begin_and_termination():
    conn = client()
    assert conn.state is State.CONNECTING
    began = conn.receive(json.dumps(protocol.begin_message({}, session_id="s1")), at=1.0)
    assert isinstance(began, SessionBegan) and began.session_id == "s1" and conn.state is State.OPEN
    ended = conn.receive(json.dumps(protocol.termination_message(2500, 3.2)), at=2.0)
    assert isinstance(ended, SessionEnded) and ended.audio_duration_seconds == 2 and conn.ended
    assert conn.closed(1000) is None and conn.dropped("reset", "ws://x") is None  # a normal end, however it closes


def test_a_final_turn_gets_its_latency_from_when_its_audio_was_sent():
    conn = client()
    for i in range(4):  # 50 ms frames sent at t = 100.0, 100.1, 100.2, 100.3
        conn.sent(b"\x00" * 1600, at=100.0 + i / 10)
    words = [word_message("hi", 20, 140, confidence=0.9, final=True)]
    partial = conn.receive(json.dumps(turn_message(0, words, transcript="")), at=100.5)
    final = conn.receive(json.dumps(turn_message(0, words, transcript="hi", end_of_turn=True)), at=100.55)
    assert isinstance(partial, Turn) and partial.latency_s is None  # only finals are timed
    assert isinstance(final, Turn) and final.latency_s == pytest.approx(0.35)  # 140 ms of audio left at 100.2


@pytest.mark.parametrize("code, reason, error_text, kind, words", [
    (1008, "Unauthorized Connection: Invalid API key", "", AuthenticationError, "not retrying"),
    (3009, "", "Too many concurrent sessions", TooManySessions, "Wait before"),
    (3005, "See Error message for details", "Session Expired: Maximum session duration exceeded", ServerRefused,
     "open a new session"),
    (3007, "", "Input Duration Violation: 20 ms", ServerRefused, "client sent something invalid"),
])
def test_an_error_close_is_the_typed_error_with_the_error_frames_text(code, reason, error_text, kind, words):
    conn = client()
    conn.receive(json.dumps(protocol.begin_message({})), at=0.0)
    if error_text:
        event = conn.receive(json.dumps(protocol.error_message(code, error_text)), at=0.1)
        assert isinstance(event, ServerError) and event.message == error_text
    failure = conn.closed(code, reason)
    assert type(failure) is kind and words in str(failure) and failure.code == code
    assert (error_text or reason) in str(failure) and conn.state is State.CLOSED


def test_a_drop_before_termination_is_connection_lost_naming_the_last_error():
    conn = client()
    conn.receive(json.dumps({"error": "overloaded"}), at=0.0)  # the old untyped Error shape
    failure = conn.dropped("connection reset", "ws://127.0.0.1:1/v3/ws")
    assert isinstance(failure, ConnectionLost) and "1006" in str(failure) and "overloaded" in str(failure)


@pytest.mark.parametrize("status, kind", [(401, AuthenticationError), (403, AuthenticationError),
                                          (429, TooManySessions), (500, ServerRefused)])
def test_http_refusals_of_the_handshake(status, kind):
    failure = protocol.http_refusal(status, "body text", "wss://example/v3/ws")
    assert type(failure) is kind and failure.code == status and isinstance(failure, StreamingError)


# --- the server's side ---------------------------------------------------------------------------


def test_the_server_reads_the_query_within_bounds():
    conn = ServerConnection({"sample_rate": "8000", "encoding": "pcm_mulaw", "format_turns": "True",
                             "keyterms_prompt": '["Jupyter","AssemblyAI"]', "min_end_of_turn_silence_when_confident": "300",
                             "unknown_param": "ignored"})
    config = conn.config
    assert (config.sample_rate, config.encoding, config.format_turns) == (8000, "pcm_mulaw", True)
    assert config.keyterms_prompt == ["Jupyter", "AssemblyAI"] and config.min_turn_silence == 300  # the old name
    begin = conn.begin(session_id="abc")
    assert begin["type"] == "Begin" and begin["id"] == "abc" and begin["configuration"]["encoding"] == "pcm_mulaw"
    assert conn.state is State.OPEN
    assert conn.receive_audio(b"\x00" * 400) == 50.0  # µ-law: one byte a sample, 8 kHz


@pytest.mark.parametrize("query, words", [
    ({"sample_rate": "4000"}, "sample_rate must be between 8000 and 48000"),
    ({"sample_rate": "fast"}, "bad query parameter"),
    ({"encoding": "opus"}, "encoding must be one of"),
    ({"format_turns": "maybe"}, "expected a boolean"),
    ({"inactivity_timeout": "2"}, "inactivity_timeout must be between 5 and 3600"),
    ({"keyterms_prompt": '{"a": 1}'}, "keyterms_prompt must be a list of strings"),
    ({"keyterms_prompt": json.dumps(["x" * 51])}, "at most 100 terms of at most 50 characters"),
])
def test_a_query_the_server_cannot_serve_is_refused_with_3006(query, words):
    with pytest.raises(Refusal, match=words) as refused:
        ServerConnection(query)
    assert refused.value.code == 3006 and refused.value.message()["error_code"] == 3006


def test_frames_outside_50_to_1000_ms_are_refused_with_3007_unless_lenient():
    conn = ServerConnection({})
    assert conn.receive_audio(b"\x00" * 1600) == 50.0 and conn.receive_audio(b"\x00" * 32000) == 1000.0
    for size in (640, 32002):
        with pytest.raises(Refusal, match="Input Duration Violation") as refused:
            conn.receive_audio(b"\x00" * size)
        assert refused.value.code == 3007
    assert ServerConnection({}, strict_frames=False).receive_audio(b"\x00" * 640) == 20.0


def test_control_messages_and_updates():
    conn = ServerConnection({"min_turn_silence": "200"})
    update = conn.receive_text(protocol.control_message("UpdateConfiguration", keyterms_prompt=["Dask"],
                                                        min_turn_silence=400, prompt="Names: Ada."))
    assert update.kind == "UpdateConfiguration"
    assert (conn.config.keyterms_prompt, conn.config.min_turn_silence, conn.config.prompt) == (["Dask"], 400, "Names: Ada.")
    conn.receive_text('{"type": "UpdateConfiguration", "keyterms_prompt": "not a list", "max_turn_silence": true}')
    assert conn.config.keyterms_prompt == ["Dask"] and conn.config.max_turn_silence is None  # unusable values change nothing
    assert conn.receive_text('{"type": "KeepAlive"}').kind == "KeepAlive"
    assert conn.receive_text('{"type": "ForceEndpoint"}').kind == "ForceEndpoint"
    assert conn.receive_text('{"type": "Terminate"}').kind == "Terminate" and conn.state is State.ENDING
    for size in (32000, 32000, 16000):  # 2.5 s of audio in all
        conn.receive_audio(b"\x00" * size)
    assert conn.termination(4.7) == {"type": "Termination", "audio_duration_seconds": 2, "session_duration_seconds": 4}
    assert conn.state is State.CLOSED


@pytest.mark.parametrize("text, words", [("not json", "Invalid Message: not json"), ('{"type": "Hello"}', "Invalid Message Type: Hello"),
                                         ("[1, 2]", "Invalid Message")])
def test_anything_else_the_client_writes_is_refused_with_3006(text, words):
    with pytest.raises(Refusal, match=words) as refused:
        ServerConnection({}).receive_text(text)
    assert refused.value.code == 3006


def test_a_long_refusal_reason_points_to_the_error_frame():
    short, long = Refusal(3006, "Invalid Message: x"), Refusal(3006, "Invalid Message: " + "x" * 200)
    assert short.close_reason == "Invalid Message: x"
    assert long.close_reason == "See Error message for details" and len(long.message()["error"]) > 123


def test_what_the_server_builds_the_client_reads_back():
    server, conn = ServerConnection({"format_turns": "true"}), client()
    assert isinstance(conn.receive(json.dumps(server.begin()), at=0.0), SessionBegan)
    words = [word_message("Hello", 0, 300, confidence=0.9, final=True, speaker="A"),
             word_message("world.", 320, 700, confidence=0.8, final=True, speaker="A")]
    turn = conn.receive(json.dumps(turn_message(0, words, transcript="Hello world.", end_of_turn=True, formatted=True,
                                                end_of_turn_confidence=0.9, speaker="A")), at=0.5)
    assert isinstance(turn, Turn) and turn.transcript == "Hello world." and turn.formatted and turn.end_of_turn
    assert [w.text for w in turn.words] == ["Hello", "world."] and turn.speaker == "A" and turn.words[0].speaker == "A"
    ended = conn.receive(json.dumps(server.termination(1.0)), at=1.0)
    assert isinstance(ended, SessionEnded) and conn.closed(1000) is None
