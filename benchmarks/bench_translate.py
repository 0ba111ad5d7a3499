#!/usr/bin/env python
"""Live translation and coaching measured for real: Apertium and the embedded local LLM (Qwen2.5-Coder-1.5B).

In this order, in one process (the package's own servers are its children: ``live-stt serve`` for speech and
``python -m live_stt_kernel.local.llm_server`` for the LLM, both started through ``local.launcher`` as a
notebook would start them):

1. Apertium alone: ms per sentence through the package's persistent pipe (``ApertiumTranslator``) against a
   fresh ``apertium -u eng-spa`` process per sentence, the same sentences in the same run.
2. Live translation while streaming: a conversation of real speech (the five LibriVox utterances of Debian's
   pocketsphinx-testdata, as in bench_engine.py, interleaved with ``--espeak`` espeak-ng sentences so that no
   text repeats and nothing comes from the translation cache; ``--gap`` s of silence around each) is
   streamed in real time (``WavSource(realtime=True)``) by a default ``Session`` (the embedded speech server)
   with ``translate_to="es"``, once with ``translator="apertium"`` and once with ``translator="local"``.
   Stamps (``time.monotonic()``): the receiver's ``received_at`` of each final ``Turn`` (``on_event``), the
   worker's ``on_turn`` call for each final record (unformatted first, then formatted: the formatted one is
   the "settled" final the translator waits for), and the ``on_translation`` call (a pool thread, right after
   the translation is visible in ``session.translation`` / ``session.df``). Latency = translation visible -
   the turn's first final / its settled (formatted) final, both as seen by ``on_turn``. Also counted:
   translations per turn (must be exactly 1), and the ASR's own latency (end of the utterance's audio ->
   final received) in each run, to see whether the LLM slows the speech server down.
3. Local LLM speed: prefill and decode tokens/s from ``usage`` and wall time of direct requests to the
   embedded LLM server (``/v1/chat/completions``, Bearer token from ``embedded_llm_endpoint()``): a long
   prompt with one output token (prefill) and a short prompt with a long output (decode). llama-cpp-python
   reuses the KV cache of the longest common prefix with the previous request, so every timed request
   follows a small "flush" request with another system prompt.
4. Coaching a 5-minute meeting transcript (written below: 30 turns, two speakers, ~750 words at ~150 wpm with
   word timings): ``coach(records, use_llm=False)`` and ``coach(records, backend="local")`` (``--coach-runs``
   times, a flush before each), plus the same coaching request sent directly to read its ``usage`` (the
   server samples with a fixed seed, so it is the same answer: checked).

5. Live turns while a re-translate backlog runs (``--sections backlog``): turns settled, then the local model asked
   to re-translate them all (``LiveTranslation.retranslate``) while new turns settle every 1.5 translation times;
   "turn settled -> translation available" (``on_translation``) with the priority queue and with ``fifo=True``
   (the old first-come order), same texts, same run.

Usage::

    .venv/bin/python benchmarks/bench_translate.py            # full run, 5 to 5.5 min on 2 cores
    .venv/bin/python benchmarks/bench_translate.py --quick    # a smoke test of every part, about 2 min
    .venv/bin/python benchmarks/bench_translate.py --sections backlog   # 5. alone, 2 to 4 min

Writes benchmarks/out/translate-results.json and a timestamped copy; prints Markdown tables. See
benchmarks/README.md ("Translation and coaching") for what the numbers mean.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
RATE = 16_000

sys.path.insert(0, str(ROOT / "tests"))  # tests/speech.py: librivox()
os.environ.pop("ASSEMBLYAI_API_KEY", None)  # the embedded defaults, never the cloud

# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float | None:
    """Percentile by linear interpolation (numpy's default); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def dist_ms(seconds: Sequence[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95), "min_ms": min(ms, default=None),
            "max_ms": max(ms, default=None)}


def fmt(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def trio(d: dict[str, Any], digits: int = 0) -> str:
    return f"{fmt(d['p50_ms'], digits)} / {fmt(d['p95_ms'], digits)} / {fmt(d['max_ms'], digits)}"


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break

    def version(dist: str) -> str | None:
        try:
            from importlib.metadata import version as v

            return v(dist)
        except Exception:
            return None

    apertium = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "apertium-eng-spa"], capture_output=True, text=True, check=False).stdout
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "kernel": platform.release(),
            "package_commit": git("rev-parse", "--short", "HEAD"), "package_dirty": bool(git("status", "--porcelain", "--", "live_stt_kernel")),
            "llama_cpp_python": version("llama-cpp-python"), "faster_whisper": version("faster-whisper"),
            "apertium_eng_spa": apertium or None, "loadavg_before": os.getloadavg()}


# ------------------------------------------------------------------------------------------------
# Test material
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Utterance:
    label: str  # "librivox 0".."librivox 4" or "espeak 0".."
    text: str
    start_ms: float  # where its audio begins in the session
    end_ms: float  # where its audio ends (the digital silence starts)


# Sentences for espeak-ng, so that no text repeats (a repeated turn would come from the translation cache)
ESPEAK = [
    "Before we start, do you want me to share the numbers from last month?",
    "Only around half of the new customers finished the setup within the first week.",
    "Maybe we could split the permissions screen into two smaller steps.",
    "She said she could have a first draft by Thursday if we send her the list today.",
    "The setup guide is eleven pages long, and I think nobody reads past page two.",
    "Let's ask the support team which sections they link to most often.",
    "If the new copy gets us to sixty percent, I would call that a clear win.",
    "Thanks everyone, I will share the page view numbers in the channel tomorrow morning.",
]


def espeak_pcm(text: str, tmp: Path) -> Any:
    """espeak-ng (en-us, 150 wpm) converted by sox to 16 kHz mono int16, no padding."""
    import soundfile as sf

    raw, out = tmp / "espeak.raw.wav", tmp / "espeak.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True, timeout=60)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True, timeout=60)
    audio, rate = sf.read(out, dtype="int16")
    assert rate == RATE
    return audio


