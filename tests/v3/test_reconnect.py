"""Reconnecting without losing a word: the kept audio (pure), the transcript's clock across sessions,
which failures are worth a new session, and whole sessions through a real replay server that drops
the connection and through the real local server stopped and started again mid-sentence."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from helpers import API_KEY, wait_until

from live_stt_kernel import Session, load_session
from live_stt_kernel.audio.sources import QueueSource
from live_stt_kernel.errors import (
    AuthenticationError,
    ConnectionLost,
    ConnectTimeout,
    ProtocolError,
    ServerRefused,
    ServerUnreachable,
    TerminationTimeout,
    TooManySessions,
)
from live_stt_kernel.events import Disconnected, Reconnected, SessionBegan, Turn, Word
from live_stt_kernel.transcript import Transcript
from live_stt_kernel.v3.protocol import is_loopback
from live_stt_kernel.v3.reconnect import ReconnectPolicy, ResumableAudio, worth_reconnecting
from live_stt_kernel.v3.replay import Drop, Script, Step, even_turns, turns_script
from live_stt_kernel.widgets import LivePanel

FAST = ReconnectPolicy(attempts=3, first_delay_s=0.02, max_delay_s=0.1)


def block(ms: int, value: int) -> bytes:
    return np.full(ms * 16, value, dtype="<i2").tobytes()


# --- the kept audio ----------------------------------------------------------------------------

def test_a_new_connection_starts_at_the_last_finished_turn_and_goes_on_live():
    audio = ResumableAudio([block(100, 1), block(100, 2), block(100, 3)])
    first = iter(audio.connection())
    assert next(first) == block(100, 1) and next(first) == block(100, 2)
    audio.settle(50)  # a turn ended 50 ms in
    second = audio.connection()
    assert second.starts_at_ms == 50
    assert list(second) == [block(50, 1) + block(100, 2), block(100, 3)]  # the kept audio, then the rest
    assert audio.settled_ms == 50


def test_audio_read_by_an_abandoned_connection_goes_to_its_successor():
    source = QueueSource()
    audio = ResumableAudio(source)
    old = audio.connection()
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(old))  # a sender blocked waiting for the microphone
    reader.start()
    source.push(block(50, 1))
    wait_until(lambda: bool(got), 5, what="the first block")
    old.close()  # the connection dropped
    new = iter(audio.connection())
    source.push(block(50, 2))  # the old sender wakes with this block, keeps it for the new connection
    reader.join(timeout=5)
    assert got == [block(50, 1)] and not reader.is_alive()
    assert next(new) == block(50, 1) + block(50, 2)
    source.close()
    assert list(new) == []


def test_a_turn_that_never_ends_keeps_only_the_newest_audio():
    audio = ResumableAudio([block(1000, i) for i in range(5)], keep_s=2.0)
    assert len(b"".join(audio.connection())) == 5 * 32000
    again = audio.connection()
    assert again.starts_at_ms == 3000 and b"".join(again) == block(1000, 3) + block(1000, 4)


@pytest.mark.parametrize("url, loopback", [
    ("ws://127.0.0.1:8765/v3/ws", True), ("ws://localhost:1/v3/ws", True), ("ws://[::1]:9/v3/ws", True),
    ("wss://streaming.assemblyai.com/v3/ws", False), ("ws://127.example.com/v3/ws", False),
])
def test_which_servers_get_the_resend_at_once(url, loopback):
    assert is_loopback(url) is loopback  # a local server takes audio at any speed; the cloud gets real time


def test_a_resend_to_a_remote_server_is_paced_at_real_time():
    audio = ResumableAudio([block(500, 1)])
    list(audio.connection())  # the first connection read it
    started = time.monotonic()
    pieces = list(audio.connection(max_speed=1.0))
    elapsed = time.monotonic() - started
    assert len(pieces) == 5 and b"".join(pieces) == block(500, 1)
    assert 0.35 <= elapsed < 1.0  # 500 ms of audio, never ahead of the clock by more than one 100 ms slice


# --- what a reconnect means ------------------------------------------------------------------------

def turn(order: int, words: list[tuple[str, int, int]], final: bool = True) -> Turn:
    return Turn(turn_order=order, transcript=" ".join(w for w, _, _ in words), end_of_turn=final,
                words=tuple(Word(text=w, start_ms=a, end_ms=b) for w, a, b in words))


def test_times_run_on_across_sessions():
    t = Transcript().apply(SessionBegan(session_id="s1")).apply(turn(0, [("one", 100, 400)]))
    t = t.apply(turn(1, [("two", 1000, 1300)], final=False))
    assert t.partial == "two"
    t = t.apply(Disconnected(reason="dropped", attempt=1, retry_in_s=0.5))
    assert t.partial == "" and t.disconnected == "dropped" and t.reconnects == 0
    t = t.apply(Reconnected(attempt=1, reason="dropped", resume_at_ms=400))
    assert t.reconnects == 1 and t.disconnected is None
    t = t.apply(SessionBegan(session_id="s2")).apply(turn(0, [("two", 600, 900)]))
    assert [(r.session_id, r.turn_index, r.text, r.start, r.end) for r in t.rows] == [
        ("s1", 0, "one", 0.1, 0.4), ("s2", 1, "two", 1.0, 1.3)]


@pytest.mark.parametrize("error, connecting, worth", [
    (ConnectionLost("dropped"), False, True),
    (ServerRefused("x", code=1011), False, True),
    (ServerRefused("x", code=3005, error_text="Internal server error"), False, True),
    (ServerRefused("x", code=3008, error_text="Session Expired"), False, True),
    (ServerRefused("x", code=3007, error_text="Input Duration Violation"), False, False),
    (ServerRefused("x", code=3005, error_text="Audio Transmission Rate Exceeded: faster than real time"), False, False),
    (AuthenticationError("x", code=1008), False, False),
    (AuthenticationError("x", code=401), True, False),
    (TooManySessions("x", code=3009), False, False),
    (TooManySessions("x", code=429), True, True),
    (ServerUnreachable("x"), False, False),
    (ServerUnreachable("x"), True, True),
    (ConnectTimeout("x"), True, True),
    (TerminationTimeout("x"), False, False),
    (ProtocolError("x"), False, False),
])
def test_which_failures_are_worth_a_new_session(error, connecting, worth):
    assert worth_reconnecting(error, connecting=connecting) is worth


# --- whole sessions ----------------------------------------------------------------------------------

def speech_like(seconds: float) -> np.ndarray:
    """Noise with a different level every 100 ms: any shift or loss of audio shows."""
    rng = np.random.default_rng(3)
    levels = np.repeat(rng.uniform(500, 8000, int(seconds * 10)), 1600)
    return (rng.standard_normal(len(levels)) * levels).clip(-32768, 32767).astype(np.int16)


def test_a_dropped_connection_is_resumed_from_the_last_finished_turn(serve, tmp_path):
    first = turns_script(even_turns(["one two three"], start_ms=300), "B")  # final at 1200 ms (+ 240)
    second = turns_script(even_turns(["four five six"], start_ms=300), "B")
    scripts = iter([Script(steps=(*first.steps, Step(2500, Drop()))), second])
    server = serve(lambda record: next(scripts))
    audio = speech_like(4.0)
    path = tmp_path / "talk.wav"
    sf.write(path, audio, 16000, subtype="PCM_16")
    session = Session(path, url=server.url, api_key=API_KEY, folder=tmp_path / "s", realtime=False, reconnect=FAST)
    panel = LivePanel(session.start())
    session.wait(timeout=20)
    # the status line says so (it reads "reconnecting" during the drop: wait for the final frame, a busy machine draws it late)
    wait_until(lambda: "1 reconnect" in panel.status.value and "stopped" in panel.status.value, 15,
               what="the status line to count the reconnect")
    panel.close()

    one, two = server.wait_for_client(0), server.wait_for_client(1)
    sent = np.frombuffer(bytes(one.audio), dtype="<i2")
    resent = np.frombuffer(bytes(two.audio), dtype="<i2")
    df = session.df
    resume = round(df["end"][0] * 16000)  # the end of the finished turn's last word
    assert len(sent) >= 2.5 * 16000 and np.array_equal(sent, audio[: len(sent)])
    # from the end of "three" to the end (the last frame padded to 50 ms): nothing lost, nothing sent twice
    assert np.array_equal(resent[: len(audio) - resume], audio[resume:]) and not resent[len(audio) - resume :].any()
    assert not one.terminated and two.terminated

    assert df["text"].tolist() == ["One two three.", "Four five six."]
    assert df["session_id"].nunique() == 2 and len(session.session_ids) == 2
    assert df["start"][1] == pytest.approx(df["end"][0] + 0.3)  # times run on from where the audio was resent
    assert session.transcript.reconnects == 1
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["reconnects"] == 1 and meta["status"] == "completed" and len(meta["session_ids"]) == 2
    saved, _ = sf.read(tmp_path / "s" / "audio.wav", dtype="int16")
    assert np.array_equal(saved, audio)  # the recording on disk holds each sample once
    assert load_session(tmp_path / "s")["text"].tolist() == ["One two three.", "Four five six."]


def dropped_then(serve, tmp_path, later: Script, folder=None) -> tuple[Any, Session]:
    """A server whose first session drops after one finished turn and whose later ones get ``later``;
    a session to stream 4 s to it (not started yet)."""
    first = turns_script(even_turns(["one two three"], start_ms=300), "B")
    scripts = iter([Script(steps=(*first.steps, Step(2500, Drop())))])
    server = serve(lambda record: next(scripts, later))
    path = tmp_path / "talk.wav"
    sf.write(path, speech_like(4.0), 16000, subtype="PCM_16")
    return server, Session(path, url=server.url, api_key=API_KEY, folder=folder, realtime=False, reconnect=FAST)


def test_giving_up_says_why_and_keeps_the_turns(serve, tmp_path):
    server, session = dropped_then(serve, tmp_path, Script(http_status=503), folder=tmp_path / "s")
    seen: list[object] = []
    session.on_event(seen.append)
    with pytest.raises(ServerRefused, match="503") as caught:
        session.start().wait(timeout=20)
    waits = [e for e in seen if isinstance(e, Disconnected)]
    assert [(e.attempt, e.retry_in_s) for e in waits] == [(1, 0.02), (2, 0.04), (3, 0.08)]
    assert all("dropped without a close frame" in e.reason for e in waits)
    assert "gave up after 3 new connection(s); the connection had dropped" in "\n".join(caught.value.__notes__)
    assert len(server.clients) == 4  # the first connection and three attempts
    assert session.df["text"].tolist() == ["One two three."]
    assert json.loads((tmp_path / "s" / "meta.json").read_text())["status"] == "failed"


def test_refused_credentials_end_the_reconnecting_at_once(serve, tmp_path):
    server, session = dropped_then(serve, tmp_path, Script(http_status=401))
    with pytest.raises(AuthenticationError):
        session.start().wait(timeout=20)
    assert len(server.clients) == 2


def test_the_local_server_restarted_mid_sentence_loses_no_word(whisper, tmp_path):
    """The embedded engine for real: the server goes away while a sentence is being spoken and comes
    back on the same port; the sentence is transcribed whole, once, at the right time."""
    from speech import librivox, wer

    from live_stt_kernel.local.server import LocalServer

    (first, first_text), (second, second_text) = librivox()[:2]
    pause = np.zeros(16000, dtype=np.int16)
    half = len(second) // 2
    mic = QueueSource()
    server = LocalServer(whisper, token="local-token").start()
    port = server.port
    session = Session(mic, url=server.url, api_key="local-token", folder=tmp_path / "s",
                      reconnect=ReconnectPolicy(attempts=8, first_delay_s=0.1, max_delay_s=0.5)).start()
    try:
        mic.push((np.concatenate([pause, first, pause])).astype("<i2").tobytes())
        wait_until(lambda: len(session.transcript.rows) == 1, 30, what="the first sentence to be finished")
        mic.push(second[:half].astype("<i2").tobytes())  # mid-sentence...
        time.sleep(0.5)
        server.stop()  # ...the server goes away
        mic.push(second[half:].astype("<i2").tobytes())  # the speaker goes on
        mic.push(pause.astype("<i2").tobytes())
        time.sleep(1.0)
        server = LocalServer(whisper, token="local-token", port=port).start()
        mic.close()
        session.wait(timeout=60)
    finally:
        server.stop()

    texts = session.df["text"].tolist()
    assert session.transcript.reconnects == 1 and len(session.session_ids) == 2
    assert wer(first_text + " " + second_text, " ".join(texts)) <= 0.15, texts
    df = session.df
    resumed = df[df["session_id"] == session.session_ids[1]]
    second_at = (len(pause) + len(first) + len(pause)) / 16000
    assert df["start"].iloc[0] < 2.0 and abs(resumed["start"].iloc[0] - second_at) < 0.6, df  # in its place in time
    saved, _ = sf.read(tmp_path / "s" / "audio.wav", dtype="int16")
    assert len(saved) == 3 * len(pause) + len(first) + len(second)
