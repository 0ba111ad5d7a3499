"""live_stt_kernel: live speech-to-text as a first-class citizen of Jupyter.

Start with ``start()`` (a running `Session`; ``translate_to="es"`` translates each finished turn),
read ``session.partial`` and ``session.df``, then ``coach(session.df)``, ``translate(df, to=...)``
and ``load_session(folder)`` afterwards. See README.md.
"""

from .analysis import coach, save_report, translate
from .apertium import ApertiumTranslator
from .backends import LLMTranslator, LocalModel, Translator, resolve_llm, resolve_translator
from .coaching import CoachingReport
from .errors import (
    AudioDeviceError,
    AudioError,
    AudioFileError,
    AuthenticationError,
    ConfigurationError,
    ConnectionLost,
    ConnectTimeout,
    LiveSTTError,
    LLMError,
    LLMGone,
    LLMRateLimited,
    LLMRefused,
    LLMUnavailable,
    NoInputDevice,
    PortAudioMissing,
    ProtocolError,
    ServerRefused,
    ServerUnreachable,
    StreamingError,
    TerminationTimeout,
    TooManySessions,
)
from .events import Disconnected, Event, Reconnected, SessionBegan, SessionEnded, Turn, Word
from .export import export, export_session
from .live_translation import LiveTranslator
from .llm import LLM, LeMUR, LLMGateway, OpenAICompatible, RetryPolicy
from .protocol import StreamingParams
from .reconnect import ReconnectPolicy
from .session import Session, start
from .sources import AudioSource, MicSource, QueueSource, WavSource, input_devices
from .store import load_session
from .transcript import Transcript, TurnRecord
from .translation import Translation
from .transport import StreamingClient

__version__ = "0.1.0"

__all__ = [
    "ApertiumTranslator",
    "AudioDeviceError",
    "AudioError",
    "AudioFileError",
    "AudioSource",
    "AuthenticationError",
    "CoachingReport",
    "ConfigurationError",
    "ConnectTimeout",
    "ConnectionLost",
    "Disconnected",
    "Event",
    "LLM",
    "LLMError",
    "LLMGateway",
    "LLMGone",
    "LLMRateLimited",
    "LLMRefused",
    "LLMTranslator",
    "LLMUnavailable",
    "LeMUR",
    "LiveSTTError",
    "LiveTranslator",
    "LocalModel",
    "MicSource",
    "NoInputDevice",
    "OpenAICompatible",
    "PortAudioMissing",
    "ProtocolError",
    "QueueSource",
    "Reconnected",
    "ReconnectPolicy",
    "RetryPolicy",
    "ServerRefused",
    "ServerUnreachable",
    "Session",
    "SessionBegan",
    "SessionEnded",
    "StreamingClient",
    "StreamingError",
    "StreamingParams",
    "TerminationTimeout",
    "TooManySessions",
    "Transcript",
    "Translation",
    "Translator",
    "Turn",
    "TurnRecord",
    "WavSource",
    "Word",
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
