"""The ``live-stt`` command.

``live-stt transcribe FILE``      stream a file through a v3 server, print each turn once as it settles
``live-stt demo``                 the main job: the bundled sample, live and translated, on local servers,
                                  saved to ./sessions/, then a coaching report
``live-stt translate SESSION``    translate a saved session's turns; saved into its folder
``live-stt coach SESSION``        a coaching report on a saved session; saved into its folder
``live-stt serve`` / ``serve-llm``  the embedded speech server / local LLM server

A bad argument or path is one line on stderr naming it (exit code 2), checked before anything starts;
an error while running is one line too (2; 3 when a server refuses); only a bug shows a traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import socket
import ssl
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

from ._version import __version__
from .audio.sources import WavSource
from .batch import batch
from .coaching.report import coach, save_report
from .endpoint import choose_endpoint, language_key
from .errors import AudioFileError, ConfigurationError, LiveSTTError, SavedSessionError, ServerRefused
from .extras import LLM, LOCAL, require
from .keys import ASSEMBLYAI_KEY_ENV, OPENAI_KEY_ENV, SHARED_TOKEN_ENV, SHARED_URL_ENV
from .language.backends import as_translator
from .language.batch import translate_records
from .language.live import append_translations
from .language.translation import Translation, language_code
from .local.credentials import UserTokens, server_token
from .local.launcher import READY_PREFIX, SERVER_ENV, TOKEN_ENV
from .local.llm_server import TOKEN_ENV as LLM_TOKEN_ENV
from .local.llm_server import main as serve_llm
from .local.recognizer import WhisperRecognizer
from .local.server import IDLE_TIMEOUT_S, MAX_SESSIONS, LocalServer
from .local.tls import self_signed, server_context
from .samples import sample_wav
from .session import AUTO, Session
from .store import AUDIO_FILE, TURNS_FILE, read_turns
from .transcript import TurnRecord, TurnSettler
from .v3.protocol import DEFAULT_SPEECH_MODEL, MAX_KEYTERM_CHARS, StreamingParams

POLL_S = 0.05


def format_turn(row: TurnRecord) -> str:
    """A turn as one line of text: ``[start - end] text`` in seconds, or the text alone when it has no times."""
    if row.start is None or row.end is None:
        return row.text
    return f"[{row.start:7.2f} - {row.end:7.2f}] {row.text}"


def turn_json(row: TurnRecord) -> str:
    """A turn as one JSON line (``--format jsonl``; without its words)."""
    data = {
        "turn_order": row.turn_order,
        "turn_index": row.turn_index,
        "session_id": row.session_id,
        "text": row.text,
        "start": row.start,
        "end": row.end,
        "confidence": row.confidence,
        "speaker": row.speaker,
        "end_of_turn_latency": row.end_of_turn_latency,
    }
    return json.dumps(data, ensure_ascii=False)


def format_translation(item: Translation) -> str:
    """A translation as an indented line under its turn, or the reason there is none."""
    if item.text is None:
        return f"    {item.target}: (not translated: {item.error})"
    return f"    {item.target}: {item.text}"


def translation_json(item: Translation) -> str:
    """A translation as one JSON line, ``{"translation": {...}}``, without the source text."""
    return json.dumps({"translation": {k: v for k, v in item.to_dict().items() if k != "source"}}, ensure_ascii=False)


def translations_in_turn_order(finished: Sequence[Translation], unfinished: Iterable[tuple[str, int]],
                               positions: dict[tuple[str, int], int], printed: set[tuple[str, int, str]], *,
                               ended: bool) -> list[Translation]:
    """The ``finished`` translations not ``printed`` yet that can go out now, in the order their turns were printed
    (``positions``: turn key -> place): one waits while a translation of an earlier turn is ``unfinished`` (queued or
    running), or while its own turn is not printed yet, so translations follow their turns in order even when a later
    one finishes first. Once ``ended``, everything left goes out."""
    def place(key: tuple[str, int]) -> int:
        return positions.get(key, len(positions))

    first_waiting = min(map(place, unfinished), default=len(positions))
    ready = [item for item in finished if (item.session_id, item.turn_order, item.target) not in printed
             and (ended or place((item.session_id, item.turn_order)) < first_waiting)]
    return sorted(ready, key=lambda item: place((item.session_id, item.turn_order)))


def follow(session: Session, settler: TurnSettler, *, out: TextIO, fmt: str, live: TextIO | None) -> None:
    """Print each turn once, as soon as it settles, and each translation as it arrives, until the
    session ends; show the live line on ``live`` (a terminal) if given. Runs on the calling thread;
    the session works in the background."""
    shown = ""
    positions: dict[tuple[str, int], int] = {}  # turns printed, in the order printed
    printed: set[tuple[str, int, str]] = set()  # translations printed: (session id, turn order, target)

    def write(line: str) -> None:
        nonlocal shown
        if live is not None and shown:
            live.write("\r\033[K")
            shown = ""
        out.write(line + "\n")
        out.flush()

    def emit(rows: list[TurnRecord], *, ended: bool = False) -> None:
        for row in rows:
            write(turn_json(row) if fmt == "jsonl" else format_turn(row))
            positions.setdefault(row.key, len(positions))
        if session.translation is not None:
            unfinished = [turn for turn, _ in session.translation.in_progress]
            for item in translations_in_turn_order(session.translation.results, unfinished, positions, printed,
                                                   ended=ended):
                write(translation_json(item) if fmt == "jsonl" else format_translation(item))
                printed.add((item.session_id, item.turn_order, item.target))

    while session.running:
        emit(settler.update(session.transcript, time.monotonic()))
        if live is not None and session.partial != shown:
            shown = session.partial
            live.write("\r\033[K" + shown[-(_columns() - 1):])
            live.flush()
        time.sleep(POLL_S)
    emit(settler.update(session.transcript, time.monotonic(), ended=True))
    if session.translation is not None:
        session.translation.wait(timeout=60)
        emit([], ended=True)
    if live is not None and shown:
        live.write("\r\033[K")
        live.flush()


def _columns() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 100


def run_session(session: Session, args: argparse.Namespace, *, note: str = "") -> int:
    """Start ``session`` and print its turns until it ends (Ctrl-C ends the audio and waits for the last turn); returns the exit code."""
    err = sys.stderr
    live = err if (err.isatty() and not args.quiet) else None
    if note and not args.quiet:
        print(note, file=err)
    settler = TurnSettler(expect_formatted=bool(session.params.format_turns))
    session.start()
    try:
        follow(session, settler, out=sys.stdout, fmt=args.format, live=live)
    except KeyboardInterrupt:  # Ctrl-C is end-of-file: the server still flushes the last turn
        print("\nstopping: flushing the last turn...", file=err)
        session.source.close()
        follow(session, settler, out=sys.stdout, fmt=args.format, live=None)
    session.stop()
    if session.folder is not None and not args.quiet:
        print(f"saved: {session.folder}", file=err)
    return 0


def _params(args: argparse.Namespace) -> StreamingParams:
    return StreamingParams(
        speech_model=args.speech_model,
        format_turns=not args.no_format_turns,
        keyterms_prompt=args.keyterm or None,
    )


def _translation_options(args: argparse.Namespace) -> dict[str, Any]:
    if not args.to:
        return {}
    key = language_key(choose_endpoint(getattr(args, "url", None), args.api_key), args.backend, args.base_url)
    translator = as_translator(args.backend, base_url=args.base_url, model=args.model, api_key=key, prompt=args.prompt)
    return {"translate_to": args.to, "translator": translator, "translation_prompt": args.prompt}


def cmd_transcribe(args: argparse.Namespace) -> int:
    """``live-stt transcribe``: stream an audio file through a v3 server and print its turns."""
    folder: Any = None if args.save is None else (AUTO if args.save == "" else args.save)
    session = Session(
        args.file, url=args.url, api_key=args.api_key, params=_params(args), folder=folder,
        realtime=not args.fast, connect_timeout=args.timeout, begin_timeout=args.timeout, reconnect=args.reconnect,
        **_translation_options(args),
    )
    return run_session(session, args)


def cmd_demo(args: argparse.Namespace) -> int:
    """``live-stt demo``: stream the bundled sample, translate each turn, save the session, then print a coaching report."""
    sample = sample_wav()
    args.to = args.to or ["es"]  # the main job translates; Spanish unless told otherwise
    session = Session(sample, url=args.url, api_key=args.api_key, params=_params(args), folder=args.save or AUTO,
                      realtime=not args.fast, reconnect=args.reconnect, **_translation_options(args))
    endpoint = session.endpoint
    where = {"embedded": "the embedded local server", "cloud": "AssemblyAI's cloud"}.get(endpoint.kind, f"the server at {endpoint.url}")
    live = session.translation
    translated = "" if live is None else f", translated to {', '.join(live.targets)} by {live.translator.backend}"
    code = run_session(session, args, note=f"Streaming {sample.name} ({'fast' if args.fast else 'real time'}) to {where}{translated}")
    if code == 0 and not args.no_coach and session.folder is not None:
        if not args.quiet:
            print("\nCoaching report (computed metrics, then the model's analysis):", file=sys.stderr)
        code = report(session.folder, args, llm_backend=None if args.backend == "apertium" else args.backend)
    return code


def _session_folder(path: str) -> Path:
    target = Path(path)
    if not target.exists():
        raise SavedSessionError(f"no saved session at {target}")
    return target if target.is_dir() else target.parent


def cmd_translate(args: argparse.Namespace) -> int:
    """``live-stt translate``: translate a saved session's turns, print them and save them in its folder; exit code 4 if any failed."""
    records = list(read_turns(args.session).rows)
    translator = as_translator(args.backend, base_url=args.base_url, model=args.model, api_key=args.api_key, prompt=args.prompt)
    results = translate_records(records, to=args.to, translator=translator, prompt=args.prompt, workers=args.workers,
                                progress=not args.quiet)
    per_turn = len(results) // max(1, len(records))
    for i, row in enumerate(records):
        print(turn_json(row) if args.format == "jsonl" else format_turn(row))
        for item in results[i * per_turn:(i + 1) * per_turn]:
            print(translation_json(item) if args.format == "jsonl" else format_translation(item))
    folder = _session_folder(args.session)
    append_translations(folder, results)
    failed = sum(r.error is not None for r in results)
    if not args.quiet:
        print(f"saved: {len(results) - failed} translations to {folder / 'translations.jsonl'}"
              + (f" ({failed} failed)" if failed else ""), file=sys.stderr)
    return 0 if not failed else 4


