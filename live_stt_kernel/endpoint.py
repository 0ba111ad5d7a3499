"""Which v3 server a session talks to, and with which credentials.

The choice is made at once from the arguments and the environment (`choose_endpoint`): an explicit URL wins; else
the cloud with an AssemblyAI key passed as an argument; else a shared server named by ``$LIVE_STT_URL``; else the
cloud with ``$ASSEMBLYAI_API_KEY``; with no key at all, the embedded local server.
Getting the address is the I/O part (`Endpoint.resolve`): for the embedded default it starts the local
server, or starts a new one if the last one died, so it runs on the session's worker thread, never in a
constructor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from .keys import assemblyai_key, shared_server
from .language.backends import is_gateway
from .local.launcher import embedded_endpoint
from .v3.protocol import CLOUD_URL, is_loopback, public_host


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A v3 server: ``kind`` is ``"embedded"`` (the local server this process starts), ``"cloud"``
    (AssemblyAI) or ``"url"`` (any other); ``url`` is None for the embedded one until it runs."""

    kind: Literal["embedded", "cloud", "url"]
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)

    @property
    def local(self) -> bool:
        """On this machine: no pacing rules, no cloud."""
        return self.kind == "embedded" or (self.url is not None and is_loopback(self.url))

    def describe(self) -> str:
        """In plain words, for the panel and the command line."""
        if self.local:
            return "local"
        if self.cloud:
            return "cloud (AssemblyAI)"
        return public_host(self.url or "")  # host and port: never a user or password in the URL

    @property
    def cloud(self) -> bool:
        """AssemblyAI's cloud: the default cloud endpoint, or a URL at an ``.assemblyai.com`` host."""
        return self.kind == "cloud" or (urlsplit(self.url or "").hostname or "").endswith(".assemblyai.com")

    def resolve(self) -> tuple[str, str | None]:
        """The URL to connect to and the key to send; starts the embedded server if it is not running."""
        if self.kind == "embedded":
            return embedded_endpoint()
        assert self.url is not None
        return self.url, self.api_key


def language_key(endpoint: Endpoint, backend: object, base_url: str | None = None) -> str | None:
    """The key to give a session's translator, so that text and keys go only where the user chose: the
    session's AssemblyAI key only when it streams to AssemblyAI's cloud and the translator is the default or
    an AssemblyAI one (at an AssemblyAI host); ``""`` (no key: the local translator) for the default beside a
    local or custom server; None for a backend named outright or a ``base_url`` elsewhere, which then reads its
    own key (see `keys`)."""
    assemblyai = backend in (None, "gateway", "lemur") and (base_url is None or is_gateway(base_url))
    if endpoint.kind == "cloud" and assemblyai:
        return endpoint.api_key
    return "" if backend is None and base_url is None else None


def choose_endpoint(url: str | None = None, api_key: str | None = None, *, token: bool = False) -> Endpoint:
    """An explicit ``url`` wins (with ``api_key`` or the environment's key); then a key passed here means the
    cloud; then a shared server named by ``$LIVE_STT_URL`` (with ``$LIVE_STT_TOKEN``: a class's server, which
    never gets the AssemblyAI key); then the cloud when the environment has a key; with none, the embedded local
    server. With a temporary ``token`` no key is sent, and no URL means the cloud (tokens come from there)."""
    key = None if token else assemblyai_key(api_key)
    if url is not None:
        return Endpoint("url", url, key)
    if token or (api_key and key):
        return Endpoint("cloud", CLOUD_URL, key)
    shared = shared_server()
    if shared is not None and api_key is None:
        return Endpoint("url", *shared)
    if key:
        return Endpoint("cloud", CLOUD_URL, key)
    return Endpoint("embedded")


__all__ = ["Endpoint", "choose_endpoint", "language_key"]
