"""The embedded speech engine: 16 kHz PCM16 in, v3 `Turn` messages out, no socket.

`Engine` holds what every stream shares: the recognizer (one model in memory), the decode pool and
the default turn settings. ``engine.stream(config, emit)`` opens one `EngineStream`: `push` audio in
order, `force_endpoint` ends the open turn, `finish` ends the audio and returns once every final is
out; the stream awaits ``emit(message)`` with each v3 `Turn` message as its decode comes back. It
lives on an asyncio loop because decodes run on the pool while audio keeps arriving; turns depend on
the audio alone, never on how fast it comes.

``engine.transcribe(blocks)`` runs one stream in-process and yields what a v3 client would see
(`SessionBegan`, each `Turn`, `SessionEnded`): the same turns as through the server, without one.
Partials are off there by default (nobody watches a file being decoded); finals do not change.

A final sent more than ``BEHIND_MS`` after its audio was spoken (the machine is too busy for this stream) is followed by
a v3 ``Warning`` saying how far; clients show it until the next final (our `Transcript.warning`).

Flow control and fairness: a stream holds at most ``MAX_BACKLOG_MS`` of audio it has not looked at yet; the
owner awaits `EngineStream.ready` after each push, so a client sending faster than the decodes go is slowed
(the server stops reading its socket) instead of buffered without limit. The decode slots are handed out
round-robin between the streams waiting for one (`FairGate`), so a stream with many short turns cannot make
the others' finals wait behind all of its decodes.

How a turn is decoded (see `turns.TurnDetector`): partials are cheap drafts (`Recognizer.draft`), the
first 250 ms into the turn and then every 500 ms, beside the pipeline, only on an idle worker, and
never sooner after a draft than it took; a *check* decode starts 40 ms into a silence and its verdict
is due at ``min_turn_silence``: a finished-sounding sentence ends the turn there, otherwise
``max_turn_silence`` does; a turn is cut at 15 s. Checks and finals are careful decodes that also hear
the previous turn's last ``CONTEXT_MS`` of audio when it ended at most ``CONTEXT_GAP_MS`` before: a
sentence paused at a comma is still decoded as one sentence.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from ..events import Event
from ..v3.protocol import SessionConfig, begin_message, parse_message, termination_message
from .messages import behind_message, end_of_turn_confidence, final_messages, partial_message, speech_started_message
from .recognizer import RecognizedWord, Recognizer, plain
from .turns import BYTES_PER_MS, CHECK, DUE, PARTIAL, Decode, TurnDetector, TurnSettings

Emit = Callable[[dict[str, Any]], Awaitable[None]]
PARTIAL_BACKLOG_MS = 1000  # when decoding falls this far behind the audio, partials are skipped to catch up
MAX_BACKLOG_MS = 3000  # a stream reads no further ahead of its turn detection than this (flow control)
BEHIND_MS = 2000  # a final sent this far behind the audio is followed by a Warning saying so
VAD_MODE = 3  # the most aggressive: mode 2 heard room noise after speech as speech (benchmarks/README.md)
CONTEXT_MS = 6000  # of the previous turn's audio heard with a check or final (3 s helped less, benchmarks/README.md)
# ... when that turn ended at most this long before the new one began. Both ends carry pre-roll, so 450 ms here is a
# pause of about 850 ms: a comma's, not the gap between two sentences (with 2 s, tiny.en heard the coaching sample's
# "Does that make sense?" after "... instead." as "Doesn't that ..."; pooled WER 6.8 % with 2 s, 7.0 % with 450 ms)
CONTEXT_GAP_MS = 450
_FORCE, _END = object(), object()


class FairGate:
    """``slots`` decodes at once, handed out round-robin between the streams waiting: when a slot frees, the
    stream that was served least recently gets it, whatever order the requests came in. (An executor's FIFO queue
    would let a stream with many short turns push everyone else's finals back.) Event-loop thread only."""

    def __init__(self, slots: int):
        self.free = slots
        self._waiting: OrderedDict[object, deque[asyncio.Future[None]]] = OrderedDict()  # owner -> its waiters, in turn order

    async def acquire(self, owner: object) -> None:
        """Wait for a slot for ``owner`` (a stream); `release` it afterwards."""
        if self.free and not self._waiting:
            self.free -= 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(owner, deque()).append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # the slot came with the cancellation: pass it on
            else:
                self._forget(owner, granted)
            raise

    def release(self) -> None:
        """Give the slot to the next stream in turn (or free it)."""
        while self._waiting:
            owner, waiters = self._waiting.popitem(last=False)
            granted = waiters.popleft()
            if waiters:
                self._waiting[owner] = waiters  # to the back of the line
            if not granted.done():
                granted.set_result(None)
                return
        self.free += 1

    def _forget(self, owner: object, granted: asyncio.Future[None]) -> None:
        waiters = self._waiting.get(owner)
        if waiters is not None and granted in waiters:
            waiters.remove(granted)
            if not waiters:
                del self._waiting[owner]


class Engine:
    """The recognizer, its decode pool (``workers`` decodes at once, all streams together) and the
    default `TurnSettings`. Make one per process and close it at the end."""

    def __init__(self, recognizer: Recognizer, *, settings: TurnSettings | None = None, workers: int = 2):
        self.recognizer = recognizer
        self.settings = settings or TurnSettings()
        self.workers = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="live-stt-decode")
        self.gate: FairGate | None = None  # made on the event loop at the first decode
        self.decoding = 0  # decodes queued or running, all streams (event-loop thread only)
        self.running = 0  # of which running
        self.alone_running = False  # a decode that took every core runs now
        self.inflight: set[asyncio.Future[list[RecognizedWord]]] = set()  # decodes on the pool's threads

    def __repr__(self) -> str:
        return f"<Engine {type(self.recognizer).__name__} workers={self.workers}>"

    @property
    def languages(self) -> list[str] | None:
        """The only languages the model knows (``["en"]`` for an English-only Whisper), or None: any."""
        return None if getattr(self.recognizer, "multilingual", False) else ["en"]

    def stream(self, config: SessionConfig, emit: Emit, *, partials: bool = True) -> EngineStream:
        """A new stream on the running event loop (call it from a coroutine)."""
        return EngineStream(self, config, emit, partials=partials)

    async def decode(self, pcm: bytes, config: SessionConfig, owner: object = None, *, context: bytes = b"",
                     draft: bool = False) -> list[RecognizedWord]:
        """Transcribe on the pool when ``owner`` (a stream) gets its turn, with its current prompt and key terms:
        a quick `Recognizer.draft` or a careful `Recognizer.transcribe` that also hears ``context``.

        Cancelled while waiting for a slot, the decode never runs; cancelled while running, it cannot be stopped, so
        its slot stays taken until the thread is done (counting it free would put more decodes on the cores). A decode
        that takes every core (``alone``) keeps drafts off the other workers meanwhile."""
        gate = self.gate = self.gate or FairGate(self.workers)
        recognizer, prompt, keyterms = self.recognizer, config.prompt, config.keyterms_prompt
        self.decoding += 1
        try:
            await gate.acquire(owner)
        except BaseException:
            self.decoding -= 1
            raise
        self.running += 1
        alone = self.running == 1 and not draft  # no other decode holds a slot now: this one may take every core
        self.alone_running |= alone
        try:
            work = asyncio.get_running_loop().run_in_executor(
                self.pool, lambda: recognizer.draft(pcm, prompt=prompt, keyterms=keyterms) if draft
                else recognizer.transcribe(pcm, prompt=prompt, keyterms=keyterms, context=context, alone=alone))
        except BaseException:  # the pool is shut down
            self._finished(alone)
            raise
        self.inflight.add(work)
        work.add_done_callback(lambda done: self._done(done, alone))
        return await asyncio.shield(work)  # cancelled, the thread goes on: its slot is freed when it ends

    def _done(self, work: asyncio.Future[list[RecognizedWord]], alone: bool) -> None:
        self.inflight.discard(work)
        if not work.cancelled():
            work.exception()  # retrieved here: a decode whose caller went away has nobody to raise to
        self._finished(alone)

    def _finished(self, alone: bool) -> None:
        """A decode's thread is done: its slot goes to the next stream in line."""
        self.running -= 1
        self.decoding -= 1
        self.alone_running &= not alone
        if self.gate is not None:
            self.gate.release()

    def settle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait (running ``loop``) until the decodes started on it are done, so their slots are freed before the loop
        closes (a closed loop drops the callbacks that free them)."""
        pending = [work for work in self.inflight if work.get_loop() is loop and not work.done()]
        if pending:
            loop.run_until_complete(asyncio.wait(pending))

    def transcribe(self, blocks: Iterable[bytes], *, config: SessionConfig | None = None,
                   partials: bool = False) -> Iterator[Event]:
        """The events of one stream over ``blocks`` (16 kHz PCM16), decoded in this thread's own
        event loop as fast as the pool allows. ``config`` defaults to formatted turns."""
        config = config or SessionConfig(format_turns=True)
        messages: list[dict[str, Any]] = []
        audio_ms = 0.0

        async def collect(message: dict[str, Any]) -> None:
            messages.append(message)

        async def opened() -> EngineStream:
            return self.stream(config, collect, partials=partials)

        def drained() -> Iterator[Event]:
            for message in messages:
                event = parse_message(message)
                if event is not None:
                    yield event
            messages.clear()

        loop = asyncio.new_event_loop()
        stream = loop.run_until_complete(opened())
        try:
            messages.append(begin_message(config.public(), session_id=str(uuid.uuid4())))
            for block in blocks:
                stream.push(block)
                audio_ms += len(block) / BYTES_PER_MS
                loop.run_until_complete(stream.drain())
                yield from drained()
            loop.run_until_complete(stream.finish())
            messages.append(termination_message(audio_ms, 0.0))
            yield from drained()
        finally:
            stream.cancel()
            loop.run_until_complete(asyncio.sleep(0))  # let the cancelled tasks finish
            self.settle(loop)
            loop.close()

    def close(self) -> None:
        """Stop the decode pool (decodes in progress finish on their own)."""
        self.pool.shutdown(wait=False, cancel_futures=True)


class EngineStream:
    """One stream's turn detection and decodes. Call everything from the event loop's thread."""

    def __init__(self, engine: Engine, config: SessionConfig, emit: Emit, *, partials: bool = True):
        self.engine, self.config, self.emit, self.partials = engine, config, emit, partials
        from webrtcvad import Vad  # here, not at the top: the base install (no [local] extra) imports the server's module

        self.vad = Vad(VAD_MODE)
        self.quiet_floor = 0.0  # frames with less energy (mean square of the samples) are silence, whatever the VAD says
        self.detector = TurnDetector(is_speech=self._is_speech, settings=replace(engine.settings))
        self.reconfigure()
        self.speech_started = -1  # the last detector turn whose SpeechStarted went out (pro models)
        self.backlog_ms = 0.0  # audio pushed but not yet through the detector
        self.pushed_ms = 0.0  # all audio pushed
        self.opened_at = asyncio.get_running_loop().time()
        self.fast = False  # audio came faster than real time once: a file, not a microphone
        self.turn_orders: dict[int, int] = {}  # detector turn -> turn_order on the wire
        self.last_final: Decode | None = None  # the latest final's request: its audio is the next turn's context
        # the latest partial's turn and words: kept by a final that hears nothing, the next partial's settled prefix
        self.last_draft: tuple[int, list[RecognizedWord]] | None = None
        self.closed_turns: set[int] = set()
        self.partial_task: asyncio.Task[None] | None = None
        self.next_partial_at = 0.0  # loop time before which no draft starts (drafts take at most half of a core)
        self.check: tuple[Decode, asyncio.Task[list[RecognizedWord]]] | None = None  # the latest check and its decode
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.progressed = asyncio.Event()  # set each time the detector has taken an item
        self.worker = asyncio.get_running_loop().create_task(self._process())

    # --- what the owner calls -------------------------------------------------------------------

    def push(self, pcm: bytes) -> None:
        """Queue 16 kHz PCM16 audio; returns at once. Raises what a failed decode raised."""
        if self.worker.done():
            self.worker.result()
        self.backlog_ms += len(pcm) / BYTES_PER_MS
        self.pushed_ms += len(pcm) / BYTES_PER_MS
        self.inbox.put_nowait(pcm)

    async def ready(self) -> None:
        """Return once the stream can take more audio (its backlog is within ``MAX_BACKLOG_MS``): await it after
        each `push` to read no faster than the decodes go. Raises what a failed decode raised."""
        while self.backlog_ms > MAX_BACKLOG_MS and not self.worker.done():
            self.progressed.clear()
            await self.progressed.wait()
        if self.worker.done():
            self.worker.result()

    def force_endpoint(self) -> None:
        """End the open turn where the audio pushed so far ends."""
        self.inbox.put_nowait(_FORCE)

    def reconfigure(self) -> None:
        """Take ``min_turn_silence`` / ``max_turn_silence`` and ``vad_threshold`` from the config (after an
        `UpdateConfiguration` too); the prompt, key terms and ``end_of_turn_confidence_threshold`` are read from it
        when they are used."""
        for name in ("min_turn_silence", "max_turn_silence"):
            value = getattr(self.config, name)
            if value:
                setattr(self.detector.settings, name, value)
        mode, self.quiet_floor = vad_settings(self.config.vad_threshold)
        self.vad.set_mode(mode)

    def _is_speech(self, frame: bytes) -> bool:
        if self.quiet_floor and float(np.mean(np.square(np.frombuffer(frame, np.int16).astype(np.float32)))) < self.quiet_floor:
            return False
        return bool(self.vad.is_speech(frame, 16_000))

    async def drain(self) -> None:
        """Until everything pushed so far has been through the detector (finals of closed turns sent)."""
        await self.inbox.join()
        if self.worker.done():
            self.worker.result()

    async def finish(self) -> None:
        """End of audio: the open turn is decoded as a final; returns when every final is out."""
        self.inbox.put_nowait(_END)
        await self.worker

    def cancel(self) -> None:
        """Abandon the stream (the client left): stop its tasks."""
        for task in (self.worker, self.partial_task, self.check[1] if self.check else None):
            if task is not None:
                task.cancel()

    # --- the processing task --------------------------------------------------------------------

    async def _process(self) -> None:
        while True:
            item = await self.inbox.get()
            try:
                if item is _END:
                    await self._run(self.detector.force_endpoint())
                    if self.partial_task is not None:
                        self.partial_task.cancel()
                    return
                if item is _FORCE:
                    await self._run(self.detector.force_endpoint())
                    continue
                self.backlog_ms -= len(item) / BYTES_PER_MS
                requests = self.detector.push(item)
                while requests:  # the detector pauses after a due verdict; go on once it is settled
                    await self._run(requests)
                    requests = self.detector.push(b"")
                await self._announce_speech()  # the turn still open (the closed ones' went out with their messages)
            finally:
                self.inbox.task_done()
                self.progressed.set()

    async def _run(self, requests: list[Decode]) -> None:
        engine = self.engine
        for request in requests:
            if request.kind == PARTIAL:
                # partials never change the turns: decode them beside the pipeline, one at a time, so a
                # check or final never waits behind one, only on an idle worker, so no stream's check or
                # final queues behind another's partial, and not while this stream's check runs
                idle = engine.decoding < engine.workers and not engine.alone_running
                checking = self.check is not None and not self.check[1].done()
                rested = asyncio.get_running_loop().time() >= self.next_partial_at
                if (self.partials and self.partial_task is None and idle and not checking and rested
                        and self.backlog_ms <= PARTIAL_BACKLOG_MS and self._live()):
                    self.partial_task = asyncio.create_task(self._partial(request))
            elif request.kind == CHECK:  # decode now, in the background; the verdict comes with DUE
                self._drop_check()  # speech came back before the last one's verdict: it is moot
                self.check = (request, asyncio.create_task(self._decode(request)))
            elif request.kind == DUE:
                if self.check is None or self.check[0].turn_order != request.turn_order:
                    continue
                check, task = self.check
                self.check = None
                words = await task
                if end_of_turn_confidence(" ".join(w.text for w in words)) >= self.config.end_of_turn_confidence_threshold:
                    self.detector.end_turn()
                    await self._send(check, words, final=True)
            else:
                self._drop_check()  # a cut at the cap while a check was out: the final replaces it
                await self._send(request, await self._decode(request), final=True)

    def _drop_check(self) -> None:
        if self.check is not None:
            task = self.check[1]
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # retrieved: a moot check's error concerns nobody
            self.check = None

    async def _decode(self, request: Decode) -> list[RecognizedWord]:
        """The careful decode of a check or final, hearing the end of the previous turn if it was just before."""
        last, context = self.last_final, b""
        if last is not None and request.start_ms - last.end_ms <= CONTEXT_GAP_MS:
            # after a ForceEndpoint mid-speech the next turn's pre-roll overlaps the last one: hear that audio once
            overlap = max(0, last.end_ms - request.start_ms) * BYTES_PER_MS
            context = last.pcm[: len(last.pcm) - overlap][-CONTEXT_MS * BYTES_PER_MS :]
        return await self.engine.decode(request.pcm, self.config, self, context=context)

    def _elapsed_ms(self) -> float:
        return (asyncio.get_running_loop().time() - self.opened_at) * 1000

    def _live(self) -> bool:
        """Whether the audio has never come faster than real time: a file sent at full speed gets finals only
        (nobody watches its partials, and each would take a decode from the finals). Once fast, always fast: flow
        control later slows a file to the decoding speed, which can look like real time."""
        self.fast = self.fast or self.pushed_ms > self._elapsed_ms() + PARTIAL_BACKLOG_MS
        return not self.fast

    async def _partial(self, request: Decode) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            words = await self.engine.decode(request.pcm, self.config, self, draft=True)
            # as long again before the next: on a slow machine or with a bigger model partials come less often, and
            # a stream's drafts never take more than half of a core
            self.next_partial_at = 2 * loop.time() - started
            if request.turn_order not in self.closed_turns:  # its final went out meanwhile: too late
                await self._send(request, words, final=False)
        finally:
            self.partial_task = None

    async def _send(self, request: Decode, words: list[RecognizedWord], *, final: bool) -> None:
        if final and not words and self.last_draft is not None and self.last_draft[0] == request.turn_order:
            words = self.last_draft[1]  # the careful decode heard nothing where a draft heard words: keep those
        if not words and not (final and request.turn_order in self.turn_orders):
            return  # nothing heard: no Turn during silence
        await self._announce_speech(request)
        order = self.turn_orders.setdefault(request.turn_order, len(self.turn_orders))
        if final:
            self.closed_turns.add(request.turn_order)
            self.last_final = request
            known = self.engine.languages  # one language known: every turn is in it; else no turn says which
            language = known[0] if self.config.language_detection and known and len(known) == 1 else None
            for message in final_messages(order, words, request.start_ms, format_turns=self.config.format_turns,
                                          pro=self.config.pro, language=language):
                await self.emit(message)
            late_ms = self._elapsed_ms() - request.end_ms  # since its audio was spoken (live audio is real time)
            if late_ms > BEHIND_MS and self._live():  # a file sent at full speed is always "behind"
                await self.emit(behind_message(late_ms))
        else:
            last = self.last_draft  # the same turn's previous partial: its words settle the prefix
            previous = [plain(w.text) for w in last[1]] if last is not None and last[0] == request.turn_order else []
            await self.emit(partial_message(order, words, request.start_ms, previous, pro=self.config.pro))
            self.last_draft = (request.turn_order, words)


    async def _announce_speech(self, request: Decode | None = None) -> None:
        """Pro models: `SpeechStarted` once per turn, in turn order: before the turn's first `Turn` (``request``),
        or once the audio pushed so far is through the detector, for the turn still open."""
        if not self.config.pro:
            return
        turn, start = (request.turn_order, request.start_ms) if request else (self.detector.turn_order, self.detector.turn_start_ms)
        if start is not None and turn > self.speech_started:
            self.speech_started = turn
            await self.emit(speech_started_message(start + self.detector.settings.pre_roll_ms))


def vad_settings(threshold: float | None) -> tuple[int, float]:
    """The voice activity detector for a ``vad_threshold`` (0-1; None: ours): WebRTC's aggressiveness (0 below 0.1, 1
    from 0.1, 2 from 0.2, 3, ours, from 0.3) and an energy floor (mean square; none up to 0.5, then rising from -90 dBFS
    to -30 dBFS at 1) under which a frame is silence whatever WebRTC says: for noisy rooms."""
    if threshold is None:
        return VAD_MODE, 0.0
    mode = min(3, int(threshold * 10 + 1e-9))  # 0.3 is 2.9999... in binary
    floor_dbfs = -90 + 60 * (threshold - 0.5) / 0.5 if threshold > 0.5 else None
    return mode, 0.0 if floor_dbfs is None else (32768 * 10 ** (floor_dbfs / 20)) ** 2


__all__ = ["Emit", "Engine", "EngineStream", "vad_settings"]
