"""`Workbench`: the state of the workbench, apart from the screen that shows it.

The conversation, the run in progress, the sampling settings and the params of the
reply shown, the step-mode proposal waiting for a pick, the loaded model's facts,
the recorder that keeps the session: one object, so the screen only lays out
widgets and routes keys, its collaborators (`tui/screens/*_actions.py`,
`tui/drafts.py`) read and change the state through this small interface, and a
second view (compare) can hold a second one.

Replies are decoded by `tui.driver.GenerationRun` (the engine's `ReplyDriver`) on
thread workers of the `host` (the screen), which receive its messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from textual.dom import DOMNode
from textual.notifications import SeverityLevel

from engine.decode import Engine, step_unavailable
from engine.errors import InvalidParameterError
from engine.model import ModelDescription, ModelSpec
from engine.params import SamplingParams, Source
from engine.records import Proposal
from engine.sessions import Conversation, Turn
from engine.tokens import ChatMessage
from tui.driver import GenerationRun
from tui.messages import ContextCounted
from tui.recorder import NullRecorder, Recorder
from tui.settings import UISettings

Tell = Callable[[str, SeverityLevel], object]  # tells the user one line, e.g. a bad setting


class Workbench:
    """What the workbench shows and drives; every method runs on the UI thread."""

    def __init__(
        self,
        backend: Engine,
        spec: ModelSpec,
        *,
        host: DOMNode,
        tell: Tell,
        recorder: Recorder | None = None,
        settings: UISettings | None = None,
    ) -> None:
        self.backend, self.spec = backend, spec
        self.host = host  # runs the decode workers and receives their messages
        self.tell = tell
        self.recorder: Recorder = recorder or NullRecorder()
        self.settings = settings or UISettings()
        self.facts: ModelDescription | None = None
        self.conversation = Conversation()
        self.step_mode = False
        self.gen_run: GenerationRun | None = None
        self.proposal: Proposal | None = None
        self.params: SamplingParams | None = None  # those of the reply shown
        self.shown: int | None = None  # the turn the token stream shows; None: the last reply

    # --- the model and its settings --------------------------------------------------------

    def model_loaded(self, facts: ModelDescription) -> None:
        """A model is loaded: replies come from it; no live reply survives the swap."""
        self.facts, self.spec = facts, facts.spec
        self.gen_run = None
        self.recorder.model_loaded(facts)

    def resolved(
        self, settings: UISettings | None = None, *, tell: bool = True
    ) -> tuple[SamplingParams, dict[str, Source]] | None:
        """The sampling params `settings` (default: the workbench's) resolve to for the
        loaded model, with each value's source; None (the user told why, if `tell`)
        when a value is invalid or no model is loaded yet."""
        if self.facts is None:
            return None
        try:
            return (settings or self.settings).resolve(self.facts.generation_config)
        except InvalidParameterError as exc:
            if tell:
                self.tell(str(exc), "error")
            return None

    def reply_params(self) -> SamplingParams | None:
        """The sampling params of the reply shown: those it was generated with, else
        (a reopened session) the settings', which the session restored."""
        if self.params is None and (resolved := self.resolved(tell=False)) is not None:
            return resolved[0]
        return self.params

    def settings_saved(self, settings: UISettings) -> None:
        self.settings = settings
        if (resolved := self.resolved(settings, tell=False)) is not None:
            self.recorder.settings_changed(settings, resolved[0])

    def record(self, turn: Turn | None) -> None:
        """Commit a completed turn to the session with the params of the reply shown."""
        if turn is not None and (params := self.reply_params()) is not None:
            self.params = params
            self.recorder.message_completed(turn, self.settings, params)

    def checkpoint(self, turn: Turn | None) -> None:
        """Save a reply still being decoded as far as it has come, so a native crash
        (which no handler sees) loses at most the last second of it."""
        if turn is not None and (params := self.reply_params()) is not None:
            self.recorder.message_completed(turn, self.settings, params, checkpoint=True)

    def reset(self, conversation: Conversation | None = None) -> None:
        """Show another conversation (a new or reopened session): no run, no proposal."""
        self.conversation = conversation or Conversation()
        self.gen_run, self.proposal, self.shown = None, None, None

    # --- the run in progress ----------------------------------------------------------------

    @property
    def running(self) -> GenerationRun | None:
        """The run of the reply being decoded (its worker has not ended), if any."""
        run = self.gen_run
        return run if run is not None and run.active else None

    @property
    def replying(self) -> bool:
        return self.running is not None

    @property
    def waiting(self) -> bool:
        """Step mode: a proposal is shown and the run waits for a pick."""
        return self.proposal is not None and self.gen_run is not None and self.gen_run.waiting

    def new_run(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        *,
        prefix: list[int] | None = None,
    ) -> GenerationRun:
        """The run of a new reply (or, with `prefix`, of a stored reply continued in step
        mode); it becomes the workbench's run and `params` the reply's."""
        self.params = params
        self.gen_run = GenerationRun(
            self.backend,
            messages,
            params,
            post=self.host.post_message,
            allow_special=self.settings.allow_special,
            step_mode=self.step_mode if prefix is None else True,
            prefix=prefix or (),
        )
        return self.gen_run

    def continued_run(self, prefix: list[int]) -> GenerationRun | None:
        """A run that continues the last reply from reply ids `prefix`, in step mode."""
        if (resolved := self.resolved()) is None:
            return None
        upto = len(self.conversation.turns) - 1
        messages = self.conversation.chat_messages(self.settings.system_prompt, upto=upto)
        return self.new_run(messages, resolved[0], prefix=prefix)

    def start(self, run: GenerationRun) -> None:
        """Decode `run` from its prefill on a worker."""
        run.active = True
        self._worker(run.run)

    def resume(self, run: GenerationRun, target: list[int]) -> None:
        """Continue `run` in step mode from reply ids `target` (a branch point)."""
        run.active = True
        self._worker(lambda: run.resume_at(target))

    def fan_out(self, run: GenerationRun, target: list[int], seeds: list[int]) -> None:
        run.active = True
        self._worker(lambda: run.fan_out(target, seeds))

    def _worker(self, work: Callable[[], object]) -> None:
        self.host.run_worker(
            work, thread=True, exclusive=True, exit_on_error=False, group="generate"
        )

    def stop(self) -> bool:
        """Stop the reply being decoded; False if there is none."""
        if (run := self.running) is None:
            return False
        run.stop()
        return True

    def accept(self) -> None:
        if self.gen_run is not None and self.proposal is not None:
            self.proposal = None
            self.gen_run.accept()

    def choose(self, n: int) -> None:
        """Force candidate `n` (1-based) of the proposal."""
        if self.gen_run is None or self.proposal is None:
            return
        if not 1 <= n <= len(self.proposal.top):
            self.tell(f"There is no candidate {n}.", "warning")
            return
        token_id = self.proposal.top[n - 1].token_id
        self.proposal = None
        self.gen_run.force(token_id)

    def continue_free(self) -> bool:
        """Step mode: finish the reply without waiting again: at once when a proposal
        waits, after the step in flight when one is decoding (a forced token, say)."""
        run = self.gen_run
        if run is None:
            return False
        if self.proposal is not None:
            self.proposal = None
            run.continue_free()
            return True
        if self.running is not None and run.step_mode:
            run.set_step_mode(False)  # this reply only; its next proposal is never shown
            return True
        return False

    def key_applies(self, action: str) -> bool:
        """Whether the screen's `action` does something now: accept and choose while a
        proposal waits, continue also while a step-mode step decodes, stop while a reply
        runs; every other action always."""
        if action in ("accept", "choose"):
            return self.waiting
        if action == "continue_free":
            run = self.running
            return self.waiting or (run is not None and run.step_mode)
        return self.replying if action == "stop" else True

    def toggle_step_mode(self) -> bool:
        """Step mode on or off (for the run in progress too); False if the engine cannot."""
        if not self.step_mode and (why := step_unavailable(self.backend)) is not None:
            self.tell(why, "warning")
            return False
        self.step_mode = not self.step_mode
        if (run := self.running) is not None:
            run.set_step_mode(self.step_mode)
        return True

    # --- the context the chat fills -----------------------------------------------------------

    def count_context(self) -> None:
        """Post `ContextCounted` for the chat as it stands (a reopened session, a switched
        branch): the prompt of the last reply plus its tokens, counted on a worker."""
        if self.facts is None or self.replying:
            return
        reply = self.conversation.last_reply
        upto = len(self.conversation.turns) - (1 if reply is not None else 0)
        messages = self.conversation.chat_messages(self.settings.system_prompt, upto=upto)
        if not messages:
            self.host.post_message(ContextCounted(0))
            return
        tokens = len(reply.steps) if reply is not None else 0
        self.host.run_worker(
            lambda: self._count(messages, tokens),
            thread=True,
            exclusive=True,
            exit_on_error=False,
            group="context",
        )

    def _count(self, messages: list[ChatMessage], reply_tokens: int) -> None:
        try:
            view = self.backend.render_prompt(messages, allow_special=self.settings.allow_special)
        except Exception:  # the count is a nicety; a failure leaves it as it was
            return
        self.host.post_message(ContextCounted(view.count + reply_tokens))


T = TypeVar("T")


class Shared(Generic[T]):
    """A screen attribute that is its workbench's (tests and the app read the state
    through the screen; collaborators use the workbench itself)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, screen: Any, owner: type | None = None) -> T:
        if screen is None:  # on the class: the value belongs to each screen's workbench
            raise AttributeError(self.name)
        value: T = getattr(screen.workbench, self.name)
        return value

    def __set__(self, screen: Any, value: T) -> None:
        setattr(screen.workbench, self.name, value)
