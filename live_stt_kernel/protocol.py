"""AssemblyAI Universal Streaming v3, sans I/O.

Everything here is pure: building the connect URL and headers, cutting PCM into legal frames,
encoding client messages, parsing server messages into events, and deciding what a close code
means. The transport moves the bytes; this module decides what they mean.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any
from urllib.parse import urlencode, urlsplit

from .errors import ConfigurationError, ProtocolError
from .events import (
    Event,
    Heartbeat,
    LLMGatewayResponse,
    Revision,
    ServerError,
    ServerWarning,
    SessionBegan,
    SessionEnded,
    SpeakerRevision,
    SpeechStarted,
    Turn,
    Word,
)

CLOUD_URL = "wss://streaming.assemblyai.com/v3/ws"
CLOUD_URL_EU = "wss://streaming.eu.assemblyai.com/v3/ws"
SAMPLE_RATE = 16_000
BYTES_PER_SAMPLE = 2  # PCM16
MIN_FRAME_MS, MAX_FRAME_MS = 50, 1000
MAX_FRAME_BYTES = 128 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamingParams:
    """Query parameters of a v3 session. ``None`` means "server default" and is not sent.

    ``speech_model`` is always sent: the server's default has changed before.
    ``extra`` carries parameters this class does not know yet.
    """

    sample_rate: int = SAMPLE_RATE
    encoding: str = "pcm_s16le"
    speech_model: str = "universal-streaming-english"
    format_turns: bool | None = True
    end_of_turn_confidence_threshold: float | None = None
    min_turn_silence: int | None = None
    max_turn_silence: int | None = None
    vad_threshold: float | None = None
    keyterms_prompt: Sequence[str] | None = None
    prompt: str | None = None
    language_detection: bool | None = None
    inactivity_timeout: int | None = None
    speaker_labels: bool | None = None
    max_speakers: int | None = None
    filter_profanity: bool | None = None
    llm_gateway: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.encoding not in ("pcm_s16le", "pcm_mulaw"):
            raise ConfigurationError(f"encoding must be 'pcm_s16le' or 'pcm_mulaw', not {self.encoding!r}")
        if self.sample_rate <= 0:
            raise ConfigurationError(f"sample_rate must be positive, not {self.sample_rate}")
        if self.inactivity_timeout is not None and not 5 <= self.inactivity_timeout <= 3600:
            raise ConfigurationError("inactivity_timeout must be between 5 and 3600 seconds")
        if self.keyterms_prompt is not None:
            terms = list(self.keyterms_prompt)
            if isinstance(self.keyterms_prompt, str) or len(terms) > 100 or any(len(t) > 50 for t in terms):
                raise ConfigurationError("keyterms_prompt must be a list of at most 100 terms of at most 50 characters")

    def query(self) -> dict[str, str]:
        """The query as strings: booleans lower-case, lists and objects as JSON."""
        items: dict[str, Any] = {}
        for f in fields(self):
            if f.name != "extra":
                items[f.name] = getattr(self, f.name)
        items.update(self.extra)
        return {key: _query_value(value) for key, value in items.items() if value is not None}


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)) or isinstance(value, Mapping):
        return json.dumps(value if not isinstance(value, tuple) else list(value), separators=(",", ":"))
    return str(value)


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (a local server: no pacing rules, no cloud)."""
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def build_url(base_url: str, params: StreamingParams, *, token: str | None = None) -> str:
    """The connect URL: ``base_url`` (``ws://`` or ``wss://``, path ``/v3/ws`` added if missing) plus the query."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ConfigurationError(f"streaming URL must start with ws:// or wss:// and name a host, got {redact_url(base_url)!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v3/ws"):
        path += "/v3/ws"
    query = params.query()
    if token is not None:
        query["token"] = token
    return f"{parts.scheme}://{parts.netloc}{path}?{urlencode(query)}"


def redact_url(url: str) -> str:
    """The URL with any ``token=`` value hidden, for logs and errors."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = "&".join("token=***" if p.startswith("token=") else p for p in parts.query.split("&"))
    return parts._replace(query=query).geturl()


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The raw key in `Authorization` (no ``Bearer``), or nothing when a temporary token is in the query."""
    return {"Authorization": api_key} if api_key else {}


def frame_bytes(ms: int, sample_rate: int = SAMPLE_RATE, bytes_per_sample: int = BYTES_PER_SAMPLE) -> int:
    return sample_rate * ms // 1000 * bytes_per_sample


class Chunker:
    """Turns PCM blocks of any size into frames of exactly ``frame_ms`` (50–1000 ms).

    ``flush()`` returns the tail padded with silence up to the 50 ms minimum, so that even the
    end of the stream is a legal frame. Bytes are never reordered or dropped.
    """

    def __init__(self, *, frame_ms: int = 50, sample_rate: int = SAMPLE_RATE, bytes_per_sample: int = BYTES_PER_SAMPLE):
        if not MIN_FRAME_MS <= frame_ms <= MAX_FRAME_MS:
            raise ConfigurationError(f"frame_ms must be between {MIN_FRAME_MS} and {MAX_FRAME_MS}, not {frame_ms}")
        self.frame_size = frame_bytes(frame_ms, sample_rate, bytes_per_sample)
        if self.frame_size > MAX_FRAME_BYTES:
            raise ConfigurationError(f"a {frame_ms} ms frame at {sample_rate} Hz exceeds the 128 KB frame limit")
        self._min_size = frame_bytes(MIN_FRAME_MS, sample_rate, bytes_per_sample)
        self._buffer = bytearray()

    def feed(self, block: bytes) -> list[bytes]:
        self._buffer += block
        size = self.frame_size
        count = len(self._buffer) // size
        if not count:
            return []
        frames = [bytes(self._buffer[i * size : (i + 1) * size]) for i in range(count)]
        del self._buffer[: count * size]
        return frames

    def flush(self) -> bytes:
        """The remaining bytes as one frame (silence-padded to 50 ms), or b"" if nothing remains."""
        if not self._buffer:
            return b""
        tail = bytes(self._buffer)
        self._buffer.clear()
        if len(tail) % 2:
            tail += b"\x00"
        return tail + b"\x00" * max(0, self._min_size - len(tail))


# --- client -> server -------------------------------------------------------------------------

def terminate_message() -> str:
    return '{"type":"Terminate"}'


def force_endpoint_message() -> str:
    return '{"type":"ForceEndpoint"}'


def keep_alive_message() -> str:
    return '{"type":"KeepAlive"}'


UPDATABLE = frozenset(
    {"keyterms_prompt", "prompt", "min_turn_silence", "max_turn_silence", "end_of_turn_confidence_threshold", "vad_threshold"}
)


def update_configuration_message(**changes: Any) -> str:
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ConfigurationError(f"cannot update {sorted(unknown)} mid-session; updatable: {sorted(UPDATABLE)}")
    return json.dumps({"type": "UpdateConfiguration", **changes}, separators=(",", ":"))


# --- server -> client -------------------------------------------------------------------------

def parse(message: str | bytes, *, received_at: float = 0.0) -> Event | None:
    """One server message as an event; ``None`` for message types this client does not use.

    Raises ProtocolError for anything that is not a JSON object.
    """
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"server sent a message that is not JSON: {_preview(message)}") from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"server sent JSON that is not an object: {_preview(message)}")
    kind = data.get("type")
    try:
        if kind is None and "error" in data:
            return ServerError(message=str(data["error"]), code=_opt_int(data.get("error_code")), received_at=received_at)
        parser = _PARSERS.get(kind)  # type: ignore[arg-type]
        return parser(data, received_at) if parser else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed {kind} message ({exc!r}): {_preview(message)}") from exc


def _preview(message: str | bytes, limit: int = 120) -> str:
    text = message if isinstance(message, str) else message[:limit].decode("utf-8", "replace")
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _word(raw: Mapping[str, Any]) -> Word:
    return Word(
        text=str(raw["text"]),
        start_ms=int(raw.get("start", 0)),
        end_ms=int(raw.get("end", 0)),
        confidence=float(raw.get("confidence", 1.0)),
        is_final=bool(raw.get("word_is_final", True)),
        speaker=raw.get("speaker"),
    )


def _begin(d: Mapping[str, Any], t: float) -> SessionBegan:
    return SessionBegan(
        session_id=str(d["id"]), expires_at=_opt_int(d.get("expires_at")), configuration=d.get("configuration") or {}, received_at=t
    )


def _turn(d: Mapping[str, Any], t: float) -> Turn:
    return Turn(
        turn_order=int(d["turn_order"]),
        transcript=str(d.get("transcript", "")),
        words=tuple(_word(w) for w in d.get("words") or ()),
        end_of_turn=bool(d.get("end_of_turn", False)),
        formatted=bool(d.get("turn_is_formatted", False)),
        end_of_turn_confidence=float(d.get("end_of_turn_confidence") or 0.0),
        utterance=str(d.get("utterance") or ""),
        language_code=d.get("language_code"),
        language_confidence=_opt_float(d.get("language_confidence")),
        speaker=d.get("speaker_label"),
        received_at=t,
    )


def _llm(d: Mapping[str, Any], t: float) -> LLMGatewayResponse:
    data = d.get("data") or {}
    try:
        content = str(data["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        content = ""
    return LLMGatewayResponse(
        turn_order=int(d.get("turn_order", -1)), transcript=str(d.get("transcript", "")), content=content, data=data, received_at=t
    )


def _revision(raw: Mapping[str, Any]) -> Revision:
    words = raw.get("words")
    return Revision(
        turn_order=int(raw["turn_order"]),
        speaker=raw.get("speaker_label", raw.get("speaker")),
        words=None if words is None else tuple(_word(w) for w in words),
    )


_PARSERS: dict[str, Any] = {
    "Begin": _begin,
    "Turn": _turn,
    "Termination": lambda d, t: SessionEnded(
        audio_duration_seconds=float(d.get("audio_duration_seconds", 0)),
        session_duration_seconds=float(d.get("session_duration_seconds", 0)),
        received_at=t,
    ),
    "Error": lambda d, t: ServerError(message=str(d.get("error", "")), code=_opt_int(d.get("error_code")), received_at=t),
    "SpeechStarted": lambda d, t: SpeechStarted(
        timestamp_ms=int(d.get("timestamp", 0)), confidence=_opt_float(d.get("confidence")), received_at=t
    ),
    "Warning": lambda d, t: ServerWarning(
        message=str(d.get("warning", d.get("message", ""))), code=_opt_int(d.get("warning_code")), received_at=t
    ),
    "Heartbeat": lambda d, t: Heartbeat(received_at=t),
    "LLMGatewayResponse": _llm,
    "SpeakerRevision": lambda d, t: SpeakerRevision(revisions=tuple(_revision(r) for r in d.get("revisions") or ()), received_at=t),
}


# --- close codes ------------------------------------------------------------------------------

class Action(Enum):
    """What a client should do after a close."""

    DONE = "done"
    RECONNECT = "reconnect"
    STOP_AUTH = "stop: credentials refused, never retry"
    BACK_OFF = "back off, then retry"
    CLIENT_BUG = "stop: the client sent something invalid"
    IDLE = "stop: closed for inactivity"
    NEW_SESSION = "open a new session"


@dataclass(frozen=True, slots=True)
class CloseVerdict:
    code: int
    meaning: str
    action: Action


_CLOSE_TABLE: dict[int, tuple[str, Action]] = {
    1000: ("normal close", Action.DONE),
    1006: ("connection dropped without a close frame", Action.RECONNECT),
    1008: ("unauthorized: bad key, expired token or no balance", Action.STOP_AUTH),
    1009: ("message over 128 KB", Action.CLIENT_BUG),
    1011: ("server error while connecting", Action.RECONNECT),
    3005: ("server error", Action.RECONNECT),
    3006: ("invalid message", Action.CLIENT_BUG),
    3007: ("audio chunk outside 50-1000 ms or faster than real time", Action.CLIENT_BUG),
    3008: ("session expired", Action.NEW_SESSION),
    3009: ("too many concurrent sessions or new sessions per minute", Action.BACK_OFF),
}

_CONCURRENCY_WORDS = ("too many", "concurren", "rate limit")
_CLIENT_BUG_WORDS = ("duration violation", "transmission rate", "chunk", "real time", "invalid message")


def classify_close(code: int | None, reason: str = "", error_text: str = "") -> CloseVerdict:
    """Read a close code together with its reason and the preceding Error frame's text.

    The text matters: 1008 is also used for concurrency limits, 3006 for inactivity, and in 2025
    every 3xxx error arrived as 3005.
    """
    text = f"{reason} {error_text}".lower()
    if code is None:
        code = 1006
    if code == 3005 or code == 1008:
        if any(w in text for w in _CONCURRENCY_WORDS):
            return CloseVerdict(code, "too many concurrent sessions", Action.BACK_OFF)
        if code == 3005 and "expired" in text:
            return CloseVerdict(code, "session expired", Action.NEW_SESSION)
        if code == 3005 and any(w in text for w in _CLIENT_BUG_WORDS):
            return CloseVerdict(code, _CLOSE_TABLE[3007][0], Action.CLIENT_BUG)
    if code == 3006 and "inactiv" in text:
        return CloseVerdict(code, "inactivity timeout", Action.IDLE)
    meaning, action = _CLOSE_TABLE.get(code, (f"unexpected close code {code}", Action.RECONNECT))
    return CloseVerdict(code, meaning, action)


def pcm_ms(nbytes: int, sample_rate: int = SAMPLE_RATE) -> float:
    """Duration of PCM16 mono bytes in milliseconds."""
    return nbytes * 1000 / (sample_rate * BYTES_PER_SAMPLE)


def live_line(words: Iterable[Word]) -> str:
    """The words of an open turn as one line; the last ones may still change."""
    return " ".join(w.text for w in words if w.text)


__all__ = [
    "CLOUD_URL",
    "CLOUD_URL_EU",
    "Action",
    "Chunker",
    "CloseVerdict",
    "StreamingParams",
    "auth_headers",
    "build_url",
    "classify_close",
    "force_endpoint_message",
    "is_loopback",
    "keep_alive_message",
    "live_line",
    "parse",
    "pcm_ms",
    "redact_url",
    "terminate_message",
    "update_configuration_message",
]
