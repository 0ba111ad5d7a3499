"""A shared server for a class (issue 15): per-user tokens, temporary tokens any replica verifies, and several
kernels (separate processes, configured only by ``LIVE_STT_URL``/``LIVE_STT_TOKEN``) on one ``live-stt serve``.

The hub fixture is ``live-stt serve --tokens FILE`` in its own process (one model); the replica test runs two
in-process `LocalServer` over the test run's model with the same master token. Every wait is bounded by progress.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket
from helpers import read_all
from speech import conversation, librivox, wer

from live_stt_kernel.errors import ConfigurationError
from live_stt_kernel.local.credentials import Tokens, UserTokens, read_user_tokens
from live_stt_kernel.local.server import LocalServer

LIVE_STT = str(Path(sys.executable).parent / "live-stt")
READY = "live-stt server ready at "
STALL_S = 60.0  # no progress for this long is a failure, however busy the machine
NAMES = ("alice", "bob", "carol")


def write_roster(path: Path, pairs: dict[str, str], mode: int = 0o600) -> Path:
    """Write a token file the way a teacher would replace it: a new file renamed over the old one."""
    fresh = path.with_suffix(".new")
    fresh.write_text("# name token\n" + "".join(f"{name} {token}\n" for name, token in pairs.items()))
    fresh.chmod(mode)
    os.replace(fresh, path)
    return path


class Hub:
    """``live-stt serve --port 0 --tokens FILE`` in its own process; its stderr (the log) is kept."""

    def __init__(self, roster: Path, master: str, cache: Path):
        self.roster = roster
        env = {**os.environ, "LIVE_STT_SERVER_TOKEN": master, "LIVE_STT_CACHE": str(cache)}
        self.process = subprocess.Popen([LIVE_STT, "serve", "--port", "0", "--tokens", str(roster), "--watch-stdin"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
        self.lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(120)  # the model loads once; a bound, not a pace
        if not first or not first[0].startswith(READY):
            self.stop()
            raise AssertionError(f"live-stt serve did not start: {first} {self.log}")
        self.url = first[0].strip()[len(READY):].removesuffix("/v3/ws")

    def _drain(self) -> None:
        for line in self.process.stderr or ():
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for_log(self, text: str, what: str) -> None:
        deadline = time.monotonic() + STALL_S
        while text not in self.log:
            assert time.monotonic() < deadline and self.process.poll() is None, f"no {what} in the log: {self.log}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def class_tokens() -> dict[str, str]:
    return {name: secrets.token_urlsafe(24) for name in NAMES}


@pytest.fixture(scope="module")
def master() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, class_tokens, master) -> Iterator[Hub]:
    folder = tmp_path_factory.mktemp("hub")
    running = Hub(write_roster(folder / "tokens", class_tokens), master, folder / "cache")
    try:
        yield running
    finally:
        running.stop()


def open_session(url: str, token: str, *, header: bool = True) -> websocket.WebSocket:
    if header:
        return websocket.create_connection(f"{url}/v3/ws?sample_rate=16000", header={"Authorization": token}, timeout=60)
    return websocket.create_connection(f"{url}/v3/ws?sample_rate=16000&token={token}", timeout=60)


def opens(url: str, token: str, *, header: bool = True) -> bool:
    """Whether ``token`` opens a session (Begin), which is then ended at once; a refusal must be 1008."""
    ws = open_session(url, token, header=header)
    try:
        first = json.loads(ws.recv())
        if first.get("type") == "Begin":
            ws.send(json.dumps({"type": "Terminate"}))
            messages, code, _ = read_all(ws)
            assert messages[-1]["type"] == "Termination" and code == 1000
            return True
        _, code, reason = read_all(ws)
        assert code == 1008 and token not in reason, (first, code, reason)
        return False
    finally:
        ws.shutdown()  # the TCP close the server waits for after the closing handshake


def http(url: str) -> str:
    return url.replace("ws://", "http://")


# --- the token file and temporary tokens, as data ------------------------------------------------


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_token_file_others_can_read_is_refused(tmp_path, mode):
    secret = secrets.token_urlsafe(24)
    path = write_roster(tmp_path / "tokens", {"alice": secret}, mode)
    with pytest.raises(ConfigurationError, match="chmod 600") as refused:
        UserTokens(path)
    assert secret not in str(refused.value) and f"{mode:04o}" in str(refused.value)
    link = tmp_path / "linked"
    link.symlink_to(path)  # as a mounted secret is: the file behind the link is what is checked
    with pytest.raises(ConfigurationError, match="chmod 600"):
        UserTokens(link)
    path.chmod(0o600)
    assert UserTokens(link).lookup(secret) == "alice"


@pytest.mark.parametrize("lines, problem", [
    ("alice\n", "expected 'name token', found 1 fields"),
    ("alice {t} extra\n", "found 3 fields"),
    ("al:ce {t}\n", "a name is"),
    ("alice short\n", "shorter than 16"),
    ("alice tmp_{t}\n", "temporary tokens"),
    ("alice {t}\nbob {t}\n", "line 4: the token of bob is also given"),
])
def test_a_malformed_token_file_is_refused_naming_the_line_never_the_token(tmp_path, lines, problem):
    secret = secrets.token_urlsafe(24)
    path = tmp_path / "tokens"
    path.write_text("# roster\n\n" + lines.format(t=secret))
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match=problem) as refused:
        read_user_tokens(path)
    assert secret not in str(refused.value) and "short\n" not in str(refused.value)


def test_the_token_file_is_re_read_when_it_changes_and_a_bad_change_keeps_the_roster(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="live_stt_kernel.local")
    tokens = {"alice": secrets.token_urlsafe(24), "bob": secrets.token_urlsafe(24)}
    path = write_roster(tmp_path / "tokens", tokens)
    users = UserTokens(path)
    assert users.lookup(tokens["alice"]) == "alice" and users.lookup(tokens["bob"]) == "bob"
    assert users.lookup(tokens["alice"][:-1]) is None and users.lookup("") is None

    dave = secrets.token_urlsafe(24)
    write_roster(path, {"alice": tokens["alice"], "dave": dave})  # a student added, one removed: no restart
    assert users.lookup(dave) == "dave" and users.lookup(tokens["bob"]) is None
    assert "re-read: 2 names (1 added, 1 removed)" in caplog.text

    write_roster(path, {"alice": tokens["alice"], "dave": dave, "erin": "too-short"})  # a typo mid-lesson
    assert users.lookup(dave) == "dave" and users.names == ["alice", "dave"]  # the last good roster stays
    write_roster(path, {"alice": tokens["alice"]}, mode=0o644)  # and so does a file others can now read
    assert users.lookup(dave) == "dave"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "shorter than 16" in errors[0] and "chmod 600" in errors[1]
    path.chmod(0o600)  # fixed: read again
    assert users.lookup(dave) is None and users.lookup(tokens["alice"]) == "alice"
    assert not any(t in caplog.text for t in (*tokens.values(), dave))
    assert repr(users) == f"<UserTokens {path} users=1>"


def test_temporary_tokens_verify_on_any_server_with_the_master_token_once_on_each():
    master = secrets.token_urlsafe(24)
    now = [1_000_000.0]
    issuer, replica, stranger = (Tokens(m, clock=lambda: now[0]) for m in (master, master, "another-master-token"))
    token = issuer.issue(60, 600, issuer="alice")
    grant = replica.admit([token])
    assert grant is not None and grant.who == "alice (temporary token)" and grant.limit_s == 600
    assert replica.admit([token]) is None  # one time on this server
    assert issuer.admit([token]) is not None and issuer.admit([token]) is None  # and once on the other
    assert stranger.admit([token]) is None  # another master token: not ours
    body, mac = token.split(".")
    assert replica.admit([body + "." + mac[::-1]]) is None and replica.admit([body[:-2] + "AA." + mac]) is None
    late = issuer.issue(60, None)
    now[0] += 61
    assert replica.admit([late]) is None  # expired
    assert replica.admit(["tmp_", "tmp_.", "tmp_" + "A" * 600, "x", master]).who == "server token"  # type: ignore[union-attr]
    assert master not in repr(replica) and token not in repr(replica) and "***" in repr(replica)


# --- real servers --------------------------------------------------------------------------------


def test_a_token_one_server_issued_opens_a_session_on_another_with_the_same_master_token(whisper, master, tmp_path):
    alice = secrets.token_urlsafe(24)
    roster = UserTokens(write_roster(tmp_path / "tokens", {"alice": alice}))
    with LocalServer(whisper, token=master, users=roster) as first, LocalServer(whisper, token=master) as second:
        def issue(server: LocalServer, credential: str) -> str:
            answer = requests.get(f"{http(server.url)}/v3/token?expires_in_seconds=60", headers={"Authorization": credential},
                                  timeout=30)
            assert answer.status_code == 200, answer.text
            return str(answer.json()["token"])

        assert not any(secret in repr(x) for x in (first, first.tokens, roster) for secret in (master, alice))
        token = issue(first, master)
        assert opens(second.url, token, header=False)  # issued by the first, verified by the second
        assert not opens(second.url, token, header=False)  # once per server
        assert opens(first.url, token)  # a replica keeps its own memory of used tokens (see Tokens)
        for_alice = issue(first, alice)  # a student's token makes temporary tokens too, in her name
        assert opens(second.url, for_alice)
        assert requests.get(f"{http(second.url)}/v3/token", headers={"Authorization": alice}, timeout=30).status_code == 401
        other = LocalServer(whisper, token="a-different-master-token").start()
        try:
            assert not opens(other.url, issue(first, master))
        finally:
            other.stop()


def test_per_user_tokens_open_sessions_named_in_the_log_and_the_master_token_still_works(hub, class_tokens, master):
    for name in NAMES:
        assert opens(hub.url, class_tokens[name])
        hub.wait_for_log(f"session opened for {name} ", f"{name}'s session")
    assert opens(hub.url, master, header=False)
    assert not opens(hub.url, class_tokens["alice"][:-1]) and not opens(hub.url, "tmp_not.signed")
    hub.wait_for_log("session refused: no valid token", "the refusal")
    assert "session opened for server token" in hub.log
    assert not any(secret in hub.log for secret in (*class_tokens.values(), master))


def test_a_student_added_to_the_file_is_served_without_a_restart(hub, class_tokens):
    dave = secrets.token_urlsafe(24)
    assert not opens(hub.url, dave)
    write_roster(hub.roster, {**class_tokens, "dave": dave})
    assert opens(hub.url, dave)
    hub.wait_for_log("session opened for dave ", "dave's session")
    assert "re-read: 4 names (1 added, 0 removed)" in hub.log and dave not in hub.log


def test_a_token_file_others_can_read_stops_serve_before_the_model_loads(tmp_path):
    secret = secrets.token_urlsafe(24)
    roster = write_roster(tmp_path / "tokens", {"alice": secret}, 0o644)
    env = {**os.environ, "LIVE_STT_SERVER_TOKEN": secrets.token_urlsafe(24), "LIVE_STT_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([LIVE_STT, "serve", "--port", "0", "--tokens", str(roster)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (f"live-stt: error: token file {roster}: readable or writable by group or others "
                                   f"(mode 0644); make it private with: chmod 600 {roster}")


KERNEL = """
import json, sys
import live_stt_kernel as lsk
session = lsk.start(sys.argv[1], realtime=True, folder=sys.argv[2])
session.wait()
print(json.dumps({"texts": session.df["text"].tolist(), "kind": session.endpoint.kind, "url": session.endpoint.url,
                  "model_here": any(m in sys.modules for m in ("faster_whisper", "ctranslate2"))}))
