"""Ctrl+E: choose JSON, TOML or Markdown and a path, and write the export.

The file is written in a worker; a refused path or a failed write is shown in
the dialog, which stays open, and the dialog closes with what was written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from engine.errors import LogitlabError
from engine.sessions import Session, export_text, write_export
from tui.screens.guard import ScreenGuard

FORMATS: tuple[tuple[str, str, str], ...] = (
    ("json", "JSON", "json"),
    ("toml", "TOML", "toml"),
    ("markdown", "Markdown", "md"),
)
EXTENSIONS = {fmt: ext for fmt, _label, ext in FORMATS}
BY_SUFFIX = {".json": "json", ".toml": "toml", ".md": "markdown", ".markdown": "markdown"}


def slug(title: str, limit: int = 40) -> str:
    """A file-name-safe form of a title: lowercase words joined by hyphens."""
    words = re.sub(r"[^\w]+", "-", title.casefold(), flags=re.UNICODE).strip("-_")
    return words[:limit].rstrip("-_") or "session"


def default_path(session: Session, fmt: str) -> str:
    """``./<title-slug>-<short id>.<ext>`` in the current directory."""
    return f"./{slug(session.title)}-{session.id[:8]}.{EXTENSIONS[fmt]}"


LOW_PROB_DEFAULT, LOW_PROB_MAX = 5, 50


@dataclass(frozen=True)
class ExportDone:
    """What the dialog wrote."""

    fmt: str  # json | toml | markdown
    path: str  # resolved


class ExportFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ExportScreen(ScreenGuard, ModalScreen[ExportDone | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="export.cancel"),
        Binding("ctrl+s", "export", "Export", id="export.write"),
    ]

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.fmt = "json"
        self._confirm_overwrite: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box", classes="dialog"):
            yield Static(
                f"Export “{self.session.title or self.session.id[:8]}”  (Enter export · Esc cancel)",
                classes="dialog-title",
                markup=False,
            )
            with RadioSet(id="export-format"):
                for fmt, label, _ext in FORMATS:
                    yield RadioButton(label, value=fmt == self.fmt, id=f"fmt-{fmt}")
            yield Label("path")
            yield Input(default_path(self.session, self.fmt), id="export-path")
            yield Label(
                f"Markdown: low-probability tokens to list (0-{LOW_PROB_MAX})", markup=False
            )
            yield Input(str(LOW_PROB_DEFAULT), id="export-low-prob", type="integer")
            yield Static("", id="export-error", classes="field-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", id="export", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    @on(RadioSet.Changed)
    def format_changed(self, event: RadioSet.Changed) -> None:
        old = self.fmt
        self.fmt = (event.pressed.id or "fmt-json").removeprefix("fmt-")
        path = self.query_one("#export-path", Input)
        suffix = "." + EXTENSIONS[old]
        if path.value.endswith(suffix):  # keep the user's name, change only the extension
            path.value = path.value[: -len(suffix)] + "." + EXTENSIONS[self.fmt]

    @on(Input.Changed, "#export-path")
    def path_changed(self) -> None:
        self._confirm_overwrite = None
        self.query_one("#export-error", Static).update("")

    @on(Button.Pressed, "#export")
    @on(Input.Submitted, "#export-path")
    def action_export(self) -> None:
        error = self.query_one("#export-error", Static)
        text = self.query_one("#export-path", Input).value.strip()
        if not text:
            error.update("path: give a file name")
            return
        path = Path(text).expanduser()
        if path.is_dir():
            error.update(f"path: {path} is a directory; add a file name")
            return
        if not path.parent.is_dir():
            error.update(f"path: the directory {path.parent} does not exist")
            return
        if path.exists() and self._confirm_overwrite != path:
            self._confirm_overwrite = path
            error.update(f"{path} exists: Enter again to overwrite it")
            return
        low_prob = self.query_one("#export-low-prob", Input).value.strip() or "0"
        if not low_prob.isdigit() or int(low_prob) > LOW_PROB_MAX:
            error.update(f"low-probability tokens: a whole number from 0 to {LOW_PROB_MAX}")
            return
        # a path typed with a known extension says the format (out.md is Markdown)
        self._write(BY_SUFFIX.get(path.suffix.lower(), self.fmt), path, int(low_prob))

    @work(thread=True, exclusive=True, exit_on_error=False, group="export-write")
    def _write(self, fmt: str, path: Path, low_prob: int) -> None:
        try:
            write_export(path, export_text(self.session, fmt, low_prob_tokens=low_prob))
        except LogitlabError as exc:
            self.post_message(ExportFailed(str(exc)))
            return
        self.app.call_from_thread(self.dismiss, ExportDone(fmt, str(path.resolve())))

    def on_export_failed(self, event: ExportFailed) -> None:
        self.query_one("#export-error", Static).update(event.error)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
