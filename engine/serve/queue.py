"""The FIFO between HTTP requests and the one engine: one worker, one reply at a time.

A request becomes a `Job` (prompt ids, params, a cancel event). `Scheduler.submit`
refuses it when `max_queue` jobs are already waiting; otherwise one worker
thread runs jobs in arrival order, each to its end, handing every `Step` to the
request's asyncio queue with ``call_soon_threadsafe``. The worker never waits
on a client: a slow reader only lets its own queue grow, so the next job starts
as soon as this one's decode ends. Setting a job's cancel event (a client went
away, the server is stopping) stops its reply before the next step, or skips
it if it has not started.

A job may score its prompt first (`score_top`: ``echo`` with ``logprobs``, vLLM's
``prompt_logprobs``): the engine's `PromptScoring.score` runs on the same worker,
in the same FIFO, and its records go to the request as one `Scored` event before
any step; ``generate=False`` (``max_tokens: 0``) scores without generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.decode.protocol import Engine, prompt_scoring
from engine.decode.run import ReplyResult, run_reply
from engine.params import SamplingParams
from engine.records import GenerationSummary, Step, TokenScore


class QueueFullError(Exception):
    """More than `max_queue` requests are waiting for the engine."""


@dataclass(frozen=True)
class Scored:
    """A scoring job's first event: the prompt's records (positions 1..)."""

    scores: tuple[TokenScore, ...]


@dataclass(frozen=True)
class Finished:
    """The last event of a job: its result (None when cancelled before it started) and,
    for a scoring job, the prompt's records."""

    result: ReplyResult | None
    scores: tuple[TokenScore, ...] | None = None


@dataclass(frozen=True)
class Failed:
    error: BaseException


Event = Step | Scored | Finished | Failed


@dataclass(eq=False)  # hashed by identity: the scheduler keeps a set of live jobs
class Job:
    prompt_ids: Sequence[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    on_result: Callable[[Finished], None] | None = None
    score_top: int | None = None  # score the prompt first, with this many candidates
    generate: bool = True  # False: score only (``max_tokens: 0``)
    cancel: threading.Event = field(default_factory=threading.Event)
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)

    def emit(self, event: Event) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Scheduler:
    """One worker thread draining a bounded FIFO of jobs into `engine`."""

    def __init__(self, engine: Engine, max_queue: int = 64) -> None:
        self._engine = engine
        self._max_queue = max_queue
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._live: set[Job] = set()
        self._closed = False
        # a LocalEngine runs each job on its own torch thread: its calls run inline there
        runner: Any = getattr(engine, "thread", None)
        self._call: Callable[..., Any] = getattr(runner, "call", _direct)
        self._worker = threading.Thread(target=self._work, name="logitlab-serve", daemon=True)
        self._worker.start()

    @property
    def waiting(self) -> int:
        return self._waiting

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise QueueFullError("the server is shutting down")
            if self._waiting >= self._max_queue:
                raise QueueFullError(f"{self._waiting} requests are already waiting")
            self._waiting += 1
            self._live.add(job)
        self._jobs.put(job)

    def cancel_all(self) -> None:
        """Cancel every waiting and running job (shutdown)."""
        with self._lock:
            self._closed = True
            for job in self._live:
                job.cancel.set()

    def close(self, timeout: float = 10.0) -> None:
        self.cancel_all()
        self._jobs.put(None)
        self._worker.join(timeout)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                self._waiting -= 1
            try:
                if job.cancel.is_set():
                    job.emit(Finished(None))
                    continue
                finished = self._call(self._run, job)
                job.emit(finished)
                if job.on_result is not None:
                    job.on_result(finished)
            except Exception as exc:  # reported to the request, never kills the worker
                job.emit(Failed(exc))
            finally:
                with self._lock:
                    self._live.discard(job)

    def _run(self, job: Job) -> Finished:
        """The prompt's scores when asked, then the loop the CLI runs too (`run_reply`),
        each step handed to the request."""
        scores = self._prompt_scores(job)
        if scores is not None:
            job.emit(Scored(scores))
        if not job.generate:
            return Finished(score_only(job.prompt_ids), scores)
        return Finished(self._reply(job), scores)

    def _prompt_scores(self, job: Job) -> tuple[TokenScore, ...] | None:
        """The job's prompt scored by the engine, when it asks (on the engine's thread)."""
        if job.score_top is None:
            return None
        return prompt_scoring(self._engine).score(job.prompt_ids, top=job.score_top)

    def _reply(self, job: Job) -> ReplyResult:
        """The job's reply run alone by the engine (on the engine's thread)."""
        reply = self._engine.start_ids(job.prompt_ids, job.params, cancel=job.cancel)
        return run_reply(reply, on_step=job.emit)


def score_only(prompt_ids: Sequence[int]) -> ReplyResult:
    """The result of a job that generated nothing (``max_tokens: 0``)."""
    summary = GenerationSummary("length", "", len(prompt_ids), 0, 0.0, 0.0)
    return ReplyResult(steps=(), summary=summary)


def _direct(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)