"""


def folder_size(folder: Path) -> int:
    try:
        return sum(f.stat().st_size for f in folder.iterdir())
    except OSError:
        return 0


def test_several_kernels_as_processes_each_get_their_own_turns_from_one_server(hub, class_tokens, tmp_path):
    pool = librivox()
    kernels: list[dict[str, Any]] = []
    for i, name in enumerate(NAMES):  # each student reads two different utterances, in real time
        wav = tmp_path / f"{name}.wav"
        reference = conversation(wav, [pool[i], pool[(i + 2) % 5]], gap_s=1.0)
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LIVE_STT_CACHE": str(tmp_path / f"cache-{name}"),
               "LIVE_STT_URL": hub.url, "LIVE_STT_TOKEN": class_tokens[name]}  # all a hub gives a kernel
        folder = tmp_path / f"session-{name}"
        process = subprocess.Popen([sys.executable, "-c", KERNEL, str(wav), str(folder)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env)
        kernels.append({"name": name, "reference": reference, "folder": folder, "process": process})
    outputs: dict[str, tuple[str, str]] = {}
    readers = [threading.Thread(target=lambda k=k: outputs.__setitem__(k["name"], k["process"].communicate()), daemon=True)
               for k in kernels]
    for reader in readers:
        reader.start()
    sizes = {k["name"]: -1 for k in kernels}
    progressed = time.monotonic()
    try:
        while any(reader.is_alive() for reader in readers):  # bounded by a stall: the session folders grow as it runs
            now = {k["name"]: folder_size(k["folder"]) for k in kernels}
            if now != sizes:
                sizes, progressed = now, time.monotonic()
            assert time.monotonic() - progressed < STALL_S, f"no kernel made progress for {STALL_S:g} s: {sizes}"
            time.sleep(0.1)
    finally:
        for k in kernels:
            if k["process"].poll() is None:
                k["process"].kill()
    for k in kernels:
        out, err = outputs[k["name"]]
        assert k["process"].returncode == 0, (err[-3000:], hub.log)
        result = json.loads(out.strip().splitlines()[-1])
        assert result["kind"] == "url" and result["url"] == hub.url  # the class's server, not one of its own
        assert not result["model_here"] and not (Path(k["folder"]).parent / f"cache-{k['name']}" / "server.log").exists()
        hypothesis = " ".join(result["texts"])
        assert wer(k["reference"], hypothesis) <= 0.15, (k["name"], hypothesis)  # its own words, no one else's
        assert len(result["texts"]) >= 2
    for name in NAMES:
        assert f"session ended for {name} " in hub.log
