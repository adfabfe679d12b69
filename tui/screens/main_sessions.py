"""The workbench's session handlers: open, new, browse, export, import.

A mixin of `MainScreen` (kept apart so the screen file stays readable): the
store is reached only from thread workers, which post past-tense messages
(`SessionLoaded`, `ExportReady`, `SessionExported`, `SessionActionFailed`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.screen import Screen

from engine.errors import InvalidParameterError, LogitlabError, SessionImportError
from engine.records import Proposal
from engine.sessions.records import Session, SessionSettings
from tui.backend import ModelFacts
from tui.conversation import Conversation, turns_from_session
from tui.crash import CrashGuard
from tui.drafts import keep_draft, switch_draft
from tui.driver import GenerationRun
from tui.messages import (
    ExportReady,
    SessionActionFailed,
    SessionExported,
    SessionLoaded,
    SessionSaved,
    SessionSaveFailed,
)
from tui.recorder import Recorder
from tui.settings import UISettings
from tui.widgets.chat_pane import ChatPane
from tui.widgets.prompt_input import PromptInput
from tui.widgets.status_bar import StatusBar
from tui.widgets.step_view import StepView
from tui.widgets.token_stream import TokenStream

if TYPE_CHECKING:
    from tui.screens.export import ExportRequest
    from tui.screens.sessions import BrowserResult


class SessionActions(CrashGuard, Screen[None]):
    """Session actions and handlers; the base of `MainScreen`, which sets these."""

    recorder: Recorder
    conversation: Conversation
    gen_run: GenerationRun | None
    proposal: Proposal | None
    facts: ModelFacts | None
    settings: UISettings
    session_id: str | None = None
    _saved_settings: SessionSettings | None = None

    def _show_model(self) -> None:
        raise NotImplementedError

    # --- reopening ------------------------------------------------------------------------

    def _busy(self) -> bool:
        if self.gen_run is not None and self.gen_run.active:
            self.notify("Still generating — Esc stops it first.", severity="warning")
            return True
        return False

    def _sessions_off(self) -> bool:
        if self.recorder.store is None:
            why = self.recorder.problem or "sessions are not saved in this run"
            self.notify(f"Sessions are unavailable: {why}", severity="error", markup=False)
            return True
        return False

    async def restore_session(self, session: Session) -> None:
        """Show a stored session: chat, the last reply's tokens and inspector, its settings."""
        turns, system = turns_from_session(session)
        self.conversation = Conversation()
        self.conversation.turns = turns
        self.gen_run, self.proposal = None, None
        chat = self.query_one(ChatPane)
        await chat.clear()
        for turn in turns:
            if turn.role == "user":
                await chat.add_user(turn.content)
            else:
                await chat.add_reply(turn.content, turn.finish_reason, len(turn.alternatives))
        stream = self.query_one(TokenStream)
        stream.clear()
        reply = self.conversation.last_reply
        if reply is not None:
            stream.append(reply.steps)
        self.query_one(StepView).show_step(stream.selected)
        saved = session.settings
        if system is not None and not saved.system_prompt:
            saved = SessionSettings(system, saved.sampling)
        self._saved_settings = saved
        self._apply_saved_settings()
        switch_draft(self, session.draft)
        self.recorder.resume(session, turns)
        self._set_session(session.id, session.title)
        status = self.query_one(StatusBar)
        status.state = f"opened {len(session.messages)} messages"
        status.tokens_per_second = status.ttft_ms = None
        if self.facts is not None and session.model.id != self.facts.model_id:
            self.notify(
                f"This session was recorded with {session.model.id}; replies now come from "
                f"{self.facts.model_id} (F3 loads another model).",
                severity="warning",
                timeout=8,
                markup=False,
            )
        self.refresh_bindings()

    def _apply_saved_settings(self) -> None:
        """Settings of a reopened session, once the model's own defaults are known."""
        saved = self._saved_settings
        if saved is None or self.facts is None:
            return
        self._saved_settings = None
        try:
            self.settings = self.settings.restored(
                saved.system_prompt, saved.sampling, self.facts.generation_config
            )
        except InvalidParameterError as exc:
            self.notify(
                f"The session's settings were not restored: {exc}", severity="warning", markup=False
            )
        self._show_model()

    def _set_session(self, session_id: str | None, title: str = "") -> None:
        self.session_id = session_id
        status = self.query_one(StatusBar)
        if self.recorder.store is None:
            status.session = "not saving" if self.recorder.problem else ""
        else:
            status.session = f"session {session_id[:8]}" if session_id else "new session"

    def on_session_saved(self, event: SessionSaved) -> None:
        if self.session_id != event.session_id:
            self._set_session(event.session_id)

    def on_prompt_input_draft_changed(self, event: PromptInput.DraftChanged) -> None:
        keep_draft(self, event.text)

    def on_session_save_failed(self, event: SessionSaveFailed) -> None:
        self.notify(event.error, title="Not saved", severity="error", timeout=8, markup=False)

    def on_session_action_failed(self, event: SessionActionFailed) -> None:
        self.notify(
            event.error, title=f"Could not {event.what}", severity="error", timeout=10, markup=False
        )

    async def on_session_loaded(self, event: SessionLoaded) -> None:
        if self._busy():
            return
        await self.restore_session(event.session)
        verb = "Imported" if event.imported else "Opened"
        self.notify(f"{verb} “{event.session.title or event.session.id[:8]}”.", markup=False)

    # --- new, browse ----------------------------------------------------------------------

    async def action_new_session(self) -> None:
        if self._busy():
            return
        self.conversation = Conversation()
        self.gen_run, self.proposal = None, None
        await self.query_one(ChatPane).clear()
        self.query_one(TokenStream).clear()
        self.query_one(StepView).show_step(None)
        self.recorder.new_session()
        self._set_session(None)
        self.query_one(StatusBar).state = ""
        self.notify("New session: the model and settings are kept.")

    def action_browse_sessions(self) -> None:
        from tui.screens.sessions import SessionBrowserScreen

        if self._sessions_off():
            return
        assert self.recorder.store is not None
        self.app.push_screen(
            SessionBrowserScreen(self.recorder.store, self.session_id), self._browsed
        )

    async def _browsed(self, result: BrowserResult | None) -> None:
        if result is None:
            return
        if self.session_id is not None and self.session_id in result.deleted:
            await self.action_new_session()
        if result.open_id is not None and not self._busy():
            self._open_session(result.open_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="session-io")
    def _open_session(self, session_id: str) -> None:
        store = self.recorder.store
        try:
            assert store is not None
            self.recorder.current_session_id()  # let pending writes land first
            self.post_message(SessionLoaded(store.get(session_id)))
        except LogitlabError as exc:
            self.post_message(SessionActionFailed("open the session", str(exc)))

    # --- export ---------------------------------------------------------------------------

    def action_export_session(self) -> None:
        if self._sessions_off():
            return
        if not self.conversation.turns:
            self.notify("Nothing to export yet: send a message first.", severity="warning")
            return
        self._prepare_export()

    @work(thread=True, exclusive=True, exit_on_error=False, group="session-io")
    def _prepare_export(self) -> None:
        store = self.recorder.store
        try:
            assert store is not None
            session_id = self.recorder.current_session_id()
            if session_id is None:
                raise LogitlabError("this chat has not been saved (see the earlier error)")
            self.post_message(ExportReady(store.get(session_id)))
        except LogitlabError as exc:
            self.post_message(SessionActionFailed("export", str(exc)))

    def on_export_ready(self, event: ExportReady) -> None:
        from tui.screens.export import ExportScreen

        if any(isinstance(s, ExportScreen) for s in self.app.screen_stack):
            return  # Ctrl+E twice before the first dialog opened (the soak, seed 5)
        session = event.session

        def chosen(request: ExportRequest | None) -> None:
            if request is not None:
                self._export(session, request)

        self.app.push_screen(ExportScreen(session), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="session-export")
    def _export(self, session: Session, request: ExportRequest) -> None:
        from engine.sessions.export import export_json, export_markdown, export_toml
        from tui.cli.sessions_cmd import write_atomically

        try:
            if request.fmt == "json":
                text = export_json(session)
            elif request.fmt == "toml":
                text = export_toml(session)
            else:
                text = export_markdown(session, low_prob_tokens=5)
            write_atomically(request.path, text)
            self.post_message(SessionExported(str(request.path.resolve()), request.fmt))
        except LogitlabError as exc:
            self.post_message(SessionActionFailed("export", str(exc)))

    def on_session_exported(self, event: SessionExported) -> None:
        self.notify(f"Wrote {event.path}", title=f"Exported ({event.fmt})", timeout=8, markup=False)

    # --- import ---------------------------------------------------------------------------

    def action_import_session(self) -> None:
        from tui.screens.import_session import ImportScreen

        if self._sessions_off() or self._busy():
            return

        def chosen(path: str | None) -> None:
            if path:
                self._import(path)

        self.app.push_screen(ImportScreen(), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="session-io")
    def _import(self, path: str) -> None:
        from engine.sessions.export import MAX_IMPORT_BYTES, import_session_text

        store = self.recorder.store
        try:
            assert store is not None
            try:
                with Path(path).expanduser().open("rb") as f:
                    data = f.read(MAX_IMPORT_BYTES + 1)
            except OSError as exc:
                raise SessionImportError(f"cannot read {path}: {exc.strerror or exc}") from exc
            session = import_session_text(data)
            self.recorder.current_session_id()  # pending writes first
            self.post_message(SessionLoaded(store.import_session(session), imported=True))
        except SessionImportError as exc:
            self.post_message(SessionActionFailed("import (nothing was stored)", str(exc)))
        except LogitlabError as exc:
            self.post_message(SessionActionFailed("import", str(exc)))
