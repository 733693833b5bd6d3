"""Dynamic batching: worker threads share the model and run queued requests as batches.

Requests wait in a bounded queue (:class:`~.errors.QueueFullError` beyond ``max_queue``). A free
worker takes the oldest request, gathers compatible ones (same generation settings) for up to
``batch_wait_ms`` or until its share of the recent load (``max_batch_size`` at most; a lone
request never waits), and answers them with ONE :meth:`OryxPipeline.chat_batch` call: all their
images/videos go through one packed encoder pass and the texts are generated as one left-padded
batch. Max-token budgets differ? Then they are different batches (an answer is never cut short by
a neighbour).

``workers`` > 1 runs that many batches at once on the same (shared, read-only) model, like the
model instances of an inference server: on a CPU, where one small batch leaves cores idle (the
decoding loop is mostly Python and torch's intra-op threads help little), two batches overlap
(torch releases the GIL inside its ops), and while one worker generates, the requests of the
other are being received and decoded instead of all requests waiting for one batch. The load is
split between the free workers (8 clients, 2 workers -> batches of 4). Sampling batches take turns
on the global RNG so that a seeded request stays reproducible.

A streaming request runs alone with a :class:`TokenStreamer` that hands text to the event loop
as it is generated. A request whose client went away is dropped while queued; a streaming one
stops generation at the next token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from transformers import TextStreamer

from oryx_mllm.pipeline import Answer, OryxPipeline
from oryx_mllm.serve.errors import QueueFullError

log = logging.getLogger(__name__)
LOAD_WINDOW_S = 1.0  # how long the engine remembers how many requests were in the server


class Cancelled(Exception):
    """The client of a request went away."""


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def batch_key(self) -> tuple:
        """Requests with equal keys may share one ``chat_batch`` call."""
        if self.temperature > 0 and self.seed is not None:
            return ("seeded", id(self))  # reproducible sampling needs the RNG to itself
        if self.temperature == 0:
            return (self.max_tokens, 0.0, 1.0, self.stop)
        return (self.max_tokens, self.temperature, self.top_p, self.stop)


class TokenStreamer(TextStreamer):
    """Text as it is generated -> ``on_text`` (called on the worker thread); raises
    :class:`Cancelled` inside ``generate`` once ``cancelled`` is set, which stops generation."""

    def __init__(self, tokenizer, on_text: Callable[[str], None], cancelled: threading.Event):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._on_text = on_text
        self._cancelled = cancelled

    def put(self, value) -> None:
        if self._cancelled.is_set():
            raise Cancelled
        super().put(value)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if text:
            self._on_text(text)


@dataclass(eq=False)  # identity: queue removal must never compare messages (tensors)
class Job:
    """One chat request waiting for (or in) the model."""

    messages: list[dict]
    params: GenerationParams
    on_text: Callable[[str], None] | None = None  # set = streaming
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued_at: float = field(default_factory=time.perf_counter)

    def key(self) -> tuple:
        if self.on_text is not None:
            return ("stream", id(self))
        return self.params.batch_key()

    def cancel(self) -> None:
        self.cancelled.set()

    async def result(self) -> Answer:
        return await asyncio.wrap_future(self.future)


@dataclass
class EngineStats:
    """What the engine did. A batch that fails is re-run one request at a time (so one bad
    input fails only its own request): those re-runs are extra ``model_calls`` (also counted in
    ``retries``) but not extra ``requests`` nor extra ``batch_sizes`` entries, which hold the
    batches the engine formed, each request counted once."""

    model_calls: int = 0  # chat_batch calls, re-runs of a failed batch's requests included
    requests: int = 0  # requests taken from the queue to the model, each counted once
    retries: int = 0  # model calls re-running one request alone after its batch failed
    # cancelled while queued, or before being re-run alone after their batch failed: never
    # answered by the model
    dropped: int = 0
    cancelled: int = 0  # cancelled while generating (streaming): generation stopped early
    batch_sizes: list[int] = field(default_factory=list)  # one entry per batch formed
    busy_s: float = 0.0  # wall time inside model calls

    def as_dict(self) -> dict:
        sizes = self.batch_sizes
        return {
            "model_calls": self.model_calls,
            "requests": self.requests,
            "retries": self.retries,
            "dropped_cancelled": self.dropped,
            "cancelled_running": self.cancelled,
            "mean_batch_size": round(sum(sizes) / len(sizes), 3) if sizes else 0.0,
            "max_batch_size_seen": max(sizes, default=0),
            "busy_s": round(self.busy_s, 3),
        }


def _settle(job: Job, answer: Answer | None = None, exc: BaseException | None = None) -> None:
    """Resolve ``job``'s future unless it is already done (e.g. cancelled by its awaiter)."""
    try:
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(answer)
    except concurrent.futures.InvalidStateError:
        pass


