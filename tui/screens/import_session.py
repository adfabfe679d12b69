"""Import a session: ask for the path of a JSON or TOML export, and store it.

The file is read, validated and stored in a worker; a refused file is shown in
the dialog with the field the engine names (nothing is stored), and the dialog
closes with the stored session, which the workbench then opens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from engine.errors import LogitlabError
from engine.sessions import Session, SessionStore, import_session_text, read_import
from tui.screens.guard import ScreenGuard


class ImportRefused(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ImportScreen(ScreenGuard, ModalScreen[Session | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="import.cancel"),
    ]

    def __init__(self, store: SessionStore, *, before: Callable[[], object] = lambda: None) -> None:
        super().__init__()
        self.store = store
        self._before = before  # runs before storing (the recorder's pending writes land first)

    def compose(self) -> ComposeResult:
        with Vertical(id="import-box", classes="dialog"):
            yield Static("Import a session  (Enter import · Esc cancel)", classes="dialog-title")
            yield Label("a JSON or TOML session export (told apart by content)")
            yield Input(placeholder="./session.json", id="import-path")
            yield Static("", id="import-error", classes="field-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Import", id="import", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#import-path", Input).focus()

    @on(Button.Pressed, "#import")
    @on(Input.Submitted, "#import-path")
    def submit(self) -> None:
        path = self.query_one("#import-path", Input).value.strip()
        if not path:
            self.query_one("#import-error", Static).update("path: give the file to import")
            return
        self.query_one("#import-error", Static).update("importing…")
        self._import(path)

    @work(thread=True, exclusive=True, exit_on_error=False, group="session-import")
    def _import(self, path: str) -> None:
        try:
            session = import_session_text(read_import(path))  # refused whole, or not at all
            self._before()
            stored = self.store.import_session(session)
        except LogitlabError as exc:
            self.post_message(ImportRefused(f"{exc} (nothing was stored)"))
            return
        self.app.call_from_thread(self.dismiss, stored)

    def on_import_refused(self, event: ImportRefused) -> None:
        self.query_one("#import-error", Static).update(event.error)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