def conversation_wav(path: Path, espeak: int, gap_s: float) -> list[Utterance]:
    """The five LibriVox utterances interleaved with ``espeak`` espeak-ng sentences (all different texts),
    with ``gap_s`` of digital silence before, between and after them."""
    import numpy as np
    import soundfile as sf
    from speech import librivox

    items = [(f"librivox {i}", audio, text) for i, (audio, text) in enumerate(librivox())]
    spoken = [(f"espeak {i}", espeak_pcm(text, path.parent), text) for i, text in enumerate(ESPEAK[:espeak])]
    order = []
    while items or spoken:
        order += [x.pop(0) for x in (items, spoken) if x]
    silence = np.zeros(int(gap_s * RATE), dtype=np.int16)
    parts, utterances, at = [silence], [], gap_s * 1000
    for label, audio, text in order:
        length = len(audio) / RATE * 1000
        utterances.append(Utterance(label, text, at, at + length))
        parts += [audio, silence]
        at += length + gap_s * 1000
    sf.write(path, np.concatenate(parts), RATE, subtype="PCM_16")
    return utterances


# A 30-turn project meeting, two speakers, written for this benchmark: fillers, hedges, questions, restarts.
MEETING: list[tuple[str, str]] = [
    ("A", ("Okay, so, um, thanks everyone for joining. I think we have about thirty minutes, and the main thing "
          "today is the onboarding redesign. Can everyone hear me all right?")),
    ("B", ("Yes, we can hear you fine. Before we start, do you want me to share the numbers from last month, or "
          "should we, like, go through the plan first?")),
    ("A", ("Let's do the numbers first, I guess. It's probably easier to talk about the plan once we all "
          "know where we actually are right now.")),
    ("B", ("Sure. So in October we had about four thousand new sign-ups, and, uh, only around half of them "
          "finished the setup within the first week. That's kind of the core problem.")),
    ("A", ("Half is, um, lower than I expected, to be honest. Do we know where people drop off? Is it the "
          "account step or the the integration step?")),
    ("B", ("Mostly the integration step. People connect their calendar, and then they sort of get stuck on "
          "the permissions screen. We see a lot of them just close the tab there.")),
    ("A", ("Right, that matches what support told me. I think the permissions screen asks for way too much at "
          "once. Maybe we could split it into two smaller steps?")),
    ("B", ("We could. The tricky part is that the calendar provider basically needs all the scopes in a single "
          "request, so splitting it means, you know, asking twice.")),
    ("A", ("Okay. So what if we explain the scopes better instead? Like a short sentence next to each one "
          "saying why we need it and what we never do with it.")),
    ("B", ("Yeah, that could work. I'd want to test it, though. Maybe an A B test for two weeks, with half of "
          "the new accounts getting the new copy?")),
    ("A", ("Two weeks sounds reasonable. Um, who would write the copy? I don't think we should, uh, leave it "
          "to engineering alone, no offense.")),
    ("B", ("None taken. Priya from content offered to help. She said she could have a first draft by "
          "Thursday if we send her the list of scopes today.")),
    ("A", ("Great, let's do that. I can send her the list after this call. What about the video idea from the "
          "last meeting? Is that still, um, on the table?")),
    ("B", "It is, but honestly I'm not sure it's worth it right now. A video takes maybe three weeks to make."),
    ("A", ("That's fair. So we park the video for now and we revisit it in December, depending on the test "
          "results. Does that sound okay to everyone?")),
    ("B", ("Sounds good to me. One more thing, though. The setup guide is, like, eleven pages long. I really "
          "think nobody reads past page two.")),
    ("A", "Eleven pages? Wow. Okay, so, um, what would a short version look like?"),
    ("B", ("Probably, yes. The first page would cover the three most common tasks, and everything else would "
          "move into the help center.")),
    ("A", ("I like that. I guess the risk is that some customers actually rely on the long guide. Do we have "
          "any data on who opens it?")),
    ("B", ("We have page views. About eighty percent of views stop on the first two pages, which kind of "
          "supports the idea.")),
    ("A", ("Please do. And, um, let's also ask the support team which sections they link to most often, "
          "because those should, you know, stay easy to find.")),
    ("B", ("Okay, I'll ask Marco. He keeps a list of the top twenty support macros, and most of them link to "
          "the guide somewhere.")),
    ("A", ("Perfect. So, just to sum up so far: new permission copy with an A B test, a one-page guide, and the "
          "video is parked until December. Did I miss anything?")),
    ("B", ("I think that's it for onboarding. Oh, and the timeline. If Priya has the draft on Thursday, we "
          "could probably ship the test the week after next.")),
    ("A", ("The week after next works. Um, I'd maybe add a few days of buffer for review, because legal "
          "usually wants to look at anything that mentions data access.")),
    ("B", "Good point, I forgot about legal. Let's say three weeks from today, then, to be safe."),
    ("A", ("Thank you. Last question from my side: how do we decide that the test worked? What number are we "
          "actually looking at at the end?")),
    ("B", ("The share of new accounts that finish setup within seven days. Right now it's about fifty percent. "
          "If the new copy gets us to sixty, I'd call that a clear win.")),
    ("A", "Sixty feels ambitious but, um, doable. Okay, I think we're done. Thanks, everyone."),
    ("B", "Thanks, talk soon. And, uh, I'll share the page view numbers in the channel tomorrow morning."),
]
# Pace per turn (wpm) and pauses inside some turns (word index -> seconds): realistic variation.
MEETING_WPM = [150, 138, 146, 158, 162, 144, 150, 171, 147, 139, 155, 160, 149, 166, 142, 175, 151, 143, 157, 148,
               136, 163, 154, 145, 159, 141, 168, 152, 147, 156]
