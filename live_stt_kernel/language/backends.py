"""Choosing a language backend: which model writes coaching reports and which translator translates turns.

The rule everywhere (Python API and CLI alike):

- a ``base_url`` alone means that OpenAI-compatible endpoint (or the LLM Gateway, if it is one);
- else an ``api_key`` passed explicitly means the LLM Gateway (it is an AssemblyAI key; ``""`` means no key
  and none from the environment either: the embedded default);
- else an AssemblyAI key in ``$ASSEMBLYAI_API_KEY`` means the LLM Gateway;
- else the embedded default: Apertium for live translation, the local model for coaching.

So nothing leaves the machine unless the user named a host (``base_url``) or gave an AssemblyAI key. The ``openai``
backend named outright (``backend="openai"``, ``--backend openai``) takes ``base_url``, else ``$OPENAI_BASE_URL``, as
the official ``openai`` client reads it; the variable alone never moves a session's text off the machine (a panel or a
demo with no key stays local even where it is set).

The AssemblyAI key is only ever sent to AssemblyAI hosts; a third-party base URL gets ``api_key``
when it is passed explicitly, or ``$OPENAI_API_KEY`` (see `keys`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlparse

from ..errors import ConfigurationError, LiveSTTError, LLMError, LLMUnavailable
from ..keys import assemblyai_key, openai_base_url, openai_key
from ..local.launcher import embedded_llm_endpoint
from ..local.llm_model import SERVED_MODEL
from .apertium import NO_PROMPT, ApertiumTranslator
from .llm import GATEWAY_MODEL, LEMUR_MODEL, LLM, LeMUR, LLMGateway, Message, OpenAICompatible, RetryPolicy
from .translation import clean_reply, translation_messages

LLM_BACKENDS = ("gateway", "openai", "lemur", "local")
TRANSLATORS = ("apertium", *LLM_BACKENDS)


@runtime_checkable
class Translator(Protocol):
    """Translates one turn. ``backend``/``model`` name it in caches, files and errors. `translate`
    may be called from several threads at once."""

    @property
    def backend(self) -> str:
        """The kind of backend: ``"apertium"``, ``"gateway"``, ``"openai"``, ``"lemur"``, ``"local"``."""
        ...

    @property
    def model(self) -> str:
        """The model (or language pair) at that backend."""
        ...

    def translate(self, text: str, *, target: str, prompt: str | None = None) -> str:
        """``text`` in the ``target`` language; raises `BackendError` when it cannot."""
        ...


class LLMTranslator:
    """Translation by a chat model, the turn passed as delimited data. Its replies are checked
    (``checks_replies``: a live translation flags a reply that is still not a translation, see
    `translation_problem`), and it can follow the reply as it is written (`drafts`)."""

    checks_replies = True

    def __init__(self, llm: LLM, *, prompt: str | None = None, temperature: float = 0.0):
        self.llm = llm
        self.prompt = prompt
        self.temperature = temperature

    @property
    def backend(self) -> str:
        """The chat model's backend."""
        return self.llm.backend

    @property
    def model(self) -> str:
        """The chat model's name."""
        return self.llm.model

    def __repr__(self) -> str:
        return f"<LLMTranslator {self.llm!r}>"

    def warm_up(self) -> None:
        """Get the model ready in the background if it needs that (the local model loads for seconds)."""
        warm_up = getattr(self.llm, "warm_up", None)
        if warm_up is not None:
            warm_up()

    def translate(self, text: str, *, target: str, prompt: str | None = None) -> str:
        """The translation of one turn (empty text: empty answer, no request)."""
        if not text.strip():
            return ""
        messages = translation_messages(text, target=target, prompt=prompt or self.prompt)
        return clean_reply(self.llm.complete(messages, max_tokens=_budget(text), temperature=self.temperature), text)

    def drafts(self, text: str, *, target: str, prompt: str | None = None) -> Iterator[str]:
        """The reply so far, raw (not cleaned), each time it grows: token by token when the model can
        stream (``llm.stream``), else once, whole. The last one is the whole reply. Closing the iterator
        early closes the stream (the local model then stops writing)."""
        if not text.strip():
            yield ""
            return
        messages = translation_messages(text, target=target, prompt=prompt or self.prompt)
        stream = getattr(self.llm, "stream", None)
        if stream is None:
            yield self.llm.complete(messages, max_tokens=_budget(text), temperature=self.temperature)
            return
        pieces = stream(messages, max_tokens=_budget(text), temperature=self.temperature)
        reply = ""
        try:
            for piece in pieces:
                reply += piece
                yield reply
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        if not reply:
            yield ""


def _budget(text: str) -> int:
    """Tokens a translation may use: room for a longer target language, never a runaway answer."""
    return 64 + 4 * len(text.split())