def report(path: str | Path, args: argparse.Namespace, *, llm_backend: str | None) -> int:
    """Print a coaching report on a saved session and save it beside its turns."""
    use_llm = not getattr(args, "no_llm", False)
    writing = use_llm and not args.quiet and sys.stderr.isatty()  # a model takes seconds: show that it is writing
    result = coach(path, backend=llm_backend, base_url=getattr(args, "base_url", None), model=getattr(args, "model", None),
                   api_key=args.api_key, prompt=_prompt_text(args), use_llm=use_llm,
                   on_text=_writing_progress if writing else None)
    if writing:
        print(file=sys.stderr)
    print(result.to_markdown())
    saved = save_report(result, _session_folder(str(path)))
    if not args.quiet:
        print(f"saved: {', '.join(str(p) for p in saved)}", file=sys.stderr)
    return 0


def _writing_progress(text: str) -> None:
    print(f"\rthe model is writing the analysis: {len(text.split())} words", end="", file=sys.stderr, flush=True)


def cmd_coach(args: argparse.Namespace) -> int:
    """``live-stt coach``: print a coaching report on a saved session and save it beside its turns."""
    return report(args.session, args, llm_backend=args.backend)


def _prompt_text(args: argparse.Namespace) -> str | None:
    prompt_file: str | None = getattr(args, "prompt_file", None)  # the file's text: read by `text_file`
    return prompt_file if prompt_file is not None else getattr(args, "coach_prompt", None)


