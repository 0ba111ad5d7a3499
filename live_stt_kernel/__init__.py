"""live_stt_kernel: live speech-to-text as a first-class citizen of Jupyter.

Start with ``start()`` (a running `Session`; ``translate_to="es"`` translates each finished turn),
read ``session.partial`` and ``session.df``, then ``coach(session.df)``, ``translate(df, to=...)``
and ``load_session(folder)`` afterwards; ``batch(folder)`` transcribes a folder of recordings on Dask.
This module is the public API and nothing else; the package's folders are its architecture (see
README.md, "Layout").
"""

from __future__ import annotations

from ._version import __version__ as __version__
from .audio.sources import AudioSource, MicSource, QueueSource, WavSource, input_devices
from .batch import BatchResult, batch
from .coaching.report import CoachingReport, coach, save_report
from .errors import (
    AudioDeviceError,
    AudioError,
    AudioFileError,
    AuthenticationError,
    BackendError,
    ConfigurationError,
    ConnectionLost,
    ConnectTimeout,
    EmbeddedError,
    EmbeddedServerError,
    LiveSTTError,
    LLMError,
    LLMGone,
    LLMRateLimited,
    LLMRefused,
    LLMUnavailable,
    MissingExtra,
    ModelError,
    NoInputDevice,
    PortAudioMissing,
    PromptTooLong,
    ProtocolError,
    SavedSessionError,
    ServerRefused,
    ServerUnreachable,
    SessionTimeout,
    StreamingError,
    TerminationTimeout,
    TooManySessions,
    TranslatorError,
    UnusableSchema,
)
from .events import Disconnected, Event, Reconnected, SessionBegan, SessionEnded, Turn, Word
from .export import export, export_session
from .language.apertium import ApertiumTranslator
from .language.backends import LLMTranslator, LocalModel, Translator, resolve_llm, resolve_translator
from .language.batch import translate
from .language.live import LiveTranslation
from .language.llm import LLM, LeMUR, LLMGateway, OpenAICompatible, RetryPolicy
from .language.translation import Translation
from .notebook import start
from .session import Session, load_session
from .transcript import Transcript, TurnRecord
from .v3.client import StreamingClient
from .v3.protocol import StreamingParams
from .v3.reconnect import ReconnectPolicy

__all__ = [
    "LLM",
    "ApertiumTranslator",
    "AudioDeviceError",
    "AudioError",
    "AudioFileError",
    "AudioSource",
    "AuthenticationError",
    "BackendError",
    "BatchResult",
    "CoachingReport",
    "ConfigurationError",
    "ConnectTimeout",
    "ConnectionLost",
    "Disconnected",
    "EmbeddedError",
    "EmbeddedServerError",
    "Event",
    "LLMError",
    "LLMGateway",
    "LLMGone",
    "LLMRateLimited",
    "LLMRefused",
    "LLMTranslator",
    "LLMUnavailable",
    "LeMUR",
    "LiveSTTError",
    "LiveTranslation",
    "LocalModel",
    "MicSource",
    "MissingExtra",
    "ModelError",
    "NoInputDevice",
    "OpenAICompatible",
    "PortAudioMissing",
    "PromptTooLong",
    "ProtocolError",
    "QueueSource",
    "ReconnectPolicy",
    "Reconnected",
    "RetryPolicy",
    "SavedSessionError",
    "ServerRefused",
    "ServerUnreachable",
    "Session",
    "SessionBegan",
    "SessionEnded",
    "SessionTimeout",
    "StreamingClient",
    "StreamingError",
    "StreamingParams",
    "TerminationTimeout",
    "TooManySessions",
    "Transcript",
    "Translation",
    "Translator",
    "TranslatorError",
    "Turn",
    "TurnRecord",
    "UnusableSchema",
    "WavSource",
    "Word",
    "batch",
    "coach",
    "export",
    "export_session",
    "input_devices",
    "load_session",
    "resolve_llm",
    "resolve_translator",
    "save_report",
    "start",
    "translate",
]
