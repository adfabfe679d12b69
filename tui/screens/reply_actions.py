"""The workbench's reply in progress: sending a message, then showing the run's
events as they arrive (prefill, batches of steps, a proposal waiting for a pick,
the finish or the failure) in the chat, the token stream and the status bar.

A collaborator of the workbench screen, like `SessionActions`: the state lives in
the `Workbench`, the widgets on the screen; the screen routes the messages here.
"""

from __future__ import annotations

import time
from typing import Any

from textual.screen import Screen

from engine.records import decode_rate
from tui.messages import (
    ContextCounted,
    GenerationFailed,
    GenerationFinished,
    GenerationStarted,
    ProposalReady,
    StepsDecoded,
)
from tui.pacing import FramePacer
from tui.screens.views import STREAM_TITLE
from tui.widgets.chat_pane import ChatPane
from tui.widgets.inspector import Inspector
from tui.widgets.prompt_input import PromptInput
from tui.widgets.status_bar import StatusBar
from tui.widgets.step_view import StepView
from tui.widgets.token_stream import TokenStream
from tui.workbench import Workbench

CHECKPOINT_EVERY = 1.0  # s: a reply in progress is saved this often (native crashes)
PROGRESS_EVERY = 1.0  # seconds between the status bar's tok/s and context updates


class ReplyActions:
    def __init__(self, workbench: Workbench, screen: Screen[Any]) -> None:
        self.workbench, self.screen = workbench, screen
        self.prompt_tokens = 0
        self._prefill_ms = 0.0
        self._step_ms: list[float] = []  # compute time of the reply's steps (tok/s)
        self._progress_shown = 0.0  # time.monotonic() of the status bar's last numbers
        self._checkpointed = 0.0  # time.monotonic() of the last save of the reply in progress
        self._pacer = FramePacer()

    async def send(self, text: str) -> None:
        """Add the user's message and start the reply to it."""
        wb, screen = self.workbench, self.screen
        if wb.facts is None:
            screen.notify("The model is still loading.", severity="warning")
            return
        if wb.replying:
            screen.notify("Still generating — Esc stops it.", severity="warning")
            return
        screen.query_one(PromptInput).clear()
        turn = wb.conversation.add_user(text)
        await screen.query_one(ChatPane).add_user(text)
        if (resolved := wb.resolved()) is None:
            return
        wb.params = resolved[0]
        wb.record(turn)
        messages = wb.conversation.chat_messages(wb.settings.system_prompt)
        wb.conversation.begin_reply()
        await screen.query_one(ChatPane).begin_reply()
        wb.shown = None  # the new reply streams into the token stream
        stream = screen.query_one(TokenStream)
        stream.border_title = STREAM_TITLE
        stream.clear()
        self._step_ms = []
        status = screen.query_one(StatusBar)
        status.tokens_per_second = status.ttft_ms = None
        status.state = "prefilling"
        wb.start(wb.new_run(messages, resolved[0]))
        screen.refresh_bindings()

    def context_counted(self, event: ContextCounted) -> None:
        if not self.workbench.replying:
            self.screen.query_one(StatusBar).context_used = event.tokens

    def started(self, event: GenerationStarted) -> None:
        self.prompt_tokens, self._prefill_ms = event.prompt_tokens, event.prefill_ms
        self._pacer.reset()
        self._checkpointed = time.monotonic()
        status = self.screen.query_one(StatusBar)
        status.context_used = event.prompt_tokens
        status.state = "generating"

    async def steps_decoded(self, event: StepsDecoded) -> None:
        screen = self.screen
        if (run := self.workbench.gen_run) is not None:
            run.batch_seconds = self._pacer.interval_after_update()
        # one paint for the whole batch: the chat's append awaits, and a frame drawn
        # in between would cost a second layout and paint per batch (bench/ui.py)
        with screen.app.batch_update():
            delta = self.workbench.conversation.add_steps(event.steps)
            stream = screen.query_one(TokenStream)
            first = not stream.steps
            stream.append(event.steps)
            self._step_ms.extend(s.elapsed_ms for s in event.steps)
            if first:
                screen.query_one(StatusBar).ttft_ms = self._prefill_ms + event.steps[0].elapsed_ms
            # the status bar spans the screen: painting it with the token stream makes
            # the frame visit every widget, so the numbers follow once a second
            if first or time.monotonic() - self._progress_shown >= PROGRESS_EVERY:
                self.show_progress()
            await screen.query_one(ChatPane).append(delta)
        if time.monotonic() - self._checkpointed >= CHECKPOINT_EVERY:
            self._checkpointed = time.monotonic()
            self.workbench.checkpoint(self.workbench.conversation.last_reply)

    def show_progress(self) -> None:
        """The reply's decode rate and the context it fills, in the status bar."""
        self._progress_shown = time.monotonic()
        status = self.screen.query_one(StatusBar)
        status.tokens_per_second = decode_rate(self._step_ms, self._prefill_ms)
        status.context_used = self.prompt_tokens + len(self.screen.query_one(TokenStream).steps)

    async def proposal_ready(self, event: ProposalReady) -> None:
        screen = self.screen
        run = self.workbench.gen_run
        if run is not None and not run.step_mode:  # `c` came first: the run goes on by itself
            return
        self.workbench.proposal = event.proposal
        # while the reply waits for a pick, everything so far is on the screen
        self.show_progress()
        await screen.query_one(ChatPane).flush()
        screen.query_one(StepView).show_proposal(event.proposal)
        screen.query_one(Inspector).show_tab("tab-step")
        screen.query_one(StatusBar).state = "your pick: Space accept · 1-9 · c · Esc"
        screen.query_one(TokenStream).focus()
        screen.refresh_bindings()

    async def finished(self, event: GenerationFinished) -> None:
        wb, screen = self.workbench, self.screen
        wb.proposal = None
        reply = wb.conversation.finish(event.finish_reason)
        await screen.query_one(ChatPane).finish_reply(event.finish_reason)
        self.show_progress()
        status = screen.query_one(StatusBar)
        status.state = event.finish_reason
        if event.summary is not None and event.summary.completion_tokens:
            status.tokens_per_second = event.summary.tokens_per_second
            status.ttft_ms = event.summary.time_to_first_token_ms
        if wb.params is not None:
            wb.record(reply)
        screen.query_one(PromptInput).focus()
        screen.refresh_bindings()

    async def failed(self, event: GenerationFailed) -> None:
        wb, screen = self.workbench, self.screen
        # markup=False: the error may quote a server's own words
        screen.notify(event.error, title="Generation failed", severity="error", markup=False)
        wb.proposal = None
        last = wb.conversation.last_reply
        if last is not None and last.finish_reason is None:
            reply = wb.conversation.finish("cancelled")
            await screen.query_one(ChatPane).finish_reply("error")
            if wb.params is not None:
                wb.record(reply)
        self.show_progress()
        screen.query_one(StatusBar).state = "failed"
        screen.refresh_bindings()
