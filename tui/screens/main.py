"""The workbench: chat pane, token stream, inspector, status bar; owns generation."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, TabbedContent

from engine.decode import Engine, logprob_distribution, step_unavailable
from engine.errors import InvalidParameterError
from engine.model import ModelDescription, ModelSpec
from engine.params import SamplingParams, Source
from engine.records import Proposal, decode_rate
from engine.sessions import Session
from tui.conversation import Conversation
from tui.crash import CrashGuard
from tui.drafts import keep_draft
from tui.driver import GenerationRun
from tui.messages import (
    BranchDecoded,
    ContextCounted,
    ExportReady,
    FanOutFinished,
    FanOutProgressed,
    GenerationFailed,
    GenerationFinished,
    GenerationStarted,
    LensComputed,
    LensFailed,
    ProbeFailed,
    PromptRendered,
    PromptScored,
    ProposalReady,
    SessionActionFailed,
    SessionLoaded,
    SessionSaved,
    SessionSaveFailed,
    StepsDecoded,
    TokenProbed,
)
from tui.pacing import FramePacer
from tui.recorder import NullRecorder, Recorder
from tui.screens.branch_actions import STREAM_TITLE, BranchActions
from tui.screens.lens_actions import LensActions
from tui.screens.probe_actions import ProbeActions
from tui.screens.session_actions import SessionActions
from tui.settings import UISettings
from tui.widgets.chat_pane import ChatPane
from tui.widgets.entropy_line import EntropyLine
from tui.widgets.inspector import Inspector
from tui.widgets.model_view import ModelView
from tui.widgets.prompt_input import PromptInput
from tui.widgets.prompt_tokens import PROMPT_SURPRISAL, PromptTokens
from tui.widgets.status_bar import StatusBar
from tui.widgets.step_view import StepView
from tui.widgets.token_lookup import TokenLookupInput
from tui.widgets.token_stream import TokenStream

INSPECT_WHILE_STREAMING = 1.0  # seconds between inspector refreshes while a reply streams
PROGRESS_EVERY = 1.0  # seconds between the status bar's tok/s and context updates, the same

STEP_KEYS = [
    Binding(str(n), f"choose({n})", f"Candidate {n}", show=False, id=f"step.choose{n}")
    for n in range(1, 10)
]


class MainScreen(CrashGuard, Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop", id="gen.stop"),
        Binding("ctrl+t", "toggle_step_mode", "Step mode", id="gen.step_mode"),
        Binding("space,enter", "accept", "Accept", id="step.accept"),
        *STEP_KEYS,
        Binding("c", "continue_free", "Continue", id="step.continue"),
        Binding("f2", "settings", "Settings", id="settings.open"),
        Binding("f3", "pick_model", "Model", id="model.pick"),
        Binding("f4", "toggle_focus", "Tokens/prompt", id="view.focus"),
        Binding("f5", "branches", "Branches", id="view.branches"),
        Binding("f6", "show_tab('tab-lens')", "Lens", priority=True, id="view.lens"),
        Binding("f7", "playground", "Tokenizer", priority=True, id="view.playground"),
        Binding("f8", "copy_reply", "Copy reply", show=False, id="copy.reply"),
        Binding("ctrl+o", "browse_sessions", "Sessions", id="session.browse"),
        Binding("ctrl+n", "new_session", "New session", show=False, id="session.new"),
        # priority: the prompt (a TextArea) has its own ctrl+e (end of line; End does it too)
        Binding(
            "ctrl+e",
            "export_session",
            "Export",
            show=False,
            priority=True,
            id="session.export",
        ),
    ]

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
        self.backend = backend
        self.spec = spec
        self.recorder: Recorder = recorder or NullRecorder()
        self.settings = settings or UISettings()
        self.facts: ModelDescription | None = None
        self.conversation = Conversation()
        self.step_mode = False
        self.gen_run: GenerationRun | None = None
        self.proposal: Proposal | None = None
        self._params: SamplingParams | None = None
        self._prompt_tokens = 0
        self._prefill_ms = 0.0
        self._step_ms: list[float] = []  # compute time of the reply's steps (tok/s)
        self._progress_shown = 0.0  # time.monotonic() of the status bar's last numbers
        self._inspect_timer: Timer | None = None
        self._pacer = FramePacer()
        self.sessions = SessionActions(self)
        self.lens = LensActions(self)
        self.probes = ProbeActions(self)
        self.branches = BranchActions(self)

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
        self.recorder.attach(self.post_message)
        for note, severity in self.recorder.notes():
            self.notify(note, severity=severity, timeout=12, markup=False)  # type: ignore[arg-type]
        self.sessions.set_session(None)
        if self.initial_session is not None:
            await self.sessions.restore(self.initial_session)
        self.load_model(self.spec)

    def on_unmount(self) -> None:
        # quitting mid-reply: let the worker thread end at its next step
        if (run := self.running) is not None:
            run.stop()

    # --- model ------------------------------------------------------------------------

    def load_model(self, spec: ModelSpec) -> None:
        """Show the loading screen; the conversation stays as it is."""
        from tui.screens.loading import LoadingScreen

        if (run := self.running) is not None:
            run.stop()
        self.app.push_screen(LoadingScreen(self.backend, spec), self._model_ready)

    def _model_ready(self, facts: ModelDescription | None) -> None:
        if facts is None:
            return
        self.facts, self.spec = facts, facts.spec
        self.gen_run = None
        self.lens.clear()
        self.probes.clear()
        status = self.query_one(StatusBar)
        status.model, status.device, status.dtype = facts.model_id, facts.device, facts.dtype
        status.quantize, status.context_window = facts.quantize, facts.context_window
        status.backend = facts.backend
        self.sessions.apply_saved_settings()
        self.query_one(StepView).logprob_label = logprob_distribution(self.backend)
        self.show_model()
        self.recorder.model_loaded(facts)
        self.update_context_count()

    @property
    def running(self) -> GenerationRun | None:
        """The run of the reply being decoded (its worker has not ended), if any."""
        run = self.gen_run
        return run if run is not None and run.active else None

    @property
    def replying(self) -> bool:
        return self.running is not None

    def resolved(
        self, settings: UISettings | None = None, *, tell: bool = True
    ) -> tuple[SamplingParams, dict[str, Source]] | None:
        """The sampling params `settings` (default: the screen's) resolve to for the
        loaded model, with each value's source; None (the user told why, if `tell`)
        when a value is invalid or no model is loaded yet."""
        if self.facts is None:
            return None
        try:
            return (settings or self.settings).resolve(self.facts.generation_config)
        except InvalidParameterError as exc:
            if tell:
                self.notify(str(exc), severity="error", markup=False)
            return None

    def show_model(self) -> None:
        if self.facts is None or (resolved := self.resolved(tell=False)) is None:
            return
        params, sources = resolved
        table = {name: (getattr(params, name), source) for name, source in sources.items()}
        self.query_one(ModelView).show(self.facts, table)

    # --- sending and generating ---------------------------------------------------------

    @on(PromptInput.Submitted)
    async def send(self, event: PromptInput.Submitted) -> None:
        if self.facts is None:
            self.notify("The model is still loading.", severity="warning")
            return
        if self.replying:
            self.notify("Still generating — Esc stops it.", severity="warning")
            return
        self.query_one(PromptInput).clear()
        turn = self.conversation.add_user(event.text)
        await self.query_one(ChatPane).add_user(event.text)
        if (resolved := self.resolved()) is None:
            return
        params = self._params = resolved[0]
        self.recorder.message_completed(turn, self.settings, params)
        messages = self.conversation.chat_messages(self.settings.system_prompt)
        self.conversation.begin_reply()
        await self.query_one(ChatPane).begin_reply()
        self.branches.reset()
        self.query_one(TokenStream).clear()
        self._step_ms = []
        status = self.query_one(StatusBar)
        status.tokens_per_second = status.ttft_ms = None
        status.state = "prefilling"
        self.gen_run = GenerationRun(
            self.backend,
            messages,
            params,
            allow_special=self.settings.allow_special,
            step_mode=self.step_mode,
        )
        self._generate(self.gen_run)
        self.refresh_bindings()

    @work(thread=True, exclusive=True, exit_on_error=False, group="generate")
    def _generate(self, run: GenerationRun) -> None:
        run.run(self.post_message)

    def run_generation(self, run: GenerationRun) -> None:
        run.active = True
        self._generate(run)
        self.refresh_bindings()

    def resume_generation(self, run: GenerationRun, target: list[int]) -> None:
        """Continue `run` in step mode from reply ids `target` (a branch point)."""
        run.active = True
        self._resume(run, target)
        self.refresh_bindings()

    def fan_out_generation(self, run: GenerationRun, target: list[int], seeds: list[int]) -> None:
        run.active = True
        self._fan_out(run, target, seeds)

    @work(thread=True, exclusive=True, exit_on_error=False, group="generate")
    def _resume(self, run: GenerationRun, target: list[int]) -> None:
        run.resume_at(target, self.post_message)

    @work(thread=True, exclusive=True, exit_on_error=False, group="generate")
    def _fan_out(self, run: GenerationRun, target: list[int], seeds: list[int]) -> None:
        run.fan_out(target, seeds, self.post_message)

    def on_fan_out_progressed(self, event: FanOutProgressed) -> None:
        self.branches.progressed(event)

    def on_branch_decoded(self, event: BranchDecoded) -> None:
        self.branches.decoded(event)

    def on_fan_out_finished(self, event: FanOutFinished) -> None:
        self.branches.finished(event)

    def update_context_count(self) -> None:
        """The status bar's context count for the chat as it stands (a reopened
        session, a switched branch): the prompt of the last reply plus its tokens."""
        if self.facts is None or self.replying:
            return
        reply = self.conversation.last_reply
        upto = len(self.conversation.turns) - (1 if reply is not None else 0)
        messages = self.conversation.chat_messages(self.settings.system_prompt, upto=upto)
        if not messages:
            self.query_one(StatusBar).context_used = 0
            return
        self._count_context(messages, len(reply.steps) if reply is not None else 0)

    @work(thread=True, exclusive=True, exit_on_error=False, group="context")
    def _count_context(self, messages: list[Any], reply_tokens: int) -> None:
        try:
            view = self.backend.render_prompt(messages, allow_special=self.settings.allow_special)
        except Exception:  # the count is a nicety; a failure leaves it as it was
            return
        self.post_message(ContextCounted(view.count + reply_tokens))

    def on_context_counted(self, event: ContextCounted) -> None:
        if not self.replying:
            self.query_one(StatusBar).context_used = event.tokens

    def on_prompt_rendered(self, event: PromptRendered) -> None:
        self.query_one(PromptTokens).show(event.view)
        self.probes.refresh_surprisal()

    def on_generation_started(self, event: GenerationStarted) -> None:
        self._prompt_tokens, self._prefill_ms = event.prompt_tokens, event.prefill_ms
        self._pacer.reset()
        status = self.query_one(StatusBar)
        status.context_used = event.prompt_tokens
        status.state = "generating"

    async def on_steps_decoded(self, event: StepsDecoded) -> None:
        if self.gen_run is not None:
            self.gen_run.batch_seconds = self._pacer.interval_after_update()
        # one paint for the whole batch: the chat's append awaits, and a frame drawn
        # in between would cost a second layout and paint per batch (bench/ui.py)
        with self.app.batch_update():
            delta = self.conversation.add_steps(event.steps)
            stream = self.query_one(TokenStream)
            first = not stream.steps
            stream.append(event.steps)
            self._step_ms.extend(s.elapsed_ms for s in event.steps)
            if first:
                self.query_one(StatusBar).ttft_ms = self._prefill_ms + event.steps[0].elapsed_ms
            # the status bar spans the screen: painting it with the token stream makes
            # the frame visit every widget, so the numbers follow once a second
            if first or time.monotonic() - self._progress_shown >= PROGRESS_EVERY:
                self._show_progress()
            await self.query_one(ChatPane).append(delta)

    def _show_progress(self) -> None:
        """The reply's decode rate and the context it fills, in the status bar."""
        self._progress_shown = time.monotonic()
        status = self.query_one(StatusBar)
        status.tokens_per_second = decode_rate(self._step_ms, self._prefill_ms)
        status.context_used = self._prompt_tokens + len(self.query_one(TokenStream).steps)

    async def on_proposal_ready(self, event: ProposalReady) -> None:
        self.proposal = event.proposal
        # while the reply waits for a pick, everything so far is on the screen
        self._show_progress()
        await self.query_one(ChatPane).flush()
        self.query_one(StepView).show_proposal(event.proposal)
        self.probes.refresh_lookup()
        self.query_one(Inspector).show_tab("tab-step")
        self.query_one(StatusBar).state = "your pick: Space accept · 1-9 · c · Esc"
        self.query_one(TokenStream).focus()
        self.refresh_bindings()

    async def on_generation_finished(self, event: GenerationFinished) -> None:
        self.proposal = None
        reply = self.conversation.finish(event.finish_reason)
        await self.query_one(ChatPane).finish_reply(event.finish_reason)
        self._show_progress()
        status = self.query_one(StatusBar)
        status.state = event.finish_reason
        if event.summary is not None and event.summary.completion_tokens:
            status.tokens_per_second = event.summary.tokens_per_second
            status.ttft_ms = event.summary.time_to_first_token_ms
        if reply is not None and self._params is not None:
            self.recorder.message_completed(reply, self.settings, self._params)
        self._inspect_now()
        self.query_one(PromptInput).focus()
        self.refresh_bindings()

    async def on_generation_failed(self, event: GenerationFailed) -> None:
        # markup=False: the error may quote a server's own words
        self.notify(event.error, title="Generation failed", severity="error", markup=False)
        self.proposal = None
        if (
            self.conversation.last_reply is not None
            and self.conversation.last_reply.finish_reason is None
        ):
            reply = self.conversation.finish("cancelled")
            await self.query_one(ChatPane).finish_reply("error")
            if reply is not None and self._params is not None:
                self.recorder.message_completed(reply, self.settings, self._params)
        self._show_progress()
        self.query_one(StatusBar).state = "failed"
        self.refresh_bindings()

    @on(TokenStream.Selected)
    def inspect(self, event: TokenStream.Selected) -> None:
        """Show the selected step. While a reply streams with the cursor riding the
        newest token, refresh at most every INSPECT_WHILE_STREAMING seconds: the
        candidates table is the costliest widget to paint, and painting it per
        token takes the CPU the decode needs (bench/ui.py). A key press that moves
        the cursor shows its step at once."""
        self.lens.source = "stream"
        if self.proposal is not None:
            return
        streaming = self.replying
        if streaming and self.query_one(TokenStream).follow:
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

    # --- the layer lens (LensActions does the work) --------------------------------------

    @on(TabbedContent.TabActivated)
    def _tab_shown(self) -> None:
        self.lens.refresh()

    @on(PromptTokens.Selected)
    def _prompt_token_selected(self) -> None:
        self.lens.source = "prompt"
        self.lens.refresh()

    def on_lens_computed(self, event: LensComputed) -> None:
        self.lens.computed(event)

    def on_lens_failed(self, event: LensFailed) -> None:
        self.lens.failed(event)

    # --- any token at a step, prompt surprisal (ProbeActions does the work) -------------

    def reply_params(self) -> SamplingParams | None:
        """The sampling params of the reply shown: those it was generated with, else
        (a reopened session) the settings', which the session restored."""
        if self._params is not None:
            return self._params
        resolved = self.resolved(tell=False)
        return resolved[0] if resolved is not None else None

    def action_lookup_token(self) -> None:
        self.probes.open_lookup()

    def action_toggle_surprisal(self) -> None:
        self.probes.toggle_surprisal()

    @on(TokenLookupInput.Submitted)
    def _lookup_submitted(self, event: TokenLookupInput.Submitted) -> None:
        event.stop()
        self.probes.submit(event.value)

    @on(TokenLookupInput.Closed)
    def _lookup_closed(self) -> None:
        self.probes.close_lookup()

    def on_token_probed(self, event: TokenProbed) -> None:
        self.probes.probed(event)

    def on_prompt_scored(self, event: PromptScored) -> None:
        self.probes.scored(event)

    def on_probe_failed(self, event: ProbeFailed) -> None:
        self.probes.failed(event)

    # --- actions ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        waiting = self.proposal is not None and self.gen_run is not None and self.gen_run.waiting
        if action in ("accept", "choose", "continue_free"):
            return waiting  # shown in the footer only while a proposal waits
        if action == "stop":
            return self.replying
        return True

    def action_stop(self) -> None:
        if (run := self.running) is not None:
            run.stop()
            self.query_one(StatusBar).state = "stopping"

    def action_toggle_step_mode(self) -> None:
        if not self.step_mode and (why := step_unavailable(self.backend)) is not None:
            self.notify(why, severity="warning", markup=False)
            return
        self.step_mode = not self.step_mode
        self.query_one(StatusBar).step_mode = self.step_mode
        if (run := self.running) is not None:
            run.set_step_mode(self.step_mode)
        self.notify(
            "Step-through mode " + ("on: each token waits for you" if self.step_mode else "off"),
            markup=False,
        )

    def action_accept(self) -> None:
        if self.gen_run is not None and self.proposal is not None:
            self.proposal = None
            self.gen_run.accept()

    def action_choose(self, n: int) -> None:
        if self.gen_run is None or self.proposal is None:
            return
        if not 1 <= n <= len(self.proposal.top):
            self.notify(f"There is no candidate {n}.", severity="warning", markup=False)
            return
        token_id = self.proposal.top[n - 1].token_id
        self.proposal = None
        self.gen_run.force(token_id)

    def action_continue_free(self) -> None:
        if self.gen_run is not None and self.proposal is not None:
            self.proposal = None
            self.gen_run.continue_free()
            self.query_one(StatusBar).state = "generating"

    def action_branch(self) -> None:
        self.branches.branch()

    def action_fan_out(self) -> None:
        self.branches.fan_out()

    def action_branches(self) -> None:
        self.branches.open_view()

    def action_reply_move(self, delta: int) -> None:
        self.branches.move(delta)

    def action_settings(self) -> None:
        from tui.screens.settings import SettingsScreen

        config = self.facts.generation_config if self.facts else {}
        self.app.push_screen(SettingsScreen(self.settings, config), self._settings_saved)

    def _settings_saved(self, settings: UISettings | None) -> None:
        if settings is not None:
            self.settings = settings
            self.show_model()
            self.notify("Settings saved; they apply to the next reply.")
            if (resolved := self.resolved(settings, tell=False)) is not None:
                self.recorder.settings_changed(settings, resolved[0])

    def action_pick_model(self) -> None:
        from tui.screens.model_picker import ModelPickerScreen

        self.app.push_screen(ModelPickerScreen(self.spec), self._model_picked)

    def _model_picked(self, spec: ModelSpec | None) -> None:
        if spec is not None:
            self.load_model(spec)

    def action_toggle_focus(self) -> None:
        stream, prompt = self.query_one(TokenStream), self.query_one(PromptInput)
        (prompt if stream.has_focus else stream).focus()

    def action_focus_tokens(self) -> None:
        self.query_one(TokenStream).focus()

    def action_focus_prompt(self) -> None:
        self.query_one(PromptInput).focus()

    def action_token_move(self, delta: int) -> None:
        self.query_one(TokenStream).action_move(delta)

    def action_token_jump(self, index: int) -> None:
        self.query_one(TokenStream).action_jump(index)

    def action_next_fork(self, direction: int) -> None:
        self.query_one(TokenStream).action_next_fork(direction)

    def action_playground(self) -> None:
        from tui.screens.playground import PlaygroundScreen

        if self.facts is None:
            self.notify("The model is still loading.", severity="warning")
            return
        self.app.push_screen(PlaygroundScreen(self.backend))

    def action_show_tab(self, tab: str) -> None:
        self.query_one(Inspector).show_tab(tab)

    # --- sessions (SessionActions does the work) ---------------------------------------

    @property
    def session_id(self) -> str | None:
        """The stored session this chat is saved to (None until its first message)."""
        return self.sessions.session_id

    def on_session_saved(self, event: SessionSaved) -> None:
        self.sessions.saved(event)

    def on_session_save_failed(self, event: SessionSaveFailed) -> None:
        self.notify(event.error, title="Not saved", severity="error", timeout=8, markup=False)

    def on_session_action_failed(self, event: SessionActionFailed) -> None:
        self.notify(
            event.error, title=f"Could not {event.what}", severity="error", timeout=10, markup=False
        )

    def on_prompt_input_draft_changed(self, event: PromptInput.DraftChanged) -> None:
        keep_draft(self, event.text)

    async def on_session_loaded(self, event: SessionLoaded) -> None:
        await self.sessions.loaded(event)

    def on_export_ready(self, event: ExportReady) -> None:
        self.sessions.export_ready(event)

    async def action_new_session(self) -> None:
        await self.sessions.new()

    def action_browse_sessions(self) -> None:
        self.sessions.browse()

    def action_export_session(self) -> None:
        self.sessions.export()

    def action_import_session(self) -> None:
        self.sessions.import_file()

    def action_copy_reply(self) -> None:
        reply = self.conversation.last_reply
        self._copy(reply.content if reply else "", "reply")

    def action_copy_token(self) -> None:
        step = self.query_one(TokenStream).selected
        self._copy((step.text or step.piece) if step else "", "token")

    def _copy(self, text: str, what: str) -> None:
        if not text:
            self.notify(f"No {what} to copy.", severity="warning", markup=False)
            return
        self.app.copy_to_clipboard(text)
        self.notify(
            f"Copied the {what} ({len(text)} chars). If nothing arrives, your terminal "
            "does not allow clipboard access (OSC 52).",
            markup=False,
        )

    def binding_sections(self) -> list[tuple[str, list[Any]]]:
        return [
            ("app", list(self.app.BINDINGS)),
            ("workbench", list(self.BINDINGS)),
            ("token stream", list(TokenStream.BINDINGS)),
            ("prompt tab", [PROMPT_SURPRISAL]),
        ]