MEETING_PAUSES = {0: {6: 1.4}, 4: {14: 1.1}, 8: {5: 0.9}, 13: {9: 1.6}, 16: {9: 1.2}, 20: {4: 1.0}, 24: {9: 1.3}}


def meeting_records(turns: int | None = None) -> list[Any]:
    """The meeting as finished `TurnRecord`s with word timings (the helper of tests/test_coaching.py,
    with a pace and pauses per turn and 0.6-1.2 s between turns)."""
    from live_stt_kernel.events import Word
    from live_stt_kernel.transcript import TurnRecord

    records, start = [], 0.0
    for i, (speaker, text) in enumerate(MEETING[:turns]):
        per_ms, pauses = 60000 / MEETING_WPM[i], MEETING_PAUSES.get(i, {})
        t, timed = start * 1000, []
        for k, w in enumerate(text.split()):
            t += pauses.get(k, 0.0) * 1000
            timed.append(Word(text=w, start_ms=round(t), end_ms=round(t + per_ms)))
            t += per_ms
        end = round(timed[-1].end_ms / 1000, 3)
        records.append(TurnRecord(session_id="meeting", turn_order=i, turn_index=i, text=text, words=tuple(timed),
                                  start=start, end=end, confidence=0.9, speaker=speaker, language="en", formatted=True,
                                  end_of_turn_latency=None))
        start = end + 0.6 + 0.6 * ((i * 7) % 5) / 4  # 0.6 to 1.2 s
    return records


# ------------------------------------------------------------------------------------------------
# 1. Apertium alone: persistent pipe vs a process per sentence
# ------------------------------------------------------------------------------------------------


def sentences_for_apertium(n: int) -> list[str]:
    import re

    from speech import librivox

    out = [text.capitalize() + "." for _, text in librivox()]
    for _, text in MEETING:
        out += [s.strip() for s in re.split(r"(?<=[.?!])\s+", text) if s.strip()]
    return out[:n]


def bench_apertium(n: int, rounds: int) -> dict[str, Any]:
    from live_stt_kernel.language.apertium import ApertiumTranslator

    sentences = sentences_for_apertium(n)
    translator = ApertiumTranslator()
    started = time.perf_counter()
    first = translator.translate("Hello.", target="es")  # starts the pipeline
    start_s = time.perf_counter() - started
    pipe: list[float] = []
    fresh: list[float] = []
    pipe_text: dict[str, str] = {}
    fresh_text: dict[str, str] = {}
    for _ in range(rounds):  # interleaved, so a slow moment of the VM hits both
        for s in sentences:
            t = time.perf_counter()
            pipe_text[s] = translator.translate(s, target="es")
            pipe.append(time.perf_counter() - t)
            t = time.perf_counter()
            fresh_text[s] = subprocess.run(["apertium", "-u", "eng-spa"], input=s, capture_output=True, text=True,
                                           check=True, timeout=30).stdout.strip()
            fresh.append(time.perf_counter() - t)
    translator.close()
    same = sum(" ".join(pipe_text[s].split()) == " ".join(fresh_text[s].split()) for s in sentences)
    p, f = dist_ms(pipe), dist_ms(fresh)
    return {"sentences": len(sentences), "rounds": rounds, "words_mean": statistics.mean(len(s.split()) for s in sentences),
            "pipeline_start_ms": start_s * 1000, "first": first, "pipe": p, "fresh_process": f,
            "mean_pipe_ms": statistics.mean(pipe) * 1000, "mean_fresh_ms": statistics.mean(fresh) * 1000,
            "ratio_p50": f["p50_ms"] / p["p50_ms"], "ratio_mean": statistics.mean(fresh) / statistics.mean(pipe),
            "identical_outputs": same, "example": {"en": sentences[-1], "pipe": pipe_text[sentences[-1]], "fresh": fresh_text[sentences[-1]]}}


# ------------------------------------------------------------------------------------------------
# 2. Live translation while streaming
# ------------------------------------------------------------------------------------------------


def server_cpu_s() -> dict[str, float]:
    """CPU seconds so far of this process's embedded servers (speech, LLM), from /proc (10 ms resolution)."""
    from live_stt_kernel.local import launcher

    out = {}
    for what, server in list(launcher._servers.items()):
        try:
            fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[what] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def timed_wav(path: Path) -> Any:
    """A `WavSource(realtime=True)` that remembers when its pacing clock started."""
    from live_stt_kernel.audio.sources import WavSource

    class TimedWav(WavSource):
        started: float | None = None

        def __iter__(self) -> Iterator[bytes]:
            self.started = time.monotonic()  # WavSource.__iter__ takes its own clock within microseconds
            yield from super().__iter__()

    return TimedWav(path, realtime=True)


