"""A real JupyterLab on 127.0.0.1 and headless Debian Chromium driven by Playwright (see TESTING.md).

`JupyterLab` starts a fresh server for one test (a reopened notebook would reattach to an old kernel)
in its own temporary settings/runtime folders, with a random token, and always stops it. `chromium`
launches the system browser (never a downloaded one) so that getUserMedia records the default
PulseAudio source of ``env`` and grants the microphone without a prompt.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Self

import nbformat

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


class JupyterLab:
    """``with JupyterLab(root) as lab: page.goto(lab.url("notebook.ipynb"))``"""

    def __init__(self, root: Path, *, env: dict[str, str] | None = None, start_timeout: float = 30.0,
                 options: tuple[str, ...] = ()):
        self.root = root
        self.home = root / ".lab"
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.start_timeout = start_timeout
        self.env = dict(env or os.environ)
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.home / "server.log"

    def url(self, notebook: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/lab/tree/{notebook}?token={self.token}"

    def __enter__(self) -> Self:
        settings = self.home / "settings"
        notify = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notify.parent.mkdir(parents=True)
        notify.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no pop-up over screenshots
        env = dict(self.env, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(self.home / "ws"),
                   JUPYTER_RUNTIME_DIR=str(self.home / "runtime"), JUPYTER_CONFIG_DIR=str(self.home / "config"),
                   IPYTHONDIR=str(self.home / "ipython"))
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", "--port", str(self.port),
                   f"--ServerApp.token={self.token}", f"--ServerApp.root_dir={self.root}", "--allow-root",
                   "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", *self.options]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        api = f"http://127.0.0.1:{self.port}/api/status?token={self.token}"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(api, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"JupyterLab not ready in {self.start_timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop the server and its kernels (the whole process group), however the test ended."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # our own session: the server and the kernels it started
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        try:  # kernels that outlived the server in the same group
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process = None

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.home / "runtime", ignore_errors=True)


def chromium(playwright: Any, env: dict[str, str], *, grant_microphone: bool = True, args: tuple[str, ...] = ()) -> Any:
    """Headless Debian Chromium recording the default source of the sound server named in ``env``; with
    ``grant_microphone=False`` it answers every microphone request with NotAllowedError, as a user who
    clicks "Block" does."""
    flags = [a for a in CHROMIUM_ARGS if grant_microphone or a != "--use-fake-ui-for-media-stream"]
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[*flags, *args], env=env,
                                      timeout=30_000)


def wait_for_kernel_idle(page: Any, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }", timeout=timeout_ms)


def run_all_cells(page: Any) -> None:
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")  # not awaited, on purpose


def open_notebook(lab: JupyterLab, browser: Any, name: str) -> Any:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(lab.url(name), timeout=30_000)
    wait_for_kernel_idle(page)
    return page


def run_cell(page: Any, index: int, command: str = "notebook:run-cell") -> None:
    """Select cell ``index`` (markdown cells count) and run a notebook command on it, without waiting."""
    page.evaluate("([index, command]) => { const nb = window.jupyterapp.shell.currentWidget;"
                  " nb.content.activeCellIndex = index; window.jupyterapp.commands.execute(command); }",
                  [index, command])


def execute_in_kernel(page: Any, code: str) -> None:
    """Run code in the notebook's kernel without waiting for it (as a cell the user runs would)."""
    page.evaluate("(code) => { window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                  ".requestExecute({ code }); }", code)
