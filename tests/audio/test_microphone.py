"""The kernel microphone for real: PortAudio records a PulseAudio virtual microphone fed known audio."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from browser.audio import locate  # offset and correlation (FFT)
from helpers import API_KEY
from virtual_mic import VirtualMic

from live_stt_kernel.v3.replay import even_turns, turns_script

# a session on the kernel microphone, run in its own process so PortAudio sees this test's sound server
SESSION_SCRIPT = f"""
import json, sys, time
import live_stt_kernel as lsk
url, folder, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
session = lsk.start(lsk.MicSource(), url=url, api_key={API_KEY!r}, folder=folder)
print("recording", flush=True)
time.sleep(seconds)
session.stop(timeout=20)
print(json.dumps(session.df["text"].tolist()))
"""


@pytest.fixture
def mic():
    virtual = VirtualMic().start()
    yield virtual
    virtual.stop()


def noise_burst(seconds: float, seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    return (rng.uniform(-0.5, 0.5, int(seconds * 16000)) * 32767).astype("<i2").tobytes()


@pytest.mark.timeout(90)
def test_a_session_on_the_kernel_microphone_streams_what_the_microphone_hears(mic, serve, tmp_path):
    server = serve(turns_script(even_turns(["testing the microphone"], start_ms=200), "A", final_delay_ms=500))
    process = subprocess.Popen([sys.executable, "-c", SESSION_SCRIPT, server.url, str(tmp_path / "s"), "3.0"],
                               env=mic.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "recording"
    time.sleep(0.5)
    burst = noise_burst(1.0)
    mic.play(burst)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == ["Testing the microphone."]

    needle = np.frombuffer(burst, dtype="<i2")
    sent = np.frombuffer(bytes(server.wait_for_client().audio), dtype="<i2")
    _, corr = locate(sent, needle)
    assert corr > 0.99, f"the server did not receive the microphone's audio (correlation {corr:.3f})"
    assert len(sent) >= 2.5 * 16000  # about three seconds of recording reached the server
    saved, rate = sf.read(tmp_path / "s" / "audio.wav", dtype="int16")
    assert rate == 16000 and locate(saved, needle)[1] > 0.99


@pytest.mark.timeout(120)
def test_the_kernel_microphone_is_transcribed_end_to_end(mic, whisper, tmp_path):
    """Real speech into the virtual microphone, PortAudio, a session, the real local server and model."""
    from speech import librivox, wer

    from live_stt_kernel.local.server import LocalServer

    (speech, text), = librivox()[:1]
    with LocalServer(whisper, token="mic-token") as server:
        script = SESSION_SCRIPT.replace(repr(API_KEY), repr("mic-token"))
        seconds = len(speech) / 16000 + 3.0
        process = subprocess.Popen([sys.executable, "-c", script, server.url, str(tmp_path / "s"), str(seconds)],
                                   env=mic.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "recording"
        time.sleep(0.5)
        mic.play(speech.astype("<i2").tobytes())
        out, err = process.communicate(timeout=90)
    assert process.returncode == 0, err
    said = " ".join(json.loads(out.splitlines()[-1]))
    assert wer(text, said) <= 0.15, (text, said)
    saved, rate = sf.read(tmp_path / "s" / "audio.wav", dtype="int16")
    _, corr = locate(saved, speech)
    assert rate == 16000 and corr > 0.99  # what was transcribed is what the microphone heard


def test_devices_are_listed_and_chosen_by_name(mic):
    code = ("import live_stt_kernel as lsk; d = lsk.input_devices(); m = lsk.MicSource(device='pulse');"
            "print(len(d), m.device, [x['name'] for x in d if x['index'] == m.device][0])")
    done = subprocess.run([sys.executable, "-c", code], env=mic.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    count, _, name = done.stdout.split()
    assert int(count) >= 1 and name == "pulse"
    missing = subprocess.run([sys.executable, "-c", "import live_stt_kernel as lsk; lsk.MicSource(device='no-such-mic')"],
                             env=mic.env, capture_output=True, text=True, timeout=60)
    assert "No input device matches 'no-such-mic'. Available inputs:" in missing.stderr