class BatchEngine:
    """Owns the pipeline on one worker thread; :meth:`submit` from any thread."""

    def __init__(
        self,
        pipeline: OryxPipeline,
        max_queue: int = 64,
        max_batch_size: int = 8,
        batch_wait_ms: float = 5.0,
        workers: int = 1,
        torch_threads: int | None = None,
    ):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.pipeline = pipeline
        self.workers = workers
        # torch's intra-op thread count is per thread: each worker gets its share of the cores
        self.torch_threads = torch_threads or max(1, torch.get_num_threads() // workers)
        self.max_queue = max_queue
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.stats = EngineStats()
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._running = False
        self._incoming = 0  # admitted requests still decoding their media (not queued yet)
        self._batches: dict[int, int] = {}  # worker index -> size of the batch it is running
        self._loads: deque[tuple[float, int]] = deque()  # (time, requests in the server) per submit
        self._rng = threading.Lock()  # sampling batches take turns on torch's global RNG
        self._threads: list[threading.Thread] = []

    # Lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
        self._threads = [
            threading.Thread(
                target=self._loop, args=(k,), name=f"oryx-batch-engine-{k}", daemon=True
            )
            for k in range(self.workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._running = False
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in pending:
            _settle(job, exc=Cancelled("server shutting down"))
        deadline = time.perf_counter() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.perf_counter()))

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> bool:
        return bool(self._batches)

    # Submitting -----------------------------------------------------------------------------------
    def expect(self) -> None:
        """A request was admitted and will :meth:`submit` soon (or :meth:`unexpect` on error):
        the worker waits for it (up to ``batch_wait_ms``) instead of running a batch without it."""
        with self._cond:
            self._incoming += 1

    def unexpect(self) -> None:
        with self._cond:
            self._incoming = max(0, self._incoming - 1)
            self._cond.notify_all()

    def submit(self, job: Job, expected: bool = False) -> Job:
        """Queue ``job``; raises :class:`QueueFullError` when ``max_queue`` requests wait.
        ``expected``: the request was announced with :meth:`expect`."""
        with self._cond:
            if expected:
                self._incoming = max(0, self._incoming - 1)
            if not self._running:
                raise RuntimeError("the engine is not running")
            live = sum(1 for j in self._queue if not j.cancelled.is_set())
            if live >= self.max_queue:
                raise QueueFullError(live)
            self._queue.append(job)
            now = time.perf_counter()
            in_server = len(self._queue) + sum(self._batches.values()) + self._incoming
            self._loads.append((now, in_server))
            while self._loads and now - self._loads[0][0] > LOAD_WINDOW_S:
                self._loads.popleft()
            self._cond.notify_all()
        return job

    def cancel(self, job: Job) -> None:
        """The client of ``job`` went away: drop it if queued, stop it at the next token if
        streaming (a non-streaming batch in flight finishes; its answer is discarded)."""
        job.cancel()
        with self._cond:
            self._drop_cancelled()

    # Worker -----------------------------------------------------------------------------------------
    def _drop_cancelled(self) -> None:
        for job in [j for j in self._queue if j.cancelled.is_set()]:
            self._queue.remove(job)
            self.stats.dropped += 1
            _settle(job, exc=Cancelled())

    def _compatible(self, key: tuple) -> list[Job]:
        return [j for j in self._queue if j.key() == key][: self.max_batch_size]

    def _free_workers(self) -> int:
        return max(1, self.workers - len(self._batches))

    def _target(self) -> int:
        """How many requests a free worker gathers: its share of the requests in the server now
        or recently (clients that just got their answers come back) that the other workers are
        not running already. Called under the lock."""
        now = len(self._queue) + self._incoming
        recent = max((n for _, n in self._loads), default=1) - sum(self._batches.values())
        return min(self.max_batch_size, math.ceil(max(now, recent, 1) / self._free_workers()))

    def _next_batch(self, worker: int) -> list[Job] | None:
        with self._cond:
            while self._running:
                self._drop_cancelled()
                if self._queue:
                    break
                self._cond.wait()
            if not self._running:
                return None
            key = self._queue[0].key()
            if self._queue[0].on_text is None:
                # Wait only while more requests are on their way (admitted and decoding, or
                # expected from the recent load), so a lone client never waits and N clients
                # fill batches of N / free workers.
                deadline = time.perf_counter() + self.batch_wait_s
                while self._running and len(self._compatible(key)) < self._target():
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                self._drop_cancelled()
            ready = self._compatible(key)
            share = max(self._target(), math.ceil(len(ready) / self._free_workers()))
            batch = ready[:share]
            for job in batch:
                self._queue.remove(job)
            if batch:
                self._batches[worker] = len(batch)
            return batch

    def _loop(self, worker: int) -> None:
        torch.set_num_threads(self.torch_threads)
        while True:
            batch: list[Job] | None = []
            outcome: list[tuple[Answer | None, BaseException | None]] = []
            try:
                batch = self._next_batch(worker)
                if batch is None:
                    return
                if batch:
                    outcome = self._run(batch)
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any bug
                log.exception("batch engine error")
                outcome = [(None, exc)] * len(batch or [])
            finally:
                # Free the worker BEFORE answering: a client that gets its answer and comes back
                # must not be counted as still running (it would make the next batch wait for a
                # request that is not coming).
                with self._cond:
                    self._batches.pop(worker, None)
                    self._cond.notify_all()
            for job, (answer, exc) in zip(batch or [], outcome):
                _settle(job, answer, exc)

    def _retry(self, job: Job) -> tuple[Answer | None, BaseException | None]:
        """Re-run one request of a failed batch alone, unless its client has gone meanwhile."""
        if job.cancelled.is_set():
            with self._cond:
                self.stats.dropped += 1
            return (None, Cancelled())
        return self._run([job], retry=True)[0]

    def _run(
        self, batch: list[Job], retry: bool = False
    ) -> list[tuple[Answer | None, BaseException | None]]:
        """One model call for ``batch``: ``(answer, None)`` or ``(None, error)`` per job.
        ``retry``: a request of a failed batch re-run alone (already counted as a request)."""
        head = batch[0]
        p = head.params
        streamer = None
        if head.on_text is not None:
            tok = self.pipeline.processor.tokenizer
            streamer = TokenStreamer(tok, head.on_text, head.cancelled)
        with self._cond:
            self.stats.model_calls += 1
            if retry:
                self.stats.retries += 1
            else:
                self.stats.requests += len(batch)
                self.stats.batch_sizes.append(len(batch))
        t0 = time.perf_counter()
        rng = self._rng if p.temperature > 0 else nullcontext()
        try:
            with rng:
                answers = self.pipeline.chat_batch(
                    [j.messages for j in batch],
                    max_new_tokens=p.max_tokens,
                    temperature=p.temperature,
                    top_p=p.top_p,
                    stop=list(p.stop) or None,
                    seed=p.seed,
                    streamer=streamer,
                )
        except Exception as exc:  # noqa: BLE001 - every failure goes back to its requests
            with self._cond:
                if isinstance(exc, Cancelled):
                    self.stats.cancelled += 1
                self.stats.busy_s += time.perf_counter() - t0
            if isinstance(exc, Cancelled):
                return [(None, exc)]  # streaming requests run alone
            if len(batch) == 1:
                log.exception("model call failed")
                return [(None, exc)]
            # One request's bad input must not fail its neighbours: answer each alone.
            log.warning("a batch of %d failed (%s: %s); running its requests one by one",
                        len(batch), type(exc).__name__, exc)  # fmt: skip
            return [self._retry(job) for job in batch]
        with self._cond:
            self.stats.busy_s += time.perf_counter() - t0
        return [(answer, None) for answer in answers]