def live_run(backend: str, wav: Path, utterances: list[Utterance], *, timeout: float) -> dict[str, Any]:
    from live_stt_kernel import Session
    from live_stt_kernel.events import Turn
    from live_stt_kernel.local.launcher import embedded_endpoint

    t = time.monotonic()
    embedded_endpoint()  # the speech server: started once per process, reused by every session
    speech_start_s = time.monotonic() - t
    source = timed_wav(wav)
    session = Session(source, folder=None, translate_to="es", translator=backend, terminate_timeout=60)
    live = session.translation
    assert live is not None
    # warm-up outside the measurement: Apertium starts its pipeline, the local LLM its server (first use)
    t = time.monotonic()
    warm = live.translator.translate("Good morning, everyone.", target="es")
    warm_s = time.monotonic() - t

    lock = threading.Lock()
    finals: list[dict[str, Any]] = []  # every final Turn event, as the receiver stamped it
    on_turn: list[dict[str, Any]] = []  # every on_turn call
    done: list[tuple[float, Any, str]] = []  # (monotonic, Translation, thread name)

    def event_listener(e: Any) -> None:
        if isinstance(e, Turn) and e.end_of_turn:
            with lock:
                finals.append({"turn_order": e.turn_order, "formatted": e.formatted, "received_at": e.received_at,
                               "latency_s": e.latency_s})

    def turn_listener(r: Any) -> None:
        now = time.monotonic()
        with lock:
            on_turn.append({"key": r.key, "formatted": r.formatted, "at": now, "text": r.text,
                            "words_ms": (r.words[0].start_ms, r.words[-1].end_ms) if r.words else None})

    def translation_listener(tr: Any) -> None:
        now = time.monotonic()
        with lock:
            done.append((now, tr, threading.current_thread().name))

    session.on_event(event_listener)
    session.on_turn(turn_listener)
    live.on_translation(translation_listener)
    cpu0, servers0 = os.times(), server_cpu_s()
    started = time.monotonic()
    session.start()
    session.wait(timeout=timeout)
    wall = time.monotonic() - started
    servers1 = server_cpu_s()
    server_cores = {k: (servers1[k] - servers0.get(k, 0.0)) / wall for k in servers1}
    audio_end = (source.started or started) + utterances[-1].end_ms / 1000
    drain_s = max((d[0] for d in done), default=audio_end) - audio_end  # last translation after the audio ended

    # per turn: first final / settled (formatted) final as on_turn saw them, and the received_at stamps
    first_seen: dict[Any, float] = {}
    settled_seen: dict[Any, float] = {}
    settled_text: dict[Any, str] = {}
    span: dict[Any, tuple[int, int]] = {}
    for x in on_turn:
        first_seen.setdefault(x["key"], x["at"])
        if x["formatted"]:
            settled_seen.setdefault(x["key"], x["at"])
            settled_text.setdefault(x["key"], x["text"])
        if x["words_ms"]:
            span[x["key"]] = x["words_ms"]
    received_first: dict[int, float] = {}
    received_formatted: dict[int, float] = {}
    for f in finals:
        received_first.setdefault(f["turn_order"], f["received_at"])
        if f["formatted"]:
            received_formatted.setdefault(f["turn_order"], f["received_at"])
    per_key: dict[Any, list[Any]] = {}
    for at, tr, _ in done:
        per_key.setdefault(tr.key, []).append((at, tr))

    from_first, from_settled, from_received, model_s, after_audio_end, asr_latency = [], [], [], [], [], []
    rows = []
    # the utterance a turn belongs to: the one its words' midpoint falls in (digital silence between them)
    def utterance_of(key: Any) -> Utterance | None:
        if key not in span:
            return None
        mid = sum(span[key]) / 2
        return next((u for u in utterances if u.start_ms - 300 <= mid <= u.end_ms + 300), None)

    closing: dict[int, Any] = {}  # utterance position -> its last turn
    for key in sorted(first_seen, key=lambda k: k[1]):
        u = utterance_of(key)
        if u is not None:
            closing[utterances.index(u)] = key
    for key in sorted(first_seen, key=lambda k: k[1]):
        items = per_key.get(key, [])
        row: dict[str, Any] = {"turn_order": key[1], "translations": len(items), "text": settled_text.get(key)}
        if items:
            at, tr = items[0]
            row.update(error=tr.error, translation=tr.text, model_s=tr.seconds, source_is_formatted=tr.source == settled_text.get(key),
                       from_first_s=at - first_seen[key], from_settled_s=at - settled_seen[key] if key in settled_seen else None,
                       from_received_s=at - received_first.get(key[1], at))
            from_first.append(row["from_first_s"])
            if row["from_settled_s"] is not None:
                from_settled.append(row["from_settled_s"])
            from_received.append(row["from_received_s"])
            model_s.append(tr.seconds)
        u = utterance_of(key)
        if u is not None and closing.get(utterances.index(u)) == key and source.started is not None:
            end_at = source.started + u.end_ms / 1000  # when the last sample of the utterance was released
            row["audio_end_to_final_s"] = received_first.get(key[1], end_at) - end_at
            asr_latency.append(row["audio_end_to_final_s"])
            if items:
                row["audio_end_to_translation_s"] = items[0][0] - end_at
                after_audio_end.append(row["audio_end_to_translation_s"])
        rows.append(row)
    # a translation that started before the previous one finished waited for the model (2 pool threads, one model)
    spans = sorted((at - tr.seconds, at) for at, tr, _ in done)
    overlapped = sum(1 for (s0, _), (_, e1) in zip(spans[1:], spans[:-1]) if s0 < e1)
    turns_with_formatted = sum(1 for k in first_seen if k in settled_seen)
    counts = [r["translations"] for r in rows]
    cpu1 = os.times()
    return {
        "backend": backend, "translator": repr(live.translator), "speech_server_start_s": speech_start_s,
        "warmup_s": warm_s, "warmup_text": warm, "wall_s": wall, "audio_s": utterances[-1].end_ms / 1000,
        "turns": len(rows), "finals": len(finals), "turns_with_formatted_final": turns_with_formatted,
        "utterances": len(utterances),
        "translations": len(done), "translations_per_turn": {str(c): counts.count(c) for c in sorted(set(counts))},
        "errors": [r["error"] for r in rows if r.get("error")],
        "source_is_formatted_text": sum(1 for r in rows if r.get("source_is_formatted")),
        "pool_threads": sorted({name for _, _, name in done}),
        "latency_from_first_final": dist_ms(from_first), "latency_from_settled_final": dist_ms(from_settled),
        "latency_from_received": dist_ms(from_received), "model_seconds": dist_ms(model_s),
        "audio_end_to_translation": dist_ms(after_audio_end), "asr_audio_end_to_final": dist_ms(asr_latency),
        "max_on_turn_after_received_ms": max(((first_seen[k] - received_first[k[1]]) * 1000 for k in first_seen
                                              if k[1] in received_first), default=None),
        "last_translation_after_audio_end_s": drain_s,
        "client_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        "server_cores_busy": server_cores, "translations_started_while_another_ran": overlapped,
        "turn_gaps_s": [b - a for a, b in zip(sorted(first_seen.values()), sorted(first_seen.values())[1:])],
        "rows": rows,
    }


