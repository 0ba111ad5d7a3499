"""The vocabulary: immutable values for everything that happens in a streaming session.

The parser turns server messages into these; the transcript reducer folds them; nothing past the
parser handles raw dicts. Times on the wire are milliseconds from the start of the session's audio;
``received_at`` is a ``time.monotonic()`` stamp set by the transport (0.0 when parsed offline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias


@dataclass(frozen=True, slots=True, kw_only=True)
class Word:
    """One word of a turn: times in ms from the start of the session's audio; ``is_final`` once the server will not change it."""

    text: str
    start_ms: int
    end_ms: int
    confidence: float = 1.0
    is_final: bool = True
    speaker: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionBegan:
    """`Begin`: the server accepted the session."""

    session_id: str
    expires_at: int | None = None
    configuration: Mapping[str, Any] = field(default_factory=dict)
    received_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    """`Turn`: a partial or final view of one turn; all messages of a turn share ``turn_order``."""

    turn_order: int
    transcript: str
    words: tuple[Word, ...] = ()
    end_of_turn: bool = False
    formatted: bool = False
    end_of_turn_confidence: float = 0.0
    utterance: str = ""
    language_code: str | None = None
    language_confidence: float | None = None
    speaker: str | None = None
    received_at: float = 0.0
    # Seconds from the moment the audio of the last word was sent to this message's arrival;
    # filled in by the transport for final turns, None when unknown.
    latency_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechStarted:
    """`SpeechStarted`: the server heard speech begin at ``timestamp_ms``."""

    timestamp_ms: int
    confidence: float | None = None
    received_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerWarning:
    """`Warning`: a notice from the server that does not end the session."""

    message: str
    code: int | None = None
    received_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """`Heartbeat`: the server is alive; it carries nothing else."""

    received_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LLMGatewayResponse:
    """`LLMGatewayResponse`: an LLM Gateway answer on turn ``turn_order``; ``content``: the first choice's text, ``data``: the raw reply."""

    turn_order: int
    transcript: str
    content: str
    data: Mapping[str, Any] = field(default_factory=dict)
    received_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Revision:
    """One turn's change in a `SpeakerRevision`: its new speaker and/or words (None: unchanged)."""

    turn_order: int
    speaker: str | None = None
    words: tuple[Word, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakerRevision:
    """`SpeakerRevision`: the server relabelled the speakers (or words) of turns already finished."""

    revisions: tuple[Revision, ...]
    received_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerError:
    """An `Error` frame (typed, or the older untyped ``{"error": ...}``); a close usually follows."""

    message: str
    code: int | None = None
    received_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded:
    """`Termination`: the server flushed the last turn and is closing normally."""

    audio_duration_seconds: float
    session_duration_seconds: float
    received_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected:
    """Not a server message: the connection ended with ``reason``; a new one is tried in
    ``retry_in_s`` (attempt ``attempt`` since the drop)."""

    reason: str
    attempt: int
    retry_in_s: float
    received_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnected:
    """Not a server message: the connection dropped and a new session took over. Its audio starts at
    ``resume_at_ms`` of the whole recording (the end of the last finished turn), so word times go on
    from there and nothing said after that turn is lost."""

    attempt: int  # the n-th reconnection of this recording
    reason: str  # why the previous connection ended, in plain words
    resume_at_ms: int
    received_at: float = 0.0


Event: TypeAlias = (
    SessionBegan
    | Turn
    | SpeechStarted
    | ServerWarning
    | Heartbeat
    | LLMGatewayResponse
    | SpeakerRevision
    | ServerError
    | SessionEnded
    | Disconnected
    | Reconnected
)

__all__ = [
    "Disconnected",
    "Event",
    "Heartbeat",
    "LLMGatewayResponse",
    "Reconnected",
    "Revision",
    "ServerError",
    "ServerWarning",
    "SessionBegan",
    "SessionEnded",
    "SpeakerRevision",
    "SpeechStarted",
    "Turn",
    "Word",
]
