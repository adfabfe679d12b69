"""`GenerationRun`: one reply driven from a worker thread.

The worker calls `run()` (or `resume_at()`, `fan_out()`); a run built with a `prefix`
continues a stored reply no live decoder holds (a resumed session, a reply from
before a model reload): the backend prefills prompt + prefix and the run starts
in step mode, waiting for the branch pick. The UI thread talks to it only
through `accept` / `force` / `continue_free` / `stop` / `set_step_mode`, which
put commands on a queue and set the cancel event. Events go back as messages
through `post`, batched so the screen keeps up at any token rate.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence

from textual.message import Message

from engine.decode import Engine, Reply, reposition, reseed
from engine.errors import LogitlabError
from engine.params import SamplingParams
from engine.records import Step
from engine.tokens import ChatMessage
from tui.crash import logged
from tui.messages import (
    BranchDecoded,
    FanOutFinished,
    FanOutProgressed,
    GenerationFailed,
    GenerationFinished,
    GenerationStarted,
    PromptRendered,
    ProposalReady,
    StepsDecoded,
)

BATCH_SECONDS = 0.03
Post = Callable[[Message], object]
_ACCEPT, _CONTINUE, _STOP = "accept", "continue", "stop"


class GenerationRun:
    def __init__(
        self,
        backend: Engine,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        allow_special: bool,
        step_mode: bool,
        prefix: Sequence[int] = (),
    ) -> None:
        self.backend = backend
        self.prefix = list(prefix)  # reply tokens kept from before (branching a stored reply)
        self.messages = list(messages)
        self.params = params
        self.allow_special = allow_special
        self.step_mode = step_mode
        self.cancel_event = threading.Event()
        self.generation: Reply | None = None
        self.live: list[int] = []  # the reply ids the generation's KV cache holds
        self.active = True  # created to run at once; False when the worker ends
        self.waiting = False  # step mode: a proposal is shown, waiting for a choice
        # seconds between batches; the screen paces it to what painting costs (tui/pacing.py)
        self.batch_seconds = BATCH_SECONDS
        self._commands: queue.Queue[str | int] = queue.Queue()

    # --- called from the UI thread ----------------------------------------------------

    def accept(self) -> None:
        self._commands.put(_ACCEPT)

    def force(self, token_id: int) -> None:
        self._commands.put(token_id)

    def continue_free(self) -> None:
        self.step_mode = False
        self._commands.put(_CONTINUE)

    def set_step_mode(self, on: bool) -> None:
        if on:
            self.step_mode = True
        elif self.waiting:
            self.continue_free()
        else:
            self.step_mode = False

    def stop(self) -> None:
        self.cancel_event.set()
        self._commands.put(_STOP)

    # --- called from the worker thread --------------------------------------------------

    def run(self, post: Post) -> None:
        """Render, prefill, then decode until done, posting events."""
        self.active = True
        try:
            post(
                PromptRendered(
                    self.backend.render_prompt(self.messages, allow_special=self.allow_special)
                )
            )
            gen = self.backend.start(
                self.messages,
                self.params,
                allow_special=self.allow_special,
                cancel=self.cancel_event,
                prefix=self.prefix,
            )
            self.generation, self.live = gen, list(self.prefix)
            prefill_ms = gen.prefill()
            post(GenerationStarted(gen.prompt_tokens, prefill_ms))
            self._drive(gen, post)
        except LogitlabError as exc:
            post(GenerationFailed(str(exc)))
        except Exception as exc:  # the UI shows one line; the traceback goes to a crash log
            post(GenerationFailed(logged(exc, "generating a reply")))
        finally:
            self.active = self.waiting = False

    def resume_at(self, target: Sequence[int], post: Post) -> None:
        """Move the live generation onto reply ids `target` (a branch's prefix:
        rewind to what they share, force the rest) and continue in step mode."""
        gen = self.generation
        if gen is None:
            post(GenerationFailed("nothing to branch from"))
            return
        self.active = True
        try:
            self._reset_commands()
            self.live = self._moved(gen, target)
            self.step_mode = True
            self._drive(gen, post)
        except LogitlabError as exc:
            post(GenerationFailed(str(exc)))
        except Exception as exc:
            post(GenerationFailed(logged(exc, "continuing a branched reply")))
        finally:
            self.active = self.waiting = False

    def fan_out(self, target: Sequence[int], seeds: Sequence[int], post: Post) -> None:
        """Sample one continuation of `target` per seed, one after another on the same
        generation (each starts by rewinding to `target`), each posted as a branch.
        `stop` ends the one in progress (kept, cancelled) and starts no more."""
        self.active = True
        made = 0
        try:
            self._reset_commands()
            gen = self.generation
            if gen is None:  # no live decoder (a reopened session): prefill prompt + target
                gen = self.backend.start(
                    self.messages,
                    self.params,
                    allow_special=self.allow_special,
                    cancel=self.cancel_event,
                    prefix=target,
                )
                gen.prefill()
                self.generation, self.live = gen, list(target)
            for n, seed in enumerate(seeds):
                self.live = self._moved(gen, target)
                if not reseed(gen, seed):
                    raise LogitlabError("this engine cannot re-seed a reply")
                steps = self._sample(gen, post, n, len(seeds), seed)
                reason = "cancelled" if self.cancel_event.is_set() else gen.finish_reason
                post(BranchDecoded(tuple(steps), reason or "stop", seed))
                made += 1
                if self.cancel_event.is_set():
                    break
            post(FanOutFinished(made, self.cancel_event.is_set()))
        except LogitlabError as exc:
            post(GenerationFailed(str(exc)))
        except Exception as exc:
            post(GenerationFailed(f"{type(exc).__name__}: {exc}"))
        finally:
            self.active = self.waiting = False

    def _sample(self, gen: Reply, post: Post, n: int, total: int, seed: int) -> list[Step]:
        steps: list[Step] = []
        last = 0.0
        post(FanOutProgressed(n, total, 0, seed))
        while not gen.done and not self.cancel_event.is_set():
            step = gen.step()
            steps.append(step)
            self.live.append(step.token_id)
            if (now := time.perf_counter()) - last > 0.1:
                post(FanOutProgressed(n, total, len(steps), seed))
                last = now
        return steps

    def _moved(self, gen: Reply, target: Sequence[int]) -> list[int]:
        reposition(gen, self.live, target)
        return list(target)

    def _reset_commands(self) -> None:
        self.cancel_event.clear()
        self._commands = queue.Queue()

    def _drive(self, gen: Reply, post: Post) -> None:
        batcher = StepBatcher(post, lambda: self.batch_seconds)
        try:
            while not gen.done and not self.cancel_event.is_set():
                if self.step_mode:
                    batcher.flush()  # the steps so far land before the proposal does
                    step = self._choose(gen, post)
                    if step is None:
                        break
                    self.live.append(step.token_id)
                    batcher.add(step)
                    batcher.flush()
                else:
                    step = gen.step()
                    self.live.append(step.token_id)
                    batcher.add(step)
        finally:
            batcher.close()  # every decoded step is posted before the finish
        if self.cancel_event.is_set():
            gen.cancel()
            reason = "cancelled"
        else:
            reason = gen.finish_reason or "stop"
        try:
            summary = gen.summary()
        except Exception:
            summary = None
        post(GenerationFinished(reason, summary))

    def _choose(self, gen: Reply, post: Post) -> Step | None:
        proposal = gen.propose()
        self.waiting = True
        post(ProposalReady(proposal))
        command = self._commands.get()
        self.waiting = False
        if command == _STOP or self.cancel_event.is_set():
            return None
        if isinstance(command, int):
            return gen.step(force=command)
        return gen.step()  # accept (or continue): the sampled token


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
                self._post(StepsDecoded(tuple(steps)))

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
