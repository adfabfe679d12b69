"""An unexpected error, said plainly: what happened, where the traceback is, and that
the workbench goes on (sessions and the draft are saved as you go)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.crash import ErrorReport
from tui.screens.guard import ScreenGuard


def describe(report: ErrorReport) -> str:
    where = (
        f"The full traceback is in {report.log_path}"
        if report.log_path
        else "No crash log could be written (the data directory and the temp directory "
        "are not writable)."
    )
    return (
        f"{report.summary}\n(in {report.where})\n\n{where}\n\n"
        "logitlab keeps running: your chat and the text you type are saved as you go. "
        "If something looks wrong now, quit (Ctrl+Q) and start it again."
    )


class ErrorScreen(ScreenGuard, ModalScreen[None]):
    """One dialog however many errors arrive while it is open; it counts the rest."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter", "close", "Close", id="error.close"),
    ]

    def __init__(self, report: ErrorReport) -> None:
        super().__init__()
        self.reports = [report]

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box", classes="dialog"):
            yield Static("Something went wrong", classes="dialog-title")
            # error text and paths are data: never markup
            yield Static(describe(self.reports[0]), id="error-text", markup=False)
            yield Static("", id="error-more", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK (Esc)", id="ok", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()
        self._show_more()  # errors that came before the dialog was up

    def add(self, report: ErrorReport) -> None:
        """Another error while this one is shown: the first stays, the count grows."""
        self.reports.append(report)
        if self.is_mounted:  # a burst can bring the next error before the dialog mounts
            self._show_more()

    def _show_more(self) -> None:
        more = len(self.reports) - 1
        if not more:
            return
        report = self.reports[-1]
        self.query_one("#error-more", Static).update(
            f"…and {more} more error{'s' if more > 1 else ''} since "
            f"(latest: {report.summary}; traceback in {report.log_path or 'no file'})."
        )

    @on(Button.Pressed, "#ok")
    def action_close(self) -> None:
        self.dismiss(None)