# ------------------------------------------------------------------------------------------------
# 3./4. The local LLM: tokens per second and coaching
# ------------------------------------------------------------------------------------------------


class LLMClient:
    """Direct requests to the embedded LLM server, timed, with the ``usage`` it reports."""

    FLUSH: ClassVar[list[dict[str, str]]] = [{"role": "system", "content": "Answer with one word."}, {"role": "user", "content": "Ready?"}]

    def __init__(self) -> None:
        import requests

        from live_stt_kernel.local.launcher import embedded_llm_endpoint

        t = time.monotonic()
        self.url, token = embedded_llm_endpoint()
        self.start_s = time.monotonic() - t  # ~0 when a live run already started it
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def ask(self, messages: list[dict[str, str]], max_tokens: int, temperature: float = 0.2) -> dict[str, Any]:
        t = time.monotonic()
        r = self.http.post(self.url.rstrip("/") + "/chat/completions", timeout=900,
                           json={"messages": messages, "max_tokens": max_tokens, "temperature": temperature})
        wall = time.monotonic() - t
        r.raise_for_status()
        data = r.json()
        return {"wall_s": wall, "prompt_tokens": data["usage"]["prompt_tokens"],
                "completion_tokens": data["usage"]["completion_tokens"], "finish_reason": data["choices"][0].get("finish_reason"),
                "text": data["choices"][0]["message"]["content"]}

    def flush(self) -> None:
        """Replace the server's cached prefix, so the next request's prompt is evaluated in full."""
        self.ask(self.FLUSH, 1)


STORY = [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "Write a long, detailed story about a lighthouse keeper and a storm."}]


def bench_tokens(llm: LLMClient, coaching: list[dict[str, str]], story_tokens: int, rounds: int) -> dict[str, Any]:
    """Prefill: the coaching prompt with max_tokens=1 (cold, after a flush; then again with the prefix cached).
    Decode: a 30-token prompt and a long answer; its small prefill is taken out with the measured prefill rate."""
    prefill, cached, decode = [], [], []
    for _ in range(rounds):
        llm.flush()
        p = llm.ask(coaching, 1)
        p["tokens_per_s"] = p["prompt_tokens"] / p["wall_s"]
        prefill.append(p)
        cached.append(llm.ask(coaching, 1))
    rate = statistics.median(p["tokens_per_s"] for p in prefill)
    for _ in range(rounds):
        llm.flush()
        d = llm.ask(STORY, story_tokens)
        d["prefill_s_estimate"] = d["prompt_tokens"] / rate
        d["tokens_per_s"] = (d["completion_tokens"] - 1) / (d["wall_s"] - d["prefill_s_estimate"])
        d["raw_tokens_per_s"] = d["completion_tokens"] / d["wall_s"]
        d.pop("text")
        decode.append(d)
    for p in prefill + cached:
        p.pop("text")
    return {"prefill": prefill, "prefill_cached": cached, "decode_short_prompt": decode, "prefill_tokens_per_s": rate,
            "decode_tokens_per_s": statistics.median(d["tokens_per_s"] for d in decode)}


def bench_coach(llm: LLMClient, records: list[Any], runs: int, max_tokens: int, prefill_rate: float | None) -> dict[str, Any]:
    from live_stt_kernel.coaching.report import coach, coaching_messages

    metrics_only = []
    for _ in range(5):
        t = time.perf_counter()
        report = coach(records, use_llm=False)
        metrics_only.append(time.perf_counter() - t)
    m = report.metrics
    messages = coaching_messages(m, records)
    with_llm: list[dict[str, Any]] = []
    for _ in range(runs):
        llm.flush()
        t = time.perf_counter()
        report = coach(records, backend="local", max_tokens=max_tokens)
        with_llm.append({"wall_s": time.perf_counter() - t, "elapsed_s": report.elapsed_s, "note": report.note,
                         "analysis_chars": len(report.analysis or ""), "analysis": report.analysis})
    llm.flush()
    direct = llm.ask(messages, max_tokens)
    if prefill_rate is None:  # measure it here (cold prefix) when the tokens section was skipped
        llm.flush()
        p = llm.ask(messages, 1)
        prefill_rate = p["prompt_tokens"] / p["wall_s"]
    prefill_s = direct["prompt_tokens"] / prefill_rate
    direct["prefill_s_estimate"] = prefill_s
    direct["decode_tokens_per_s"] = (direct["completion_tokens"] - 1) / (direct["wall_s"] - prefill_s)
    direct["same_as_coach"] = any((r["analysis"] or "").strip() == direct["text"].strip() for r in with_llm)
    sample = report.to_markdown() if report.analysis else None
    return {"turns": len(records), "words": m.words, "speaking_s": m.speaking_seconds, "wpm": m.wpm,
            "fillers": len(m.fillers), "hedges": len(m.hedges), "questions": len(m.questions),
            "metrics_only_s": metrics_only, "with_llm": with_llm, "direct": direct, "max_tokens": max_tokens,
            "prompt_chars": sum(len(x["content"]) for x in messages), "sample": sample}


# ------------------------------------------------------------------------------------------------
# Orchestration and tables
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# 5. Live turns while a re-translate backlog runs: priority queue vs the old FIFO order
# ------------------------------------------------------------------------------------------------

BACKLOG_LIVE = [
    "Please open your books at page twelve.",
    "Who can tell me what the word harbour means?",
    "Good, now read the first paragraph to yourself.",
    "We will talk about it together in five minutes.",
    "Write down three words you do not know yet.",
    "Then compare your list with the person next to you.",
]


class _Instant:
    """A stand-in translator for the turns already settled before the backlog is asked for."""

    backend, model = "instant", "none"

    def translate(self, text: str, *, target: str, prompt: str | None = None) -> str:
        return text


