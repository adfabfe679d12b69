"""The workbench screen: composes the chat, token stream, inspector and status bar,
and routes keys and messages. The state it shows is the `Workbench`'s (tui/workbench.py);
the work is its collaborators' (replies, branches, sessions, lens, probes)."""

from __future__ import annotations

import contextlib
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, TabbedContent

from engine.decode import Engine
from engine.model import ModelDescription, ModelSpec
from engine.records import Proposal
from engine.sessions import Conversation, Session
from tui import drafts
from tui import messages as msg
from tui.crash import CrashGuard
from tui.driver import GenerationRun
from tui.recorder import Recorder
from tui.screens.branch_actions import BranchActions
from tui.screens.compare_actions import CompareActions
from tui.screens.lens_actions import LensActions
from tui.screens.model_actions import ModelActions
from tui.screens.probe_actions import ProbeActions
from tui.screens.reply_actions import ReplyActions
from tui.screens.session_actions import SessionActions
from tui.screens.views import STREAM_TITLE, copy_text
from tui.screens.workbench_keys import WORKBENCH_BINDINGS, workbench_sections
from tui.settings import UISettings
from tui.widgets.chat_pane import ChatPane
from tui.widgets.entropy_line import EntropyLine
from tui.widgets.inspector import Inspector
from tui.widgets.prompt_input import PromptInput
from tui.widgets.prompt_tokens import PromptTokens
from tui.widgets.status_bar import StatusBar
from tui.widgets.step_view import StepView
from tui.widgets.token_lookup import TokenLookupInput
from tui.widgets.token_stream import TokenStream
from tui.workbench import Shared, Workbench

INSPECT_WHILE_STREAMING = 1.0  # seconds between inspector refreshes while a reply streams


