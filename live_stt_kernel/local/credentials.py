"""A local server's credentials: the token it accepts, and the one-time tokens the speech server issues.

A server's own token comes from the environment (the launcher passes a fresh one to each child it starts) or is a new
one written to a file in the cache folder that only its owner can read, which is how a user of ``live-stt serve`` or
``live-stt serve-llm`` finds it.
"""

from __future__ import annotations

import os
import secrets
import time

from ..v3.protocol import SESSION_LIMIT_S, same_secret
from .models import cache_dir


def server_token(env_name: str, filename: str) -> tuple[str, str]:
    """The token from ``$env_name``, or a new one written to ``filename`` in the cache folder with mode 0600 (a file
    left there before is replaced, so a wider mode never survives); and where a client finds it, in words."""
    token = os.environ.get(env_name)
    if token:
        return token, f"the token in ${env_name}"
    token = secrets.token_urlsafe(24)
    path = cache_dir() / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, f"the token in {path}"


class Tokens:
    """The server's own token plus one-time temporary tokens (each opens one session)."""

    def __init__(self, master: str):
        self.master = master
        self._temporary: dict[str, tuple[float, int | None]] = {}  # token -> (valid until, max session s)

    def issue(self, expires_in: int, max_session: int | None) -> str:
        """A new one-time token, valid for ``expires_in`` seconds, whose session lasts at most ``max_session`` seconds (None: 3 hours).

        Not thread-safe: the server calls it on its event-loop thread.
        """
        token = "tmp_" + secrets.token_urlsafe(24)
        self._temporary[token] = (time.monotonic() + expires_in, max_session)
        return token

    def admit(self, offered: list[str]) -> tuple[bool, int]:
        """Whether any offered credential opens a session, and that session's time limit."""
        for credential in offered:
            if same_secret(credential, self.master):
                return True, SESSION_LIMIT_S
            grant = self._temporary.pop(credential, None)
            if grant is not None and grant[0] >= time.monotonic():
                return True, grant[1] or SESSION_LIMIT_S
        return False, 0


__all__ = ["Tokens", "server_token"]