def backlog_run(url: str, token: str, *, fifo: bool, backlog: list[str], live_texts: list[str], interval_s: float,
                timeout: float) -> dict[str, Any]:
    """``backlog`` turns settled (by a stand-in), then the local model asked to re-translate them all
    (`retranslate`), and ``live_texts`` turns settling every ``interval_s`` while it runs. Latency: the turn
    fed to `LiveTranslation` (settled at once: ``expect_formatted=False``) -> its `on_translation` call."""
    from helpers import conversation

    from live_stt_kernel.language.backends import LLMTranslator
    from live_stt_kernel.language.live import LiveTranslation
    from live_stt_kernel.language.llm import OpenAICompatible
    from live_stt_kernel.transcript import Transcript

    texts = backlog + live_texts
    live = LiveTranslation(_Instant(), to="fr", workers=2, expect_formatted=False, fifo=fifo)
    live.feed(Transcript.from_records(conversation(*backlog)))
    assert live.wait(60)
    live.configure(translator=LLMTranslator(OpenAICompatible(url, model="local", api_key=token, timeout=600)))
    done: dict[str, float] = {}
    lock = threading.Lock()

    def stamp(t: Any) -> None:
        if t.source in live_texts:
            with lock:
                done.setdefault(t.source, time.monotonic())

    live.on_translation(stamp)
    began = time.monotonic()
    queued = live.retranslate()
    asked: dict[str, float] = {}
    for i, text in enumerate(live_texts):
        wake = began + 0.5 + i * interval_s
        time.sleep(max(0.0, wake - time.monotonic()))
        asked[text] = time.monotonic()
        live.feed(Transcript.from_records(conversation(*texts[:len(backlog) + i + 1])))
    deadline = time.monotonic() + timeout
    while len(done) < len(live_texts) and time.monotonic() < deadline:
        time.sleep(0.05)
    all_live_s = time.monotonic() - began
    results = live.results
    backlog_done = sum(1 for t in results if t.source in backlog and t.model == "local")
    latencies = [done[t] - asked[t] for t in live_texts if t in done]
    model_s = [t.seconds for t in results if t.model == "local" and t.source in live_texts]
    backlog_s = [t.seconds for t in results if t.model == "local" and t.source in backlog]
    live.configure(to="de")  # the priority queue drops the French backlog here (the FIFO order drops nothing)
    closing = time.monotonic()
    finished = live.close(timeout=timeout)
    return {"mode": "fifo" if fifo else "priority", "backlog_queued": queued, "live_turns": len(live_texts),
            "live_translated": len(latencies), "interval_s": interval_s,
            "latency": dist_ms(latencies), "latencies_s": latencies, "model_seconds_live": dist_ms(model_s),
            "model_seconds_backlog": dist_ms(backlog_s), "backlog_done_when_live_done": backlog_done,
            "all_live_translated_after_s": all_live_s, "close_s": time.monotonic() - closing, "closed_clean": finished,
            "problems": [t.problem for t in results if t.problem], "errors": [t.error for t in results if t.error],
            "sample": next((f"{t.source} -> {t.text}" for t in results if t.source in live_texts and t.text), None)}


def bench_backlog(backlog_turns: int, live_turns: int, timeout: float) -> dict[str, Any]:
    """Both orders in the same run, the same texts, after a warm-up that measures one translation time."""
    from live_stt_kernel.language.backends import LLMTranslator
    from live_stt_kernel.language.llm import OpenAICompatible
    from live_stt_kernel.local.launcher import embedded_llm_endpoint

    url, token = embedded_llm_endpoint()
    translator = LLMTranslator(OpenAICompatible(url, model="local", api_key=token, timeout=600))
    warm = []
    for text in ("Good morning, everyone.", "Thank you for coming today."):
        t = time.monotonic()
        translator.translate(text, target="fr")
        warm.append(time.monotonic() - t)
    one = statistics.median(warm)
    # espeak sentences, then the meeting's first sentences: every text different from the live ones
    backlog = [text for text in [*ESPEAK, *(m[1].split(". ")[0] + "." for m in MEETING)] if text not in BACKLOG_LIVE][:backlog_turns]
    live_texts = BACKLOG_LIVE[:live_turns]
    interval = 1.5 * one  # a turn every one and a half translation times: the model could keep up with live turns alone
    runs = [backlog_run(url, token, fifo=fifo, backlog=backlog, live_texts=live_texts, interval_s=interval, timeout=timeout)
            for fifo in (False, True)]
    by = {r["mode"]: r for r in runs}
    p = by["priority"]["latency"]
    f = by["fifo"]["latency"]
    return {"one_translation_s": one, "warm_s": warm, "backlog_turns": len(backlog), "runs": runs,
            "ratio_p50": (f["p50_ms"] / p["p50_ms"]) if p["p50_ms"] and f["p50_ms"] else None,
            "ratio_p95": (f["p95_ms"] / p["p95_ms"]) if p["p95_ms"] and f["p95_ms"] else None}


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    sections = set(args.sections.split(","))
    result: dict[str, Any] = {"when": time.strftime("%Y%m%dT%H%M%S"), "machine": machine(), "config": vars(args).copy()}
    began = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f} s] {text}", file=sys.stderr, flush=True)

    if "apertium" in sections:
        log("Apertium: persistent pipe vs a process per sentence")
        result["apertium"] = bench_apertium(args.apertium_sentences, args.apertium_rounds)
    if "live" in sections:
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "conversation.wav"
            utterances = conversation_wav(wav, args.espeak, args.gap)
            result["live"] = []
            for backend in args.backends.split(","):
                log(f"live translation while streaming, {backend} ({utterances[-1].end_ms / 1000 + args.gap:.0f} s of audio)")
                result["live"].append(live_run(backend, wav, utterances, timeout=args.timeout))
    llm = None
    coaching_messages_ = None
    if "tokens" in sections or "coach" in sections:
        from live_stt_kernel.coaching.metrics import compute_metrics
        from live_stt_kernel.coaching.report import coaching_messages

        records = meeting_records(args.coach_turns)
        coaching_messages_ = coaching_messages(compute_metrics(records), records)
        llm = LLMClient()
        result["llm_server_start_s"] = llm.start_s
    if "tokens" in sections:
        log("local LLM: prefill and decode tokens/s")
        result["tokens"] = bench_tokens(llm, coaching_messages_, args.story_tokens, args.token_rounds)  # type: ignore[arg-type]
    if "coach" in sections:
        log(f"coaching {args.coach_turns or len(MEETING)} turns, metrics only and with the local LLM ({args.coach_runs} runs)")
        rate = result.get("tokens", {}).get("prefill_tokens_per_s")
        result["coach"] = bench_coach(llm, meeting_records(args.coach_turns), args.coach_runs, args.max_tokens, rate)  # type: ignore[arg-type]
    if "backlog" in sections:
        log(f"live turns behind a re-translate backlog of {args.backlog_turns} turns: priority queue vs FIFO")
        result["backlog"] = bench_backlog(args.backlog_turns, args.backlog_live_turns, args.timeout)
    result["total_s"] = time.monotonic() - began
    result["machine"]["loadavg_after"] = os.getloadavg()
    return result