def cmd_batch(args: argparse.Namespace) -> int:
    """``live-stt batch``: transcribe recordings on Dask; a line on stderr per recording that failed, the summary on
    stdout; exit code 4 if any failed."""
    result = batch(args.inputs, out=args.out, translate_to=args.to or None, translator=args.translator, coach=args.coach,
                   client=args.scheduler, workers=args.workers, cpu_threads=args.cpu_threads, model=args.model,
                   keyterms=args.keyterm, url=args.url, api_key=args.api_key, concurrency=args.concurrency,
                   force=args.force, progress=not args.quiet)
    errors = result.errors
    for row in errors.itertuples():
        print(f"failed: {row.path}: {row.error}: {row.message}", file=sys.stderr)
    print(result.summary())
    return 4 if len(errors) else 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``live-stt serve``: run the embedded v3 speech server in the foreground; its ws:// URL goes to stdout once it is ready."""
    if any(os.environ.get(k) != v for k, v in SERVER_ENV.items()):  # numpy is loaded already: restart with the limits set
        os.execve(sys.executable, [sys.executable, "-m", "live_stt_kernel.cli", *sys.argv[1:]], {**os.environ, **SERVER_ENV})
    require(LOCAL, "live-stt serve")
    token, where = server_token(TOKEN_ENV, "server-token")
    token_note = f"auth: Authorization header or token= with {where} (GET /v3/token makes one-time tokens)"
    users = UserTokens(args.tokens) if args.tokens else None  # a bad file stops here, before the model loads
    if users is not None:
        token_note += f", or a user's token from {users.path} ({len(users.names)} names; re-read when it changes)"
    try:
        recognizer = WhisperRecognizer(args.model, cpu_threads=args.cpu_threads, workers=args.workers,
                                       alone_threads=args.alone_threads)
    except ValueError as exc:  # faster-whisper's answer to a model name it does not know
        raise ConfigurationError(f"--model {args.model}: {exc}") from exc
    context, tls_note = _tls(args)
    server = LocalServer(recognizer, host=args.host, port=args.port, token=token, workers=args.workers,
                         max_sessions=args.max_sessions, idle_timeout_s=args.idle_timeout, ssl_context=context,
                         users=users)
    _log_sessions()

    def ready(srv: LocalServer) -> None:
        print(f"{READY_PREFIX}{srv.url}/v3/ws", flush=True)
        print(f"model: {args.model}; {token_note}{tls_note}", file=sys.stderr, flush=True)
        if args.watch_stdin:  # our parent process holds the other end: stop when it goes away

            def stop_at_eof() -> None:
                sys.stdin.read()
                srv.stop()

            threading.Thread(target=stop_at_eof, daemon=True).start()

    server.run(on_ready=ready)
    return 0


