"""The browser microphone without a browser: the chunk assembler with data, the widget's comm handler
fed exactly what the comm delivers, a session reading the widget's source against a real v3 server on
loopback, and the AudioWorklet's downsampler run by Node.js."""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import comm
import numpy as np
import pytest
import soxr
from comm.base_comm import BaseComm
from helpers import API_KEY, ROOT, tone

from live_stt_kernel import Session
from live_stt_kernel.audio.chunks import CHUNK_BYTES, ChunkAssembler, ChunkStats
from live_stt_kernel.audio.pcm import float_to_pcm16
from live_stt_kernel.audio.sources import QueueSource
from live_stt_kernel.v3.replay import even_turns, turns_script
from live_stt_kernel.widgets.browser_mic import STATES, BrowserMic

JS = ROOT / "live_stt_kernel" / "widgets" / "browser_mic.js"


def chunk(seq: int, size: int = CHUNK_BYTES) -> bytes:
    """A chunk whose content says which it is (never silence)."""
    return (seq % 32000 + 1).to_bytes(2, "little") * (size // 2)


# --- ChunkAssembler -----------------------------------------------------------------------------


def test_chunks_in_order_pass_straight_through():
    a = ChunkAssembler()
    out = [a.push(seq, chunk(seq), now=seq * 0.05) for seq in range(5)]
    assert out == [[chunk(seq)] for seq in range(5)]
    assert a.stats == ChunkStats(received=5, delivered=5)
    assert a.next_seq == 5 and a.highest_seq == 4


def test_an_early_chunk_waits_for_the_one_before_it():
    a = ChunkAssembler()
    assert a.push(0, chunk(0), 0.0) == [chunk(0)]
    assert a.push(2, chunk(2), 0.1) == []
    assert a.push(3, chunk(3), 0.1) == []
    assert a.stats.pending == 2
    assert a.push(1, chunk(1), 0.2) == [chunk(1), chunk(2), chunk(3)]
    assert a.stats == ChunkStats(received=4, delivered=4, reordered=2)


def test_a_missing_chunk_becomes_silence_after_the_timeout_and_a_late_one_is_dropped():
    a = ChunkAssembler(timeout_s=0.5)
    a.push(0, chunk(0), 10.0)
    assert a.push(2, chunk(2), 10.0) == []
    assert a.poll(10.49) == []
    assert a.poll(10.5) == [bytes(CHUNK_BYTES), chunk(2)]  # the timing stays right: 50 ms of silence
    assert a.push(1, chunk(1), 10.6) == []  # too late: its slot is already in the stream
    assert a.push(2, chunk(2), 10.6) == []  # seen before
    assert a.stats == ChunkStats(received=4, delivered=2, reordered=1, gaps=1, dropped=1, duplicates=1)


def test_the_timeout_is_also_checked_when_the_next_chunk_arrives():
    a = ChunkAssembler(timeout_s=0.3)
    a.push(0, chunk(0), 0.0)
    a.push(2, chunk(2), 0.1)
    assert a.push(3, chunk(3), 0.45) == [bytes(CHUNK_BYTES), chunk(2), chunk(3)]


def test_a_full_window_gives_up_the_missing_chunk_at_once():
    a = ChunkAssembler(window=3, timeout_s=60)
    a.push(0, chunk(0), 0.0)
    for seq in (2, 3, 4):  # seq 1 is missing; 4 is 3 past it: still held
        assert a.push(seq, chunk(seq), 0.0) == []
    assert a.push(5, chunk(5), 0.0) == [bytes(CHUNK_BYTES), *(chunk(s) for s in (2, 3, 4, 5))]
    assert a.stats.gaps == 1 and a.stats.pending == 0


def test_several_gaps_in_a_row_are_each_a_chunk_of_silence():
    a = ChunkAssembler(window=2, timeout_s=60, chunk_bytes=320)
    a.push(0, chunk(0, 320), 0.0)
    assert a.push(4, chunk(4, 320), 0.0) == [bytes(320)] * 3 + [chunk(4, 320)]
    assert a.stats.gaps == 3


def test_duplicates_of_held_and_delivered_chunks_are_dropped():
    a = ChunkAssembler()
    a.push(0, chunk(0), 0.0)
    a.push(0, chunk(0), 0.0)
    a.push(5, chunk(5), 0.0)
    a.push(5, chunk(5), 0.0)
    assert a.stats.duplicates == 2 and a.stats.pending == 1


def test_a_sequence_number_far_ahead_is_rejected_not_turned_into_minutes_of_silence():
    a = ChunkAssembler(max_jump=100)
    a.push(0, chunk(0), 0.0)
    assert a.push(10**6, chunk(1), 0.0) == []
    assert a.poll(100.0) == [] and a.stats.dropped == 1 and a.next_seq == 1
    assert a.flush(last_seq=10**6) == []  # a corrupt last_seq is ignored too


def test_flush_releases_held_chunks_with_silence_between_and_up_to_the_last_seq():
    a = ChunkAssembler(timeout_s=60)
    a.push(0, chunk(0), 0.0)
    a.push(3, chunk(3), 0.0)
    assert a.flush(last_seq=5) == [bytes(CHUNK_BYTES), bytes(CHUNK_BYTES), chunk(3), bytes(CHUNK_BYTES),
                                   bytes(CHUNK_BYTES)]
    assert a.stats.gaps == 4 and a.next_seq == 6
    assert a.flush() == []


def test_a_short_last_chunk_is_passed_on_as_is():
    a = ChunkAssembler()
    a.push(0, chunk(0), 0.0)
    assert a.push(1, b"\x01\x00" * 10, 0.0) == [b"\x01\x00" * 10]


def test_reset_starts_a_new_recording():
    a = ChunkAssembler()
    a.push(0, chunk(0), 0.0)
    a.push(1, chunk(1), 0.0)
    a.reset()
    assert a.push(0, chunk(0), 1.0) == [chunk(0)] and a.stats == ChunkStats(received=1, delivered=1)


@pytest.mark.parametrize("options", [{"chunk_bytes": 0}, {"chunk_bytes": 3}, {"window": 0}, {"timeout_s": -1},
                                     {"window": 50, "max_jump": 10}])
def test_nonsense_settings_are_refused(options):
    with pytest.raises(ValueError):
        ChunkAssembler(**options)


@pytest.mark.parametrize("seed", range(12))
def test_shuffled_duplicated_and_lossy_streams_come_out_in_order_with_the_right_length(seed):
    """A network that reorders locally, repeats and loses chunks: every real chunk lands in its own slot,
    every lost one is a chunk of silence, and the counts add up."""
    rng = random.Random(seed)
    n = 400
    lost = {s for s in range(1, n - 1) if rng.random() < 0.05}
    # each chunk leaves every 50 ms and is up to 250 ms late; a few come twice, up to 2 s later
    arrivals = [(s * 0.05 + rng.uniform(0, 0.25), s) for s in range(n) if s not in lost]
    repeats = rng.sample(arrivals, 10)
    arrivals += [(t + rng.uniform(0, 2), s) for t, s in repeats]
    arrivals.sort()
    a = ChunkAssembler(window=10, timeout_s=0.4)
    out: list[bytes] = []
    for now, seq in arrivals:
        out += a.push(seq, chunk(seq), now)
    out += a.flush(last_seq=n - 1)

    assert len(out) == n and b"".join(out).__len__() == n * CHUNK_BYTES
    for seq, block in enumerate(out):
        assert block == (bytes(CHUNK_BYTES) if seq in lost else chunk(seq)), seq
    s = a.stats
    assert s.gaps == len(lost) and s.delivered == n - len(lost) and s.pending == 0
    assert s.received == s.delivered + s.dropped + s.duplicates == len(arrivals)
    assert s.duplicates == len(repeats) and s.dropped == 0 and s.reordered > 20


# --- the widget, fed what the comm delivers --------------------------------------------------------


class RecordingComm(BaseComm):
    """A comm with no kernel behind it that keeps what the widget sends to the page."""

    def __init__(self, **kwargs: Any) -> None:
        self.published: list[dict[str, Any]] = []
        super().__init__(**kwargs)

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any) -> None:
        self.published.append({"msg_type": msg_type, "data": data, "buffers": buffers})

    def custom(self) -> list[dict[str, Any]]:
        """The custom messages sent so far (what `widget.send` sent)."""
        return [m["data"]["content"] for m in self.published
                if m["msg_type"] == "comm_msg" and m["data"].get("method") == "custom"]

    def updates(self) -> dict[str, Any]:
        """The latest value of every trait synced to the page."""
        state: dict[str, Any] = {}
        for m in self.published:
            if m["msg_type"] == "comm_msg" and m["data"].get("method") == "update":
                state.update(m["data"]["state"])
        return state


