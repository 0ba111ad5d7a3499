"""Fault injection on the client side: real replay servers on loopback that stall, stop reading, never begin,
close with each code, send junk, or die mid-turn. For each: a bounded stop(), nothing finished lost, the
audio on disk complete, the session's threads gone, meta.json in a final state."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
from helpers import session_for, wait_until

from live_stt_kernel import load_session
from live_stt_kernel.errors import ConnectionLost, ConnectTimeout, ServerRefused, TerminationTimeout
from live_stt_kernel.session import STOP_STALL_S
from live_stt_kernel.v3.replay import Close, Drop, Script, ScriptedTurn, Stall, Step, even_turns, turns_script

TEXTS = ["one two three", "four five six"]  # finals at ~1.14 s and ~2.94 s of audio
FIRST, BOTH = ["One two three."], ["One two three.", "Four five six."]
STOP_BOUND_S = STOP_STALL_S + 3.0  # the stall window, plus the tick and the threads' exit on a loaded machine
SESSION_THREADS = ("live-stt-session", "live-stt-sender", "live-stt-receiver")


def script(*steps: Step, **options: object) -> Script:
    return Script(steps=turns_script(even_turns(TEXTS), "B").steps + steps, **options)  # type: ignore[arg-type]


def resumed_script() -> Script:
    """What a new connection after the first turn hears: the second turn, on the new session's clock (the
    client resends from the end of the first turn's last word)."""
    first, second = even_turns(TEXTS)
    shift = first.words[-1][2]
    return turns_script([ScriptedTurn(words=tuple((w, s - shift, e - shift) for w, s, e in second.words))], "B")


def session_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in SESSION_THREADS]


def saved(tmp_path: Path) -> tuple[list[str], dict, float]:
    """The saved turns' text, meta.json, and seconds of audio in audio.wav."""
    folder = tmp_path / "session"
    audio, rate = sf.read(folder / "audio.wav", dtype="int16")
    return load_session(folder)["text"].tolist(), json.loads((folder / "meta.json").read_text()), len(audio) / rate


def stop_timed(session) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        session.stop()
    except Exception as exc:  # the test asserts which
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


def assert_ended_cleanly(session, tmp_path: Path, status: str, *, audio: bool = True) -> dict:
    """Threads gone, meta final, every second the source gave us on disk (none is read before Begin)."""
    wait_until(lambda: not session_threads(), 10, what="the session's threads to end")
    _, meta, seconds = saved(tmp_path)
    assert meta["status"] == status
    assert abs(seconds - meta["audio_seconds"]) < 0.01 and (seconds > 0) == audio
    return meta


def test_stop_is_bounded_when_the_server_stops_reading(serve, make_wav, tmp_path):
    server = serve(script(Step(1500, Stall(10))))
    session = session_for(server, make_wav(8.0), tmp_path, realtime=True).start()
    wait_until(lambda: session.client is not None and session.client.bytes_sent >= 2.5 * 32000, 20, what="audio past the stall")
    elapsed, error = stop_timed(session)
    assert elapsed <= STOP_BOUND_S, elapsed
    assert isinstance(error, TerminationTimeout) and "no progress" in str(error)
    assert session.df["text"].tolist() == FIRST  # the turn finished before the stall is kept
    assert_ended_cleanly(session, tmp_path, "failed")
    assert saved(tmp_path)[0] == FIRST


def test_a_silent_server_is_detected_while_streaming_and_the_next_connection_loses_nothing(serve, make_wav, tmp_path):
    server = serve(lambda record: script(Step(1500, Stall(10))) if len(server.clients) == 1 else resumed_script())
    session = session_for(server, make_wav(5.0), tmp_path, realtime=True, stall_timeout=2.0).start()
    session.wait(timeout=40)
    assert session.df["text"].tolist() == BOTH
    assert session.transcript.reconnects == 1
    assert assert_ended_cleanly(session, tmp_path, "completed")["reconnects"] == 1


def test_a_silent_server_without_reconnects_ends_the_session_with_connection_lost(serve, make_wav, tmp_path):
    server = serve(script(Step(1500, Stall(10))))
    session = session_for(server, make_wav(6.0), tmp_path, realtime=True, stall_timeout=2.0, reconnect=0).start()
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="nothing from"):
        session.wait(timeout=30)
    assert time.monotonic() - started < 1.5 + 2.0 + 3.0  # the stall starts at 1.5 s; 2 s of silence; slack
    assert session.df["text"].tolist() == FIRST
    assert_ended_cleanly(session, tmp_path, "failed")


