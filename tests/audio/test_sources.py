"""Audio sources with real files, real threads and real PortAudio (in subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import (
    RATE,
    dominant_frequency,
    pcm16,
    sine_residual,
    tone,
    tone_amplitude,
    write_audio,
)

import live_stt_kernel
from live_stt_kernel.audio.sources import AudioSource, QueueSource, WavSource
from live_stt_kernel.errors import (
    AudioDeviceError,
    AudioFileError,
    ConfigurationError,
    LiveSTTError,
    NoInputDevice,
    PortAudioMissing,
)

SECONDS = 1.5
AMPLITUDE = 0.5
FULL_SCALE = 32767


# --- WavSource: every format converts to 16 kHz mono PCM16 ------------------------------------

# id, file name, rate, subtype, format, tone (Hz), allowed residual (lossy / 8-bit formats are noisier)
FORMATS = [
    ("wav-16k-pcm16", "a.wav", 16000, "PCM_16", None, 440, 1e-4),
    ("wav-16k-u8", "a.wav", 16000, "PCM_U8", None, 1000, 5e-3),
    ("wav-16k-pcm24", "a.wav", 16000, "PCM_24", None, 440, 1e-4),
    ("wav-16k-float", "a.wav", 16000, "FLOAT", None, 1000, 1e-4),
    ("wav-48k", "a.wav", 48000, "PCM_16", None, 440, 1e-3),
    ("wav-44k1", "a.wav", 44100, "PCM_16", None, 1000, 1e-3),
    ("wav-8k", "a.wav", 8000, "PCM_16", None, 440, 1e-3),
    ("wav-22k05-pcm32", "a.wav", 22050, "PCM_32", None, 1000, 1e-3),
    ("flac-16k", "a.flac", 16000, "PCM_16", "FLAC", 440, 1e-4),
    ("flac-44k1", "a.flac", 44100, "PCM_24", "FLAC", 1000, 1e-3),
    ("ogg-vorbis-16k", "a.ogg", 16000, "VORBIS", "OGG", 440, 2e-2),
    ("ogg-vorbis-48k", "a.ogg", 48000, "VORBIS", "OGG", 1000, 2e-2),
]


def read_all(source: WavSource) -> tuple[list[bytes], np.ndarray]:
    blocks = list(source)
    return blocks, pcm16(b"".join(blocks))


def assert_pcm16_blocks(blocks: list[bytes]) -> None:
    assert blocks, "the source yielded nothing"
    for block in blocks:
        assert type(block) is bytes
        assert len(block) > 0 and len(block) % 2 == 0, len(block)


def trimmed(samples: np.ndarray, margin_s: float = 0.05) -> np.ndarray:
    """Without the resampler's edge transients."""
    m = int(margin_s * RATE)
    return samples[m:-m]


@pytest.mark.parametrize("name,filename,rate,subtype,fmt,freq,max_residual", FORMATS, ids=[f[0] for f in FORMATS])
def test_wavsource_converts_to_16k_mono_pcm16(tmp_path, name, filename, rate, subtype, fmt, freq, max_residual):
    path = write_audio(tmp_path / filename, tone(SECONDS, rate=rate, freq=freq, amplitude=AMPLITUDE), rate, subtype=subtype, format=fmt)
    source = WavSource(path, realtime=False)
    assert isinstance(source, AudioSource)
    assert source.sample_rate == RATE
    assert source.duration == pytest.approx(SECONDS, abs=0.01)

    blocks, out = read_all(source)
    assert_pcm16_blocks(blocks)
    assert abs(len(out) - SECONDS * RATE) <= 32, f"{len(out)} samples for {SECONDS} s"
    # the tone survived: right frequency, right level (int16 scale, not float or 8-bit), clean shape
    assert dominant_frequency(out) == pytest.approx(freq, abs=3)
    body = trimmed(out)
    assert tone_amplitude(body, freq) == pytest.approx(AMPLITUDE * FULL_SCALE, rel=0.05)
    assert sine_residual(body, [freq]) < max_residual