def tables(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"## Translation and coaching ({r['when']})", "",
             (f"{m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, live_stt_kernel {m['package_commit']}"
             f"{' + uncommitted changes' if m['package_dirty'] else ''}, llama-cpp-python {m['llama_cpp_python']}, "
             f"apertium-eng-spa {m['apertium_eng_spa']}; load average before {m['loadavg_before'][0]:.2f}, "
             f"after {m['loadavg_after'][0]:.2f}; total {r['total_s']:.0f} s.")]
    if "live" in r:
        lines += ["", "### Turn final -> translation visible, while streaming in real time (ms)", "",
                  ("| translator | turns (utterances) | translations per turn | from first final p50 / p95 / max | "
                   "from settled (formatted) final p50 / p95 / max | model time (`Translation.seconds`) p50 / p95 / max | "
                   "end of utterance audio -> translation p50 / p95 / max | ASR: end of utterance audio -> final p50 / p95 | "
                   "last translation after end of audio | errors |"),
                  "|---|---:|---|---|---|---|---|---|---:|---|"]
        for x in r["live"]:
            per = ", ".join(f"{v} × {k}" for k, v in x["translations_per_turn"].items())
            lines.append(f"| {x['backend']} | {x['turns']} ({x['utterances']}) | {per} | {trio(x['latency_from_first_final'])} | "
                         f"{trio(x['latency_from_settled_final'])} | {trio(x['model_seconds'])} | "
                         f"{trio(x['audio_end_to_translation'])} | {fmt(x['asr_audio_end_to_final']['p50_ms'])} / "
                         f"{fmt(x['asr_audio_end_to_final']['p95_ms'])} | {x['last_translation_after_audio_end_s']:.2f} s | "
                         f"{len(x['errors'])} |")
        for x in r["live"]:
            lines += ["", (f"{x['backend']}: warm-up (first translation, starts the pipeline / LLM server) {x['warmup_s']:.2f} s; "
                           f"{x['finals']} final messages for {x['turns']} turns ({x['turns_with_formatted_final']} with a formatted "
                           f"final); translated text = the formatted text for {x['source_is_formatted_text']} of {x['turns']}; "
                           f"on_turn ran at most {fmt(x['max_on_turn_after_received_ms'], 1)} ms after the receiver's stamp; "
                           f"client CPU {x['client_cpu_s']:.1f} s over {x['wall_s']:.0f} s; server cores busy "
                           f"{', '.join(f'{k} {v:.2f}' for k, v in x['server_cores_busy'].items())}; translations started while "
                           f"another was running: {x['translations_started_while_another_ran']}; time between turns p50 "
                           f"{fmt(pct(x['turn_gaps_s'], 50), 1)} s, min {fmt(min(x['turn_gaps_s'], default=None), 1)} s.")]
            sample = next((row for row in x["rows"] if row.get("translation")), None)
            if sample:
                lines.append(f"  e.g. turn {sample['turn_order']}: “{sample['text']}” → “{sample['translation']}”")
    if "backlog" in r:
        b = r["backlog"]
        lines += ["", (f"### Turn settled -> translation available while a re-translate backlog of {b['backlog_turns']} turns "
                       f"runs (local LLM, ms; one translation ≈ {b['one_translation_s']:.1f} s here)"), "",
                  "| order | live turns translated | p50 / p95 / max | model time per live turn p50 | backlog done meanwhile | close() |",
                  "|---|---:|---|---:|---:|---:|"]
        for x in b["runs"]:
            lines.append(f"| {x['mode']} | {x['live_translated']} of {x['live_turns']} | {trio(x['latency'])} | "
                         f"{fmt(x['model_seconds_live']['p50_ms'])} | {x['backlog_done_when_live_done']} of {x['backlog_queued']} | "
                         f"{x['close_s']:.1f} s |")
        if b["ratio_p50"]:
            lines += ["", f"FIFO / priority: **{b['ratio_p50']:.1f}×** (p50), {fmt(b['ratio_p95'], 1)}× (p95), same run, same texts."]
    if "apertium" in r:
        a = r["apertium"]
        lines += ["", f"### Apertium alone ({a['sentences']} sentences of {a['words_mean']:.0f} words on average, × {a['rounds']}, interleaved)", "",
                  "| | p50 ms | p95 ms | max ms | mean ms |", "|---|---:|---:|---:|---:|",
                  (f"| persistent pipe (`ApertiumTranslator`) | {fmt(a['pipe']['p50_ms'], 2)} | {fmt(a['pipe']['p95_ms'], 2)} | "
                  f"{fmt(a['pipe']['max_ms'], 2)} | {a['mean_pipe_ms']:.2f} |"),
                  (f"| fresh `apertium -u eng-spa` per sentence | {fmt(a['fresh_process']['p50_ms'], 1)} | "
                  f"{fmt(a['fresh_process']['p95_ms'], 1)} | {fmt(a['fresh_process']['max_ms'], 1)} | {a['mean_fresh_ms']:.1f} |"),
                  "", (f"Ratio fresh / pipe: **{a['ratio_p50']:.0f}×** (p50), {a['ratio_mean']:.0f}× (mean); pipeline start "
                      f"{a['pipeline_start_ms']:.0f} ms; identical outputs {a['identical_outputs']} of {a['sentences']}.")]
    if "tokens" in r:
        t = r["tokens"]
        lines += ["", "### Local LLM speed (direct requests, a flush request before each)", "",
                  "| request | prompt tokens | completion tokens | wall s (each run) | tokens/s |", "|---|---:|---:|---|---:|"]
        p, c, d = t["prefill"], t["prefill_cached"], t["decode_short_prompt"]
        lines.append(f"| prefill: coaching prompt, max_tokens=1 | {p[0]['prompt_tokens']} | 1 | "
                     f"{', '.join(fmt(x['wall_s'], 2) for x in p)} | **{t['prefill_tokens_per_s']:.0f}** prompt tokens/s |")
        lines.append(f"| the same again, prefix cached by the server | {c[0]['prompt_tokens']} | 1 | "
                     f"{', '.join(fmt(x['wall_s'], 3) for x in c)} | |")
        lines.append(f"| decode: short prompt, long answer | {d[0]['prompt_tokens']} | "
                     f"{', '.join(str(x['completion_tokens']) for x in d)} | {', '.join(fmt(x['wall_s'], 1) for x in d)} | "
                     f"**{t['decode_tokens_per_s']:.1f}** generated tokens/s (raw {statistics.median(x['raw_tokens_per_s'] for x in d):.1f}) |")
    if "coach" in r:
        c = r["coach"]
        d = c["direct"]
        lines += ["", (f"### Coaching a 5-minute transcript ({c['turns']} turns, {c['words']} words, {c['speaking_s']:.0f} s of "
                       f"speech, {c['wpm']:.0f} wpm; {c['fillers']} fillers, {c['hedges']} hedges, {c['questions']} questions)"), "",
                  "| | wall s (each run) | prompt tokens | completion tokens | notes |", "|---|---|---:|---:|---|",
                  f"| `coach(records, use_llm=False)` (metrics only) | {', '.join(fmt(x * 1000, 1) + ' ms' for x in c['metrics_only_s'])} | | | |",
                  (f"| `coach(records, backend=\"local\")` (max_tokens {c['max_tokens']}) | {', '.join(fmt(x['wall_s'], 1) for x in c['with_llm'])} | "
                   f"{d['prompt_tokens']} | {d['completion_tokens']} ({d['finish_reason']}) | "
                   f"{'; '.join(x['note'] for x in c['with_llm'] if x['note']) or 'no failures'} |"),
                  (f"| the same request sent directly | {d['wall_s']:.1f} | {d['prompt_tokens']} | {d['completion_tokens']} | "
                   f"≈ {d['prefill_s_estimate']:.1f} s prefill + {d['wall_s'] - d['prefill_s_estimate']:.1f} s decode at "
                   f"{d['decode_tokens_per_s']:.1f} tokens/s; same text as coach(): {d['same_as_coach']} |")]
        if c.get("sample"):
            lines += ["", "Sample (first 15 lines of the report):", "", "```", *c["sample"].splitlines()[:15], "```"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="apertium,live,tokens,coach",
                        help="comma list of: apertium, live, tokens, coach, backlog (not in the default: run it alone)")
    parser.add_argument("--backends", default="apertium,local", help="translators for the live runs (default apertium,local)")
    parser.add_argument("--espeak", type=int, default=8, help="espeak-ng sentences between and after the 5 LibriVox utterances (default 8: 13 turns, about 80 s)")
    parser.add_argument("--gap", type=float, default=1.2, help="seconds of silence around each utterance (default 1.2)")
    parser.add_argument("--timeout", type=float, default=300.0, help="limit for one live session and its translations (s)")
    parser.add_argument("--apertium-sentences", type=int, default=30)
    parser.add_argument("--apertium-rounds", type=int, default=3)
    parser.add_argument("--token-rounds", type=int, default=2)
    parser.add_argument("--story-tokens", type=int, default=200, help="max_tokens of the decode request (default 200)")
    parser.add_argument("--coach-runs", type=int, default=3, help="coach(backend='local') calls (default 3; one more is sent directly)")
    parser.add_argument("--coach-turns", type=int, default=None, help="use only the first N turns of the meeting")
    parser.add_argument("--max-tokens", type=int, default=700, help="coaching answer budget (default 700, as coach())")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 5 utterances, 6 turns, short answers, one round each")
    parser.add_argument("--backlog-turns", type=int, default=8, help="backlog section: turns re-translated (default 8)")
    parser.add_argument("--backlog-live-turns", type=int, default=4, help="backlog section: live turns meanwhile (default 4)")
    parser.add_argument("--label", default=None, help="free text stored with the run")
    args = parser.parse_args()
    if args.quick:
        args.espeak, args.apertium_sentences, args.apertium_rounds, args.token_rounds = 1, 6, 1, 1
        args.story_tokens, args.coach_runs, args.coach_turns, args.max_tokens = 24, 1, 6, 48
    result = orchestrate(args)
    OUT.mkdir(exist_ok=True)
    text = json.dumps(result, indent=2, default=str, ensure_ascii=False)
    (OUT / "translate-results.json").write_text(text)
    (OUT / f"translate-results-{result['when']}.json").write_text(text)
    print(tables(result))
    print(f"\nwrote {OUT / 'translate-results.json'}")


if __name__ == "__main__":
    main()
