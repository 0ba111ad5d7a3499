"""Sessions end to end: our client against a real v3 server on 127.0.0.1 replaying scripted sessions."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import API_KEY, session_for, wait_until

from live_stt_kernel import (
    QueueSource,
    Session,
    StreamingParams,
    WavSource,
    load_session,
)
from live_stt_kernel.endpoint import Endpoint
from live_stt_kernel.errors import (
    AuthenticationError,
    ConfigurationError,
    ConnectionLost,
    ConnectTimeout,
    ServerRefused,
    ServerUnreachable,
    SessionTimeout,
    TerminationTimeout,
    TooManySessions,
)
from live_stt_kernel.local import launcher
from live_stt_kernel.session import SessionSummary
from live_stt_kernel.v3.protocol import public_url
from live_stt_kernel.v3.reconnect import ReconnectPolicy
from live_stt_kernel.v3.replay import Close, Drop, Script, Step, even_turns, turns_script

TEXTS = ["one two three", "four five six"]  # finals at ~1.14 s and ~2.94 s of audio


def expected_pcm(path: Path) -> bytes:
    return b"".join(WavSource(path, realtime=False))


def with_steps(*steps: Step, behaviour: str = "A") -> Script:
    base = turns_script(even_turns(TEXTS), behaviour)
    return Script(steps=base.steps + steps)


def test_a_shared_server_in_the_environment_serves_sessions_with_no_url_and_never_gets_the_assemblyai_key(
        serve, make_wav, tmp_path, monkeypatch):
    server = serve(turns_script(even_turns(TEXTS), "B"))
    monkeypatch.setenv("LIVE_STT_URL", server.url)  # what a hub sets for every student kernel
    monkeypatch.setenv("LIVE_STT_TOKEN", API_KEY)
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", "aai-student-key-0000000000")
    session = Session(make_wav(4.0), realtime=False, folder=tmp_path / "s").start().wait(timeout=30)
    assert session.df["text"].tolist() == ["One two three.", "Four five six."]
    assert server.wait_for_client().headers["authorization"] == API_KEY  # the class's token, not the student's key
    assert session.endpoint.kind == "url" and session.endpoint.url == server.url
    # an argument still wins: a key passed here is the cloud; "" is no key at all, the embedded default
    assert Session(make_wav(1.0), api_key="aai-explicit-000000000000", folder=None).endpoint.kind == "cloud"
    assert Session(make_wav(1.0), api_key="", folder=None).endpoint.kind == "embedded"
    monkeypatch.delenv("LIVE_STT_URL")
    assert Session(make_wav(1.0), folder=None).endpoint.kind == "cloud"  # the environment's key, as before


@pytest.mark.parametrize("behaviour, first", [("A", "One two three."), ("B", "One two three."), ("C", "one two three")])
def test_file_streams_to_the_server_and_turns_come_back_once(serve, make_wav, tmp_path, behaviour, first):
    server = serve(turns_script(even_turns(TEXTS), behaviour))
    wav = make_wav(4.0)
    session = session_for(server, wav, tmp_path).start().wait(timeout=20)

    assert session.df["text"].tolist()[0] == first and len(session.df) == 2
    record = server.wait_for_client()
    pcm = expected_pcm(wav)
    assert bytes(record.audio[: len(pcm)]) == pcm  # every byte, in order
    assert set(record.audio[len(pcm):]) <= {0} and len(record.audio) - len(pcm) < 1600  # only the tail's padding
    assert set(record.frame_sizes) == {1600}  # 50 ms frames, the last one padded
    assert [t["type"] for t in record.texts] == ["Terminate"]
    assert record.query["speech_model"] == "u3-rt-pro"  # AssemblyAI's guides' model, always sent
    assert record.headers["authorization"] == API_KEY
    assert load_session(tmp_path / "session")["text"].tolist() == session.df["text"].tolist()
    meta = json.loads((tmp_path / "session" / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["turns"] == 2 and len(meta["session_ids"]) == 1
    saved, rate = sf.read(tmp_path / "session" / "audio.wav", dtype="int16")
    assert rate == 16000 and saved.tobytes() == pcm


def test_frames_can_be_longer(serve, make_wav, tmp_path):
    server = serve(turns_script(even_turns(TEXTS), "B"))
    session_for(server, make_wav(2.0), tmp_path, frame_ms=100).start().wait(timeout=20)
    assert set(server.wait_for_client().frame_sizes) == {3200}


def test_a_file_is_paced_in_real_time(serve, make_wav, tmp_path):
    server = serve(turns_script(even_turns(["one two"]), "B"), realtime_margin_ms=150)
    started = time.monotonic()
    session = session_for(server, make_wav(1.5), tmp_path, realtime=True).start().wait(timeout=20)
    elapsed = time.monotonic() - started
    record = server.wait_for_client()
    assert 1.4 <= elapsed < 5
    assert record.frame_times[-1] - record.frame_times[0] >= 1.3
    assert session.df["text"].tolist() == ["One two."]


def test_sending_faster_than_real_time_is_refused_as_a_client_bug(serve, make_wav, tmp_path):
    server = serve(turns_script(even_turns(TEXTS), "A"), realtime_margin_ms=100)
    session = session_for(server, make_wav(4.0), tmp_path, realtime=False).start()
    with pytest.raises(ServerRefused) as caught:
        session.wait(timeout=20)
    assert caught.value.code == 3007 and "faster than real time" in str(caught.value)
    assert "client sent something invalid" in str(caught.value)


def test_query_parameters_reach_the_server(serve, make_wav, tmp_path):
    server = serve(turns_script(even_turns(TEXTS), "B"))
    params = StreamingParams(speech_model="u3-rt-pro", keyterms_prompt=["Jupyter"], format_turns=False, max_turn_silence=1200)
    session_for(server, make_wav(1.0), tmp_path, params=params).start().wait(timeout=20)
    query = server.wait_for_client().query
    assert (query["speech_model"], query["format_turns"], query["max_turn_silence"]) == ("u3-rt-pro", "false", "1200")
    assert json.loads(query["keyterms_prompt"]) == ["Jupyter"]


def test_a_temporary_token_goes_in_the_query_and_opens_one_session(serve, make_wav, tmp_path):
    server = serve(turns_script(even_turns(TEXTS), "B"), api_key=None, tokens={"one-time-token"})
    wav = make_wav(1.0)
    Session(wav, url=server.url, token="one-time-token", realtime=False, folder=None).start().wait(timeout=20)
    record = server.wait_for_client()
    assert record.query["token"] == "one-time-token" and "authorization" not in record.headers
    with pytest.raises(AuthenticationError, match="1008"):
        Session(wav, url=server.url, token="one-time-token", realtime=False, folder=None).start().wait(timeout=20)


@pytest.mark.parametrize("failure", ["close", "http"])
def test_a_refused_key_is_clear_and_never_retried(serve, make_wav, tmp_path, failure):
    server = serve(turns_script(even_turns(TEXTS), "B"), auth_failure=failure)
    session = session_for(server, make_wav(1.0), tmp_path, api_key="wrong-key-aaaaaaaaaaaaaaaaaaaaaaaa")
    with pytest.raises(AuthenticationError) as caught:
        session.start().wait(timeout=20)
    assert ("401" if failure == "http" else "Invalid API key") in str(caught.value)
    assert "not retrying" in str(caught.value)
    time.sleep(0.2)  # give a (wrong) retry the chance to show up
    assert len(server.clients) == 1


@pytest.mark.parametrize("code, text, error_type", [
    (1008, "Unauthorized Connection: Too many concurrent sessions", TooManySessions),
    (1011, "Internal error while connecting", ServerRefused),
    (3005, "Internal server error", ServerRefused),
    (3006, "Invalid Message: bad", ServerRefused),
    (3007, "Input Duration Violation: 20 ms", ServerRefused),
    (3008, "Session Expired: Maximum session duration exceeded", ServerRefused),
    (3009, "Too many concurrent sessions", TooManySessions),
])
def test_error_close_codes_keep_finished_turns(serve, make_wav, tmp_path, code, text, error_type):
    server = serve(with_steps(Step(3500, {"type": "Error", "error_code": code, "error": text}), Step(3500, Close(code, text[:123]))))
    session = session_for(server, make_wav(5.0), tmp_path, reconnect=0).start()  # the error itself (see test_reconnect)
    with pytest.raises(error_type) as caught:
        session.wait(timeout=20)
    assert caught.value.code == code and text in str(caught.value)
    assert session.error is caught.value
    assert session.df["text"].tolist() == ["One two three.", "Four five six."]
    assert load_session(tmp_path / "session")["text"].tolist() == ["One two three.", "Four five six."]
    assert json.loads((tmp_path / "session" / "meta.json").read_text())["status"] == "failed"


def test_an_untyped_error_frame_explains_a_generic_close(serve, make_wav, tmp_path):
    server = serve(with_steps(Step(1500, {"error": "Session Expired: token max duration reached"}),
                              Step(1500, Close(3005, "See Error message for details"))))
    session = session_for(server, make_wav(3.0), tmp_path, reconnect=0).start()
    with pytest.raises(ServerRefused, match="token max duration reached") as caught:
        session.wait(timeout=20)
    assert "open a new session" in str(caught.value)
    assert session.df["text"].tolist() == ["One two three."]


def test_a_garbled_message_is_skipped_with_a_warning_and_the_session_goes_on(serve, make_wav, tmp_path, caplog):
    server = serve(with_steps(Step(2000, '{"type": "Turn", "turn_or')))
    session = session_for(server, make_wav(4.0), tmp_path).start()
    session.wait(timeout=20)
    assert any("skipped a malformed message" in r.getMessage() and "not JSON" in r.getMessage() for r in caplog.records)
    assert load_session(tmp_path / "session")["text"].tolist() == ["One two three.", "Four five six."]
    assert json.loads((tmp_path / "session" / "meta.json").read_text())["status"] == "completed"


def test_a_dropped_connection_is_reported_and_keeps_turns(serve, make_wav, tmp_path):
    server = serve(with_steps(Step(2000, Drop())))
    session = session_for(server, make_wav(4.0), tmp_path, reconnect=0).start()
    with pytest.raises(ConnectionLost, match="1006"):
        session.wait(timeout=20)
    assert session.df["text"].tolist() == ["One two three."]
    saved, _ = sf.read(tmp_path / "session" / "audio.wav", dtype="int16")
    assert len(saved) >= 2 * 16000 * 0.9  # the audio sent before the drop is on disk


def test_a_server_that_never_begins_times_out(serve, make_wav, tmp_path):
    server = serve(Script(send_begin=False))
    session = session_for(server, make_wav(1.0), tmp_path, begin_timeout=0.5).start()
    started = time.monotonic()
    with pytest.raises(ConnectTimeout, match=r"no Begin message within 0\.5 s"):
        session.wait(timeout=10)
    assert time.monotonic() - started < 3


def test_a_refusal_before_begin_is_typed(serve, make_wav, tmp_path):
    script = Script(send_begin=False, steps=(Step(0, {"type": "Error", "error_code": 3009, "error": "Too many concurrent sessions"}),
                                             Step(0, Close(3009, "Too many concurrent sessions"))))
    server = serve(script)
    with pytest.raises(TooManySessions, match="Wait before starting another session"):
        session_for(server, make_wav(1.0), tmp_path).start().wait(timeout=10)


def test_an_unreachable_server_is_reported(make_wav, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    session = Session(make_wav(1.0), url=f"ws://127.0.0.1:{port}", api_key=API_KEY, realtime=False, folder=tmp_path / "s")
    with pytest.raises(ServerUnreachable, match=f"127.0.0.1:{port}"):
        session.start().wait(timeout=10)
    assert (tmp_path / "s" / "meta.json").exists()


def test_an_unanswered_terminate_times_out_with_turns_kept(serve, make_wav, tmp_path):
    base = turns_script(even_turns(TEXTS), "B")
    server = serve(Script(steps=base.steps, answer_terminate=False))
    session = session_for(server, make_wav(4.0), tmp_path, terminate_timeout=0.5).start()
    with pytest.raises(TerminationTimeout, match="the last turn may be missing"):
        session.wait(timeout=10)
    assert session.df["text"].tolist() == ["One two three.", "Four five six."]


def test_unknown_and_informational_messages_do_not_disturb(serve, make_wav, tmp_path):
    server = serve(with_steps(
        Step(500, {"type": "SomethingFromTheFuture", "x": [1, 2]}),
        Step(600, {"type": "Warning", "warning": "deprecated model"}),
        Step(700, {"type": "Heartbeat"}),
        Step(1500, {"type": "LLMGatewayResponse", "turn_order": 0, "transcript": "x", "data": {}}),
        Step(3500, {"type": "SpeakerRevision", "revisions": [{"turn_order": 0, "speaker_label": "B"}]}),
    ))
    seen = []
    session = session_for(server, make_wav(4.0), tmp_path, on_event=lambda e: seen.append(type(e).__name__)).start().wait(timeout=20)
    assert {"ServerWarning", "Heartbeat", "LLMGatewayResponse", "SpeakerRevision"} <= set(seen)
    for frame in (session.df, load_session(tmp_path / "session")):
        assert frame["speaker"][0] == "B" and frame["speaker"].isna().tolist() == [False, True]


def test_stop_flushes_the_last_turn_of_a_live_source(serve, tmp_path):
    # the only final comes at 5 s of audio: it can only arrive because stop() sends Terminate
    server = serve(turns_script(even_turns(["late words"], start_ms=300), "B", final_delay_ms=4000))
    source = QueueSource()
    session = session_for(server, source, tmp_path).start()
    for _ in range(20):
        source.push(b"\x01\x00" * 1600)  # 2 s in 100 ms blocks
    deadline = time.monotonic() + 10
    while session.partial != "late words" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert session.partial == "late words" and len(session.df) == 0
    session.stop(timeout=10)
    assert session.df["text"].tolist() == ["Late words."]
    assert session.stop() is session  # idempotent
    assert server.wait_for_client().texts == [{"type": "Terminate"}]
    assert len(server.clients[0].audio) == 2 * 16000 * 2


def test_listeners_run_on_the_worker_and_a_slow_one_does_not_stall_the_socket(serve, make_wav, tmp_path):
    server = serve(turns_script(even_turns(["a b", "c d", "e f", "g h"], gap_ms=200), "B"))
    threads, arrivals = set(), []

    def slow(row):
        threads.add(threading.current_thread().name)
        time.sleep(0.2)

    def on_event(event):
        threads.add(threading.current_thread().name)
        if type(event).__name__ == "Turn" and event.end_of_turn:
            arrivals.append(event.received_at)

    session = session_for(server, make_wav(5.0), tmp_path, on_turn=slow, on_event=on_event).start().wait(timeout=20)
    assert threads == {"live-stt-session"}
    assert len(session.df) == 4
    assert arrivals[-1] - arrivals[0] < 0.2  # all received while the listener was still busy with the first


def test_a_failing_listener_is_recorded_not_fatal(serve, make_wav, tmp_path):
    server = serve(turns_script(even_turns(TEXTS), "B"))

    def broken(row):
        raise RuntimeError("listener bug")

    session = session_for(server, make_wav(4.0), tmp_path, on_turn=broken).start().wait(timeout=20)
    assert len(session.df) == 2 and [str(e) for e in session.callback_errors] == ["listener bug"] * 2


def test_start_returns_at_once_and_the_context_manager_stops(serve, make_wav, tmp_path):
    server = serve(turns_script(even_turns(TEXTS), "B"))
    wav = make_wav(4.0)
    started = time.monotonic()
    with session_for(server, wav, tmp_path, realtime=True) as session:
        assert time.monotonic() - started < 0.5 and session.running
    assert not session.running and session.stop() is session
    assert server.wait_for_client().terminated


def test_secrets_never_appear_in_reprs_files_or_errors(serve, make_wav, tmp_path):
    secret = "sk-live-0123456789abcdefABCDEF0123"
    server = serve(turns_script(even_turns(TEXTS), "B"), api_key=secret)
    session = session_for(server, make_wav(2.0), tmp_path, api_key=secret).start().wait(timeout=20)
    refused = session_for(server, make_wav(1.0, name="b.wav"), tmp_path / "other", api_key=secret[::-1]).start()
    with pytest.raises(AuthenticationError) as caught:
        refused.wait(timeout=20)
    visible = [repr(session), repr(session.client), repr(refused), str(caught.value), session.df.to_string()]
    visible += [session._repr_html_(), refused._repr_html_()]
    assert "failed" in visible[-1] and "AuthenticationError" in visible[-1]  # the refusal is shown, the key is not
    visible += [p.read_text() for p in (tmp_path / "session").glob("*.json*")]
    visible += [p.read_text() for p in (tmp_path / "other" / "session").glob("*.json*")]
    assert not any(secret in text or secret[::-1] in text for text in visible)


def test_token_never_appears_in_errors(serve, make_wav):
    server = serve(Script(send_begin=False), api_key=None)
    session = Session(make_wav(1.0), url=server.url, token="secret-token-xyz", realtime=False, folder=None, begin_timeout=0.3)
    with pytest.raises(ConnectTimeout) as caught:
        session.start().wait(timeout=10)
    assert "secret-token-xyz" not in str(caught.value) + repr(session) + repr(session.client) + session._repr_html_()


def test_stereo_48k_float_file_is_converted_before_sending(serve, make_wav, tmp_path):
    server = serve(turns_script(even_turns(TEXTS), "B"))
    wav = make_wav(2.0, rate=48000, channels=2, subtype="FLOAT")
    session_for(server, wav, tmp_path).start().wait(timeout=20)
    audio = np.frombuffer(bytes(server.wait_for_client().audio), dtype="<i2")
    assert abs(len(audio) - 32000) <= 800
    spectrum = np.abs(np.fft.rfft(audio[:32000].astype(float)))
    assert abs(np.argmax(spectrum) * 16000 / 32000 - 440) < 2


def test_construction_does_no_io_and_stop_ends_every_thread_it_started(serve, make_wav, tmp_path, monkeypatch):
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    servers_before = dict(launcher._servers)
    threads_before = set(threading.enumerate())
    idle = Session(make_wav(1.0), folder=tmp_path / "idle", translate_to="es", translator="apertium")
    assert idle.endpoint.kind == "embedded" and idle.client is None  # chosen, not started
    assert launcher._servers == servers_before and set(threading.enumerate()) == threads_before
    assert not (tmp_path / "idle").exists()
    assert idle.stop() is idle  # never started: nothing to end

    server = serve(turns_script(even_turns(TEXTS), "A"))
    threads_before = set(threading.enumerate())
    session = session_for(server, make_wav(4.0), tmp_path, realtime=True, translate_to="es", translator="apertium").start()
    wait_until(lambda: len(session.transcript.rows) >= 1, 20, what="the first turn")
    started = set(threading.enumerate()) - threads_before
    assert {"live-stt-session", "live-stt-sender", "live-stt-receiver", "live-stt-translate-dispatch"} <= {t.name for t in started}
    session.stop(timeout=30)
    wait_until(lambda: not any(t.is_alive() for t in started), 10, what="the session's threads to end")
    assert session.df["translation_es"].notna().all()  # the last turn was translated before the threads ended


def test_stop_says_plainly_when_the_stream_does_not_end_in_time(serve, make_wav, tmp_path):
    server = serve(Script(steps=turns_script(even_turns(TEXTS), "B").steps, answer_terminate=False))
    session = session_for(server, make_wav(2.0), tmp_path, terminate_timeout=5.0).start()
    started = time.monotonic()
    with pytest.raises(SessionTimeout, match=r"did not finish within 0\.5 s") as caught:
        session.stop(timeout=0.5)
    assert time.monotonic() - started < 3.0  # the session was ended, not left running
    assert isinstance(caught.value, TimeoutError)  # also what a caller would catch for any timeout
    assert not session.running and not session._worker.is_alive()
    assert json.loads((tmp_path / "session" / "meta.json").read_text())["status"] == "failed"
    with pytest.raises(SessionTimeout):
        session.wait(timeout=1)


def test_update_configuration_reaches_the_server_and_later_connections(serve, make_wav, tmp_path):
    server = serve(turns_script(even_turns(TEXTS), "B"))
    session = session_for(server, make_wav(3.0), tmp_path, realtime=True).start()
    wait_until(lambda: session.client is not None and session.client.bytes_sent > 0, 20, what="audio to flow")
    with pytest.raises(ConfigurationError, match="cannot update"):
        session.update_configuration(sample_rate=8000)
    session.update_configuration(keyterms_prompt=["Dask", "JupyterLab"], max_turn_silence=900)
    session.wait(timeout=20)
    updates = [t for t in server.wait_for_client().texts if t["type"] == "UpdateConfiguration"]
    assert updates == [{"type": "UpdateConfiguration", "keyterms_prompt": ["Dask", "JupyterLab"], "max_turn_silence": 900}]
    assert session.params.keyterms_prompt == ["Dask", "JupyterLab"] and session.params.max_turn_silence == 900
    assert session.params.sample_rate == 16000  # the refused change changed nothing


@pytest.mark.parametrize("url", ["ws://127.0.0.1:9/v3/ws", "wss://stt.example.org/v3/ws"])
def test_a_local_or_custom_server_never_implies_a_cloud_translator(monkeypatch, make_wav, url):
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", "aai-key-from-env")
    default = Session(make_wav(1.0), url=url, api_key="server-token", folder=None, translate_to="es")
    assert default.translation is not None and default.translation.translator.backend == "apertium"
    named = Session(make_wav(1.0), url=url, api_key="server-token", folder=None, translate_to="es", translator="gateway")
    assert named.translation is not None and named.translation.translator.backend == "gateway"
    assert named.translation.translator.llm._api_key == "aai-key-from-env"  # the backend's own key, never the server's token


def test_a_cloud_session_translates_with_its_own_key_by_default(monkeypatch, make_wav):
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    session = Session(make_wav(1.0), api_key="aai-key", folder=None, translate_to="es")
    assert session.endpoint.kind == "cloud" and session.translation is not None
    assert session.translation.translator.backend == "gateway" and session.translation.translator.llm._api_key == "aai-key"


# --- in a notebook: the session's HTML view, and what is logged ----------------------------------


def test_the_notebook_view_shows_state_engine_and_the_last_turns(serve, make_wav, tmp_path):
    server = serve(turns_script(even_turns(["one two", "three four", "five six", "seven eight"]), "B"))
    session = session_for(server, make_wav(7.0), tmp_path, translate_to="es", translator="apertium")
    before = session.summary()
    assert (before.state, before.turns, before.last_turns, before.error) == ("not started", 0, (), None)
    assert "not started" in session._repr_html_()

    session.start().wait(timeout=30)
    summary = session.summary()
    assert (summary.state, summary.turns, summary.error) == ("stopped", 4, None)
    assert [text for _, text in summary.last_turns] == ["Three four.", "Five six.", "Seven eight."]
    assert summary.engine == f"local server (127.0.0.1:{server.port})"
    assert summary.speech_model == session.params.speech_model  # the model asked for (a remote server's own is not known)
    assert summary.translate_to == ("es",) and summary.folder == str(tmp_path / "session")
    page = session._repr_html_()
    for shown in ("stopped", f"local server (127.0.0.1:{server.port}) · {session.params.speech_model}", ">4</td>",
                  "Translating to", ">es</td>", str(tmp_path / "session"), '<ol start="2"', "<li>Seven eight.</li>"):
        assert shown in page, shown
    assert "One two." not in page and "Error" not in page  # the last three turns only; nothing failed


def test_the_notebook_view_escapes_what_the_server_said(serve, make_wav, tmp_path):
    said = '<script>alert("x")</script> Tom&Jerry'
    server = serve(turns_script(even_turns([said]), "C"))
    session = session_for(server, make_wav(2.0), tmp_path).start().wait(timeout=20)
    assert session.summary().last_turns == ((None, said),)
    page = session._repr_html_()
    assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; Tom&amp;Jerry" in page


def test_the_notebook_view_of_a_failure_and_of_a_remote_server_hides_every_secret():
    summary = SessionSummary(state="failed", engine="server (stt.example.org)", speech_model="u3-rt-pro", turns=1,
                             last_turns=(("<A>", "a & b"),), error="ServerRefused: <b>1011</b>")
    page = summary.to_html()
    assert "<b>&lt;A&gt;:</b> a &amp; b" in page and "ServerRefused: &lt;b&gt;1011&lt;/b&gt;" in page
    assert "none (nothing kept on disk)" in page and "Translating to" not in page

    key, url = "sk-live-0123456789abcdefABCDEF0123", "wss://user:pw@stt.example.org:8443/v3/ws?token=tok-999#x"
    session = Session(QueueSource(), url=url, api_key=key, folder=None)  # never started: no I/O
    assert session.summary().engine == "server (stt.example.org:8443)"
    assert public_url(url) == "wss://stt.example.org:8443/v3/ws"
    assert Endpoint("url", url=url).describe() == "stt.example.org:8443"  # the panel's and the CLI's words: no password
    assert "pw" not in repr(session)
    hidden = session._hide_secrets(f"refused {key} at {url}; see https://x.org/a?b=c")
    assert hidden == "refused *** at wss://stt.example.org:8443/v3/ws; see https://x.org/a"
    assert not any(s in session._repr_html_() for s in (key, "tok-999", "user:pw", "?"))


def test_connects_and_reconnects_are_logged_at_info_without_a_token(serve, make_wav, caplog):
    first = turns_script(even_turns(["one two three"], start_ms=300), "B")
    scripts = iter([Script(steps=(*first.steps, Step(2500, Drop()))), turns_script(even_turns(["four five six"], start_ms=300), "B")])
    tokens = ["temp-token-one-0123456789", "temp-token-two-0123456789"]
    server = serve(lambda record: next(scripts), api_key=None, tokens=set(tokens))
    fresh = iter(tokens)
    caplog.set_level(logging.INFO, logger="live_stt_kernel.session")
    session = Session(make_wav(4.0), url=server.url, token=lambda: next(fresh), folder=None, realtime=False,
                      reconnect=ReconnectPolicy(attempts=3, first_delay_s=0.02, max_delay_s=0.1))
    session.start().wait(timeout=20)
    assert session.df["text"].tolist() == ["One two three.", "Four five six."] and len(server.clients) == 2

    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "live_stt_kernel.session"]
    assert {level for level, _ in lines} == {logging.INFO}, lines
    said = [text for _, text in lines]
    here = f"ws://127.0.0.1:{server.port}/"
    assert [text.split(" (")[0] for text in said] == [f"connected to {public_url(session.client.url)}", "connection lost, reconnecting",
                                                      "reconnected", f"connected to {public_url(session.client.url)}"], said
    assert said[0].startswith(f"connected to {here}") and f"(session {session.session_ids[0]})" in said[0]
    assert said[1].startswith("connection lost, reconnecting (attempt 1, in 0.02 s): ") and "dropped" in said[1]
    assert said[2].startswith("reconnected (reconnect 1) after: ")
    assert not any(token in text or "?" in text for text in said for token in tokens)
    assert "running" not in session._repr_html_() and session.summary().turns == 2
