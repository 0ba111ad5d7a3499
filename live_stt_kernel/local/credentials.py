"""A speech server's credentials: its own token, per-user tokens from a file, and the one-time tokens it issues.

A server's own token (the master token) comes from the environment (the launcher passes a fresh one to each child it
starts; a hub sets the same one on every replica) or is a new one written to a file in the cache folder that only
its owner can read, which is how a user of ``live-stt serve`` or ``live-stt serve-llm`` finds it.

Three kinds of credential open a session; each session gets a `Grant` that says who it is for (a name for the log,
never the token) and how long it may last:

- the master token;
- a per-user token from ``live-stt serve --tokens FILE`` (`UserTokens`): a class's roster, one ``name token`` line
  per student, re-read when the file changes so a teacher adds or removes a student without a restart;
- a temporary token from ``GET /v3/token`` (``tmp_...``), good for one session, which any server holding the same
  master token can verify (see `Tokens`).

Every comparison with a secret is constant-time (`same_secret`); no token appears in a log line, a repr or an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError
from ..v3.protocol import SESSION_LIMIT_S, same_secret
from .models import cache_dir

log = logging.getLogger(__name__)

TEMPORARY_PREFIX = "tmp_"
MASTER_NAME = "server token"  # who a session opened with the master token is, in the log
MIN_USER_TOKEN_CHARS = 16  # a shorter per-user token is guessable: the file is refused
NAME = re.compile(r"[\w.@+-]{1,64}")  # a user's name: letters, digits and . @ + - _ (no ':' or spaces)
MAX_TEMPORARY_CHARS = 512  # longer offers are not even decoded


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    """What an accepted credential allows: whose session it is (a name for the log) and its longest duration."""

    who: str
    limit_s: int


def read_user_tokens(path: str | os.PathLike[str]) -> tuple[tuple[str, str], ...]:
    """The ``(name, token)`` pairs of a token file, in file order.

    The file holds one ``name token`` pair per line (blank lines and ``#`` comments are skipped). Raises
    `ConfigurationError` when the file is readable or writable by its group or others, cannot be read, or a line is
    malformed (not two fields, a bad name, a token under 16 characters or starting with ``tmp_``, a token given
    twice); the message names the file and line, never a token.
    """
    try:
        fd = os.open(path, os.O_RDONLY)  # a link is followed (a mounted secret is one): the mode checked is the file's
    except OSError as exc:
        raise ConfigurationError(f"token file {path}: cannot open it ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode  # the mode of the file actually read, not of a later one at the path
        if not stat.S_ISREG(mode):
            raise ConfigurationError(f"token file {path}: not a regular file")
        if mode & 0o077:
            raise ConfigurationError(f"token file {path}: readable or writable by group or others (mode "
                                     f"{stat.S_IMODE(mode):04o}); make it private with: chmod 600 {path}")
        raw = f.read(1 << 20)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(f"token file {path}: not UTF-8 text") from None
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"token file {path} line {number}"
        if len(fields) != 2:
            raise ConfigurationError(f"{where}: expected 'name token', found {len(fields)} fields")
        name, token = fields
        if not NAME.fullmatch(name):
            raise ConfigurationError(f"{where}: a name is 1-64 letters, digits or . @ + - _")
        if len(token) < MIN_USER_TOKEN_CHARS:
            raise ConfigurationError(f"{where}: the token of {name} is shorter than {MIN_USER_TOKEN_CHARS} characters "
                                     "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(24))')")
        if token.startswith(TEMPORARY_PREFIX):
            raise ConfigurationError(f"{where}: the token of {name} starts with {TEMPORARY_PREFIX!r}, which marks "
                                     "temporary tokens")
        if any(same_secret(token, other) for _, other in pairs):
            raise ConfigurationError(f"{where}: the token of {name} is also given to another line's name")
        pairs.append((name, token))
    return tuple(pairs)


class UserTokens:
    """Per-user tokens from a file (``live-stt serve --tokens FILE``), re-read whenever the file changes.

    The file is read when this is made (a bad file raises `ConfigurationError` there, so the server never starts
    with it) and its modification time, size and inode are checked again before each lookup; a changed file is
    read again. A change that cannot be used (a wider mode, a malformed line, the file gone) is logged as an error
    naming the problem and the last good roster stays in force, so a typo never locks a class out mid-lesson.

    Used on the server's event-loop thread only.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._signature = self._stat_signature()
        self._entries = read_user_tokens(self.path)
        self._failed: tuple[int, ...] | None = None  # the signature of a change that was refused (logged once)

    def __repr__(self) -> str:
        return f"<UserTokens {self.path} users={len(self.names)}>"

    @property
    def names(self) -> list[str]:
        """The names in the roster now, in file order, each once."""
        return list(dict.fromkeys(name for name, _ in self._entries))

    def lookup(self, offered: str) -> str | None:
        """The name whose token ``offered`` is, or None. Every token is compared (constant-time each), so the time
        taken does not say which line matched."""
        self.refresh()
        found = None
        for name, token in self._entries:
            if same_secret(offered, token) and found is None:
                found = name
        return found

    def refresh(self) -> None:
        """Read the file again if it changed since it was last read."""
        try:
            signature = self._stat_signature()
        except OSError as exc:
            signature = (-1,)
            problem = f"token file {self.path}: cannot read it ({exc.strerror or exc})"
        else:
            if signature == self._signature:
                return
            try:
                entries = read_user_tokens(self.path)
            except ConfigurationError as exc:
                problem = str(exc)
            else:
                added = {n for n, _ in entries} - {n for n, _ in self._entries}
                removed = {n for n, _ in self._entries} - {n for n, _ in entries}
                self._entries, self._signature, self._failed = entries, signature, None
                log.info("token file %s re-read: %d names (%d added, %d removed)", self.path, len(self.names),
                         len(added), len(removed))
                return
        if signature != self._failed:
            self._failed = signature
            log.error("%s; keeping the %d names read before", problem, len(self.names))

    def _stat_signature(self) -> tuple[int, ...]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    """The credentials a speech server accepts: its master token, optional per-user tokens, and temporary tokens.

    **Temporary tokens verify themselves.** ``issue`` returns ``tmp_<body>.<mac>``: the body holds the expiry (Unix
    seconds), the session's time limit, a random nonce and the issuer's name; the mac is HMAC-SHA256 of the body,
    keyed by a key derived from the master token. Any server holding the same master token (``live-stt serve``
    replicas sharing ``$LIVE_STT_SERVER_TOKEN`` behind one load balancer) therefore accepts a token any of them
    issued, with no shared state. Expiry is wall-clock time, so replicas' clocks must agree (NTP); a skew of a few
    seconds lengthens or shortens a token's life by that much.

    **One-time use is enforced per server**: a server remembers the nonces it has accepted until their tokens
    expire (at most ``expires_in_seconds``, 600 s), and refuses a nonce it has seen. Across replicas nothing is
    shared, so one token could open one session *on each replica* within its life. That is acceptable here: a
    temporary token lives seconds to minutes, goes to one client over TLS, and each session it opens is still
    bounded by its time limit and the replica's ``max_sessions``; stealing it gives at most one session per replica
    for that minute. Where that is not acceptable, pin each token to one replica: have the load balancer hash the
    ``token`` query parameter (or the ``Authorization`` header) to choose the replica, so a token only ever reaches
    one server's memory.

    Used on the server's event-loop thread only (not thread-safe).
    """

    def __init__(self, master: str, *, users: UserTokens | None = None, clock: Callable[[], float] = time.time):
        self.master = master
        self.users = users
        self._clock = clock
        self._key = hmac.new(master.encode("utf-8", "surrogateescape"), b"live-stt temporary tokens v1",
                             hashlib.sha256).digest()
        self._used: dict[str, int] = {}  # nonce -> expiry (Unix s) of temporary tokens already accepted here
        self._next_prune = 0.0

    def __repr__(self) -> str:
        users = f" users={len(self.users.names)}" if self.users is not None else ""
        return f"<Tokens master=***{users} temporary_used={len(self._used)}>"

    def issue(self, expires_in: int, max_session: int | None, *, issuer: str = MASTER_NAME) -> str:
        """A new one-time token, valid for ``expires_in`` seconds, whose session lasts at most ``max_session`` seconds
        (None: 3 hours); sessions it opens are logged as the ``issuer``'s."""
        if not NAME.fullmatch(issuer.replace(" ", "_")):
            raise ConfigurationError("an issuer is a name from the token file or the server token")
        expiry = int(self._clock()) + expires_in
        body = _b64(f"{expiry}:{max_session or 0}:{secrets.token_urlsafe(12)}:{issuer}".encode())
        return f"{TEMPORARY_PREFIX}{body}.{self._mac(body)}"

    def admit(self, offered: Iterable[str]) -> Grant | None:
        """The grant of the first offered credential that opens a session, or None when none does. A temporary
        token is used up by the call that accepts it."""
        for credential in offered:
            if same_secret(credential, self.master):
                return Grant(who=MASTER_NAME, limit_s=SESSION_LIMIT_S)
            if credential.startswith(TEMPORARY_PREFIX):
                grant = self._redeem(credential)
                if grant is not None:
                    return grant
                continue
            name = self.users.lookup(credential) if self.users is not None else None
            if name is not None:
                return Grant(who=name, limit_s=SESSION_LIMIT_S)
        return None

    def owner(self, credential: str) -> str | None:
        """Whose long-lived credential this is (the master token or a per-user token), for ``GET /v3/token``; a
        temporary token does not make more tokens."""
        if same_secret(credential, self.master):
            return MASTER_NAME
        return self.users.lookup(credential) if self.users is not None else None

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def _redeem(self, credential: str) -> Grant | None:
        if len(credential) > MAX_TEMPORARY_CHARS:
            return None
        body, dot, mac = credential[len(TEMPORARY_PREFIX):].rpartition(".")
        if not dot or not body.isascii() or not same_secret(mac, self._mac(body)):
            return None
        try:  # signed by a server holding the master token: well formed unless that key signed something else
            expiry_text, limit_text, nonce, issuer = _unb64(body).decode("utf-8").split(":", 3)
            expiry, limit = int(expiry_text), int(limit_text)
        except ValueError:
            return None
        now = self._clock()
        self._prune(now)
        if expiry < now or nonce in self._used:
            return None
        self._used[nonce] = expiry
        return Grant(who=f"{issuer} (temporary token)", limit_s=limit or SESSION_LIMIT_S)

    def _prune(self, now: float) -> None:
        if now < self._next_prune:
            return
        self._next_prune = now + 10.0
        for nonce in [n for n, expiry in self._used.items() if expiry < now]:
            del self._used[nonce]


__all__ = ["Grant", "Tokens", "UserTokens", "read_user_tokens", "server_token"]
