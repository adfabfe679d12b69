"""`ReplyDriver`: one reply driven to its end, with the user in the loop if asked.

The decode protocol says how to take one step; the driver says which steps to
take and when to stop. It runs a reply free (prefill, step until a stop), in step
mode (each token waits for a command: accept the sampled one, force another,
continue free), resumes it on another branch of its tree (rewind to the shared
prefix, force the rest), and fans it out (one sampled continuation per seed: on
transformers all of them as rows of one batch, engine/decode/fanout.py).

Every front end reads the same small frozen events through one callback, so the
workbench turns them into Textual messages, the CLI into text or JSONL, a test
into a list. The driver is run from one worker thread; any thread may call the
command methods (`accept`, `force`, `continue_free`, `set_step_mode`, `stop`),
which put commands on a queue and set the cancel event. Each operation ends with
exactly one terminal event (`ReplyFinished`, `FanOutFinished` or `ReplyFailed`):
a failure of any kind is turned into `ReplyFailed` in one place (`_guarded`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from engine.decode.fanout import batched_fan_out, can_batch
from engine.decode.protocol import Engine, PromptView, Reply
from engine.decode.tree import reposition, reseed
from engine.errors import LogitlabError, one_line
from engine.params import SamplingParams
from engine.records import GenerationSummary, Proposal, Step
from engine.tokens.chat import ChatMessage

PROGRESS_EVERY = 0.1  # seconds between `BranchProgressed` events of a fan-out


@dataclass(frozen=True)
class PromptRendered:
    """The chat template's rendering of the prompt (before the prefill)."""

    view: PromptView


@dataclass(frozen=True)
class ReplyStarted:
    """The prompt (and any kept prefix) is prefilled; steps follow."""

    prompt_tokens: int
    prefill_ms: float


@dataclass(frozen=True)
class StepDecoded:
    """One token committed; `picked`: chosen by the user at a proposal (step mode)."""

    step: Step
    picked: bool = False


@dataclass(frozen=True)
class ProposalMade:
    """Step mode: the next token's candidates, waiting for a command."""

    proposal: Proposal


@dataclass(frozen=True)
class ReplyFinished:
    """The reply stopped; `summary` is None where the engine could not give one."""

    finish_reason: str
    summary: GenerationSummary | None


@dataclass(frozen=True)
class ReplyFailed:
    """The operation failed. `error` is one line a user can read; `unexpected` says it
    was not one of the engine's own errors (a front end may log its traceback)."""

    error: str
    exception: BaseException
    what: str  # "generating a reply", "continuing a branched reply", "fanning out"
    unexpected: bool


@dataclass(frozen=True)
class BranchProgressed:
    """Continuation `index` of `total` (seed `seed`) has `tokens` tokens so far."""

    index: int
    total: int
    tokens: int
    seed: int


@dataclass(frozen=True)
class BranchFinished:
    """A fanned-out continuation ended (or was cancelled): it becomes a branch."""

    steps: tuple[Step, ...]
    finish_reason: str
    seed: int


@dataclass(frozen=True)
class FanOutFinished:
    made: int
    cancelled: bool


DriverEvent = (
    PromptRendered
    | ReplyStarted
    | StepDecoded
    | ProposalMade
    | ReplyFinished
    | ReplyFailed
    | BranchProgressed
    | BranchFinished
    | FanOutFinished
)
OnEvent = Callable[[DriverEvent], object]
Terminal = ReplyFinished | ReplyFailed | FanOutFinished

_ACCEPT, _CONTINUE, _STOP = "accept", "continue", "stop"


