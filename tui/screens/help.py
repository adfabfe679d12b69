"""F1: every key binding, where it works and what it does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from tui.keymap import keys_of
from tui.markup import cell
from tui.screens.guard import ScreenGuard

# keys handled inside widgets rather than through bindings
EXTRA_KEYS: tuple[tuple[str, str, str], ...] = (
    ("prompt", "enter", "send the message"),
    ("prompt", "ctrl+j / shift+enter", "new line in the message"),
    ("palette", "ctrl+p", "command palette: every action by name"),
)


def binding_rows(
    area: str, bindings: list[BindingType], keymap: Mapping[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """One row per `Binding`, with the keys it answers to now (the user's keymap applied)."""
    rows = []
    for binding in bindings:
        if isinstance(binding, Binding):
            keys = keys_of(binding, keymap or {}).replace(",", " / ")
            rows.append((area, keys, binding.description or binding.action))
    return rows


class HelpScreen(ScreenGuard, ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "dismiss", "Close", id="help.close"),
    ]

    def __init__(
        self,
        sections: list[tuple[str, list[BindingType]]],
        keymap: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.sections, self.keymap = sections, keymap or {}

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="dialog"):
            yield Static(
                "Keys  (Esc closes · Ctrl+P finds any action by name)", classes="dialog-title"
            )
            table: DataTable[Text] = DataTable(id="help-table", cursor_type="row")
            table.add_columns("where", "key", "does")
            for area, bindings in self.sections:
                for row in binding_rows(area, bindings, self.keymap):
                    table.add_row(*map(cell, row))
            for row in EXTRA_KEYS:
                table.add_row(*map(cell, row))
            yield table

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)
