"""The bundled speech sample (three espeak-ng sentences, 12.5 s) and its known transcript."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from .replay import ReplayServer, ScriptedTurn, turns_script


def sample_wav() -> Path:
    return Path(str(resources.files("live_stt_kernel") / "data" / "sample.wav"))


def sample_turns() -> list[ScriptedTurn]:
    spec = json.loads(sample_wav().with_suffix(".json").read_text())
    return [ScriptedTurn(tuple((w, s, e) for w, s, e in t["words"]), formatted=t["formatted"]) for t in spec["turns"]]


def sample_server(behaviour: str = "A") -> ReplayServer:
    """A started replay server on 127.0.0.1 that answers the sample as AssemblyAI would (no key needed)."""
    return ReplayServer(turns_script(sample_turns(), behaviour), api_key=None).start()


__all__ = ["sample_server", "sample_turns", "sample_wav"]