class LocalModel(OpenAICompatible):
    """The embedded local model: its server is started (or reused) on the first request, or in the
    background by `warm_up` (loading takes ~2-6 s). A long answer takes tens of seconds on 2 cores,
    and a retried request would only queue behind the abandoned one: a long timeout, one retry."""

    backend = "local"

    def __init__(self, **options: Any):
        options.setdefault("timeout", 300.0)
        options.setdefault("retry", RetryPolicy(attempts=2))
        super().__init__("http://127.0.0.1", model=SERVED_MODEL, **options)
        self._started = False
        self._start_lock = threading.Lock()

    def warm_up(self) -> None:
        """Start (or find) the server on a background thread, so the first request need not wait."""
        threading.Thread(target=self._quiet_start, name="live-stt-llm-warm-up", daemon=True).start()

    def _quiet_start(self) -> None:
        try:
            self._ensure_server()
        except LLMError:
            pass  # the first request raises it where the user sees it

    def __repr__(self) -> str:
        return f"<LocalModel {self.model} {'running' if self._started else 'not started'}>"

    def _ensure_server(self) -> None:
        with self._start_lock:
            if self._started:
                return
            try:
                url, token = embedded_llm_endpoint()
            except LiveSTTError as exc:  # weights missing, llama-cpp-python missing, a crash at start
                raise self._fail(LLMUnavailable, None, f"the local model could not start: {exc}") from exc
            self.base_url, self._api_key, self._started = url.rstrip("/"), token, True

    def complete(self, messages: Sequence[Message], *, max_tokens: int = 1000, temperature: float = 0.2) -> str:
        """As `OpenAICompatible.complete`, after starting the local server if it is not running."""
        self._ensure_server()
        return super().complete(messages, max_tokens=max_tokens, temperature=temperature)

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 1000, temperature: float = 0.2) -> Iterator[str]:
        """As `OpenAICompatible.stream`, after starting the local server if it is not running."""
        self._ensure_server()
        yield from super().stream(messages, max_tokens=max_tokens, temperature=temperature)


def is_gateway(base_url: str) -> bool:
    """Whether ``base_url`` is AssemblyAI's LLM Gateway."""
    host = urlparse(base_url).hostname or ""
    return host.startswith("llm-gateway.") and host.endswith(".assemblyai.com")


def chosen_base_url(backend: str | None, *, base_url: str | None) -> str | None:
    """The base URL the rule above asks: ``base_url`` when given; else ``$OPENAI_BASE_URL`` for the ``openai``
    backend named outright; else None (each backend's own host)."""
    if base_url:
        return base_url
    return openai_base_url() if backend == "openai" else None


def choose_backend(backend: str | None, *, base_url: str | None, api_key: str | None, default: str) -> str:
    """The backend name the rule above picks (``$OPENAI_BASE_URL`` only for the ``openai`` backend named outright)."""
    if backend is not None:
        if backend not in TRANSLATORS:
            raise ConfigurationError(f"unknown backend {backend!r}: choose one of {', '.join(TRANSLATORS)}")
        return backend
    if base_url:
        return "gateway" if is_gateway(base_url) else "openai"
    if assemblyai_key(api_key):
        return "gateway"
    return default


def resolve_llm(backend: str | None = None, *, base_url: str | None = None, model: str | None = None,
                api_key: str | None = None, **options: Any) -> LLM:
    """A chat model by the rule in this module's docstring. ``options`` go to the HTTP backend
    (``timeout``, ``retry``, ``requests_per_minute``)."""
    name = choose_backend(backend, base_url=base_url, api_key=api_key, default="local")
    base_url = chosen_base_url(backend, base_url=base_url)
    if name == "apertium":
        raise ConfigurationError("apertium translates but does not write reports: choose gateway, openai, lemur or local")
    if name == "gateway":
        return LLMGateway(assemblyai_key(api_key) or "", model=model or GATEWAY_MODEL, base_url=base_url, **options)
    if name == "lemur":
        return LeMUR(assemblyai_key(api_key) or "", model=model or LEMUR_MODEL, **({"base_url": base_url} if base_url else {}), **options)
    if name == "openai":
        if not base_url:
            raise ConfigurationError("an OpenAI-compatible backend needs base_url or $OPENAI_BASE_URL "
                                     "(e.g. http://localhost:11434/v1 for Ollama)")
        return OpenAICompatible(base_url, model=model or "gpt-4o-mini", api_key=openai_key(api_key), **options)
    return LocalModel(**options)


def resolve_translator(backend: str | None = None, *, base_url: str | None = None, model: str | None = None,
                       api_key: str | None = None, prompt: str | None = None, **options: Any) -> Translator:
    """A translator by the same rule; with nothing configured, Apertium (instant, offline). Nothing
    is started: a live translation warms a local model up when it starts."""
    name = choose_backend(backend, base_url=base_url, api_key=api_key, default="apertium")
    if name == "apertium":
        if prompt:
            raise ConfigurationError(NO_PROMPT)
        return ApertiumTranslator()
    return LLMTranslator(resolve_llm(name, base_url=base_url, model=model, api_key=api_key, **options), prompt=prompt)


def accepts_prompt(translator: Translator) -> bool:
    """Whether ``translator`` can follow a prompt: anything but Apertium (a translator of the user's own
    is trusted to, as the protocol passes it one)."""
    return not isinstance(translator, ApertiumTranslator)


def as_translator(value: Translator | LLM | str | None, **choice: Any) -> Translator:
    """Accept a translator, a chat model, a backend name, or None (the rule). A ``prompt`` in ``choice``
    with a translator that cannot use one (Apertium) raises `ConfigurationError`."""
    if isinstance(value, Translator):
        if choice.get("prompt") and not accepts_prompt(value):
            raise ConfigurationError(NO_PROMPT)
        return value
    if isinstance(value, LLM):
        return LLMTranslator(value, prompt=choice.get("prompt"))
    return resolve_translator(value, **choice)


__all__ = ["LLMTranslator", "LocalModel", "Translator", "accepts_prompt", "as_translator", "choose_backend", "chosen_base_url",
           "is_gateway", "resolve_llm", "resolve_translator"]
