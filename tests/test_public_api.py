"""The public surface, pinned: what ``import live_stt_kernel`` offers, its documentation, and one
error tree holding every exception the package raises to its users."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import live_stt_kernel
from live_stt_kernel import errors

PUBLIC = [
    "ApertiumTranslator", "AudioDeviceError", "AudioError", "AudioFileError", "AudioSource", "AuthenticationError",
    "BackendError", "BatchResult", "CoachingReport", "ConfigurationError", "ConnectTimeout", "ConnectionLost", "Disconnected",
    "EmbeddedError", "EmbeddedServerError", "Event", "LLM", "LLMError", "LLMGateway", "LLMGone", "LLMRateLimited",
    "LLMRefused", "LLMTranslator", "LLMUnavailable", "LeMUR", "LiveSTTError", "LiveTranslation", "LocalModel",
    "MicSource", "MissingExtra", "ModelError", "NoInputDevice", "OpenAICompatible", "PortAudioMissing", "PromptTooLong",
    "ProtocolError", "QueueSource", "ReconnectPolicy", "Reconnected", "RetryPolicy", "SavedSessionError",
    "ServerRefused", "ServerUnreachable", "Session", "SessionBegan", "SessionEnded", "SessionTimeout",
    "StreamingClient", "StreamingError", "StreamingParams", "TerminationTimeout", "TooManySessions", "Transcript",
    "Translation", "Translator", "TranslatorError", "Turn", "TurnRecord", "UnusableSchema", "WavSource", "Word", "coach", "export",
    "export_session", "input_devices", "load_session", "resolve_llm", "resolve_translator", "save_report", "start",
    "translate", "batch",
]
# control flow inside our servers, never raised to a caller of the package
INTERNAL_SIGNALS = {"Refusal", "BadRequest", "_Closed", "_Stop", "_Stopped", "_Cancelled", "_HTTPStatus", "_PanelClosed",
                    "_Interrupted"}
PACKAGE = Path(live_stt_kernel.__file__).parent


def test_the_public_names_are_pinned():
    assert sorted(live_stt_kernel.__all__) == sorted(PUBLIC)  # a change here is a change for every user
    assert len(set(live_stt_kernel.__all__)) == len(live_stt_kernel.__all__)
    for name in PUBLIC:
        assert hasattr(live_stt_kernel, name), name


def test_every_public_name_says_what_it_is():
    undocumented = [name for name in PUBLIC if name != "Event" and not inspect.getdoc(getattr(live_stt_kernel, name))]
    assert undocumented == []


def drawn_tree() -> dict[str, str | None]:
    """Each class in the tree drawn in errors.py's docstring, with the parent it is drawn under."""
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in (errors.__doc__ or "").split("::", 1)[1].splitlines():
        match = re.match(r"^(\s*(?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+)", line)
        if not match or not line.startswith("    "):  # the drawing is the indented block
            continue
        depth = len(match.group(1)) // 4 - 1 + (1 if "── " in line else 0)
        del stack[depth:]
        parents[match.group(2)] = stack[-1] if stack else None
        stack.append(match.group(2))
    return parents


def test_every_exception_is_in_the_one_tree_where_it_is_drawn_and_exported():
    drawn = drawn_tree()
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, BaseException)
               and c.__module__ == errors.__name__]
    assert sorted(drawn) == sorted(c.__name__ for c in classes)
    for cls in classes:
        assert issubclass(cls, errors.LiveSTTError), cls
        ours = [b.__name__ for b in cls.__bases__ if b.__module__ == errors.__name__]
        assert drawn[cls.__name__] == (ours[0] if ours else None), f"{cls.__name__} is drawn under the wrong parent"
        assert cls.__name__ in live_stt_kernel.__all__, cls
    defined_elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.name not in INTERNAL_SIGNALS and any(
                    isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id in dir(errors))
                    for b in node.bases):
                defined_elsewhere.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert defined_elsewhere == []
