"""live_stt_kernel: live speech-to-text as a first-class citizen of Jupyter.

Start with ``start()`` (a running `Session`), read ``session.partial`` and ``session.df``, and
``load_session(folder)`` afterwards. See README.md.
"""

from .errors import (
    AudioDeviceError,
    AudioError,
    AudioFileError,
    AuthenticationError,
    ConfigurationError,
    ConnectionLost,
    ConnectTimeout,
    LiveSTTError,
    NoInputDevice,
    PortAudioMissing,
    ProtocolError,
    ServerRefused,
    ServerUnreachable,
    StreamingError,
    TerminationTimeout,
    TooManySessions,
)
from .events import Event, SessionBegan, SessionEnded, Turn, Word
from .protocol import StreamingParams
from .session import Session, start
from .sources import AudioSource, MicSource, QueueSource, WavSource, input_devices
from .store import load_session
from .transcript import Transcript, TurnRecord
from .transport import StreamingClient

__version__ = "0.1.0"

__all__ = [
    "AudioDeviceError",
    "AudioError",
    "AudioFileError",
    "AudioSource",
    "AuthenticationError",
    "ConfigurationError",
    "ConnectTimeout",
    "ConnectionLost",
    "Event",
    "LiveSTTError",
    "MicSource",
    "NoInputDevice",
    "PortAudioMissing",
    "ProtocolError",
    "QueueSource",
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
    "Turn",
    "TurnRecord",
    "WavSource",
    "Word",
    "input_devices",
    "load_session",
    "start",
]