@pytest.fixture
def mic_factory(monkeypatch):
    """BrowserMic widgets on a recording comm (`comm.create_comm` is the comm package's hook for a kernel
    to supply its comms; here we supply one that records)."""
    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    made: list[BrowserMic] = []

    def make(**options: Any) -> BrowserMic:
        mic = BrowserMic(**options)
        made.append(mic)
        return mic

    yield make
    for mic in made:
        mic.close()


def deliver(mic: BrowserMic, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
    """What the kernel does with a comm message from the page: a custom message with memoryview buffers."""
    msg = {"header": {"msg_type": "comm_msg"}, "content": {"comm_id": mic.comm.comm_id,
           "data": {"method": "custom", "content": content}}, "buffers": [memoryview(b) for b in buffers or []]}
    mic.comm.handle_msg(msg)


def start(mic: BrowserMic, rec: int = 7) -> None:
    deliver(mic, {"type": "start", "rec": rec, "rate": 16000, "chunk_samples": 800, "device_rate": 48000,
                  "device": "Virtual mic"})


def send_chunk(mic: BrowserMic, seq: int, pcm: bytes, rec: int = 7, *, base64_text: bool = False) -> None:
    content = {"type": "chunk", "rec": rec, "seq": seq, "rate": 16000}
    if base64_text:
        deliver(mic, {**content, "b64": base64.b64encode(pcm).decode()})
    else:
        deliver(mic, content, [pcm])


def stop(mic: BrowserMic, last_seq: int, rec: int = 7, reason: str = "user") -> None:
    deliver(mic, {"type": "stop", "rec": rec, "last_seq": last_seq, "reason": reason})


def drain(source: QueueSource) -> bytes:
    """Everything a session reading ``source`` would get; the source must have ended."""
    assert source.closed
    return b"".join(source)


def test_binary_chunks_reach_the_source_in_order_and_are_acknowledged(mic_factory):
    mic = mic_factory()
    assert mic.state == "idle" and mic.encoding == "binary"
    start(mic)
    source = mic.source
    assert mic.state == "recording" and mic.device == "Virtual mic" and mic.device_rate == 48000
    for seq in range(25):
        send_chunk(mic, seq, chunk(seq))
    assert mic.comm.custom() == [{"type": "ack", "rec": 7, "seq": s, "received": n} for s, n in
                                 [(-1, 0), (9, 10), (19, 20)]]
    assert mic.acked_seq == 19 and mic.chunks == 20  # traits are published with each ack
    stop(mic, last_seq=24)
    assert drain(source) == b"".join(chunk(s) for s in range(25))
    assert mic.state == "stopped" and "Stopped" in mic.message
    assert (mic.chunks, mic.gaps, mic.seconds) == (25, 0, 1.25)
    assert mic.comm.custom()[-1] == {"type": "ack", "rec": 7, "seq": 24, "received": 25}
    synced = mic.comm.updates()
    assert synced["state"] == "stopped" and synced["chunks"] == 25 and synced["acked_seq"] == 24


def test_reordered_and_lost_chunks_give_audio_of_the_right_length(mic_factory):
    mic = mic_factory()
    start(mic)
    source = mic.source
    order = [0, 1, 3, 2, 4, 6, 7, 5, 9, 10, 11]  # 8 never comes, 12 (the last) neither
    for seq in order:
        send_chunk(mic, seq, chunk(seq))
    stop(mic, last_seq=12)
    expected = [chunk(s) if s in order else bytes(CHUNK_BYTES) for s in range(13)]
    assert drain(source) == b"".join(expected)
    assert (mic.chunks, mic.gaps, mic.reordered, mic.seconds) == (11, 2, 6, 0.65)  # 3, 6, 7, 9, 10, 11 were held


def test_a_chunk_that_waited_too_long_is_given_up_by_the_widget_clock(mic_factory):
    now = [100.0]
    mic = mic_factory(timeout_s=0.5, clock=lambda: now[0])
    start(mic)
    source = mic.source
    send_chunk(mic, 0, chunk(0))
    send_chunk(mic, 2, chunk(2))
    assert mic.stats.pending == 1
    now[0] += 0.6
    send_chunk(mic, 3, chunk(3))
    send_chunk(mic, 1, chunk(1))  # too late now
    assert mic.stats == ChunkStats(received=4, delivered=3, reordered=2, gaps=1, dropped=1)
    stop(mic, last_seq=3)
    assert drain(source) == chunk(0) + bytes(CHUNK_BYTES) + chunk(2) + chunk(3)
    assert mic.late == 1


def test_base64_chunks_work_and_lost_buffers_switch_the_page_to_base64(mic_factory):
    mic = mic_factory()
    start(mic)
    source = mic.source
    send_chunk(mic, 0, chunk(0))
    deliver(mic, {"type": "chunk", "rec": 7, "seq": 1, "rate": 16000}, [])  # the buffer got lost on the way
    assert mic.encoding == "base64" and mic.buffer_failures == 1
    assert mic.comm.updates()["encoding"] == "base64"  # the page reads this before each send
    for seq in range(2, 5):
        send_chunk(mic, seq, chunk(seq), base64_text=True)
    stop(mic, last_seq=4)
    assert drain(source) == chunk(0) + bytes(CHUNK_BYTES) + b"".join(chunk(s) for s in range(2, 5))
    assert mic.gaps == 1


def test_the_encoding_can_be_chosen_up_front(mic_factory):
    assert mic_factory(encoding="base64").encoding == "base64"


@pytest.mark.parametrize("state", ["denied", "insecure", "error", "requesting"])
def test_the_page_reports_why_it_cannot_record(mic_factory, state):
    mic = mic_factory()
    text = f"words about {state}"
    deliver(mic, {"type": "status", "state": state, "message": text})
    assert (mic.state, mic.message) == (state, text)
    assert mic.comm.updates()["state"] == state
    assert not mic.source.closed  # allowing the microphone and pressing Start again still feeds the session


def test_unusable_messages_are_counted_not_raised(mic_factory):
    mic = mic_factory()
    start(mic)
    source = mic.source
    deliver(mic, {"type": "status", "state": "recording"})  # only the kernel says that
    deliver(mic, {"type": "status"})
    deliver(mic, {"type": "nonsense"})
    deliver(mic, ["not", "a", "dict"])  # type: ignore[arg-type]
    deliver(mic, {"type": "chunk", "rec": 7, "rate": 16000}, [chunk(0)])  # no seq
    deliver(mic, {"type": "chunk", "rec": 7, "seq": 0, "rate": 48000}, [chunk(0)])
    deliver(mic, {"type": "chunk", "rec": 7, "seq": 0, "rate": 16000}, [b"\x01\x02\x03"])
    deliver(mic, {"type": "chunk", "rec": 7, "seq": 0, "rate": 16000, "b64": "@@not base64@@"})
    deliver(mic, {"type": "chunk", "rec": 99, "seq": 0, "rate": 16000}, [chunk(0)])  # an older recording's
    assert mic.invalid == 9 and mic.state == "recording"
    send_chunk(mic, 0, chunk(0))
    stop(mic, last_seq=0)
    assert drain(source) == chunk(0)


def test_when_the_session_closes_the_source_the_page_is_asked_to_stop(mic_factory):
    mic = mic_factory()
    start(mic)
    source = mic.source
    send_chunk(mic, 0, chunk(0))
    source.close()  # what session.stop() does, from any thread
    send_chunk(mic, 1, chunk(1))
    assert mic.comm.custom()[-1] == {"type": "stop"}
    assert mic.state == "stopped" and "session ended" in mic.message
    assert drain(source) == chunk(0)


def test_stop_from_the_notebook(mic_factory):
    mic = mic_factory()
    start(mic)
    source = mic.source
    send_chunk(mic, 0, chunk(0))
    mic.stop()
    assert source.closed and mic.state == "stopped" and mic.comm.custom()[-1] == {"type": "stop"}


def test_a_lost_device_keeps_the_session_open_for_a_new_recording(mic_factory):
    mic = mic_factory()
    start(mic, rec=1)
    source = mic.source
    for seq in range(3):
        send_chunk(mic, seq, chunk(seq), rec=1)
    stop(mic, last_seq=3, rec=1, reason="ended")  # the track ended; chunk 3 never came
    assert mic.state == "error" and "unplugged" in mic.message and not source.closed
    start(mic, rec=2)  # the user pressed Start again: numbering starts over, same source
    assert mic.source is source
    send_chunk(mic, 0, chunk(100), rec=2)
    send_chunk(mic, 1, chunk(101), rec=1)  # a straggler of the old recording
    stop(mic, last_seq=0, rec=2)
    assert drain(source) == b"".join(chunk(s) for s in range(3)) + bytes(CHUNK_BYTES) + chunk(100)
    assert mic.invalid == 1


def test_after_a_stop_the_next_session_gets_a_fresh_source(mic_factory):
    mic = mic_factory()
    start(mic, rec=1)
    first = mic.source
    send_chunk(mic, 0, chunk(0), rec=1)
    stop(mic, last_seq=0, rec=1)
    assert first.closed and drain(first) == chunk(0)
    second = mic.source  # what a new Session(mic.source) gets
    assert second is not first and not second.closed and mic.source is second
    start(mic, rec=2)
    assert mic.source is second and mic.state == "recording" and mic.chunks == 0
    send_chunk(mic, 0, chunk(7), rec=2)
    stop(mic, last_seq=0, rec=2)
    assert drain(second) == chunk(7)


def test_a_recording_started_before_any_session_asks_still_gets_a_new_source(mic_factory):
    mic = mic_factory()
    start(mic, rec=1)
    first = mic.source
    stop(mic, last_seq=-1, rec=1)
    start(mic, rec=2)  # nobody asked for mic.source in between
    assert mic.source is not first and not mic.source.closed


def test_the_page_module_is_wired_in():
    mic = BrowserMic()
    try:
        assert "getUserMedia" in mic._esm and "export default" in mic._esm
        assert set(STATES) >= {"idle", "requesting", "recording", "denied", "insecure", "error", "stopped"}
    finally:
        mic.close()


# --- a session reads the widget's source ---------------------------------------------------------


def test_a_session_streams_the_browser_audio_to_a_v3_server(mic_factory, serve, tmp_path):
    server = serve(turns_script(even_turns(["one two three", "four five six"]), "B"))
    mic = mic_factory()
    session = Session(mic.source, url=server.url, api_key=API_KEY, folder=tmp_path / "s").start()
    pcm = float_to_pcm16(tone(3.5))
    pieces = [pcm[i : i + CHUNK_BYTES] for i in range(0, len(pcm), CHUNK_BYTES)]
    order = list(range(len(pieces)))
    order[10], order[11] = order[11], order[10]  # one swap
    order.remove(30)  # one lost
    start(mic)
    for seq in order:
        send_chunk(mic, seq, pieces[seq])
    stop(mic, last_seq=len(pieces) - 1)
    session.wait(timeout=20)

    expected = b"".join(bytes(CHUNK_BYTES) if s == 30 else p for s, p in enumerate(pieces))
    audio = bytes(server.wait_for_client().audio)
    assert audio[: len(expected)] == expected and set(audio[len(expected):]) <= {0}
    assert session.df["text"].tolist() == ["One two three.", "Four five six."]
    assert (mic.gaps, mic.reordered, mic.seconds) == (1, 1 + 39, 3.5)  # 11, and 31..69 waiting for 30


# --- the AudioWorklet's downsampler, run by Node -------------------------------------------------

NODE_HARNESS = r"""
import { readFileSync, writeFileSync } from "node:fs";
const [, , modulePath, inputPath, rate, outputPath] = process.argv;
const { WORKLET } = await import(modulePath);
globalThis.sampleRate = Number(rate);
const posted = [];
globalThis.AudioWorkletProcessor = class { constructor() { this.port = { postMessage: (m) => posted.push(m) }; } };
let Processor;
globalThis.registerProcessor = (name, cls) => { Processor = cls; };
new Function(WORKLET)();
const proc = new Processor();
const raw = readFileSync(inputPath);
const input = new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4);
for (let i = 0; i < input.length; i += 128) proc.process([[input.subarray(i, i + 128)]]);
proc.port.onmessage({ data: "flush" });
const chunks = posted.filter((m) => !m.flushed);
const done = posted.find((m) => m.flushed);
writeFileSync(outputPath, Buffer.concat(chunks.map((m) => Buffer.from(m.pcm))));
console.log(JSON.stringify({ seqs: chunks.map((m) => m.seq), sizes: chunks.map((m) => m.pcm.byteLength / 2),
                             last: done.last }));
"""


def run_worklet(tmp_path: Path, signal: np.ndarray, rate: int) -> tuple[np.ndarray, dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "the worklet test runs the page's JavaScript in Node.js: apt-get install nodejs"
    module = tmp_path / "browser_mic.mjs"
    module.write_text(JS.read_text())
    harness = tmp_path / "harness.mjs"
    harness.write_text(NODE_HARNESS)
    (tmp_path / "in.f32").write_bytes(signal.astype("<f4").tobytes())
    done = subprocess.run([node, str(harness), module.as_uri(), str(tmp_path / "in.f32"), str(rate),
                           str(tmp_path / "out.pcm")], capture_output=True, text=True, timeout=60, check=True)
    return np.frombuffer((tmp_path / "out.pcm").read_bytes(), dtype="<i2"), json.loads(done.stdout)


def speechlike(seconds: float, rate: int, seed: int = 1) -> np.ndarray:
    """Harmonics of a wandering pitch plus noise, all below 4 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 20) if k * 180 < 3800)
    noise = soxr.resample(rng.normal(size=len(t)).astype(np.float32), rate, 8000)
    noise = soxr.resample(noise, 8000, rate)[: len(t)]
    return (0.25 * x / np.max(np.abs(x)) + 0.05 * noise).astype(np.float32)


@pytest.mark.parametrize("rate", [48000, 44100])
def test_the_worklet_downsamples_to_16_khz_pcm16_in_numbered_50_ms_chunks(tmp_path, rate):
    signal = speechlike(2.0, rate)
    out, info = run_worklet(tmp_path, signal, rate)
    expected = len(signal) * 16000 / rate
    assert abs(len(out) - expected) <= 1
    assert info["seqs"] == list(range(len(info["seqs"]))) and info["last"] == info["seqs"][-1]
    assert set(info["sizes"][:-1]) == {800} and 0 < info["sizes"][-1] <= 800
    reference = soxr.resample(signal, rate, 16000)[: len(out)]
    got = out.astype(np.float32) / 32768
    delay = 31 * 16000 / rate  # the 63-tap filter's group delay, in output samples (< 1 ms)
    shifted = np.interp(np.arange(len(got)) + delay, np.arange(len(got)), got)
    n = len(got) - 20
    corr = np.corrcoef(shifted[:n], reference[:n])[0, 1]
    assert corr > 0.995, corr
    assert 0.9 < np.std(got) / np.std(reference) < 1.1


def test_the_worklet_keeps_what_16_khz_cannot_hold_from_folding_back(tmp_path):
    rate = 48000
    t = np.arange(rate) / rate
    out, _ = run_worklet(tmp_path, (0.5 * np.sin(2 * np.pi * 11000 * t)).astype(np.float32), rate)
    rms = np.sqrt(np.mean((out[100:].astype(np.float32) / 32768) ** 2))
    assert rms < 0.5 / np.sqrt(2) * 0.03  # an 11 kHz tone would alias to 5 kHz: at least 30 dB down


# --- the real-browser test's yardstick (tests/browser/audio.py) ----------------------------------


def test_the_browser_test_tells_a_capture_glitch_from_a_lost_chunk():
    from browser.audio import compare, is_capture_glitch

    rng = np.random.default_rng(0)
    fed = (rng.normal(size=16000 * 6) * 3000).astype(np.int16)
    lead, tail = np.zeros(8000, np.int16), np.zeros(4000, np.int16)
    # Chromium inserted 1024 frames of silence at 2 s (44.1 kHz: 372 samples here) and dropped 1024 at 4 s
    glitched = np.concatenate([lead, fed[:32000], np.zeros(372, np.int16), fed[32000:64000], fed[64371:], tail])
    match = compare(glitched, fed)
    assert match.offset_s == 0.5 and match.steps == [372, -371]
    assert all(is_capture_glitch(step, 44100) for step in match.steps)
    assert np.median(match.window_correlations) > 0.99
    # a 50 ms chunk lost without its silence would shift the rest by 800 samples: not a capture glitch
    lost = np.concatenate([lead, fed[:32000], fed[32800:], tail])
    assert [is_capture_glitch(step, 44100) for step in compare(lost, fed).steps] == [False]
