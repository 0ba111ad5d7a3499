"""AssemblyAI Universal Streaming v3, the wire facts, sans I/O: both directions, both roles.

Everything here is pure and shared by the client (`client`), the scripted server (`replay`) and the
embedded server (`local.server`): the query parameters and their bounds, the connect URL and the
credentials, 50-1000 ms audio frames, every message in both directions (built and parsed), and what a
close code means together with the typed error a client raises for it. The stateful roles that use
these facts live in `connection`; the shells that move bytes live beside them.

Facts worth knowing (AssemblyAI's public spec, late 2026):

- ``wss://streaming.assemblyai.com/v3/ws?<query>``; the raw key in ``Authorization`` (no ``Bearer``) or a
  one-time temporary token in ``token=`` (the official Python SDK sends a token in the header too).
- Audio: binary frames of mono PCM16 little-endian (or µ-law), each 50-1000 ms and at most 128 KB, never
  faster than real time to the cloud. Control messages: ``Terminate``, ``ForceEndpoint``,
  ``UpdateConfiguration``, ``KeepAlive``.
- Server messages are JSON objects discriminated by ``type``: ``Begin``, ``Turn``, ``Termination``, ``Error``
  (older servers: ``{"error": ...}`` without a type), and optional ``SpeechStarted``, ``Warning``,
  ``Heartbeat``, ``LLMGatewayResponse``, ``SpeakerRevision``. A client must ignore types it does not know.
- Turns: every partial and final of a turn shares ``turn_order``; ``end_of_turn`` is the only end signal;
  three behaviours exist (an unformatted final followed by a formatted one; every message formatted;
  "pro" models whose partials re-transcribe the whole turn). Word times are ms from the session's start.
- Close reasons are capped at 123 bytes; the preceding ``Error`` frame carries the full text.
"""

from __future__ import annotations

import ipaddress
import json
import math
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Literal, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

from ..audio.pcm import BYTES_PER_SAMPLE, SAMPLE_RATE
from ..errors import AuthenticationError, ConfigurationError, ProtocolError, ServerRefused, StreamingError, TooManySessions
from ..events import (
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
PATH = "/v3/ws"
TOKEN_PATH = "/v3/token"
ENCODINGS = {"pcm_s16le": 2, "pcm_mulaw": 1}  # bytes per sample
SILENCE = {"pcm_s16le": b"\x00", "pcm_mulaw": b"\xff"}  # a byte of silence: PCM16 zero; µ-law 0xFF (0x00 is full scale)
MIN_FRAME_MS, MAX_FRAME_MS = 50, 1000
MAX_FRAME_BYTES = 128 * 1024
SESSION_LIMIT_S = 10_800  # a session lasts at most 3 hours
CLOSE_REASON_BYTES = 123
DEFAULT_SPEECH_MODEL = "u3-rt-pro"  # what AssemblyAI's guides use; a server with no speech_model assumes English Universal
SERVER_DEFAULT_MODEL = "universal-streaming-english"
# The pro models' messages differ from Universal-Streaming's: every partial re-transcribes the whole turn (all words
# non-final), `SpeechStarted` when speech begins, and one formatted final with end_of_turn_confidence 1
PRO_MODELS = frozenset({"u3-rt-pro", "u3-rt-pro-beta-1", "u3-pro", "universal-3-5-pro", "universal-3-6-pro"})
DEFAULT_EOT_THRESHOLD = 0.4  # end_of_turn_confidence_threshold when not given (the service's documented default)
API_VERSION = "v3"


# --- parameters and their bounds (one table for both ends) ------------------------------------

BOUNDS: dict[str, tuple[float, float]] = {
    "sample_rate": (8_000, 48_000),
    "inactivity_timeout": (5, 3_600),
    "expires_in_seconds": (1, 600),  # temporary tokens
    "max_session_duration_seconds": (60, SESSION_LIMIT_S),
    # turn silences in ms: a server decodes once per silence, so no silence may be too short to ever be over
    "min_turn_silence": (100, 10_000),
    "max_turn_silence": (100, 10_000),
    "end_of_turn_confidence_threshold": (0, 1),
    "vad_threshold": (0, 1),
}
MAX_KEYTERMS, MAX_KEYTERM_CHARS = 100, 50
UPDATABLE = frozenset(
    {"keyterms_prompt", "prompt", "min_turn_silence", "max_turn_silence", "end_of_turn_confidence_threshold", "vad_threshold"}
)


def param_problem(name: str, value: Any) -> str | None:
    """What is wrong with one parameter's value, in words, or None when it is acceptable."""
    if value is None:
        return None
    if name == "encoding" and value not in ENCODINGS:
        return f"encoding must be one of {', '.join(ENCODINGS)}, not {value!r}"
    if name in BOUNDS:
        low, high = BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            return f"{name} must be between {low:g} and {high:g}, not {value!r}"
    if name == "keyterms_prompt":
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
            return "keyterms_prompt must be a list of strings"
        if len(value) > MAX_KEYTERMS or any(len(t) > MAX_KEYTERM_CHARS for t in value):
            return f"keyterms_prompt must hold at most {MAX_KEYTERMS} terms of at most {MAX_KEYTERM_CHARS} characters"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamingParams:
    """Query parameters of a v3 session, as a client asks for them. ``None`` means "server default"
    and is not sent. ``speech_model`` is always sent: the server's default has changed before.
    ``extra`` carries parameters this class does not know yet."""

    sample_rate: int = SAMPLE_RATE
    encoding: str = "pcm_s16le"
    speech_model: str = DEFAULT_SPEECH_MODEL
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
        for f in fields(self):
            problem = param_problem(f.name, getattr(self, f.name))
            if problem:
                raise ConfigurationError(problem)

    def query(self) -> dict[str, str]:
        """The query as strings: booleans lower-case, lists and objects as JSON."""
        items: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        items.update(self.extra)
        return {key: _query_value(value) for key, value in items.items() if value is not None}


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, Mapping)):
        return json.dumps(list(value) if isinstance(value, tuple) else value, separators=(",", ":"))
    return str(value)


