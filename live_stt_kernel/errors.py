"""One exception root; the blame is in the type.

::

    LiveSTTError
    ├── ConfigurationError          our caller's misuse: no API key, bad parameter values, a call out of order
    │   └── MissingExtra            a pip extra ([local], [llm]) is needed and not installed: the message says which
    ├── AudioError                  bad input on our side of the wire
    │   ├── AudioFileError          missing, empty, not audio, unreadable
    │   └── AudioDeviceError        the kernel machine cannot record
    │       ├── PortAudioMissing    libportaudio2 not installed
    │       └── NoInputDevice       no microphone (typical for remote kernels)
    ├── SavedSessionError           a session folder or turns file that is missing or not ours
    ├── ProtocolError               the server sent something that is not v3 (garbled JSON)
    ├── StreamingError              the connection failed or the server said no
    │   ├── ServerUnreachable       DNS, refused, TLS, bad URL
    │   ├── ConnectTimeout          no handshake or no `Begin` in time
    │   ├── ServerRefused           closed with an error code (code, reason, Error frame text)
    │   │   ├── AuthenticationError 401 / 1008 Unauthorized: never retried
    │   │   └── TooManySessions     1008/3009 concurrency limits: back off
    │   ├── ConnectionLost          dropped without a close frame (1006)
    │   └── TerminationTimeout      `Terminate` sent, no `Termination` in time
    ├── SessionTimeout              `wait()` / `stop()` gave up waiting; the session goes on in the background
    ├── EmbeddedError               the embedded default could not run
    │   ├── ModelError              weights missing, incomplete, or not the pinned bytes
    │   └── EmbeddedServerError     a local server process did not start
    └── BackendError                a translator or language model failed (backend, model, status named)
        ├── TranslatorError         a translator that is not a language model (Apertium) failed
        └── LLMError                a language model failed
            ├── LLMRefused          400/401/403/404: the request, key or model is wrong; never retried
            │   ├── LLMGone         the endpoint is retired (LeMUR): use the LLM Gateway
            │   ├── PromptTooLong   the conversation does not fit the model's context window
            │   └── UnusableSchema  a response_format the local model cannot be held to
            ├── LLMRateLimited      429 on every attempt
            └── LLMUnavailable      5xx, timeouts, unreachable, unusable answers, after the retries

Each message says what happened and what to do; none contains a secret. A few also derive from the
built-in exception a caller would naturally catch (``ValueError``, ``TimeoutError``, ``ImportError``).
"""

from __future__ import annotations


class LiveSTTError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigurationError(LiveSTTError, ValueError):
    """The caller asked for something that cannot work (missing key, out-of-range option, a call out of order)."""


class MissingExtra(ConfigurationError, ImportError):
    """A part of the package that is installed separately (a pip extra such as ``[local]``) is needed; the
    message names the command that installs it."""


class AudioError(LiveSTTError):
    """Audio could not be read from a file or device."""


class AudioFileError(AudioError):
    """A file that is missing, empty, or not audio."""


class AudioDeviceError(AudioError):
    """The kernel's machine cannot record audio."""


class PortAudioMissing(AudioDeviceError):
    """The PortAudio library is not installed."""


class NoInputDevice(AudioDeviceError):
    """PortAudio found no usable microphone."""


class SavedSessionError(LiveSTTError):
    """A saved session (folder, ``turns.jsonl``, ``translations.jsonl``) is missing or has a line that is not ours."""


class ProtocolError(LiveSTTError):
    """A message from the server is not valid v3 (e.g. not JSON)."""


class StreamingError(LiveSTTError):
    """Connecting to or talking with the streaming server failed."""


class ServerUnreachable(StreamingError):
    """The server could not be reached at all."""


class ConnectTimeout(StreamingError):
    """The handshake or the `Begin` message did not arrive in time."""


class ServerRefused(StreamingError):
    """The server closed the session with an error.

    ``code`` is the WebSocket close code or HTTP status, ``reason`` the close reason and
    ``error_text`` the text of the `Error` frame that preceded the close, if any.
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str = "", error_text: str = ""):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.error_text = error_text


class AuthenticationError(ServerRefused):
    """The key or token was refused. Retrying with the same credentials cannot help."""


class TooManySessions(ServerRefused):
    """A concurrency or rate limit: wait before opening another session."""


class ConnectionLost(StreamingError):
    """The connection dropped without a close frame."""


class TerminationTimeout(StreamingError):
    """`Terminate` was sent but the server never confirmed with `Termination`."""


class SessionTimeout(LiveSTTError, TimeoutError):
    """``Session.wait()`` ran out of time (the session keeps running), or ``stop()`` did (the session was ended)."""


class EmbeddedError(LiveSTTError):
    """The embedded default (local servers and their models) could not run."""


class ModelError(EmbeddedError):
    """A model (speech or LLM) is missing, incomplete, or not the file we pinned."""


class EmbeddedServerError(EmbeddedError):
    """A local server process could not be started."""


class BackendError(LiveSTTError):
    """A translator or language model failed. ``backend``, ``model`` and ``status`` (HTTP status, or
    None) say which and how; the message never contains a key."""

    def __init__(self, message: str, *, backend: str = "", model: str = "", status: int | None = None):
        super().__init__(message)
        self.backend = backend
        self.model = model
        self.status = status


class TranslatorError(BackendError):
    """A translator that is not a language model (Apertium) crashed or did not answer."""


class LLMError(BackendError):
    """A language model failed."""


class LLMRefused(LLMError):
    """The backend refused the request (bad request, bad key, no access, unknown model)."""


class LLMGone(LLMRefused):
    """The endpoint has been retired."""


class PromptTooLong(LLMRefused):
    """The conversation does not fit the model's context window (the caller's input, not a model failure)."""


class UnusableSchema(LLMRefused):
    """A ``response_format`` the model cannot be held to: a JSON Schema llama.cpp cannot turn into a
    grammar, or a type other than ``json_object`` (the caller's request, not a model failure)."""


class LLMRateLimited(LLMError):
    """Still rate-limited after every retry."""


class LLMUnavailable(LLMError):
    """Server errors, timeouts or no connection, after every retry; or an answer we cannot use."""


__all__ = [
    "AudioDeviceError",
    "AudioError",
    "AudioFileError",
    "AuthenticationError",
    "BackendError",
    "ConfigurationError",
    "ConnectTimeout",
    "ConnectionLost",
    "EmbeddedError",
    "EmbeddedServerError",
    "LLMError",
    "LLMGone",
    "LLMRateLimited",
    "LLMRefused",
    "LLMUnavailable",
    "LiveSTTError",
    "MissingExtra",
    "ModelError",
    "NoInputDevice",
    "PortAudioMissing",
    "PromptTooLong",
    "ProtocolError",
    "SavedSessionError",
    "ServerRefused",
    "ServerUnreachable",
    "SessionTimeout",
    "StreamingError",
    "TerminationTimeout",
    "TooManySessions",
    "TranslatorError",
    "UnusableSchema",
]