def _log_sessions() -> None:
    """``serve`` logs one line per session (its user's name, never a token) and token-file reloads to stderr."""
    logger = logging.getLogger("live_stt_kernel.local")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _tls(args: argparse.Namespace) -> tuple[ssl.SSLContext | None, str]:
    """``serve --tls`` (a self-signed certificate from the cache) or ``--cert``/``--key``: the server's TLS context and
    how clients trust it, in words; ``(None, "")`` without TLS."""
    if not (args.tls or args.cert or args.key):
        return None, ""
    if bool(args.cert) != bool(args.key):
        raise ConfigurationError("--cert and --key go together: the certificate chain and its private key")
    cert, key = (Path(args.cert), Path(args.key)) if args.cert else self_signed()
    trust = "" if args.cert else (f" (self-signed: clients trust it with NODE_EXTRA_CA_CERTS={cert}, or in Python "
                                  f"SSL_CERT_FILE={cert} for that process only: it replaces the system's trust store)")
    return server_context(cert, key), f"; TLS certificate: {cert}{trust}"


def cmd_serve_llm(args: argparse.Namespace) -> int:
    """``live-stt serve-llm``: run the local LLM server (OpenAI-compatible chat completions) in the foreground."""
    require(LLM, "live-stt serve-llm")
    forwarded = ["--host", args.host, "--port", str(args.port), *(["--model", args.model] if args.model else [])]
    return serve_llm(forwarded + (["--threads", str(args.threads)] if args.threads else []))