def test_wavsource_16k_pcm16_is_bit_exact(tmp_path):
    samples = (tone(1.0, rate=RATE, freq=440, amplitude=0.3) * 32767).round().astype(np.int16)
    samples[::97] = -32768  # extremes survive too
    samples[::89] = 32767
    path = tmp_path / "exact.wav"
    sf.write(str(path), samples, RATE, subtype="PCM_16")
    _, out = read_all(WavSource(path, realtime=False))
    np.testing.assert_array_equal(out, samples)


def test_wavsource_stereo_is_mixed_down(tmp_path):
    left = (tone(SECONDS, rate=RATE, freq=440, amplitude=0.6) * 32768).round().astype(np.int16)
    right = (tone(SECONDS, rate=RATE, freq=1000, amplitude=0.3) * 32768).round().astype(np.int16)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), RATE, subtype="PCM_16")
    blocks, out = read_all(WavSource(path, realtime=False))
    assert_pcm16_blocks(blocks)
    assert len(out) == SECONDS * RATE  # one channel, not two interleaved
    # the mean of the channels: both tones, each at half its level
    assert tone_amplitude(out, 440) == pytest.approx(0.3 * FULL_SCALE, rel=0.01)
    assert tone_amplitude(out, 1000) == pytest.approx(0.15 * FULL_SCALE, rel=0.01)
    expected = (left.astype(np.int32) + right) / 2
    assert np.max(np.abs(out - expected)) <= 1


def test_wavsource_stereo_48k_is_mixed_and_resampled(tmp_path):
    rate = 48000
    left = tone(SECONDS, rate=rate, freq=440, amplitude=0.6)
    right = tone(SECONDS, rate=rate, freq=1000, amplitude=0.3)
    path = write_audio(tmp_path / "stereo48.flac", np.stack([left, right], axis=1), rate, subtype="PCM_16", format="FLAC")
    _, out = read_all(WavSource(path, realtime=False))
    assert abs(len(out) - SECONDS * RATE) <= 32
    body = trimmed(out)
    assert tone_amplitude(body, 440) == pytest.approx(0.3 * FULL_SCALE, rel=0.03)
    assert tone_amplitude(body, 1000) == pytest.approx(0.15 * FULL_SCALE, rel=0.03)
    assert sine_residual(body, [440, 1000]) < 1e-3


def test_wavsource_mp3_matches_the_file_decoded_whole(tmp_path):
    """An MP3 must come out as the same audio whether it is decoded in one go or in blocks."""
    rate = 44100
    path = write_audio(tmp_path / "a.mp3", tone(SECONDS, rate=rate, freq=440, amplitude=AMPLITUDE), rate, format="MP3")
    whole, _ = sf.read(str(path), dtype="float32")
    assert tone_amplitude(whole[4410:-4410], 440, rate) == pytest.approx(AMPLITUDE, rel=0.05)  # the file is fine
    _, out = read_all(WavSource(path, realtime=False))
    assert abs(len(out) - SECONDS * RATE) <= 32
    assert dominant_frequency(out) == pytest.approx(440, abs=3)
    body = trimmed(out, 0.1)
    assert tone_amplitude(body, 440) == pytest.approx(AMPLITUDE * FULL_SCALE, rel=0.05), "MP3 decoded in blocks is garbled"
    assert sine_residual(body, [440]) < 1e-2, "MP3 decoded in blocks is garbled"


def test_wavsource_block_size_follows_block_ms(tmp_path):
    path = write_audio(tmp_path / "a.wav", tone(1.0, rate=RATE, freq=440, amplitude=0.5), RATE, subtype="PCM_16")
    blocks, out = read_all(WavSource(path, realtime=False, block_ms=20))
    assert [len(b) for b in blocks] == [640] * 50
    assert len(out) == RATE


def test_wavsource_rejects_nonpositive_block_ms(tmp_path):
    path = write_audio(tmp_path / "a.wav", tone(0.2, rate=RATE, freq=440, amplitude=0.5), RATE, subtype="PCM_16")
    with pytest.raises(ConfigurationError, match="block_ms"):
        WavSource(path, block_ms=0)


# --- WavSource: bad input says what is wrong --------------------------------------------------


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nope.wav"


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "folder.wav").mkdir()
    return tmp_path / "folder.wav"


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty.wav").write_bytes(b"")
    return tmp_path / "empty.wav"


