"""The embedded server under hostile and heavy clients, for real (the Whisper model, loopback sockets): flow
control, admission, fairness, bounds, and the right error for every refusal (never 3005 for client input)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import websocket
from helpers import raw_session, read_all, wait_until
from speech import conversation, librivox, wer

from live_stt_kernel import Session
from live_stt_kernel.errors import TooManySessions
from live_stt_kernel.local.engine import MAX_BACKLOG_MS, FairGate
from live_stt_kernel.local.server import MAX_SESSIONS, LocalServer
from live_stt_kernel.samples import SAMPLE_SENTENCES, sample_wav
from live_stt_kernel.v3.protocol import SessionConfig

# --- flow control and fairness ------------------------------------------------------------------------------

def test_a_stream_reads_no_further_ahead_than_its_backlog(whisper):
    from live_stt_kernel.local.engine import Engine

    async def flood() -> tuple[float, int]:
        engine = Engine(whisper, workers=1)

        async def ignore(message: dict) -> None:
            pass

        stream = engine.stream(SessionConfig(), ignore, partials=False)
        speech = (np.sin(np.arange(16000 * 20) / 16000 * 2 * np.pi * 220) * 8000).astype("<i2").tobytes()
        most = 0.0
        for i in range(0, len(speech), 3200):  # 100 ms frames, as fast as the stream takes them
            stream.push(speech[i : i + 3200])
            most = max(most, stream.backlog_ms)
            await stream.ready()
        await stream.finish()
        engine.close()
        return most, stream.engine.decoding

    most, decoding = asyncio.run(flood())
    assert most <= MAX_BACKLOG_MS + 100  # never more than the bound plus the frame just pushed (was the whole file)
    assert decoding == 0


def test_decode_slots_go_round_robin_between_streams():
    async def scenario() -> list[str]:
        gate, served = FairGate(1), []
        await gate.acquire("busy")  # the one slot is taken

        async def want(owner: str) -> None:
            await gate.acquire(owner)
            served.append(owner)
            await asyncio.sleep(0)
            gate.release()

        waiting = [asyncio.create_task(want("busy")) for _ in range(5)]
        await asyncio.sleep(0)
        waiting.append(asyncio.create_task(want("quiet")))
        await asyncio.sleep(0)
        gate.release()
        await asyncio.gather(*waiting)
        return served

    served = asyncio.run(scenario())
    assert served.index("quiet") == 1  # second, not sixth behind the busy stream's queue
    assert sorted(served) == ["busy"] * 5 + ["quiet"]


def test_a_cancelled_waiter_gives_its_slot_on():
    async def scenario() -> bool:
        gate = FairGate(1)
        await gate.acquire("a")
        cancelled = asyncio.create_task(gate.acquire("b"))
        after = asyncio.create_task(gate.acquire("c"))
        await asyncio.sleep(0)
        cancelled.cancel()
        gate.release()
        await asyncio.wait_for(after, 5)
        return gate.free == 0

    assert asyncio.run(scenario())


# --- admission, bounds, errors ----------------------------------------------------------------------------

def test_the_session_cap_refuses_the_next_one_with_3009_and_frees_up(whisper):
    with LocalServer(whisper, max_sessions=2) as small:
        first, second = raw_session(small), raw_session(small)
        messages, code, _ = read_all(raw_session(small))
        assert code == 3009 and "Too many concurrent sessions" in messages[-1]["error"]
        with pytest.raises(TooManySessions):
            Session(sample_wav(), url=small.url, api_key=small.token, folder=None, reconnect=0).start().wait(timeout=60)
        first.close()
        wait_until(lambda: small.active_sessions == 1, 10, what="the closed session to be freed")
        third = raw_session(small)
        assert json.loads(third.recv())["type"] == "Begin"
        for ws in (second, third):
            ws.close()


@pytest.mark.parametrize("query, text", [
    ("sample_rate=16000&min_turn_silence=0", "min_turn_silence must be between 100 and 10000"),
    ("sample_rate=16000&max_turn_silence=-5", "max_turn_silence must be between 100 and 10000"),
])
def test_turn_silences_outside_the_bounds_are_refused(server, query, text):
    messages, code, _ = read_all(raw_session(server, query=query))
    assert code == 3006 and text in messages[-1]["error"]


def test_an_update_outside_the_bounds_changes_nothing():
    config = SessionConfig(min_turn_silence=400)
    config.update({"min_turn_silence": 0, "max_turn_silence": -1})
    assert config.min_turn_silence == 400 and config.max_turn_silence is None
    config.update({"min_turn_silence": 300})
    assert config.min_turn_silence == 300


@pytest.mark.parametrize("send, code, text", [
    (lambda ws: ws.send_binary(b"\x00" * 1601), 3007, "not a whole number"),  # half a sample
    (lambda ws: ws.send('{"type": ["Terminate"]}'), 3006, "Invalid Message Type"),
    (lambda ws: ws.send('{"type": {"a": 1}}'), 3006, "Invalid Message Type"),
    (lambda ws: ws.send("[" * 50_000 + "]" * 50_000), 3006, "Invalid Message"),
])
def test_hostile_client_input_gets_an_error_frame_and_the_right_code_never_3005(server, send, code, text):
    ws = raw_session(server)
    send(ws)
    messages, closed, _ = read_all(ws)
    assert closed == code and text in messages[-1]["error"], (closed, messages)


def test_a_non_ascii_token_is_refused_not_a_server_error(server):
    ws = websocket.create_connection(f"{server.url}/v3/ws?sample_rate=16000&token=%C3%A9t%C3%A9", timeout=30)
    messages, code, _ = read_all(ws)
    assert code == 1008 and "Unauthorized" in messages[-1]["error"]
    answer = requests.get(server.url.replace("ws://", "http://") + "/v3/token", headers={"Authorization": "été".encode()},
                          timeout=30)
    assert answer.status_code == 401


def test_a_half_open_connection_is_dropped(server):
    raw = socket.create_connection((server.host, server.port), timeout=30)
    raw.sendall(b"GET /v3/ws HTTP/1.1\r\n")  # and never the rest of the handshake
    started = time.monotonic()
    assert raw.recv(1024) == b""  # the server hangs up
    assert time.monotonic() - started < server.open_timeout + 5
    raw.close()


def test_a_client_that_vanishes_mid_stream_frees_its_session(server):
    before = server.active_sessions
    ws = raw_session(server)
    ws.send_binary(b"\x00\x10" * 8000)
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
    ws.sock.close()
    wait_until(lambda: server.active_sessions == before, 20, what="the vanished client's session to end")


# --- load: N real-time sessions at once ---------------------------------------------------------------------

def test_the_stated_capacity_of_real_time_sessions_all_get_every_turn_and_one_more_is_refused(whisper, tmp_path):
    with LocalServer(whisper) as server:  # its own, so no session of another test takes a place
        served_at_capacity(server, tmp_path)


def served_at_capacity(server: LocalServer, tmp_path: Path) -> None:
    reference = " ".join(SAMPLE_SENTENCES)
    results: dict[int, object] = {}

    def run(i: int) -> None:
        session = Session(sample_wav(), url=server.url, api_key=server.token, folder=tmp_path / f"s{i}", reconnect=0)
        try:
            results[i] = session.start().wait(timeout=180).df
        except Exception as exc:  # the test reports which
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(MAX_SESSIONS)]
    for i, thread in enumerate(threads):
        thread.start()
        if i == 0:
            wait_until(lambda: server.active_sessions >= 1, 30, what="the first session")
    wait_until(lambda: server.active_sessions >= MAX_SESSIONS, 60, what="every session to be open")
    with pytest.raises(TooManySessions):
        Session(sample_wav(), url=server.url, api_key=server.token, folder=None, reconnect=0).start().wait(timeout=60)
    for thread in threads:
        thread.join(240)
    for i in range(MAX_SESSIONS):
        frame = results[i]
        assert not isinstance(frame, Exception), frame
        assert wer(reference, " ".join(frame["text"])) <= 0.1, list(frame["text"])  # type: ignore[index]


def test_a_fast_long_file_returns_every_turn(server, tmp_path_factory, tmp_path):
    path: Path = tmp_path_factory.mktemp("long") / "long.wav"
    reference = conversation(path, librivox() * 2)  # ~50 s of real speech, sent as fast as the server takes it
    session = Session(path, url=server.url, api_key=server.token, folder=tmp_path / "fast", realtime=False, reconnect=0)
    frame = session.start().wait(timeout=600).df
    assert wer(reference, " ".join(frame["text"])) <= 0.1
    meta = json.loads((tmp_path / "fast" / "meta.json").read_text())
    assert meta["status"] == "completed" and frame["end"].max() >= meta["audio_seconds"] - 3


def test_a_bounded_fuzz_of_client_messages_never_gets_3005_and_the_server_serves_on(server):
    rng = np.random.default_rng(11)
    pieces = ['{"type": "UpdateConfiguration", "min_turn_silence": ', '{"type": "KeepAlive"}', '{"type": "Terminate"',
              '{"type": "ForceEndpoint", "x": [', '"prompt": 5}', "null", "\u00e9\u0000", '{"type": "UpdateConfiguration", "prompt": [1]}',
              '{"type": "UpdateConfiguration", "keyterms_prompt": "a"}', "9" * 40]
    for round_ in range(30):
        ws = raw_session(server)
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.4:
                ws.send_binary(rng.integers(0, 256, int(rng.integers(0, 40_000)), dtype=np.uint8).tobytes())
            else:
                ws.send("".join(rng.choice(pieces, int(rng.integers(1, 4)))))
        ws.send('{"type": "Terminate"}')
        _, code, _ = read_all(ws)
        ws.close()
        assert code in (1000, 3006, 3007), (round_, code)
        wait_until(lambda: server.active_sessions == 0, 30, what="the session to end")
    ws = raw_session(server)  # and it still serves a normal session
    ws.send('{"type": "Terminate"}')
    messages, code, _ = read_all(ws)
    assert code == 1000 and messages[-1]["type"] == "Termination"