def _one_line(what: object) -> str:
    return " ".join(str(what).split())


# --- argument checks: a bad value is one line naming the argument (argparse adds "argument --x: ") ---

MAX_TIMEOUT_S = 3600.0


def seconds(text: str) -> float:
    """``--timeout``: a number of seconds above 0 (at most an hour)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S):
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_TIMEOUT_S:g} seconds, not {text}")
    return value


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high`` (counts, threads, ports)."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, not {value}")
        return value

    check.__name__ = f"whole number from {low} to {high}"
    return check


def _url(text: str, schemes: tuple[str, ...], example: str) -> str:
    shown = text.split("?")[0]  # never echo a query: it may hold a token
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number from 0 to 65535)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} in {shown!r}") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected a URL such as {example}, not {shown!r}")
    return text


def ws_url(text: str) -> str:
    """``--url``: a ``ws://`` or ``wss://`` URL with a host (and a valid port, if any)."""
    return _url(text, ("ws", "wss"), "ws://127.0.0.1:8765 or wss://streaming.assemblyai.com")


def http_url(text: str) -> str:
    """``--base-url``: an ``http://`` or ``https://`` URL with a host."""
    return _url(text, ("http", "https"), "http://localhost:11434/v1")


def host_name(text: str) -> str:
    """``--host``: an address this machine can resolve (and so bind)."""
    try:
        socket.getaddrinfo(text, None)
    except (OSError, UnicodeError) as exc:
        raise argparse.ArgumentTypeError(f"cannot resolve the address {text!r}: {exc}") from None
    return text


def target_language(text: str) -> str:
    """``--to``: a language code or name the translators know."""
    try:
        language_code(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def keyterm(text: str) -> str:
    """``--keyterm``: a term of 1 to 50 characters."""
    if not text.strip() or len(text) > MAX_KEYTERM_CHARS:
        raise argparse.ArgumentTypeError(f"a key term has 1 to {MAX_KEYTERM_CHARS} characters, not {len(text.strip())}: {text[:60]!r}")
    return text


def _path_check(check: Callable[[str], str]) -> Callable[[str], str]:
    """``check`` with the system's refusals (a name too long, no permission to look) as argument errors."""

    @functools.wraps(check)
    def checked(text: str) -> str:
        try:
            return check(text)
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot use {text}: {exc.strerror or exc}") from None

    return checked


@_path_check
def save_folder(text: str) -> str:
    """``--save DIR``: a folder that is, or can be made, a new session folder ("" is the default place)."""
    if not text:
        return text
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    taken = [name for name in (TURNS_FILE, AUDIO_FILE) if (path / name).exists()]
    if taken:
        raise argparse.ArgumentTypeError(f"{text} already holds a session ({', '.join(taken)}): choose a new folder")
    parent = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot make {text}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot make {text}: no permission to write in {parent}")
    return text


@_path_check
def saved_session(text: str) -> str:
    """A saved session: its folder (holding ``turns.jsonl``) or a turns file; an audio file is refused with what to do."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such folder or file: {text}")
    if path.is_dir():
        if not (path / TURNS_FILE).is_file():
            raise argparse.ArgumentTypeError(f"{text} is not a session folder: it has no {TURNS_FILE}")
        return text
    if path.suffix != ".jsonl" and _is_audio(path):
        raise argparse.ArgumentTypeError(f"{text} is an audio file, not a saved session: "
                                         f"'live-stt transcribe {text} --save DIR' makes one (then use DIR)")
    return text


def _is_audio(path: Path) -> bool:
    try:
        WavSource(path, realtime=False)
    except AudioFileError:
        return False
    return True


@_path_check
def existing_file(text: str) -> str:
    """A file that exists (not a folder)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    return text


def text_file(text: str) -> str:
    """``--prompt-file``: the text of a readable UTF-8 file (the file is read here)."""
    try:
        return Path(text).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{text} is not UTF-8 text") from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror or exc}") from None


