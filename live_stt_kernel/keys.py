"""Where keys (and the one host setting) come from: the argument a caller passed, else the environment.
Read here and nowhere else, so that no module picks up a key the user did not mean for it.

``ASSEMBLYAI_API_KEY``  AssemblyAI's cloud: streaming, LLM Gateway, LeMUR (sent only to AssemblyAI hosts)
``OPENAI_API_KEY``      an OpenAI-compatible server named by ``base_url`` (or ``$OPENAI_BASE_URL``)
``OPENAI_BASE_URL``     that server when the ``openai`` backend is named and no ``base_url`` is given, as the
                        official ``openai`` client reads it; on its own it sends nothing anywhere
``LIVE_STT_URL``        a shared v3 server (a class's ``live-stt serve`` on a JupyterHub) that sessions with no
                        ``url`` use instead of starting their own; it gets ``$LIVE_STT_TOKEN``, never an AssemblyAI key
``LIVE_STT_TOKEN``      that server's token
"""

from __future__ import annotations

import os

ASSEMBLYAI_KEY_ENV = "ASSEMBLYAI_API_KEY"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
OPENAI_BASE_URL_ENV = "OPENAI_BASE_URL"
SHARED_URL_ENV = "LIVE_STT_URL"
SHARED_TOKEN_ENV = "LIVE_STT_TOKEN"


def _given_or_env(given: str | None, name: str) -> str | None:
    if given is not None:
        return given or None  # an explicit empty key means "no key", never the environment's
    return os.environ.get(name) or None


def assemblyai_key(given: str | None = None) -> str | None:
    """``given`` if the caller passed one (``""``: none), else ``$ASSEMBLYAI_API_KEY``, else None."""
    return _given_or_env(given, ASSEMBLYAI_KEY_ENV)


def openai_key(given: str | None = None) -> str | None:
    """``given`` if the caller passed one (``""``: none), else ``$OPENAI_API_KEY``, else None."""
    return _given_or_env(given, OPENAI_KEY_ENV)


def openai_base_url(given: str | None = None) -> str | None:
    """``given`` if the caller passed one (``""``: none), else ``$OPENAI_BASE_URL``, else None."""
    return _given_or_env(given, OPENAI_BASE_URL_ENV)


def shared_server() -> tuple[str, str | None] | None:
    """``($LIVE_STT_URL, $LIVE_STT_TOKEN)`` when a shared server is set, else None."""
    url = os.environ.get(SHARED_URL_ENV) or None
    return (url, os.environ.get(SHARED_TOKEN_ENV) or None) if url else None


__all__ = ["ASSEMBLYAI_KEY_ENV", "OPENAI_BASE_URL_ENV", "OPENAI_KEY_ENV", "SHARED_TOKEN_ENV", "SHARED_URL_ENV", "assemblyai_key",
           "openai_base_url", "openai_key", "shared_server"]
