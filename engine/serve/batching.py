"""Continuous batching for `logitlab serve` on the transformers backend.

`BatchScheduler` is the FIFO `Scheduler` (engine/serve/queue.py) with a batch in place
of its one-reply-at-a-time worker: the same bounded queue (`submit`, the 503 beyond
``max_queue`` waiting), the same cancels and the same events to each request, but
its worker runs up to ``max_batch`` replies together, one step of all of them per
engine-thread call (`ContinuousBatch.advance`, engine/decode/continuous.py). A request
that arrives while others run joins at the next step (its prompt prefilled with the
other newcomers, merged into the running batch's cache); a reply that finishes, is
cancelled or whose client went away leaves at the next step, freeing its row for
the next waiting request. Each reply is its own `Decoder` (settings, seed, `Step`
records), so every request's steps, logprobs and candidates are those of running it
alone, and the results are recorded as before.

Scoring (``echo`` + ``logprobs``, ``prompt_logprobs``, ``max_tokens: 0``) is not
batched: it runs on the engine thread between two steps, as the FIFO runs it, and a
job that also generates then joins the batch. llama.cpp and remote engines keep the
FIFO (`make_scheduler`): llama-cpp-python's high-level API decodes one sequence.
"""

from __future__ import annotations

import contextlib
import queue
from typing import TYPE_CHECKING

from engine.decode.fanout import can_batch
from engine.decode.protocol import Engine, prompt_scoring
from engine.decode.run import ReplyResult
from engine.records import TokenScore
from engine.serve.queue import Failed, Finished, Job, Scheduler, Scored, score_only

if TYPE_CHECKING:
    from engine.decode.continuous import Advanced, ContinuousBatch, Member, Newcomer

# A decode step reads every weight once whatever the batch, so rows come cheap until the
# step turns compute-bound. Measured on the bundled model, 2 shared CPU cores (noisy): a
# step of 8 rows cost ~2.5x one row's, 16 rows ~3x, 32 rows ~4x (plus ~5 ms of sampling
# per row): 16 gives most of the throughput while each reply keeps a step under ~1.5x
# an 8-row one; a GPU has room for more.
CPU_MAX_BATCH = 16
ACCELERATOR_MAX_BATCH = 32


def default_max_batch(device: str) -> int:
    """``--max-batch``'s default for a model on `device` (see `CPU_MAX_BATCH`)."""
    return CPU_MAX_BATCH if device.split(":")[0] in ("cpu", "") else ACCELERATOR_MAX_BATCH


def make_scheduler(engine: Engine, max_queue: int, max_batch: int) -> Scheduler:
    """The batch where rows can share one (a transformers model in this process and
    ``max_batch`` above 1), the FIFO elsewhere."""
    if max_batch > 1 and can_batch(engine):
        return BatchScheduler(engine, max_queue, max_batch)
    return Scheduler(engine, max_queue)


class BatchScheduler(Scheduler):
    """The FIFO's queue in front of a continuous batch of at most `max_batch` replies."""

    def __init__(self, engine: Engine, max_queue: int = 64, max_batch: int = 8) -> None:
        self._max_batch = max(1, int(max_batch))
        self._batch: ContinuousBatch | None = None  # made on the engine thread
        self._scores: dict[Job, tuple[TokenScore, ...] | None] = {}
        super().__init__(engine, max_queue)  # starts the worker (our `_work`)

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def _work(self) -> None:
        stopping = False
        while True:
            running = len(self._batch) if self._batch is not None else 0
            newcomers, closed = self._admit(running, block=running == 0 and not stopping)
            stopping = stopping or closed
            if running == 0 and not newcomers:
                if stopping:
                    return
                continue
            try:
                advanced = self._call(self._advance, newcomers)
            except Exception as exc:  # the batch is lost: each of its requests hears why
                for job in [*newcomers, *(m.key for m in self._call(self._abandon))]:
                    self._end(job, Failed(exc))
                continue
            for job, step in advanced.steps:
                job.emit(step)
            for job, error in advanced.refused:
                self._end(job, Failed(error))
            for member in advanced.left:
                self._finish(member)

    def _admit(self, running: int, *, block: bool) -> tuple[list[Job], bool]:
        """The jobs that join at this step: waiting ones up to the batch's free rows
        (the first one waited for when nothing runs); scoring runs here, between steps.
        And whether the queue was closed (what was taken before still joins)."""
        joining: list[Job] = []
        while running + len(joining) < self._max_batch:
            try:
                job = self._jobs.get(block=block and not joining)
            except queue.Empty:  # nobody else is waiting
                break
            if job is None:
                return joining, True
            with self._lock:
                self._waiting -= 1
            if self._prepare(job):
                joining.append(job)
        return joining, False

    def _prepare(self, job: Job) -> bool:
        """Whether `job` joins the batch: a cancelled one ends here, a scoring one is
        scored first (and ends here when it only scores)."""
        if job.cancel.is_set():
            self._end(job, Finished(None))
            return False
        scores = None
        if job.score_top is not None:
            try:
                scores = self._call(prompt_scoring(self._engine).score, job.prompt_ids,
                                    top=job.score_top)  # fmt: skip
            except Exception as exc:
                self._end(job, Failed(exc))
                return False
            job.emit(Scored(scores))
        if not job.generate:
            self._end(job, Finished(score_only(job.prompt_ids), scores))
            return False
        self._scores[job] = scores
        return True

    def _advance(self, jobs: list[Job]) -> Advanced:
        """One step of the batch, on the engine thread."""
        from engine.decode.continuous import ContinuousBatch, Newcomer

        if self._batch is None:
            self._batch = ContinuousBatch(self._engine.loaded)  # type: ignore[attr-defined]
        newcomers: list[Newcomer] = [
            Newcomer(job, job.prompt_ids, job.params, job.cancel) for job in jobs
        ]
        return self._batch.advance(newcomers)

    def _abandon(self) -> list[Member]:
        return self._batch.abandon() if self._batch is not None else []

    def _finish(self, member: Member) -> None:
        job: Job = member.key
        result = ReplyResult(steps=tuple(member.steps), summary=member.summary())
        self._end(job, Finished(result, self._scores.pop(job, None)))

    def _end(self, job: Job, event: Finished | Failed) -> None:
        """The job's last event, its recording, and its place among the live jobs freed."""
        self._scores.pop(job, None)
        try:
            job.emit(event)
            if isinstance(event, Finished) and event.result is not None and job.on_result:
                job.on_result(event)
        except Exception as exc:  # a recording that failed: reported, the worker goes on
            with contextlib.suppress(Exception):
                job.emit(Failed(exc))
        finally:
            with self._lock:
                self._live.discard(job)
