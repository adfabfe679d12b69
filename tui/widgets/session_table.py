"""The session browser's list: title, model, message count and last activity."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.widgets import DataTable

from engine.sessions import SessionSummary
from tui.crash import CrashGuard
from tui.markup import cell


def when(moment: datetime, now: datetime | None = None) -> str:
    """Last activity in local time: the time today, the date before."""
    local = moment.astimezone()
    today = (now or datetime.now().astimezone()).date()
    return local.strftime("%H:%M") if local.date() == today else local.strftime("%Y-%m-%d %H:%M")


class SessionTable(CrashGuard, DataTable[Text]):
    """One row per session, keyed by its id; the cursor row is the selection."""

    DEFAULT_CSS = "SessionTable { height: 1fr; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.summaries: list[SessionSummary] = []

    def on_mount(self) -> None:
        self.add_column("title", key="title")
        self.add_column("model", key="model")
        self.add_column("msgs", key="msgs")
        self.add_column("last activity", key="when")

    def show(self, summaries: list[SessionSummary]) -> None:
        keep = self.selected_id
        self.summaries = list(summaries)
        self.clear()
        for s in summaries:
            self.add_row(  # Text cells: a str cell is Rich markup, and titles are data
                cell(s.title or "(untitled)"),
                cell(s.model_id),
                cell(str(s.message_count)),
                cell(when(s.updated_at)),
                key=s.id,
            )
        ids = [s.id for s in summaries]
        if keep in ids:
            self.move_cursor(row=ids.index(keep))

    @property
    def selected(self) -> SessionSummary | None:
        if not self.summaries or not 0 <= self.cursor_row < len(self.summaries):
            return None
        return self.summaries[self.cursor_row]

    @property
    def selected_id(self) -> str | None:
        selected = self.selected
        return selected.id if selected else None