class MainScreen(CrashGuard, Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = WORKBENCH_BINDINGS

    # the workbench's state, read through the screen by the app and the tests
    facts: Shared[ModelDescription | None] = Shared()
    settings: Shared[UISettings] = Shared()
    conversation: Shared[Conversation] = Shared()
    gen_run: Shared[GenerationRun | None] = Shared()
    proposal: Shared[Proposal | None] = Shared()
    step_mode: Shared[bool] = Shared()
    replying: Shared[bool] = Shared()

    def __init__(
        self,
        backend: Engine,
        spec: ModelSpec,
        *,
        recorder: Recorder | None = None,
        settings: UISettings | None = None,
        session: Session | None = None,
    ) -> None:
        super().__init__()
        self.initial_session = session  # reopened at start (`--session ID`)
        self.workbench = Workbench(
            backend,
            spec,
            host=self,
            tell=lambda text, severity: self.notify(text, severity=severity, markup=False),
            recorder=recorder,
            settings=settings,
        )
        self._inspect_timer: Timer | None = None
        self.models = ModelActions(self.workbench, self)
        self.replies = ReplyActions(self.workbench, self)
        self.sessions = SessionActions(self.workbench, self)
        self.lens = LensActions(self.workbench, self)
        self.probes = ProbeActions(self.workbench, self)
        self.branches = BranchActions(self.workbench, self)
        self.compares = CompareActions(self.workbench, self, self.branches.shown_turn)

    def compose(self) -> ComposeResult:
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield ChatPane(id="chat")
                yield PromptInput(id="prompt")
            with Vertical(id="right"):
                stream = TokenStream(id="tokens")
                yield EntropyLine(stream, id="entropy")
                yield stream
                yield Inspector(id="inspector")
        yield StatusBar(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one(ChatPane).border_title = "chat"
        self.query_one(TokenStream).border_title = STREAM_TITLE
        self.query_one(PromptInput).focus()
        await self.sessions.start(self.initial_session)
        self.load_model(self.workbench.spec)

    def on_unmount(self) -> None:
        self.workbench.stop()  # quitting mid-reply: the worker thread ends at its next step

    @property
    def session_id(self) -> str | None:
        """The stored session this chat is saved to (None until its first message)."""
        return self.sessions.session_id

    # --- the model ---------------------------------------------------------------------

    def load_model(self, spec: ModelSpec) -> None:
        self.models.load(spec, self._model_ready)

    def _model_ready(self, facts: ModelDescription | None) -> None:
        if facts is not None:
            self.lens.clear()  # what they computed belongs to the old model
            self.probes.clear()
            self.models.loaded(facts)
            self.sessions.apply_saved_settings()  # a reopened session's, now the model's known
            self.workbench.count_context()

    # --- a reply (ReplyActions does the work) ---------------------------------------------

    @on(PromptInput.Submitted)
    async def send(self, event: PromptInput.Submitted) -> None:
        await self.replies.send(event.text)

    def on_context_counted(self, event: msg.ContextCounted) -> None:
        self.replies.context_counted(event)

    def on_prompt_rendered(self, event: msg.PromptRendered) -> None:
        self.query_one(PromptTokens).show(event.view)
        self.probes.refresh_surprisal()

    def on_generation_started(self, event: msg.GenerationStarted) -> None:
        self.replies.started(event)

    async def on_steps_decoded(self, event: msg.StepsDecoded) -> None:
        await self.replies.steps_decoded(event)

    async def on_proposal_ready(self, event: msg.ProposalReady) -> None:
        await self.replies.proposal_ready(event)
        self.probes.refresh_lookup()

    async def on_generation_finished(self, event: msg.GenerationFinished) -> None:
        await self.replies.finished(event)
        self._inspect_now()

    async def on_generation_failed(self, event: msg.GenerationFailed) -> None:
        await self.replies.failed(event)

    @on(TokenStream.Selected)
    def inspect(self, event: TokenStream.Selected) -> None:
        """Show the selected step. While a reply streams with the cursor riding the newest
        token, refresh at most every INSPECT_WHILE_STREAMING seconds: the candidates table
        is the costliest widget to paint, and painting it per token takes the CPU the
        decode needs (bench/ui.py). A key that moves the cursor shows its step at once."""
        self.lens.source = "stream"
        if self.proposal is not None:
            return
        if self.replying and self.query_one(TokenStream).follow:
            if self._inspect_timer is None:
                self._inspect_timer = self.set_timer(INSPECT_WHILE_STREAMING, self._inspect_now)
            return
        self._inspect_now()

    def _inspect_now(self) -> None:
        if self._inspect_timer is not None:
            self._inspect_timer.stop()
            self._inspect_timer = None
        if self.proposal is None:
            self.query_one(StepView).show_step(self.query_one(TokenStream).selected)
        self.lens.refresh()
        self.probes.refresh_lookup()

    # --- branches, lens, probes, sessions: messages to their collaborators ----------------

    def on_fan_out_progressed(self, event: msg.FanOutProgressed) -> None:
        self.branches.progressed(event)

    def on_branch_decoded(self, event: msg.BranchDecoded) -> None:
        self.branches.decoded(event)

    def on_fan_out_finished(self, event: msg.FanOutFinished) -> None:
        self.branches.finished(event)

    @on(TabbedContent.TabActivated)
    def _tab_shown(self) -> None:
        self.lens.refresh()

    @on(PromptTokens.Selected)
    def _prompt_token_selected(self) -> None:
        self.lens.source = "prompt"
        self.lens.refresh()

    def on_lens_computed(self, event: msg.LensComputed) -> None:
        self.lens.computed(event)

    def on_lens_failed(self, event: msg.LensFailed) -> None:
        self.lens.failed(event)

    @on(TokenLookupInput.Submitted)
    def _lookup_submitted(self, event: TokenLookupInput.Submitted) -> None:
        event.stop()
        self.probes.submit(event.value)

    @on(TokenLookupInput.Closed)
    def _lookup_closed(self) -> None:
        self.probes.close_lookup()

    def on_token_probed(self, event: msg.TokenProbed) -> None:
        self.probes.probed(event)

    def on_prompt_scored(self, event: msg.PromptScored) -> None:
        self.probes.scored(event)

    def on_probe_failed(self, event: msg.ProbeFailed) -> None:
        self.probes.failed(event)

    def on_session_saved(self, event: msg.SessionSaved) -> None:
        self.sessions.saved(event)

    def on_session_save_failed(self, event: msg.SessionSaveFailed) -> None:
        self.notify(event.error, title="Not saved", severity="error", timeout=8, markup=False)

    def on_session_action_failed(self, event: msg.SessionActionFailed) -> None:
        self.sessions.action_failed(event)

    async def on_session_loaded(self, event: msg.SessionLoaded) -> None:
        await self.sessions.loaded(event)

    def on_export_ready(self, event: msg.ExportReady) -> None:
        self.sessions.export_ready(event)

    def on_prompt_input_draft_changed(self, event: PromptInput.DraftChanged) -> None:
        drafts.keep_draft(self.workbench, event.text)

    def keep_draft(self) -> None:
        """Hand what the message box holds to the session (the app does, on every way out)."""
        with contextlib.suppress(NoMatches):
            drafts.keep_draft(self.workbench, self.query_one(PromptInput).text)

    # --- actions: keys and the palette (tui/screens/workbench_keys.py, tui/commands.py) ---

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.workbench.key_applies(action)  # the footer shows a key while it applies

    def action_stop(self) -> None:
        if self.workbench.stop():
            self.query_one(StatusBar).state = "stopping"

    def action_toggle_step_mode(self) -> None:
        if self.workbench.toggle_step_mode():
            on = self.workbench.step_mode
            self.query_one(StatusBar).step_mode = on
            note = "on: each token waits for you" if on else "off"
            self.notify(f"Step-through mode {note}", markup=False)

    def action_accept(self) -> None:
        self.workbench.accept()

    def action_choose(self, n: int) -> None:
        self.workbench.choose(n)

    def action_continue_free(self) -> None:
        if self.workbench.continue_free():
            self.query_one(StatusBar).state = "generating"

    def action_settings(self) -> None:
        self.models.open_settings()

    def action_pick_model(self) -> None:
        self.models.pick(self._model_ready)

    def action_playground(self) -> None:
        self.models.playground()

    def action_toggle_focus(self) -> None:
        stream, prompt = self.query_one(TokenStream), self.query_one(PromptInput)
        (prompt if stream.has_focus else stream).focus()

    def action_token_move(self, delta: int) -> None:
        self.query_one(TokenStream).action_move(delta)

    def action_token_jump(self, index: int) -> None:
        self.query_one(TokenStream).action_jump(index)

    def action_next_fork(self, direction: int) -> None:
        self.query_one(TokenStream).action_next_fork(direction)

    def action_show_tab(self, tab: str) -> None:
        self.query_one(Inspector).show_tab(tab)

    def action_copy_reply(self) -> None:
        copy_text(self, getattr(self.conversation.last_reply, "content", ""), "reply")

    def action_copy_token(self) -> None:
        step = self.query_one(TokenStream).selected
        copy_text(self, (step.text or step.piece) if step else "", "token")

    def binding_sections(self) -> list[tuple[str, list[BindingType]]]:
        return workbench_sections(self.app.BINDINGS)

    # actions a collaborator runs whole (the palette and keys name them on the screen)
    def action_branch(self) -> None:
        self.branches.branch()

    def action_fan_out(self) -> None:
        self.branches.fan_out()

    def action_branches(self) -> None:
        self.branches.open_view()

    def action_compare(self) -> None:
        self.compares.open()

    def action_reply_move(self, delta: int) -> None:
        self.branches.move(delta)

    def action_lookup_token(self) -> None:
        self.probes.open_lookup()

    def action_toggle_surprisal(self) -> None:
        self.probes.toggle_surprisal()

    async def action_new_session(self) -> None:
        await self.sessions.new()

    def action_browse_sessions(self) -> None:
        self.sessions.browse()

    def action_export_session(self) -> None:
        self.sessions.export()

    def action_import_session(self) -> None:
        self.sessions.import_file()