class Refusal(Exception):
    """The server's answer to a violation: an `Error` frame with ``text``, then a close with ``code``."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code, self.text = code, text

    def message(self) -> dict[str, Any]:
        """The `Error` message that goes out before the close."""
        return error_message(self.code, self.text)

    @property
    def close_reason(self) -> str:
        """The close frame's reason: the text if it fits in 123 bytes, else a pointer to the Error frame."""
        return self.text if len(self.text.encode()) <= CLOSE_REASON_BYTES else "See Error message for details"


def _query_bool(value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise Refusal(3006, f"Invalid Message: expected a boolean, got {value!r}")


def _query_terms(value: str) -> list[str]:
    try:
        items = json.loads(value)
    except ValueError:
        items = [value]
    return cast(list[str], items)


# parameters a local server cannot act on: when a client asks for one, `Begin`'s configuration says it is not applied
UNSUPPORTED = ("speaker_labels", "llm_gateway", "filter_profanity", "redact_pii", "voice_focus")


@dataclass(slots=True)
class SessionConfig:
    """The query parameters a server acts on, parsed and bounded; unknown ones are ignored, as
    AssemblyAI does. Mutable: `UpdateConfiguration` changes some of them mid-session.

    ``not_applied`` lists what the client asked for that this server does not do (see `UNSUPPORTED`)."""

    sample_rate: int = SAMPLE_RATE
    encoding: str = "pcm_s16le"
    speech_model: str = SERVER_DEFAULT_MODEL
    format_turns: bool = False
    keyterms_prompt: list[str] = field(default_factory=list)
    prompt: str | None = None
    inactivity_timeout: float | None = None
    min_turn_silence: int | None = None
    max_turn_silence: int | None = None
    end_of_turn_confidence_threshold: float = DEFAULT_EOT_THRESHOLD
    vad_threshold: float | None = None
    language_detection: bool = False
    mode: str | None = None
    not_applied: list[str] = field(default_factory=list)

    @property
    def pro(self) -> bool:
        """Whether the session asked for a pro model: its messages follow the pro models' behaviour."""
        return self.speech_model in PRO_MODELS

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> SessionConfig:
        """Parse a connection's query; raises `Refusal` (3006) for a value the server cannot use."""
        config = cls()
        try:
            if "sample_rate" in query:
                config.sample_rate = int(query["sample_rate"])
            config.encoding = query.get("encoding", config.encoding)
            config.speech_model = query.get("speech_model", config.speech_model)
            if "format_turns" in query:
                config.format_turns = _query_bool(query["format_turns"])
            if "keyterms_prompt" in query:
                config.keyterms_prompt = _query_terms(query["keyterms_prompt"])
            config.prompt = query.get("prompt") or None
            if "inactivity_timeout" in query:
                config.inactivity_timeout = float(query["inactivity_timeout"])
            silence = query.get("min_turn_silence", query.get("min_end_of_turn_silence_when_confident"))  # the old name
            config.min_turn_silence = int(silence) if silence else None
            config.max_turn_silence = int(query["max_turn_silence"]) if query.get("max_turn_silence") else None
            if query.get("end_of_turn_confidence_threshold"):
                config.end_of_turn_confidence_threshold = float(query["end_of_turn_confidence_threshold"])
            config.vad_threshold = float(query["vad_threshold"]) if query.get("vad_threshold") else None
            if "language_detection" in query:
                config.language_detection = _query_bool(query["language_detection"])
            config.mode = query.get("mode") or None
        except ValueError as exc:
            raise Refusal(3006, f"Invalid Message: bad query parameter ({exc})") from None
        config.not_applied = [name for name in UNSUPPORTED if query.get(name, "false").lower() not in ("false", "0", "")]
        for name in ("sample_rate", "encoding", "keyterms_prompt", "inactivity_timeout", "min_turn_silence", "max_turn_silence",
                     "end_of_turn_confidence_threshold", "vad_threshold"):
            problem = param_problem(name, getattr(config, name))
            if problem:
                raise Refusal(3006, f"Invalid Message: {problem}")
        return config

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply an `UpdateConfiguration`'s usable changes; unusable values change nothing."""
        applied: dict[str, Any] = {}
        terms = changes.get("keyterms_prompt")
        if terms is not None and param_problem("keyterms_prompt", terms) is None:
            applied["keyterms_prompt"] = [str(t) for t in terms]
        if "prompt" in changes and (changes["prompt"] is None or isinstance(changes["prompt"], str)):
            applied["prompt"] = changes["prompt"] or None
        for name in ("min_turn_silence", "max_turn_silence"):
            value = changes.get(name)
            if isinstance(value, int) and param_problem(name, value) is None:
                applied[name] = value
        for name in ("end_of_turn_confidence_threshold", "vad_threshold"):
            value = changes.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and param_problem(name, value) is None:
                applied[name] = float(value)
        for name, value in applied.items():
            setattr(self, name, value)

    @property
    def bytes_per_sample(self) -> int:
        """Bytes per audio sample in this encoding: 2 for ``pcm_s16le``, 1 for ``pcm_mulaw``."""
        return ENCODINGS[self.encoding]

    def public(self, *, languages: Sequence[str] | None = None, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What `Begin`'s ``configuration`` reports back: the keys the official SDKs parse (``model``, ``mode``,
        ``api_version``) and what the session runs with (``defaults``: the server's values of what the client left
        unset, e.g. ``min_turn_silence``). ``languages``: the only languages the server's model knows, reported with
        ``language_detection`` (a turn's ``language_code`` comes only then); None: any, and no ``language_code``."""
        configuration: dict[str, Any] = {
            "model": self.speech_model, "mode": self.mode, "api_version": API_VERSION,
            "speech_model": self.speech_model, "sample_rate": self.sample_rate, "encoding": self.encoding,
            "format_turns": self.format_turns or self.pro, "keyterms_prompt": list(self.keyterms_prompt),
            "end_of_turn_confidence_threshold": self.end_of_turn_confidence_threshold,
            "min_turn_silence": self.min_turn_silence, "max_turn_silence": self.max_turn_silence,
            "vad_threshold": self.vad_threshold, "language_detection": self.language_detection,
        }
        for name, value in (defaults or {}).items():
            if configuration.get(name) is None:
                configuration[name] = value
        not_applied = list(self.not_applied)
        if self.language_detection and languages is not None:
            configuration["languages"] = list(languages)
        elif self.language_detection:
            not_applied.append("language_code")  # the model may hear any language, but no turn says which
        if not_applied:
            configuration["not_applied"] = not_applied
        return configuration


# --- where and who ---------------------------------------------------------------------------

def same_secret(offered: str, expected: str) -> bool:
    """Whether a credential matches, in constant time; any text may be offered (non-ASCII never raises)."""
    return secrets.compare_digest(offered.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


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
    if not path.endswith(PATH):
        path += PATH
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


def public_url(url: str) -> str:
    """``url`` fit to show or log: scheme, host, port and path only (no user, password, query or fragment,
    so never a token)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number: show none
        port = None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, netloc + (f":{port}" if port else ""), parts.path, "", ""))


def public_host(url: str) -> str:
    """The ``host[:port]`` of ``url``, fit to show (see `public_url`)."""
    return urlsplit(public_url(url)).netloc


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The raw key in `Authorization` (no ``Bearer``), or nothing when a temporary token is in the query."""
    return {"Authorization": api_key} if api_key else {}


# --- audio ------------------------------------------------------------------------------------

def frame_bytes(ms: int, sample_rate: int = SAMPLE_RATE, bytes_per_sample: int = BYTES_PER_SAMPLE) -> int:
    """Bytes in ``ms`` of mono audio, rounded up to whole samples (so never shorter than ``ms``)."""
    return -(-sample_rate * ms // 1000) * bytes_per_sample


def pcm_ms(nbytes: int, sample_rate: int = SAMPLE_RATE, bytes_per_sample: int = BYTES_PER_SAMPLE) -> float:
    """Duration of ``nbytes`` of mono audio in milliseconds."""
    return nbytes * 1000 / (sample_rate * bytes_per_sample)


class Chunker:
    """Turns audio blocks of any size into frames of ``frame_ms`` (50–1000 ms), rounded up to whole samples.

    ``flush()`` returns the tail padded with the encoding's silence, in whole samples, up to the 50 ms
    minimum, so that even the end of the stream is a legal frame. Bytes are never reordered or dropped.

    The encoding is ``encoding`` (one of `ENCODINGS`) or, when that is not given, the one whose samples
    are ``bytes_per_sample`` wide (2: ``pcm_s16le``, 1: ``pcm_mulaw``); a width that matches neither, or
    a ``bytes_per_sample`` that contradicts ``encoding``, is a ConfigurationError.
    """

    def __init__(self, *, frame_ms: int = 50, sample_rate: int = SAMPLE_RATE, bytes_per_sample: int | None = None,
                 encoding: str | None = None):
        if not MIN_FRAME_MS <= frame_ms <= MAX_FRAME_MS:
            raise ConfigurationError(f"frame_ms must be between {MIN_FRAME_MS} and {MAX_FRAME_MS}, not {frame_ms}")
        if encoding is None:
            encoding = _encoding_of(BYTES_PER_SAMPLE if bytes_per_sample is None else bytes_per_sample)
        self.encoding = encoding
        problem = param_problem("encoding", self.encoding)
        if problem:
            raise ConfigurationError(problem)
        self.bytes_per_sample = ENCODINGS[self.encoding]
        if bytes_per_sample is not None and bytes_per_sample != self.bytes_per_sample:
            raise ConfigurationError(f"{self.encoding} has {self.bytes_per_sample}-byte samples, not {bytes_per_sample}")
        self.frame_size = frame_bytes(frame_ms, sample_rate, self.bytes_per_sample)
        if self.frame_size > MAX_FRAME_BYTES:
            raise ConfigurationError(f"a {frame_ms} ms frame at {sample_rate} Hz exceeds the 128 KB frame limit")
        self._min_size = frame_bytes(MIN_FRAME_MS, sample_rate, self.bytes_per_sample)
        self._buffer = bytearray()

    def feed(self, block: bytes) -> list[bytes]:
        """The whole frames that ``block`` completes (none, one or several)."""
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
        size = max(self._min_size, -(-len(tail) // self.bytes_per_sample) * self.bytes_per_sample)  # whole samples
        return tail + SILENCE[self.encoding] * (size - len(tail))


def _encoding_of(bytes_per_sample: int) -> str:
    for name, width in ENCODINGS.items():
        if width == bytes_per_sample:
            return name
    raise ConfigurationError(f"no v3 encoding has {bytes_per_sample}-byte samples; the encodings: {ENCODINGS}")


# --- client -> server -------------------------------------------------------------------------

ControlKind = Literal["Terminate", "ForceEndpoint", "UpdateConfiguration", "KeepAlive"]
CONTROL_KINDS: frozenset[str] = frozenset({"Terminate", "ForceEndpoint", "UpdateConfiguration", "KeepAlive"})


def control_message(kind: ControlKind, **changes: Any) -> str:
    """A control message as text: ``Terminate``, ``ForceEndpoint``, ``KeepAlive``, or
    ``UpdateConfiguration`` with the parameters to change (only those in `UPDATABLE`)."""
    if kind not in CONTROL_KINDS:
        raise ConfigurationError(f"unknown control message {kind!r}; one of {', '.join(sorted(CONTROL_KINDS))}")
    if changes and kind != "UpdateConfiguration":
        raise ConfigurationError(f"{kind} takes no parameters")
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ConfigurationError(f"cannot update {sorted(unknown)} mid-session; updatable: {sorted(UPDATABLE)}")
    for name, value in changes.items():
        problem = param_problem(name, value)
        if problem:
            raise ConfigurationError(problem)
    return json.dumps({"type": kind, **changes}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Control:
    """A control message as a server reads it; ``changes`` are an `UpdateConfiguration`'s fields."""

    kind: ControlKind
    changes: Mapping[str, Any] = field(default_factory=dict)


def parse_control(text: str) -> Control:
    """A client's text message; raises `Refusal` (3006) for anything that is not a known control message."""
    try:
        message = json.loads(text)  # nesting deep enough for a RecursionError fits in a frame: refused like any bad JSON
        kind = message["type"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise Refusal(3006, f"Invalid Message: {text[:60]}") from None
    if not isinstance(kind, str) or kind not in CONTROL_KINDS:
        raise Refusal(3006, f"Invalid Message Type: {str(kind)[:60]}")
    return Control(cast(ControlKind, kind), {k: v for k, v in message.items() if k != "type"})


# --- server -> client: building ---------------------------------------------------------------

def begin_message(configuration: Mapping[str, Any], *, session_id: str | None = None,
                  expires_at: int | None = None, max_session_s: int = SESSION_LIMIT_S) -> dict[str, Any]:
    """`Begin`: the session is open (``expires_at`` defaults to now plus ``max_session_s``)."""
    return {"type": "Begin", "id": session_id or str(uuid.uuid4()),
            "expires_at": expires_at if expires_at is not None else int(time.time()) + max_session_s,
            "configuration": dict(configuration)}


def word_message(text: str, start_ms: int, end_ms: int, *, confidence: float, final: bool,
                 speaker: str | None = None) -> dict[str, Any]:
    """One entry of a `Turn`'s ``words``."""
    word: dict[str, Any] = {"start": start_ms, "end": end_ms, "text": text, "confidence": confidence,
                            "word_is_final": final}
    if speaker:
        word["speaker"] = speaker
    return word


def turn_message(turn_order: int, words: Sequence[Mapping[str, Any]], *, transcript: str, end_of_turn: bool = False,
                 formatted: bool = False, end_of_turn_confidence: float = 0.0, utterance: str = "",
                 speaker: str | None = None) -> dict[str, Any]:
    """A `Turn`: a partial or final view of one turn."""
    message = {"type": "Turn", "turn_order": turn_order, "turn_is_formatted": formatted, "end_of_turn": end_of_turn,
               "transcript": transcript, "end_of_turn_confidence": end_of_turn_confidence, "utterance": utterance,
               "words": [dict(w) for w in words]}
    if speaker:
        message["speaker_label"] = speaker
    return message


def termination_message(audio_ms: float, session_s: float) -> dict[str, Any]:
    """`Termination`: the last turn is out; the durations are whole seconds, as the service sends them."""
    return {"type": "Termination", "audio_duration_seconds": int(audio_ms // 1000),
            "session_duration_seconds": int(session_s)}


def error_message(code: int, text: str) -> dict[str, Any]:
    """`Error`: sent just before an error close with ``code``."""
    return {"type": "Error", "error_code": code, "error": text}


# --- server -> client: parsing ----------------------------------------------------------------

def parse(message: str | bytes, *, received_at: float = 0.0) -> Event | None:
    """One server message as an event; ``None`` for message types this client does not use.

    Raises ProtocolError for anything that is not a JSON object (nested too deeply to decode counts)
    or whose fields do not have the types the message needs.
    """
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"server sent a message that is not JSON: {_preview(message)}") from exc
    except RecursionError:  # a text frame is at most 128 KB, but that is deep enough
        raise ProtocolError(f"server sent JSON nested too deeply to decode: {_preview(message)}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"server sent JSON that is not an object: {_preview(message)}")
    return parse_message(data, received_at=received_at)


def parse_message(data: Mapping[str, Any], *, received_at: float = 0.0) -> Event | None:
    """A decoded server message as an event (see `parse`); raises ProtocolError for a malformed one."""
    kind = data.get("type")
    try:
        if kind is None and "error" in data:
            return ServerError(message=str(data["error"]), code=_opt_int(data.get("error_code")), received_at=received_at)
        parser = _PARSERS.get(kind) if isinstance(kind, str) else None
        return parser(data, received_at) if parser else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed {kind} message ({exc!r}): {_preview(json.dumps(data))}") from exc


def _preview(message: str | bytes, limit: int = 120) -> str:
    text = message if isinstance(message, str) else message[:limit].decode("utf-8", "replace")
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _int(value: Any) -> int:
    """A whole-number field; a non-finite number (JSON ``Infinity``, ``1e999``) is a ValueError, not an OverflowError."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return int(value)


def _float(value: Any) -> float:
    """A real-number field; an integer too large for a float is a ValueError, not an OverflowError."""
    try:
        return float(value)
    except OverflowError:
        raise ValueError("a number too large for a float") from None


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else _float(value)


def _opt_str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{name} must be a string or null, not {type(value).__name__}")


def _objects(value: Any, name: str) -> list[Mapping[str, Any]]:
    """A list of JSON objects (``null`` or absent: none)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise TypeError(f"{name} must be a list of objects")
    return value


def _word(raw: Mapping[str, Any]) -> Word:
    return Word(
        text=str(raw["text"]),
        start_ms=_int(raw.get("start", 0)),
        end_ms=_int(raw.get("end", 0)),
        confidence=_float(raw.get("confidence", 1.0)),
        is_final=bool(raw.get("word_is_final", True)),
        speaker=_opt_str(raw.get("speaker"), "a word's speaker"),
    )


def _begin(d: Mapping[str, Any], t: float) -> SessionBegan:
    return SessionBegan(
        session_id=str(d["id"]), expires_at=_opt_int(d.get("expires_at")), configuration=d.get("configuration") or {}, received_at=t
    )


def _turn(d: Mapping[str, Any], t: float) -> Turn:
    return Turn(
        turn_order=_int(d["turn_order"]),
        transcript=str(d.get("transcript", "")),
        words=tuple(_word(w) for w in _objects(d.get("words"), "words")),
        end_of_turn=bool(d.get("end_of_turn", False)),
        formatted=bool(d.get("turn_is_formatted", False)),
        end_of_turn_confidence=_float(d.get("end_of_turn_confidence") or 0.0),
        utterance=str(d.get("utterance") or ""),
        language_code=_opt_str(d.get("language_code"), "language_code"),
        language_confidence=_opt_float(d.get("language_confidence")),
        speaker=_opt_str(d.get("speaker_label"), "speaker_label"),
        received_at=t,
    )


def _llm(d: Mapping[str, Any], t: float) -> LLMGatewayResponse:
    data = d.get("data") or {}
    try:
        content = str(data["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        content = ""
    return LLMGatewayResponse(
        turn_order=_int(d.get("turn_order", -1)), transcript=str(d.get("transcript", "")), content=content, data=data, received_at=t
    )


def _revision(raw: Mapping[str, Any]) -> Revision:
    words = raw.get("words")
    return Revision(
        turn_order=_int(raw["turn_order"]),
        speaker=_opt_str(raw.get("speaker_label", raw.get("speaker")), "a revision's speaker"),
        words=None if words is None else tuple(_word(w) for w in _objects(words, "a revision's words")),
    )


_PARSERS: dict[str, Any] = {
    "Begin": _begin,
    "Turn": _turn,
    "Termination": lambda d, t: SessionEnded(
        audio_duration_seconds=_float(d.get("audio_duration_seconds", 0)),
        session_duration_seconds=_float(d.get("session_duration_seconds", 0)),
        received_at=t,
    ),
    "Error": lambda d, t: ServerError(message=str(d.get("error", "")), code=_opt_int(d.get("error_code")), received_at=t),
    "SpeechStarted": lambda d, t: SpeechStarted(
        timestamp_ms=_int(d.get("timestamp", 0)), confidence=_opt_float(d.get("confidence")), received_at=t
    ),
    "Warning": lambda d, t: ServerWarning(
        message=str(d.get("warning", d.get("message", ""))), code=_opt_int(d.get("warning_code")), received_at=t
    ),
    "Heartbeat": lambda d, t: Heartbeat(received_at=t),
    "LLMGatewayResponse": _llm,
    "SpeakerRevision": lambda d, t: SpeakerRevision(revisions=tuple(_revision(r) for r in _objects(d.get("revisions"), "revisions")),
                                                    received_at=t),
}


def live_line(words: Iterable[Word]) -> str:
    """The words of an open turn as one line; the last ones may still change."""
    return " ".join(w.text for w in words if w.text)


# --- closes and refusals: what they mean, what a client raises ---------------------------------

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
    """A close code read together with its texts: what it means and what to do."""

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


def refusal(code: int | None, reason: str = "", error_text: str = "") -> StreamingError:
    """The typed error for an error close, with what to do about it."""
    verdict = classify_close(code, reason, error_text)
    detail = error_text or reason or verdict.meaning
    if verdict.action is Action.STOP_AUTH:
        return AuthenticationError(
            f"server refused the credentials ({code}): {detail}. Check ASSEMBLYAI_API_KEY; not retrying.",
            code=code, reason=reason, error_text=error_text,
        )
    if verdict.action is Action.BACK_OFF:
        return TooManySessions(
            f"server limit reached ({code}): {detail}. Wait before starting another session.",
            code=code, reason=reason, error_text=error_text,
        )
    return ServerRefused(
        f"server closed the session ({code}, {verdict.meaning}): {detail}. Next step: {verdict.action.value}.",
        code=code, reason=reason, error_text=error_text,
    )


def http_refusal(status: int, body: str, where: str) -> StreamingError:
    """The typed error for a handshake answered with HTTP ``status`` instead of a WebSocket."""
    if status in (401, 403):
        return AuthenticationError(
            f"server refused the credentials (HTTP {status}) at {where}. Check ASSEMBLYAI_API_KEY; not retrying.",
            code=status, reason=body,
        )
    if status == 429:
        return TooManySessions(f"too many sessions (HTTP 429) at {where}; wait and retry.", code=status, reason=body)
    return ServerRefused(f"server refused the connection (HTTP {status}) at {where}: {body}", code=status, reason=body)


__all__ = [
    "BOUNDS",
    "CLOUD_URL",
    "CONTROL_KINDS",
    "Action",
    "Chunker",
    "CloseVerdict",
    "Control",
    "Refusal",
    "SessionConfig",
    "StreamingParams",
    "auth_headers",
    "begin_message",
    "build_url",
    "classify_close",
    "control_message",
    "error_message",
    "frame_bytes",
    "http_refusal",
    "is_loopback",
    "live_line",
    "param_problem",
    "parse",
    "parse_control",
    "parse_message",
    "pcm_ms",
    "public_host",
    "public_url",
    "redact_url",
    "refusal",
    "same_secret",
    "termination_message",
    "turn_message",
    "word_message",
]
