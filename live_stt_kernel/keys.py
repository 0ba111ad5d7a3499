"""Where keys (and the one host setting) come from: the argument a caller passed, else the environment.
Read here and nowhere else, so that no module picks up a key the user did not mean for it.

``ASSEMBLYAI_API_KEY``  AssemblyAI's cloud: streaming, LLM Gateway, LeMUR (sent only to AssemblyAI hosts)
``OPENAI_API_KEY``      an OpenAI-compatible server named by ``base_url`` (or ``$OPENAI_BASE_URL``)
``OPENAI_BASE_URL``     that server when the ``openai`` backend is named and no ``base_url`` is given, as the
                        official ``openai`` client reads it; on its own it sends nothing anywhere
"""

from __future__ import annotations

import os

ASSEMBLYAI_KEY_ENV = "ASSEMBLYAI_API_KEY"
OPENAI_KEY_ENV = "OPENAI_API_KEY"
OPENAI_BASE_URL_ENV = "OPENAI_BASE_URL"


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


__all__ = ["ASSEMBLYAI_KEY_ENV", "OPENAI_BASE_URL_ENV", "OPENAI_KEY_ENV", "assemblyai_key", "openai_base_url", "openai_key"]
