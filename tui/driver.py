"""`GenerationRun`: one reply driven from a worker thread.

The worker calls `run()` (or `resume_branch()`); a run built with a `prefix`
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

from engine.chat import ChatMessage
from engine.errors import LogitlabError
from engine.params import SamplingParams
from engine.records import Step
from tui.backend import Backend, Generation
from tui.messages import (
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
        backend: Backend,
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
        self.generation: Generation | None = None
        self.active = True  # created to run at once; False when the worker ends
        self.waiting = False  # step mode: a proposal is shown, waiting for a choice
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
            self.generation = gen
            prefill_ms = gen.prefill()
            post(GenerationStarted(gen.prompt_tokens, prefill_ms))
            self._drive(gen, post)
        except LogitlabError as exc:
            post(GenerationFailed(str(exc)))
        except Exception as exc:  # the UI shows one line, never a traceback
            post(GenerationFailed(f"{type(exc).__name__}: {exc}"))
        finally:
            self.active = self.waiting = False

    def resume_branch(self, cut: int, post: Post) -> None:
        """Rewind the finished generation by `cut` steps and continue in step mode."""
        gen = self.generation
        if gen is None:
            post(GenerationFailed("nothing to branch from"))
            return
        self.active = True
        try:
            self.cancel_event.clear()
            self._commands = queue.Queue()
            gen.rewind(cut)
            self.step_mode = True
            self._drive(gen, post)
        except LogitlabError as exc:
            post(GenerationFailed(str(exc)))
        except Exception as exc:
            post(GenerationFailed(f"{type(exc).__name__}: {exc}"))
        finally:
            self.active = self.waiting = False

    def _drive(self, gen: Generation, post: Post) -> None:
        batch: list[Step] = []
        last_flush = time.perf_counter()
        first = True

        def flush() -> None:
            nonlocal last_flush
            if batch:
                post(StepsDecoded(tuple(batch)))
                batch.clear()
            last_flush = time.perf_counter()

        while not gen.done and not self.cancel_event.is_set():
            if self.step_mode:
                flush()
                step = self._choose(gen, post)
                if step is None:
                    break
            else:
                step = gen.step()
            batch.append(step)
            if first or self.step_mode or time.perf_counter() - last_flush >= BATCH_SECONDS:
                flush()
                first = False
        flush()
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

    def _choose(self, gen: Generation, post: Post) -> Step | None:
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
