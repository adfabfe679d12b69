"""Import a session: ask for the path of a JSON or TOML export.

The screen that opened it reads, validates and stores the file in a worker; a
refused file is reported with the field the engine names, and nothing is stored.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from tui.screens.guard import ScreenGuard


class ImportScreen(ScreenGuard, ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="import.cancel"),
    ]

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
        self.dismiss(path)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
