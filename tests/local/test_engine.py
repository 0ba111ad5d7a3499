"""The speech engine in-process, without a socket: the real model on real speech, the same turns as
through the server."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import soundfile as sf
from speech import conversation, librivox, reading, wer

from live_stt_kernel import Session, Transcript
from live_stt_kernel.events import SessionBegan, SessionEnded, Turn
from live_stt_kernel.local.engine import Engine
from live_stt_kernel.local.server import LocalServer
from live_stt_kernel.v3.protocol import SessionConfig


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    path = tmp_path_factory.mktemp("engine") / "librivox.wav"
    reference = conversation(path, librivox()[:3])
    audio, _ = sf.read(path, dtype="int16")
    blocks = [audio[i : i + 1600].tobytes() for i in range(0, len(audio), 1600)]  # 100 ms blocks
    return path, reference, blocks


def test_the_engine_yields_what_a_v3_client_would_see(engine, talk):
    _, reference, blocks = talk
    events = list(engine.transcribe(blocks))
    assert isinstance(events[0], SessionBegan) and isinstance(events[-1], SessionEnded)
    assert events[-1].audio_duration_seconds == int(sum(len(b) for b in blocks) / 32_000)
    turns = [e for e in events[1:-1] if isinstance(e, Turn)]
    assert turns and all(t.end_of_turn for t in turns)  # no partials by default: nobody watches a file decode
    transcript = Transcript()
    for event in events:
        transcript = transcript.apply(event)
    assert len(transcript.rows) >= 3 and all(row.formatted for row in transcript.rows)
    assert wer(reference, " ".join(row.text for row in transcript.rows)) <= 0.08
    starts = [row.start for row in transcript.rows]
    assert starts == sorted(starts) and all(row.end > row.start for row in transcript.rows)


def test_the_engine_and_the_server_cut_the_same_turns(engine, talk, whisper, tmp_path):
    path, _, blocks = talk
    in_process = [(e.transcript, e.words[0].start_ms, e.words[-1].end_ms) for e in engine.transcribe(blocks, partials=True)
                  if isinstance(e, Turn) and e.end_of_turn and e.formatted]
    with LocalServer(whisper) as server:
        session = Session(path, url=server.url, api_key=server.token, realtime=False, folder=None).start().wait(timeout=120)
    over_the_wire = [(row.text, row.words[0].start_ms, row.words[-1].end_ms) for row in session.transcript.rows]
    assert in_process == over_the_wire


def test_unformatted_and_with_a_prompt(engine, talk):
    _, _, blocks = talk
    config = SessionConfig(format_turns=False, prompt="A reading from a novel.")
    finals = [e for e in engine.transcribe(blocks[:60], config=config) if isinstance(e, Turn)]
    assert finals and not any(t.formatted for t in finals)
    assert all(t.transcript == t.transcript.lower() and "." not in t.transcript for t in finals)


def test_silence_gives_no_turn(engine):
    silence = [np.zeros(1600, dtype=np.int16).tobytes()] * 30
    events = list(engine.transcribe(silence))
    assert [type(e) for e in events] == [SessionBegan, SessionEnded]


def test_a_reading_paused_at_every_comma_gives_one_turn_per_sentence(engine, tmp_path):
    sentences = ["It was the best of times, it was the worst of times, it was the age of wisdom.",
                 "We had everything before us, we had nothing before us."]
    reference = reading(tmp_path / "reading.wav", sentences)
    audio, _ = sf.read(tmp_path / "reading.wav", dtype="int16")
    finals = [e for e in engine.transcribe([audio[i : i + 1600].tobytes() for i in range(0, len(audio), 1600)])
              if isinstance(e, Turn) and e.formatted]
    # Whisper ends each clause decoded alone with a full stop: at 200 ms every comma ended a turn (5 here)
    assert len(finals) == 2, [t.transcript for t in finals]
    # tiny.en hears espeak-ng's "of" as "on" and "we had" as "we can" (5 of 28 words), in one turn or five
    assert wer(reference, " ".join(t.transcript for t in finals)) <= 0.2, [t.transcript for t in finals]


class Gated:
    """The real model behind a gate the test opens, so a decode can be caught while it runs."""

    def __init__(self, model):
        self.model, self.open, self.started = model, threading.Event(), threading.Semaphore(0)

    def transcribe(self, pcm, **options):
        self.started.release()
        assert self.open.wait(120), "the test never opened the gate"
        return self.model.transcribe(pcm, **options)

    def draft(self, pcm, **options):
        return self.transcribe(pcm)


def test_a_cancelled_decode_keeps_its_slot_until_its_thread_ends_and_one_still_waiting_never_runs(whisper):
    gated = Gated(whisper)
    engine = Engine(gated, workers=2)
    pcm = librivox()[4][0].tobytes()

    async def scenario():
        config = SessionConfig()
        running = [asyncio.create_task(engine.decode(pcm, config, owner)) for owner in ("a", "b")]
        waiting = asyncio.create_task(engine.decode(pcm, config, "c"))
        for _ in range(2):
            assert await asyncio.to_thread(gated.started.acquire, True, 60)  # both slots' threads are in a decode
        await asyncio.sleep(0.05)
        running[0].cancel()
        waiting.cancel()
        await asyncio.gather(running[0], waiting, return_exceptions=True)
        # the cancelled decode's thread goes on: its slot is still taken, the waiting one is gone
        assert (engine.running, engine.decoding, engine.gate.free) == (2, 2, 0)
        gated.open.set()
        words = await running[1]
        for _ in range(600):
            if engine.running == 0:
                break
            await asyncio.sleep(0.1)
        return words

    try:
        words = asyncio.run(scenario())
        assert words and (engine.running, engine.decoding, engine.gate.free, engine.inflight) == (0, 0, 2, set())
        assert not gated.started.acquire(timeout=0.5)  # the cancelled waiter never reached the model
        assert not engine.alone_running
    finally:
        engine.close()


def test_a_file_ending_right_after_speech_leaves_every_slot_free(engine):
    audio, text = librivox()[2]
    pcm = np.concatenate([np.zeros(8000, np.int16), audio, np.zeros(1600, np.int16)])  # 100 ms after the last word
    # the check starts 40 ms into the silence; the end of the audio replaces it with a final while it runs
    finals = [e for e in engine.transcribe([pcm[i : i + 1600].tobytes() for i in range(0, len(pcm), 1600)])
              if isinstance(e, Turn) and e.formatted]
    assert len(finals) == 1 and wer(text, finals[0].transcript) <= 0.15
    assert (engine.running, engine.decoding, engine.gate.free, engine.inflight) == (0, 0, engine.workers, set())


def test_a_final_more_than_two_seconds_late_on_the_wall_clock_is_followed_by_a_warning(whisper):
    gated = Gated(whisper)
    engine = Engine(gated)
    audio, _ = librivox()[4]  # 3.3 s: "He might even have been made amiable himself."
    pcm = np.concatenate([audio, np.zeros(4 * 16_000, np.int16)])
    hold_until_s = len(audio) / 16_000 + 3  # the decode is held this long into the stream: its final comes ~3 s late
    sent = []

    async def scenario():
        loop = asyncio.get_running_loop()

        async def emit(message):
            sent.append(message)

        stream = engine.stream(SessionConfig(), emit, partials=False)
        started = loop.time()
        loop.call_later(hold_until_s, gated.open.set)  # on its own: the audio below may wait for the held decode
        for i, at in enumerate(range(0, len(pcm), 1600)):  # in real time, as a microphone sends it
            stream.push(pcm[at : at + 1600].tobytes())
            await stream.ready()
            await asyncio.sleep(max(0.0, started + (i + 1) * 0.1 - loop.time()))
        await stream.finish()

    try:
        asyncio.run(scenario())
    finally:
        gated.open.set()
        engine.close()
    kinds = [(m["type"], m.get("end_of_turn")) for m in sent]
    final = kinds.index(("Turn", True))
    assert ("Warning", None) in kinds[final + 1 :], kinds
    warning = next(m for m in sent if m["type"] == "Warning")
    assert warning["warning_code"] == 4100 and "s behind the audio" in warning["warning"], warning
    assert float(warning["warning"].split()[2]) >= 2.0, warning  # "decoding is 3.1 s behind ..."
