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

Prompt passes batch too: the prompts waiting to be scored (``echo`` + ``logprobs``,
``prompt_logprobs``, ``max_tokens: 0``) and those of one-token replies run together
between two steps, as the right-padded rows of one forward per chunk
(engine/decode/batch_scoring.py; each row's numbers are its prompt's alone). A
one-token reply (lm-eval's ``echo`` + ``max_tokens: 1``) is sampled from its pass's
last row and never runs its prompt again; a scored job that generates more joins the
batch.

On llama.cpp the rows are sequences of one llama.cpp context of their own
(engine/decode/llama_batch.py): sized when made, so a newcomer may wait for a row
(deferred, ahead of the queue) and a reply longer than a row runs alone on the
engine's context (`RunsAlone`); prompts are scored one at a time on the engine's
context. Remote engines keep the FIFO (`make_scheduler`).
"""

from __future__ import annotations

import contextlib
import queue
import time
from typing import TYPE_CHECKING, Any

from engine.decode.continuous import RunsAlone
from engine.decode.fanout import can_batch, in_process
from engine.decode.protocol import Engine
from engine.decode.run import ReplyResult
from engine.decode.score_request import check_request
from engine.records import TokenScore
from engine.serve.queue import Failed, Finished, Job, Scheduler, Scored, score_only

if TYPE_CHECKING:
    from engine.decode.batch_scoring import ScoredPath
    from engine.decode.continuous import Advanced, ContinuousBatch, Member, Newcomer

# A decode step reads every weight once whatever the batch, so rows come cheap until the
# step turns compute-bound. Measured on the bundled model, 2 shared CPU cores (noisy): a
# step of 8 rows cost ~2.5x one row's, 16 rows ~3x, 32 rows ~4x (plus ~5 ms of sampling
# per row): 16 gives most of the throughput while each reply keeps a step under ~1.5x
# an 8-row one; a GPU has room for more.
CPU_MAX_BATCH = 16
ACCELERATOR_MAX_BATCH = 32
PROMPT_PASSES = 64  # jobs taken between two steps at most (a legacy request's batch)


def default_max_batch(device: str) -> int:
    """``--max-batch``'s default for a model on `device` (see `CPU_MAX_BATCH`)."""
    return CPU_MAX_BATCH if device.split(":")[0] in ("cpu", "") else ACCELERATOR_MAX_BATCH


def make_scheduler(engine: Engine, max_queue: int, max_batch: int) -> Scheduler:
    """The batch where rows can share one (a transformers model or a GGUF file on
    llama.cpp in this process, and ``max_batch`` above 1), the FIFO elsewhere."""
    if max_batch > 1 and in_process(engine) is not None:
        return BatchScheduler(engine, max_queue, max_batch)
    return Scheduler(engine, max_queue)


class BatchScheduler(Scheduler):
    """The FIFO's queue in front of a continuous batch of at most `max_batch` replies."""

    def __init__(self, engine: Engine, max_queue: int = 64, max_batch: int = 8) -> None:
        self._max_batch = max(1, int(max_batch))
        self._batch: ContinuousBatch | None = None  # made on the engine thread
        self._scores: dict[Job, tuple[TokenScore, ...] | None] = {}
        self._deferred: list[Job] = []  # prepared, waiting for room in the rows' cache
        self._batched_passes = can_batch(engine)  # prompts run as rows (transformers)
        super().__init__(engine, max_queue)  # starts the worker (our `_work`)

    @property
    def max_batch(self) -> int:
        return self._max_batch

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker, then free the batch's memory on the engine thread."""
        super().close(timeout)
        if self._batch is not None and not self._worker.is_alive():
            batch, self._batch = self._batch, None
            self._call(batch.close)

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
                if isinstance(error, RunsAlone):  # too long for a row: alone, the batch waits
                    self._run_alone(job)
                else:
                    self._end(job, Failed(error))
            for member in advanced.left:
                self._finish(member)
            self._deferred = list(advanced.deferred)

    def _admit(self, running: int, *, block: bool) -> tuple[list[Job], bool]:
        """The jobs that join at this step: waiting ones up to the batch's free rows (the
        first one waited for when nothing runs), after their prompt pass (`_prepare`). A
        job that only scores, or generates one token, holds no row. And whether the queue
        was closed (what was taken before still joins)."""
        taken: list[Job] = []
        rows, closed = running + len(self._deferred), False
        block = block and not self._deferred
        while rows < self._max_batch and len(taken) < PROMPT_PASSES:
            try:
                job = self._jobs.get(block=block and not taken)
            except queue.Empty:  # nobody else is waiting
                break
            if job is None:
                closed = True
                break
            with self._lock:
                self._waiting -= 1
            taken.append(job)
            rows += takes_row(job)
        waited, self._deferred = self._deferred, []
        deferred = []
        for job in waited:  # a client that went away while its job waited
            if job.cancel.is_set():
                self._end(job, Finished(None, self._scores.get(job)))
            else:
                deferred.append(job)
        return deferred + self._prepare(taken), closed

    def _prepare(self, jobs: list[Job]) -> list[Job]:
        """The jobs of `jobs` that join the batch. A cancelled one ends here; the prompts
        to score, and those of one-token replies, run together in one batched pass
        (engine/decode/batch_scoring.py): a scoring job hears its scores, and ends here
        when it only scores; a one-token reply is sampled from the pass and ends here."""
        live = []
        for job in jobs:
            if job.cancel.is_set():
                self._end(job, Finished(None))
            else:
                live.append(job)
        if not self._batched_passes:
            return [job for job in live if self._score_alone(job)]
        passing = [job for job in live if needs_pass(job)]
        if not passing:
            return live
        try:
            scored, pass_ms = self._call(self._prompt_pass, passing)
        except Exception as exc:  # the pass failed: each of its requests hears why
            for job in passing:
                self._end(job, Failed(exc))
            return [job for job in live if job not in passing]
        joining = [job for job in live if job not in passing]
        for job, path in zip(passing, scored, strict=True):
            if not self._scored(job, path.scores if job.score_top is not None else None):
                continue
            if path.next_logits is None:  # a longer reply: it joins the batch
                joining.append(job)
                continue
            try:
                member = self._call(self._one_token, job, path.next_logits, pass_ms)
            except Exception as exc:
                self._end(job, Failed(exc))
                continue
            job.emit(member.steps[0])
            self._finish(member)
        return joining

    def _scored(self, job: Job, scores: tuple[TokenScore, ...] | None) -> bool:
        """`job` hears its prompt's scores (None: not asked) and ends here when it only
        scores; whether it goes on to generate."""
        if scores is not None:
            job.emit(Scored(scores))
        if not job.generate:
            self._end(job, Finished(score_only(job.prompt_ids), scores))
            return False
        self._scores[job] = scores
        return True

    def _score_alone(self, job: Job) -> bool:
        """Where prompts cannot run as rows (llama.cpp): `job`'s prompt scored on the
        engine's own context when asked; whether it joins the batch."""
        try:
            scores = self._call(self._prompt_scores, job)
        except Exception as exc:
            self._end(job, Failed(exc))
            return False
        return self._scored(job, scores)

    def _run_alone(self, job: Job) -> None:
        """`job`'s reply on the engine's own context, as the FIFO runs it (its prompt
        already scored where asked)."""
        try:
            result = self._call(self._reply, job)
        except Exception as exc:
            self._end(job, Failed(exc))
            return
        self._end(job, Finished(result, self._scores.get(job)))

    def _one_token(self, job: Job, logits: Any, pass_ms: float) -> Member:
        from engine.decode.continuous import one_token_reply

        return one_token_reply(self._engine.loaded, newcomer(job), logits, pass_ms)  # type: ignore[attr-defined]

    def _prompt_pass(self, jobs: list[Job]) -> tuple[list[ScoredPath], float]:
        """The jobs' prompts in one batched pass, on the engine thread; and its time (ms)."""
        from engine.decode.batch import pad_id_of
        from engine.decode.batch_scoring import ScoringPath, score_paths

        loaded = self._engine.loaded  # type: ignore[attr-defined]
        paths = []
        for job in jobs:  # each refused alone as `PromptScoring.score` would refuse it
            top = job.score_top
            ids = check_request(job.prompt_ids, start=1, top=top or 0,
                                context_window=loaded.context_window)  # fmt: skip
            paths.append(ScoringPath(ids, top, next_token=job.generate and not takes_row(job)))
        started = time.perf_counter()
        pad = pad_id_of(loaded.tokenizer, loaded.eos_token_ids)
        scored = score_paths(loaded, paths, pad_id=pad)
        return scored, (time.perf_counter() - started) * 1000.0

    def _advance(self, jobs: list[Job]) -> Advanced:
        """One step of the batch, on the engine thread."""
        from engine.decode.continuous import ContinuousBatch

        if self._batch is None:
            loaded = self._engine.loaded  # type: ignore[attr-defined]
            rows = None
            if not self._batched_passes:  # llama.cpp: a sequence id per row
                from engine.decode.llama_batch import LlamaSequences

                rows = LlamaSequences(loaded.llm, self._max_batch, loaded.context_window)
            self._batch = ContinuousBatch(loaded, rows)
        return self._batch.advance([newcomer(job) for job in jobs])

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


def takes_row(job: Job) -> bool:
    """Whether `job` decodes in the batch: it generates more than one token (one token
    is sampled from its prompt pass)."""
    return job.generate and job.params.max_new_tokens > 1


def needs_pass(job: Job) -> bool:
    """Whether `job`'s prompt runs in the batched prompt pass: it is scored, or its reply
    is a single token."""
    return job.score_top is not None or (job.generate and not takes_row(job))


def newcomer(job: Job) -> Newcomer:
    from engine.decode.continuous import Newcomer

    return Newcomer(job, job.prompt_ids, job.params, job.cancel)