class ReplyDriver:
    """One reply of `engine` to `messages` (or to exact `prompt_ids`), driven from a
    worker thread; its events go to `on_event` on that thread."""

    def __init__(
        self,
        engine: Engine,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        on_event: OnEvent,
        allow_special: bool = False,
        step_mode: bool = False,
        prefix: Sequence[int] = (),
        prompt_ids: Sequence[int] | None = None,
        render: bool = True,
    ) -> None:
        self.engine = engine
        self.messages = list(messages)
        self.params = params
        self.on_event = on_event
        self.allow_special = allow_special
        self.step_mode = step_mode
        self.prefix = list(prefix)  # reply tokens kept from before (branching a stored reply)
        self.prompt_ids = list(prompt_ids) if prompt_ids is not None else None
        self.render = render and prompt_ids is None  # ids need no template rendering
        self.cancel_event = threading.Event()
        self.reply: Reply | None = None
        self.live: list[int] = []  # the reply ids the reply's KV cache holds
        self.active = True  # created to run at once; False when an operation ends
        self.waiting = False  # step mode: a proposal is out, waiting for a command
        self._commands: queue.Queue[str | int] = queue.Queue()

    # --- commands, from any thread -------------------------------------------------------

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

    # --- operations, on the worker thread --------------------------------------------------

    def run(self) -> Terminal:
        """Render, prefill, then decode until a stop; returns the terminal event."""
        with self._guarded("generating a reply") as end:
            if self.render:
                view = self.engine.render_prompt(self.messages, allow_special=self.allow_special)
                self.on_event(PromptRendered(view))
            reply = self._start(self.prefix)
            end.append(self._decode(reply))
        return end[0]

    def resume_at(self, target: Sequence[int]) -> Terminal:
        """Move the live reply onto reply ids `target` (a branch's prefix: rewind to
        what they share, force the rest) and continue it in step mode."""
        with self._guarded("continuing a branched reply") as end:
            if self.reply is None:
                raise LogitlabError("nothing to branch from")
            self._reset_commands()
            self._move(self.reply, target)
            self.step_mode = True
            end.append(self._decode(self.reply))
        return end[0]

    def fan_out(self, target: Sequence[int], seeds: Sequence[int]) -> Terminal:
        """Sample one continuation of `target` per seed, one after another on the same
        reply (each starts by rewinding to `target`), each reported as a branch.
        `stop` ends the one in progress (kept, cancelled) and starts no more."""
        with self._guarded("fanning out") as end:
            self._reset_commands()
            if len(seeds) > 1 and can_batch(self.engine):  # one batched run (fanout.py)
                end.append(self._fan_out_batched(target, seeds))
                return end[0]
            reply = self.reply
            if reply is None:  # no live decoder (a reopened session): prefill prompt + target
                reply = self._start(target, announce=False)
            made = 0
            for n, seed in enumerate(seeds):
                self._move(reply, target)
                if not reseed(reply, seed):
                    raise LogitlabError("this engine cannot re-seed a reply")
                steps = self._sample(reply, n, len(seeds), seed)
                reason = "cancelled" if self.cancel_event.is_set() else reply.finish_reason
                self.on_event(BranchFinished(tuple(steps), reason or "stop", seed))
                made += 1
                if self.cancel_event.is_set():
                    break
            finished = FanOutFinished(made, self.cancel_event.is_set())
            self.on_event(finished)
            end.append(finished)
        return end[0]

    def _fan_out_batched(self, target: Sequence[int], seeds: Sequence[int]) -> FanOutFinished:
        """The continuations as rows of one batch; the live reply is left as it is."""
        total = len(seeds)
        prompt = self.prompt_ids or getattr(self.reply, "prompt_ids", None)
        if prompt is None:
            prompt = self.engine.chat_ids(self.messages, allow_special=self.allow_special)  # type: ignore[attr-defined]
        made, last = 0, 0.0
        self.on_event(BranchProgressed(0, total, 0, seeds[0]))
        rows = batched_fan_out(self.engine, prompt, target, self.params, seeds, self.cancel_event)
        for item in rows:
            if item[0] == "branch":
                _, row, steps, reason = item
                reason = "cancelled" if self.cancel_event.is_set() else reason
                self.on_event(BranchFinished(tuple(steps), reason or "stop", seeds[row]))
                made += 1
            elif (now := time.perf_counter()) - last > PROGRESS_EVERY:
                n = min(item[1], total - 1)
                self.on_event(BranchProgressed(n, total, item[2], seeds[n]))
                last = now
        finished = FanOutFinished(made, self.cancel_event.is_set())
        self.on_event(finished)
        return finished

    # --- the one loop ----------------------------------------------------------------------

    def _start(self, prefix: Sequence[int], *, announce: bool = True) -> Reply:
        if self.prompt_ids is not None:
            reply = self.engine.start_ids(
                self.prompt_ids, self.params, cancel=self.cancel_event, prefix=prefix
            )
        else:
            reply = self.engine.start(
                self.messages,
                self.params,
                allow_special=self.allow_special,
                cancel=self.cancel_event,
                prefix=prefix,
            )
        self.reply, self.live = reply, list(prefix)
        prefill_ms = reply.prefill()
        if announce:
            self.on_event(ReplyStarted(reply.prompt_tokens, prefill_ms))
        return reply

    def _decode(self, reply: Reply) -> ReplyFinished:
        """Step until the reply stops or is cancelled, asking at each step in step mode."""
        while not reply.done and not self.cancel_event.is_set():
            if self.step_mode:
                step = self._choose(reply)
                if step is None:
                    break
                self.live.append(step.token_id)
                self.on_event(StepDecoded(step, picked=True))
            else:
                step = reply.step()
                self.live.append(step.token_id)
                self.on_event(StepDecoded(step))
        if self.cancel_event.is_set():
            reply.cancel()
            reason = "cancelled"
        else:
            reason = reply.finish_reason or "stop"
        try:
            summary: GenerationSummary | None = reply.summary()
        except Exception:  # the summary is a nicety; the reply itself is complete
            summary = None
        finished = ReplyFinished(reason, summary)
        self.on_event(finished)
        return finished

    def _choose(self, reply: Reply) -> Step | None:
        proposal = reply.propose()
        self.waiting = True
        self.on_event(ProposalMade(proposal))
        command = self._commands.get()
        self.waiting = False
        if command == _STOP or self.cancel_event.is_set():
            return None
        if isinstance(command, int):
            return reply.step(force=command)
        return reply.step()  # accept (or continue): the sampled token

    def _sample(self, reply: Reply, n: int, total: int, seed: int) -> list[Step]:
        steps: list[Step] = []
        last = 0.0
        self.on_event(BranchProgressed(n, total, 0, seed))
        while not reply.done and not self.cancel_event.is_set():
            step = reply.step()
            steps.append(step)
            self.live.append(step.token_id)
            if (now := time.perf_counter()) - last > PROGRESS_EVERY:
                self.on_event(BranchProgressed(n, total, len(steps), seed))
                last = now
        return steps

    def _move(self, reply: Reply, target: Sequence[int]) -> None:
        reposition(reply, self.live, target)
        self.live = list(target)

    def _reset_commands(self) -> None:
        self.cancel_event.clear()
        self._commands = queue.Queue()

    @contextlib.contextmanager
    def _guarded(self, what: str) -> Iterator[list[Terminal]]:
        """The one place a failing operation is handled: any exception becomes a
        `ReplyFailed` event (and the operation's result); the run ends inactive."""
        self.active = True
        end: list[Terminal] = []
        try:
            yield end
        except Exception as exc:
            failed = ReplyFailed(
                one_line(exc), exc, what, unexpected=not isinstance(exc, LogitlabError)
            )
            end[:] = [failed]
            self.on_event(failed)
        finally:
            self.active = self.waiting = False