def _text(tmp_path: Path) -> Path:
    (tmp_path / "notes.wav").write_text("these are meeting notes, not audio\n" * 20)
    return tmp_path / "notes.wav"


def _zero_frames(tmp_path: Path) -> Path:
    path = tmp_path / "silent.wav"
    sf.write(str(path), np.zeros(0, dtype=np.int16), RATE, subtype="PCM_16")
    assert path.stat().st_size > 0  # a header and nothing else
    return path


def _truncated_header(tmp_path: Path) -> Path:
    (tmp_path / "torn.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    return tmp_path / "torn.wav"


BAD_INPUTS = [
    ("missing", _missing, "not found"),
    ("directory", _directory, "directory"),
    ("empty", _empty, "empty"),
    ("text", _text, "not an audio file"),
    ("zero-frames", _zero_frames, "no samples"),
    ("truncated-header", _truncated_header, "not an audio file"),
]


@pytest.mark.parametrize("make,words", [(b[1], b[2]) for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_wavsource_bad_input_is_a_clear_audio_file_error(tmp_path, make, words):
    path = make(tmp_path)
    with pytest.raises(AudioFileError) as info:
        WavSource(path)
    message = str(info.value)
    assert words in message
    assert path.name in message  # which file
    assert isinstance(info.value, LiveSTTError)


# --- WavSource: pacing ------------------------------------------------------------------------


def test_wavsource_realtime_paces_to_the_wall_clock(tmp_path):
    path = write_audio(tmp_path / "one.wav", tone(1.0, rate=RATE, freq=440, amplitude=0.5), RATE, subtype="PCM_16")
    source = WavSource(path, realtime=True, block_ms=100)
    block_s = source.block_ms / 1000
    yielded = 0
    worst_ahead = -1.0
    chunks = []
    started = time.monotonic()  # at or before the source's own clock starts: errs on the strict side
    for block in source:
        elapsed = time.monotonic() - started
        chunks.append(block)
        yielded += len(block) // 2
        worst_ahead = max(worst_ahead, yielded / RATE - elapsed)
        assert elapsed < 5, "pacing far too slow"
    total = time.monotonic() - started
    assert total >= 0.9, f"1 s of audio was delivered in {total:.3f} s"
    assert total < 1.6
    assert worst_ahead <= block_s + 0.01, f"audio got {worst_ahead * 1000:.0f} ms ahead of the wall clock"
    # pacing does not change the content
    _, fast = read_all(WavSource(path, realtime=False))
    np.testing.assert_array_equal(pcm16(b"".join(chunks)), fast)


def test_wavsource_not_realtime_is_fast(tmp_path):
    path = write_audio(tmp_path / "long.wav", tone(3.0, rate=44100, freq=440, amplitude=0.5), 44100, subtype="PCM_16")
    started = time.monotonic()
    _, out = read_all(WavSource(path, realtime=False))
    assert time.monotonic() - started < 0.5
    assert abs(len(out) - 3 * RATE) <= 32


def test_wavsource_close_from_another_thread_stops_paced_iteration(tmp_path):
    path = write_audio(tmp_path / "five.wav", tone(5.0, rate=RATE, freq=440, amplitude=0.5), RATE, subtype="PCM_16")
    source = WavSource(path, realtime=True)
    closed_at: list[float] = []

    def close() -> None:
        closed_at.append(time.monotonic())
        source.close()

    timer = threading.Timer(0.3, close)
    yielded = 0
    started = time.monotonic()
    timer.start()
    try:
        for block in source:
            yielded += len(block) // 2
            assert time.monotonic() - started < 3, "close() did not stop the iteration"
    finally:
        timer.cancel()
    ended = time.monotonic()
    assert closed_at, "the iteration ended before close() was called"
    assert ended - closed_at[0] < 0.2, "the iteration went on after close()"
    # no more than had been paced out when close() came, plus the one block that may be ahead
    assert 0 < yielded / RATE <= closed_at[0] - started + source.block_ms / 1000 + 0.02
    assert yielded < 5 * RATE


def test_wavsource_closed_before_iteration_yields_nothing(tmp_path):
    path = write_audio(tmp_path / "a.wav", tone(2.0, rate=RATE, freq=440, amplitude=0.5), RATE, subtype="PCM_16")
    source = WavSource(path, realtime=True)
    source.close()
    started = time.monotonic()
    assert list(source) == []
    assert time.monotonic() - started < 0.5


# --- QueueSource ------------------------------------------------------------------------------


def _consume_in_thread(source: QueueSource) -> tuple[threading.Thread, list[bytes]]:
    received: list[bytes] = []

    def consume() -> None:
        for block in source:
            received.append(block)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    return thread, received


def test_queuesource_yields_blocks_pushed_from_another_thread_in_order():
    source = QueueSource()
    assert isinstance(source, AudioSource) and source.sample_rate == RATE
    blocks = [i.to_bytes(2, "little") * 160 for i in range(200)]
    consumer, received = _consume_in_thread(source)

    def produce() -> None:
        for block in blocks:
            source.push(block)
        source.close()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    producer.join(5)
    consumer.join(5)
    assert not producer.is_alive() and not consumer.is_alive(), "iteration did not end after close()"
    assert received == blocks


def test_queuesource_close_ends_after_already_pushed_blocks_and_ignores_later_pushes():
    source = QueueSource()
    source.push(b"\x01\x00")
    source.push(b"\x02\x00")
    assert not source.closed
    source.close()
    assert source.closed
    source.push(b"\x03\x00")  # after close: ignored
    source.close()  # idempotent
    consumer, received = _consume_in_thread(source)
    consumer.join(5)
    assert not consumer.is_alive()
    assert received == [b"\x01\x00", b"\x02\x00"]


def test_queuesource_close_wakes_a_waiting_consumer():
    source = QueueSource()
    consumer, received = _consume_in_thread(source)
    source.push(b"\x05\x00" * 10)
    timer = threading.Timer(0.2, source.close)
    started = time.monotonic()
    timer.start()
    consumer.join(5)
    timer.cancel()
    assert not consumer.is_alive(), "a consumer blocked on an empty queue was not released by close()"
    assert 0.15 <= time.monotonic() - started < 5
    assert received == [b"\x05\x00" * 10]


# --- MicSource: clear errors where the kernel cannot record -----------------------------------

_PROBE = """
import json, sys
import live_stt_kernel
from live_stt_kernel import MicSource, AudioDeviceError
result = {}
try:
    MicSource()
except AudioDeviceError as exc:
    result = {"type": type(exc).__name__, "message": str(exc), "cause": repr(exc.__cause__)}
else:
    result = {"type": None}
try:
    result["devices"] = live_stt_kernel.input_devices()
except AudioDeviceError as exc:
    result["devices_error"] = type(exc).__name__
print(json.dumps(result))
"""


def _probe(env_changes: dict[str, str]) -> dict:
    env = {**os.environ, **env_changes}
    done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_micsource_without_portaudio_explains_how_to_install_it_and_the_browser_mic(tmp_path):
    fake = tmp_path / "fake_site"
    fake.mkdir()
    (fake / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    result = _probe({"PYTHONPATH": os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")])})
    assert result["type"] == PortAudioMissing.__name__
    assert "PortAudio library not found" in result["cause"]  # the fake really was the one imported
    assert "libportaudio2" in result["message"]
    assert "browser microphone" in result["message"]
    assert result["devices_error"] == PortAudioMissing.__name__


def test_micsource_without_sound_server_says_no_microphone_and_suggests_browser_mic():
    result = _probe({"PULSE_SERVER": "unix:/nonexistent"})
    assert result["type"] == NoInputDevice.__name__
    assert "browser microphone" in result["message"]
    assert "microphone" in result["message"].lower()
    assert result["devices"] == []


def test_input_devices_returns_a_list_of_inputs():
    devices = live_stt_kernel.input_devices()
    assert isinstance(devices, list)
    for device in devices:
        assert set(device) == {"index", "name", "channels", "default_samplerate"}
        assert device["channels"] > 0


def test_errors_are_in_the_tree():
    assert issubclass(PortAudioMissing, AudioDeviceError) and issubclass(NoInputDevice, AudioDeviceError)
    assert issubclass(AudioFileError, LiveSTTError)
