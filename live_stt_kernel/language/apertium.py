"""Apertium (rule-based machine translation, Debian's ``apertium`` packages): instant and literal.

One long-lived pipeline per language pair, fed one turn at a time and separated by NUL bytes: about
2 ms a sentence instead of ~120 ms for a fresh ``apertium`` process. The pair's mode file is expanded
with ``apertium-wblank-mode -z`` so that every stage flushes at each NUL (plain ``apertium -z``
buffers and would hang a turn-by-turn reader).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import threading
import time
from pathlib import Path

from ..errors import ConfigurationError, TranslatorError
from .translation import language_code

MODES_DIR = Path("/usr/share/apertium/modes")
ISO3 = {"spa": "es", "cat": "ca", "glg": "gl", "epo": "eo", "fra": "fr", "por": "pt", "ita": "it", "deu": "de",
        "eng": "en", "oci": "oc", "ron": "ro", "nld": "nl", "swe": "sv", "dan": "da", "nob": "nb"}
NO_PROMPT = ("Apertium translates by rules and cannot follow a prompt: choose an LLM backend for a custom prompt "
             "(translator='local', 'gateway' or 'openai'), or go back to the built-in one (prompt=None, "
             "or configure(default_prompt=True))")
# characters that have a meaning in Apertium's stream format and must be escaped in plain text
_RESERVED = re.compile(r"([\\^$/<>\[\]{}@*#~])")
_ESCAPED = re.compile(r"\\(.)")


def installed_pairs(source: str = "en", modes_dir: Path = MODES_DIR) -> dict[str, str]:
    """Targets reachable from ``source`` with the installed pairs: ``{"es": "eng-spa"}``."""
    pairs: dict[str, str] = {}
    for mode in sorted(modes_dir.glob("*.mode")) if modes_dir.is_dir() else []:
        parts = mode.stem.split("-")
        if len(parts) != 2:
            continue  # variants such as spa-eng_US
        src, dst = (ISO3.get(p, p) for p in parts)
        if src == source:
            pairs.setdefault(dst, mode.stem)
    return pairs


def escape(text: str) -> str:
    return _RESERVED.sub(r"\\\1", " ".join(text.replace("\0", " ").split()))


def unescape(text: str) -> str:
    return " ".join(_ESCAPED.sub(r"\1", text).split())


_CHUNK_HEAD = re.compile(r"(?<!\\)\^([^<{}^$\\]+)((?:<[^<>]*>)*)\{")


def fix_chunk_case(stream: str) -> str:
    """A chunked Apertium stream (interchunk's output) with sentence-start case kept to sentence starts.

    Postchunk gives a chunk's first word the case of the chunk's name, and the transfer rules name a chunk
    "Cnj" (not "cnj") when the sentence-start flag is still set, which an interjection's chunk leaves set:
    "Hello and welcome" came out "Hola Y bienvenido". A capital in a chunk's name means "this chunk starts
    a sentence", so a name capitalised after the first chunk of a sentence is lowered here (all-capitals
    names, a shouted sentence, are left alone)."""
    start = True

    def visit(match: re.Match[str]) -> str:
        nonlocal start
        name, tags = match.group(1), match.group(2)
        if "<sent>" in tags:
            start = True
            return match.group(0)
        fixed = match.group(0)
        if not start and name[:1].isupper() and not name.isupper():
            fixed = f"^{name[0].lower()}{name[1:]}{tags}{{"
        start = False
        return fixed

    return _CHUNK_HEAD.sub(visit, stream)


def _read_until_nul(fd: int, deadline: float, timeout: float) -> bytes:
    out = b""
    while not out.endswith(b"\0"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError(f"no answer within {timeout:g} s")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise EOFError("the pipeline ended")
        out += chunk
    return out


class Pipeline:
    """One running Apertium pipeline for a mode. Not thread-safe: `ApertiumTranslator` locks it.

    A pair with a three-stage transfer runs as two processes, cut before ``apertium-postchunk``, so that
    `fix_chunk_case` can mend the chunks' case in between (about 0.1 ms)."""

    def __init__(self, mode: str, modes_dir: Path = MODES_DIR):
        expanded = subprocess.run(["apertium-wblank-mode", "-z", str(modes_dir / f"{mode}.mode")],
                                  capture_output=True, text=True, check=True).stdout.strip()
        head, cut, tail = expanded.partition("| apertium-postchunk ")
        commands = [head, "apertium-postchunk " + tail] if cut else [expanded]
        # $1: -n leaves unknown words unmarked (no '*'); $2: the tagger's default options
        self.processes = [subprocess.Popen(["bash", "-c", command, "apertium", "-n", ""], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
                          for command in commands]
        self.process = self.processes[0]

    def translate(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        # a trailing blank lets the last word leave the bilingual stage before the flush
        data = escape(text).encode() + b"\n\0"
        for i, process in enumerate(self.processes):
            assert process.stdin is not None and process.stdout is not None
            if i:
                data = fix_chunk_case(data.decode("utf-8", errors="replace")).encode()
            process.stdin.write(data)
            process.stdin.flush()
            data = _read_until_nul(process.stdout.fileno(), deadline, timeout)
        return unescape(data.rstrip(b"\0").decode("utf-8", errors="replace"))

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, 9)
                except ProcessLookupError:
                    pass
            process.wait(timeout=5)


class ApertiumTranslator:
    """Translate English turns with Apertium; one pipeline per target, started on first use and
    restarted after a failure. Thread-safe (one turn at a time per pipeline)."""

    backend = "apertium"
    model = "apertium"

    def __init__(self, *, source: str = "en", timeout: float = 10.0, modes_dir: Path = MODES_DIR):
        if shutil.which("apertium-wblank-mode") is None:
            raise ConfigurationError("Apertium is not installed: apt-get install apertium apertium-eng-spa "
                                     "(or choose an LLM backend)")
        self.source = source
        self.timeout = timeout
        self.modes_dir = modes_dir
        self.pairs = installed_pairs(source, modes_dir)
        self._pipelines: dict[str, Pipeline] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ApertiumTranslator {self.source} -> {', '.join(self.pairs) or 'nothing installed'}>"

    def mode_for(self, target: str) -> str:
        """The installed mode (``"eng-spa"``) that translates into ``target``; raises `ConfigurationError` when none is installed."""
        code = language_code(target)
        if code not in self.pairs:
            have = ", ".join(self.pairs) or "none"
            raise ConfigurationError(f"Apertium has no {self.source}->{code} pair installed (installed: {have}); "
                                     "install that pair (Debian: apt-cache search apertium) or use an LLM backend")
        return self.pairs[code]

    def translate(self, text: str, *, target: str, prompt: str | None = None) -> str:
        """``text`` in ``target``. Rule-based translation takes no instructions: a ``prompt`` raises
        `ConfigurationError` rather than being silently ignored."""
        if prompt:
            raise ConfigurationError(NO_PROMPT)
        mode = self.mode_for(target)
        if not text.strip():
            return ""
        with self._lock:
            pipeline = self._pipelines.get(mode)
            if pipeline is None:
                pipeline = self._pipelines[mode] = Pipeline(mode, self.modes_dir)
            try:
                return pipeline.translate(text, self.timeout)
            except (OSError, TimeoutError, EOFError) as exc:
                pipeline.close()
                del self._pipelines[mode]
                raise TranslatorError(f"apertium {mode}: {exc}", backend=self.backend, model=mode) from None

    def close(self) -> None:
        """Stop every running pipeline; a later `translate` starts them again."""
        with self._lock:
            for pipeline in self._pipelines.values():
                pipeline.close()
            self._pipelines.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


__all__ = ["NO_PROMPT", "ApertiumTranslator", "fix_chunk_case", "installed_pairs"]
