"""`GenerationRun`: the workbench's reply driver (`engine.decode.driver.ReplyDriver`).

The engine's driver owns the decode logic (step mode, branch resume, fan-out, the
one place a failing reply is handled); this adapter turns its events into the
screen's messages. Steps are batched (`StepBatcher`) so the screen keeps up at any
token rate; a step picked at a proposal is posted at once, and every pending step
is posted before a proposal or the end of the operation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from textual.message import Message

from engine.decode import (
    BranchFinished,
    BranchProgressed,
    DriverEvent,
    Engine,
    FanOutFinished,
    PromptRendered,
    ProposalMade,
    ReplyDriver,
    ReplyFailed,
    ReplyFinished,
    ReplyStarted,
    StepDecoded,
)
from engine.params import SamplingParams
from engine.records import Step
from engine.tokens import ChatMessage
from tui import messages as msg
from tui.crash import logged

BATCH_SECONDS = 0.03
Post = Callable[[Message], object]


class GenerationRun(ReplyDriver):
    """A `ReplyDriver` whose events are posted to the screen as messages."""

    def __init__(
        self,
        backend: Engine,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        post: Post,
        allow_special: bool,
        step_mode: bool,
        prefix: Sequence[int] = (),
    ) -> None:
        super().__init__(
            backend,
            messages,
            params,
            on_event=self._posted,
            allow_special=allow_special,
            step_mode=step_mode,
            prefix=prefix,
        )
        self.post = post
        # seconds between batches; the screen paces it to what painting costs (tui/pacing.py)
        self.batch_seconds = BATCH_SECONDS
        self._batcher: StepBatcher | None = None

    def _posted(self, event: DriverEvent) -> None:
        """One driver event as the screen's message (on the worker thread)."""
        if isinstance(event, StepDecoded):
            if self._batcher is None:
                self._batcher = StepBatcher(self.post, lambda: self.batch_seconds)
            self._batcher.add(event.step)
            if event.picked:
                self._batcher.flush()
            return
        if isinstance(event, ProposalMade):
            if self._batcher is not None:
                self._batcher.flush()  # the steps so far land before the proposal does
        elif isinstance(event, ReplyFinished | ReplyFailed | FanOutFinished):
            self._close_batcher()  # every decoded step is posted before the end
        self.post(_message(event))

    def _close_batcher(self) -> None:
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()


def _message(event: DriverEvent) -> Message:
    """The message the screen handles for a driver event (steps are batched apart)."""
    match event:
        case PromptRendered(view):
            return msg.PromptRendered(view)
        case ReplyStarted(prompt_tokens, prefill_ms):
            return msg.GenerationStarted(prompt_tokens, prefill_ms)
        case ProposalMade(proposal):
            return msg.ProposalReady(proposal)
        case ReplyFinished(reason, summary):
            return msg.GenerationFinished(reason, summary)
        case ReplyFailed(error, exc, what, unexpected):
            # the UI shows one line; an unexpected error's traceback goes to a crash log
            return msg.GenerationFailed(logged(exc, what) if unexpected else error)
        case BranchProgressed(index, total, tokens, seed):
            return msg.FanOutProgressed(index, total, tokens, seed)
        case BranchFinished(steps, reason, seed):
            return msg.BranchDecoded(steps, reason, seed)
        case FanOutFinished(made, cancelled):
            return msg.FanOutFinished(made, cancelled)
        case StepDecoded(step):
            return msg.StepsDecoded((step,))


class StepBatcher:
    """Steps from the decode thread, posted to the screen in batches.

    The first step goes at once (time to first token); later ones are posted at
    most every `interval()` seconds and never later than that after they were
    decoded, whether or not another step follows soon (a slow model, a long
    step). A small flusher thread sleeps until the batch is due; one lock keeps
    posts in order with `flush()` calls from the decode thread.
    """

    def __init__(self, post: Post, interval: Callable[[], float]) -> None:
        self._post, self._interval = post, interval
        self._batch: list[Step] = []
        self._cond = threading.Condition()
        self._post_lock = threading.Lock()
        self._first = True
        self._closed = False
        self._last_flush = time.perf_counter()
        self._flusher = threading.Thread(target=self._run, name="logitlab-batcher", daemon=True)
        self._flusher.start()

    def add(self, step: Step) -> None:
        with self._cond:
            self._batch.append(step)
            first, self._first = self._first, False
            if len(self._batch) == 1:  # the flusher waits for a batch to start, not
                self._cond.notify()  # for each step: a wake-up per token costs the GIL
        if first:
            self.flush()

    def flush(self) -> None:
        """Post what is pending now (the decode thread, before it waits for a pick)."""
        with self._post_lock:
            with self._cond:
                steps, self._batch = self._batch, []
                self._last_flush = time.perf_counter()
            if steps:
                self._post(msg.StepsDecoded(tuple(steps)))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._flusher.join()
        self.flush()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._batch and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                due = self._last_flush + self._interval()
                while not self._closed and (wait := due - time.perf_counter()) > 0:
                    self._cond.wait(wait)
            self.flush()