ENVIRONMENT_HELP = f"""environment variables:
  {ASSEMBLYAI_KEY_ENV:<22} AssemblyAI API key: streaming in the cloud and the LLM Gateway (else: the embedded servers)
  {OPENAI_KEY_ENV:<22} key for an OpenAI-compatible endpoint (--backend openai)
  OPENAI_BASE_URL        with --backend openai and no --base-url: that endpoint, e.g. http://localhost:11434/v1
  {SHARED_URL_ENV:<22} a shared v3 server (a class's live-stt serve) that sessions with no --url use instead of their own
  {SHARED_TOKEN_ENV:<22} that server's token
  {TOKEN_ENV:<22} live-stt serve: the token clients must send (default: a new one each start, in the cache folder)
  {LLM_TOKEN_ENV:<22} live-stt serve-llm: the same, for the LLM server
  LIVE_STT_CACHE         where models, tokens, certificates and logs are kept (default: $XDG_CACHE_HOME/live_stt_kernel,
                         ~/.cache/live_stt_kernel without XDG_CACHE_HOME)
Keys are never printed; a session without a key or a URL never uses a cloud service."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``live-stt transcribe: error: argument --timeout: ... (see live-stt transcribe --help)``."""

    def error(self, message: str) -> NoReturn:
        """Print the error on one line and exit with 2 (usage)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``live-stt`` argument parser; each subcommand sets ``run`` to its ``cmd_*`` function."""
    parser = Parser(prog="live-stt", description="Live speech-to-text over AssemblyAI's v3 streaming protocol.",
                    epilog=ENVIRONMENT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"live-stt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--format", choices=["text", "jsonl"], default="text",
                       help="text: one line per turn; jsonl: one JSON object per final turn")
        p.add_argument("--fast", action="store_true", help="send as fast as the server accepts (local servers only)")
        p.add_argument("--speech-model", default=DEFAULT_SPEECH_MODEL)
        p.add_argument("--no-format-turns", action="store_true", help="ask for unformatted finals only")
        p.add_argument("--keyterm", action="append", default=[], type=keyterm, help="a term to boost (repeatable)")
        p.add_argument("-q", "--quiet", action="store_true", help="only the turns on stdout")
        p.add_argument("--reconnect", type=whole_number(0, 100), default=5, metavar="N",
                       help="new connections to try after a drop (resending from the last finished turn); 0: none")

    def backend_options(p: argparse.ArgumentParser, *, what: str) -> None:
        p.add_argument("--backend", choices=["apertium", "gateway", "openai", "lemur", "local"], default=None,
                       help=f"who {what}: default: the LLM Gateway with an API key, an OpenAI-compatible server with "
                            "--base-url alone, else the embedded local backends")
        p.add_argument("--base-url", type=http_url, help="an OpenAI-compatible endpoint (or the LLM Gateway), e.g. http://localhost:11434/v1")
        p.add_argument("--model", help="the model name at that backend")

    def translation_options(p: argparse.ArgumentParser, *, required: bool = False) -> None:
        p.add_argument("--to", action="append", default=[], required=required, metavar="LANG", type=target_language,
                       help="translate each finished turn into LANG (es, fr, Spanish...; repeatable)")
        p.add_argument("--prompt", help="translation prompt for LLM backends; {language} is replaced by the target")
        backend_options(p, what="translates")

    t = sub.add_parser("transcribe", help="stream an audio file through a v3 server and print the turns")
    t.add_argument("file", help="WAV, FLAC, OGG, MP3...: any rate and channel count")
    t.add_argument("--url", type=ws_url, help="ws:// or wss:// v3 endpoint (default: AssemblyAI's cloud)")
    t.add_argument("--api-key", default=None, help="default: $ASSEMBLYAI_API_KEY")
    t.add_argument("--save", nargs="?", const="", default=None, metavar="DIR", type=save_folder,
                   help="write the session folder (turns.jsonl, audio.wav, meta.json) to DIR, or under ./sessions/")
    t.add_argument("--timeout", type=seconds, default=10.0, help="seconds to wait for the connection and Begin")
    common(t)
    translation_options(t)
    t.set_defaults(run=cmd_transcribe)

    d = sub.add_parser("demo", help="the main job: the bundled speech sample live, each turn translated (Spanish unless "
                                    "--to), then a coaching report; all saved in a session folder")
    d.add_argument("--url", type=ws_url, help="ws:// or wss:// v3 endpoint (default: the embedded local server, or the cloud with a key)")
    d.add_argument("--api-key", default=None, help="default: $ASSEMBLYAI_API_KEY; none means the embedded local server")
    d.add_argument("--save", default=None, metavar="DIR", type=save_folder, help="session folder (default: a new one under ./sessions/)")
    d.add_argument("--no-coach", action="store_true", help="skip the coaching report at the end")
    common(d)
    translation_options(d)
    d.set_defaults(run=cmd_demo)

    tr = sub.add_parser("translate", help="translate the turns of a saved session (folder or turns.jsonl)")
    tr.add_argument("session", type=saved_session, help="a session folder or its turns.jsonl")
    tr.add_argument("--api-key", default=None, help="default: $ASSEMBLYAI_API_KEY (LLM Gateway)")
    tr.add_argument("--workers", type=whole_number(1, 64), default=4, help="translations at once")
    tr.add_argument("--format", choices=["text", "jsonl"], default="text")
    tr.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes on stderr")
    translation_options(tr, required=True)
    tr.set_defaults(run=cmd_translate)

    co = sub.add_parser("coach", help="a coaching report on a saved session: speaking metrics and an LLM's analysis")
    co.add_argument("session", type=saved_session, help="a session folder or its turns.jsonl")
    co.add_argument("--api-key", default=None, help="default: $ASSEMBLYAI_API_KEY (LLM Gateway)")
    co.add_argument("--prompt", dest="coach_prompt", help="the coaching instructions given to the model")
    co.add_argument("--prompt-file", type=text_file, metavar="FILE", help="read the coaching instructions from a file")
    co.add_argument("--no-llm", action="store_true", help="the computed metrics only")
    co.add_argument("-q", "--quiet", action="store_true", help="no notes on stderr")
    backend_options(co, what="writes the analysis")
    co.set_defaults(run=cmd_coach)

    v = sub.add_parser("serve", help="run the embedded v3 server (offline speech model) on this machine")
    v.add_argument("--host", default="127.0.0.1", type=host_name, help="address to bind (default loopback only)")
    v.add_argument("--port", type=whole_number(0, 65535), default=8765, help="0 picks a free port")
    v.add_argument("--model", default="tiny.en", help="tiny.en (default), base, a CTranslate2 folder, or a hub name")
    v.add_argument("--workers", type=whole_number(1, 64), default=2, help="decodes that may run at once")
    v.add_argument("--cpu-threads", type=whole_number(1, 256), default=1, help="threads per decode")
    v.add_argument("--alone-threads", type=whole_number(1, 256), default=None,
                   help="threads for a decode that runs alone (default: every core, at most 4; 1 saves ~130 MB)")
    v.add_argument("--max-sessions", type=whole_number(1, 1000), default=MAX_SESSIONS,
                   help=f"sessions at once; the next is refused with 3009 (default {MAX_SESSIONS})")
    v.add_argument("--idle-timeout", type=whole_number(5, 3600), default=int(IDLE_TIMEOUT_S),
                   help=f"close a session with no audio or message for this many seconds (default {IDLE_TIMEOUT_S:g})")
    v.add_argument("--tls", action="store_true", help="serve wss:// (and https:// tokens) with a self-signed certificate "
                                                      "made once into the cache folder; its path is printed on start")
    v.add_argument("--cert", type=existing_file, metavar="PEM", help="serve TLS with this certificate chain (with --key)")
    v.add_argument("--key", type=existing_file, metavar="PEM", help="the private key of --cert")
    v.add_argument("--tokens", type=existing_file, metavar="FILE",
                   help="per-user tokens: one 'name token' line per user (mode 600; re-read when it changes); each "
                        "session's log line names its user. The server's own token keeps working")
    v.add_argument("--watch-stdin", action="store_true", help=argparse.SUPPRESS)
    v.set_defaults(run=cmd_serve)

    sl = sub.add_parser("serve-llm", help="run the local LLM (OpenAI-compatible chat completions) on this machine")
    sl.add_argument("--host", default="127.0.0.1", type=host_name, help="address to bind (default loopback only)")
    sl.add_argument("--port", type=whole_number(0, 65535), default=8081, help="0 picks a free port")
    sl.add_argument("--model", default=None, type=existing_file, metavar="GGUF",
                    help="a GGUF file (default: the packaged Qwen2.5-Coder 1.5B Instruct)")
    sl.add_argument("--threads", type=whole_number(1, 256), default=None, help="CPU threads (default: all cores but one)")
    sl.set_defaults(run=cmd_serve_llm)
    b = sub.add_parser("batch", help="transcribe a folder of recordings on Dask workers: a session folder each, a Parquet "
                                     "dataset of all turns, a metrics table; a re-run skips what is done")
    b.add_argument("inputs", nargs="+", metavar="DIR_OR_GLOB", help="a folder (searched for audio files), a pattern such as "
                                                                    "'talks/**/*.flac' (quoted), or files")
    b.add_argument("--out", required=True, type=save_folder, metavar="DIR", help="where the outputs go (see docs/scaling.md)")
    where = b.add_mutually_exclusive_group()
    where.add_argument("--workers", type=whole_number(0, 1024), default=None,
                       help="worker processes of a local Dask cluster (default: one per two cores, as memory allows; "
                            "0: in this process, no Dask)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    b.add_argument("--cpu-threads", type=whole_number(1, 256), default=1,
                   help="threads per decode (each worker runs two decodes at once)")
    b.add_argument("--model", default="tiny.en", help="the offline speech model (tiny.en, base, a CTranslate2 folder)")
    b.add_argument("--keyterm", action="append", default=[], type=keyterm, help="a term to boost (repeatable)")
    b.add_argument("--to", action="append", default=[], metavar="LANG", type=target_language,
                   help="translate each turn into LANG (repeatable)")
    b.add_argument("--translator", choices=["apertium", "gateway", "openai", "lemur", "local"], default=None,
                   help="who translates (default: the LLM Gateway with an API key, else Apertium)")
    b.add_argument("--coach", action="store_true", help="also write each recording's coaching report (an LLM call each)")
    b.add_argument("--url", type=ws_url, help="stream each recording to this v3 server instead of decoding it here")
    b.add_argument("--api-key", default=None, help="stream to AssemblyAI's cloud at real time (default: $ASSEMBLYAI_API_KEY)")
    b.add_argument("--concurrency", type=whole_number(1, 1000), default=None,
                   help="streams at once to a server or the cloud (default: 10 for the cloud, 4 for a server)")
    b.add_argument("--force", action="store_true", help="transcribe again what is done")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.set_defaults(run=cmd_batch)

    for command in sub.choices.values():  # every subcommand's --help names the environment variables too
        command.epilog, command.formatter_class = ENVIRONMENT_HELP, argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``live-stt`` (``argv`` None: the command line); returns the command's exit code: 2 on a bad
    argument or an error, 3 on a refusal, 130 on Ctrl-C. Errors and warnings are one line on stderr."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0), or a bad argument (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.run(args))
        except ServerRefused as exc:
            print(f"live-stt: refused: {_one_line(exc)}", file=sys.stderr)
            return 3
        except (LiveSTTError, OSError) as exc:  # ours, or the system's (a file, a socket): no traceback
            print(f"live-stt: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    print(f"live-stt: warning: {_one_line(message)}", file=sys.stderr if file is None else file)


if __name__ == "__main__":
    sys.exit(main())
