"""The workbench's session actions: reopen, new, browse, export, import.

A collaborator of the workbench screen, which hands its session keys and
messages here; the chat itself is the `Workbench`'s. The store is reached only from thread workers, which post
past-tense messages (`SessionLoaded`, `ExportReady`, `SessionActionFailed`) back
to the screen; the export and import dialogs do their own file I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from engine.errors import InvalidParameterError, LogitlabError
from engine.sessions import Conversation, Session, SessionSettings, turns_from_session
from tui.drafts import switch_draft
from tui.messages import ExportReady, SessionActionFailed, SessionLoaded, SessionSaved
from tui.recorder import Recorder
from tui.screens.views import SCORES_TITLE, STREAM_TITLE, show_model, show_reply
from tui.widgets.chat_pane import ChatPane
from tui.widgets.prompt_input import PromptInput
from tui.widgets.status_bar import StatusBar
from tui.workbench import Workbench

if TYPE_CHECKING:
    from tui.screens.export import ExportDone
    from tui.screens.sessions import BrowserResult


class SessionActions:
    """Which session the workbench shows, and the actions on sessions."""

    def __init__(self, workbench: Workbench, screen: Screen[Any]) -> None:
        self.workbench, self.screen = workbench, screen
        self.session_id: str | None = None
        self._saved_settings: SessionSettings | None = None  # applied once a model is loaded

    @property
    def recorder(self) -> Recorder:
        return self.workbench.recorder

    def _busy(self) -> bool:
        if self.workbench.replying:
            self.screen.notify("Still generating — Esc stops it first.", severity="warning")
            return True
        return False

    def _off(self) -> bool:
        if self.recorder.store is None:
            why = self.recorder.problem or "sessions are not saved in this run"
            self.screen.notify(f"Sessions are unavailable: {why}", severity="error", markup=False)
            return True
        return False

    async def start(self, session: Session | None) -> None:
        """At start: saves are reported to the screen, the recorder's notes shown, and
        `session` (`--session ID`) reopened."""
        self.recorder.attach(self.screen.post_message)
        for note, severity in self.recorder.notes():
            self.screen.notify(note, severity=severity, timeout=12, markup=False)  # type: ignore[arg-type]
        self.set_session(None)
        if session is not None:
            await self.restore(session)

    # --- showing a session ------------------------------------------------------------

    async def restore(self, session: Session) -> None:
        """Show a stored session: chat, the last reply's tokens and inspector, its settings."""
        screen, wb = self.screen, self.workbench
        turns, system = turns_from_session(session)
        conversation = Conversation()
        conversation.turns = turns
        wb.reset(conversation)
        chat = screen.query_one(ChatPane)
        await chat.clear()
        for turn in turns:
            if turn.role == "user":
                await chat.add_user(turn.content)
            else:
                await chat.add_reply(turn.content, turn.finish_reason, len(turn.alternatives))
        reply = conversation.last_reply
        scored = turns[-1] if turns and turns[-1].role == "user" and turns[-1].steps else None
        if reply is None and scored is not None:  # a served scoring request: its prompt's scores
            show_reply(screen, scored.steps, SCORES_TITLE)
        else:
            show_reply(screen, reply.steps if reply is not None else [], STREAM_TITLE)
        saved = session.settings
        if system is not None and not saved.system_prompt:
            saved = SessionSettings(system, saved.sampling)
        self._saved_settings = saved
        self.apply_saved_settings()
        switch_draft(wb, screen.query_one(PromptInput), session.draft)
        self.recorder.resume(session, turns)
        self.set_session(session.id)
        status = screen.query_one(StatusBar)
        status.state = f"opened {len(session.messages)} messages"
        status.tokens_per_second = status.ttft_ms = None
        facts = wb.facts
        if facts is not None and session.model.id != facts.model_id:
            screen.notify(
                f"This session was recorded with {session.model.id}; replies now come from "
                f"{facts.model_id} (F3 loads another model).",
                severity="warning",
                timeout=8,
                markup=False,
            )
        wb.count_context()
        screen.refresh_bindings()

    def apply_saved_settings(self) -> None:
        """Settings of a reopened session, once the model's own defaults are known."""
        wb = self.workbench
        saved, facts = self._saved_settings, wb.facts
        if saved is None or facts is None:
            return
        self._saved_settings = None
        try:
            wb.settings = wb.settings.restored(
                saved.system_prompt, saved.sampling, facts.generation_config
            )
        except InvalidParameterError as exc:
            self.screen.notify(
                f"The session's settings were not restored: {exc}",
                severity="warning",
                markup=False,
            )
        show_model(wb, self.screen)

    def set_session(self, session_id: str | None) -> None:
        self.session_id = session_id
        status = self.screen.query_one(StatusBar)
        if self.recorder.store is None:
            status.session = "not saving" if self.recorder.problem else ""
        else:
            status.session = f"session {session_id[:8]}" if session_id else "new session"

    def action_failed(self, event: SessionActionFailed) -> None:
        title = f"Could not {event.what}"
        self.screen.notify(event.error, title=title, severity="error", timeout=10, markup=False)

    def saved(self, event: SessionSaved) -> None:
        if self.session_id != event.session_id:
            self.set_session(event.session_id)

    async def loaded(self, event: SessionLoaded) -> None:
        if self._busy():
            return
        await self.restore(event.session)
        verb = "Imported" if event.imported else "Opened"
        self.screen.notify(f"{verb} “{event.session.title or event.session.id[:8]}”.", markup=False)

    # --- new, browse --------------------------------------------------------------------

    async def new(self) -> None:
        if self._busy():
            return
        screen = self.screen
        self.workbench.reset()
        await screen.query_one(ChatPane).clear()
        show_reply(screen, [], STREAM_TITLE)
        self.recorder.new_session()
        self.set_session(None)
        screen.query_one(StatusBar).state = ""
        screen.notify("New session: the model and settings are kept.")

    def browse(self) -> None:
        from tui.screens.sessions import SessionBrowserScreen

        if self._off():
            return
        assert self.recorder.store is not None
        self.screen.app.push_screen(
            SessionBrowserScreen(self.recorder.store, self.session_id), self._browsed
        )

    async def _browsed(self, result: BrowserResult | None) -> None:
        if result is None:
            return
        if self.session_id is not None and self.session_id in result.deleted:
            await self.new()
        if result.open_id is not None and not self._busy():
            self.open(result.open_id)

    def open(self, session_id: str) -> None:
        """Read the stored session off the UI thread, then show it (the browser's Enter)."""
        self._in_worker(self._read, session_id)

    def _read(self, session_id: str) -> None:
        store = self.recorder.store
        try:
            assert store is not None
            self.recorder.current_session_id()  # let pending writes land first
            self.screen.post_message(SessionLoaded(store.get(session_id)))
        except LogitlabError as exc:
            self.screen.post_message(SessionActionFailed("open the session", str(exc)))

    # --- export, import -----------------------------------------------------------------

    def export(self) -> None:
        if self._off():
            return
        if not self.workbench.conversation.turns:
            self.screen.notify("Nothing to export yet: send a message first.", severity="warning")
            return
        self._in_worker(self._prepare_export)

    def _prepare_export(self) -> None:
        store = self.recorder.store
        try:
            assert store is not None
            session_id = self.recorder.current_session_id()
            if session_id is None:
                raise LogitlabError("this chat has not been saved (see the earlier error)")
            self.screen.post_message(ExportReady(store.get(session_id)))
        except LogitlabError as exc:
            self.screen.post_message(SessionActionFailed("export", str(exc)))

    def export_ready(self, event: ExportReady) -> None:
        from tui.screens.export import ExportScreen

        if any(isinstance(s, ExportScreen) for s in self.screen.app.screen_stack):
            return  # Ctrl+E twice before the first dialog opened (the soak, seed 5)

        def written(done: ExportDone | None) -> None:
            if done is not None:
                self.screen.notify(
                    f"Wrote {done.path}", title=f"Exported ({done.fmt})", timeout=8, markup=False
                )

        self.screen.app.push_screen(ExportScreen(event.session), written)

    def import_file(self) -> None:
        from tui.screens.import_session import ImportScreen

        if self._off() or self._busy():
            return
        assert self.recorder.store is not None

        async def imported(session: Session | None) -> None:
            if session is not None:
                await self.loaded(SessionLoaded(session, imported=True))

        self.screen.app.push_screen(
            ImportScreen(self.recorder.store, before=self.recorder.current_session_id), imported
        )

    def _in_worker(self, fn: Callable[..., None], *args: object) -> None:
        """Store I/O off the event loop, one at a time (a newer request replaces a queued one)."""
        self.screen.run_worker(
            lambda: fn(*args), thread=True, exclusive=True, exit_on_error=False, group="session-io"
        )