def test_stop_while_reconnecting_to_a_server_that_never_begins_is_bounded(serve, make_wav, tmp_path):
    server = serve(lambda record: script(Step(1500, Close(3005, "Internal error"))) if len(server.clients) == 1
                   else Script(send_begin=False))
    session = session_for(server, make_wav(10.0), tmp_path, realtime=True, begin_timeout=30.0).start()
    wait_until(lambda: len(server.clients) >= 2, 20, what="a reconnect attempt")
    elapsed, error = stop_timed(session)
    assert elapsed <= STOP_BOUND_S, elapsed  # was 64 s: backoff and Begin waits ran on after stop()
    assert isinstance(error, (TerminationTimeout, ServerRefused, ConnectTimeout)), error
    assert session.df["text"].tolist() == FIRST
    assert_ended_cleanly(session, tmp_path, "failed")


def test_stop_while_the_first_connection_waits_for_begin_is_bounded(serve, make_wav, tmp_path):
    server = serve(Script(send_begin=False))
    session = session_for(server, make_wav(10.0), tmp_path, realtime=True, begin_timeout=60.0).start()
    wait_until(lambda: server.clients, 20, what="the connection")
    elapsed, error = stop_timed(session)
    assert elapsed <= STOP_BOUND_S, elapsed
    assert error is not None
    assert_ended_cleanly(session, tmp_path, "failed", audio=False)


@pytest.mark.parametrize("code, reason", [(3005, "Internal error"), (1011, "error while connecting"),
                                          (3008, "Session Expired: Maximum session duration exceeded")])
def test_a_reconnectable_close_mid_turn_loses_nothing(serve, make_wav, tmp_path, code, reason):
    server = serve(lambda record: script(Step(2000, Close(code, reason))) if len(server.clients) == 1 else resumed_script())
    session = session_for(server, make_wav(4.0), tmp_path).start()
    session.wait(timeout=30)
    assert session.df["text"].tolist() == BOTH
    assert assert_ended_cleanly(session, tmp_path, "completed")["reconnects"] == 1


@pytest.mark.parametrize("code, reason, error", [
    (1008, "Unauthorized Connection: Invalid token", "credentials"),
    (3006, "Invalid Message: bad JSON", "3006"),
    (3007, "Input Duration Violation: 20 ms", "3007"),
    (3009, "Too many concurrent sessions", "3009"),
])
def test_a_refusal_mid_session_ends_it_with_a_clear_error_and_keeps_what_finished(serve, make_wav, tmp_path, code, reason,
                                                                                   error):
    server = serve(script(Step(2000, Close(code, reason))))
    session = session_for(server, make_wav(4.0), tmp_path).start()
    with pytest.raises(ServerRefused, match=error):
        session.wait(timeout=30)
    assert session.df["text"].tolist() == FIRST
    assert_ended_cleanly(session, tmp_path, "failed")


def test_a_server_dying_mid_turn_without_reconnects_keeps_the_audio(serve, make_wav, tmp_path):
    server = serve(script(Step(2000, Drop())))
    session = session_for(server, make_wav(4.0), tmp_path, reconnect=0).start()
    with pytest.raises(ConnectionLost, match="1006"):
        session.wait(timeout=30)
    assert session.df["text"].tolist() == FIRST
    assert assert_ended_cleanly(session, tmp_path, "failed")["audio_seconds"] >= 2.0


@pytest.mark.parametrize("junk", [
    '{"type": "Mystery", "blob": "' + "x" * 1_000_000 + '"}',  # an oversized message of an unknown type
    '{"type": "Turn", "turn_order": "zero", "words": 5}',  # a malformed Turn
    "[1, 2, 3]",
    '{"type": "Turn", "turn_order": 9, "end_of_turn": true, "transcript": "x", "words": [{"text": "x", "start": "soon"}]}',
    '{"type": "Turn"}',
])
def test_junk_from_the_server_is_skipped_and_the_session_goes_on(serve, make_wav, tmp_path, junk):
    server = serve(script(Step(1500, junk)))
    session = session_for(server, make_wav(4.0), tmp_path).start()
    session.wait(timeout=30)
    assert session.df["text"].tolist() == BOTH
    assert_ended_cleanly(session, tmp_path, "completed")
