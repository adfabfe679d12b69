"""The session browser: saved sessions by last activity; search, rename, delete, open.

Typing searches titles and message text as you type (the store does the
matching); r renames the selected session in place, d deletes it after a
confirmation, Enter opens it. Store calls run in thread workers and come back
as messages, like everything else that touches the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from engine.errors import LogitlabError
from engine.sessions import SessionStore
from tui.messages import SessionActionFailed, SessionsListed
from tui.screens.confirm import ConfirmScreen
from tui.screens.guard import ScreenGuard
from tui.widgets.session_table import SessionTable


@dataclass(frozen=True)
class BrowserResult:
    """What the browser did: a session to open (or None) and the ids it deleted."""

    open_id: str | None = None
    deleted: frozenset[str] = field(default_factory=frozenset)


class SessionBrowserScreen(ScreenGuard, Screen[BrowserResult]):
    palette_scope = "browser"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="browser.open"),
        Binding("r", "rename", "Rename", id="browser.rename"),
        Binding("d", "delete", "Delete", id="browser.delete"),
        Binding("slash", "search", "Search", id="browser.search"),
        Binding("escape", "close", "Back", id="browser.close"),
    ]

    def __init__(self, store: SessionStore, current_id: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.current_id = current_id
        self.deleted: set[str] = set()
        self.loaded = False  # the first listing arrived

    def compose(self) -> ComposeResult:
        with Vertical(id="browser-box"):
            yield Static(
                "Sessions — type to search · Enter open · r rename · d delete · Esc back",
                classes="dialog-title",
            )
            # select_on_focus off: type-to-search inserts the first letter, then focuses
            yield Input(
                placeholder="search titles and messages", id="browser-search", select_on_focus=False
            )
            yield SessionTable(id="browser-table")
            yield Static("", id="browser-empty", markup=False)  # echoes the search
            yield Input(id="browser-rename", classes="hidden")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(SessionTable).focus()
        self.refresh_list()

    # --- listing --------------------------------------------------------------------------

    @property
    def search_text(self) -> str:
        return self.query_one("#browser-search", Input).value

    def refresh_list(self) -> None:
        self._list(self.search_text)

    @work(thread=True, exclusive=True, exit_on_error=False, group="browser-list")
    def _list(self, search: str) -> None:
        try:
            self.post_message(SessionsListed(search, self.store.list(search.strip())))
        except LogitlabError as exc:
            self.post_message(SessionActionFailed("list", str(exc)))

    def on_sessions_listed(self, event: SessionsListed) -> None:
        if event.search != self.search_text:
            return  # an older search answered late
        table = self.query_one(SessionTable)
        table.show(event.summaries)
        empty = self.query_one("#browser-empty", Static)
        if event.summaries:
            empty.update("")
        elif event.search.strip():
            empty.update(f"No session matches {event.search.strip()!r}.")
        else:
            empty.update("No sessions yet: every chat is saved from its first message.")
        self.loaded = True

    @on(Input.Changed, "#browser-search")
    def search_changed(self) -> None:
        self.refresh_list()

    def on_session_action_failed(self, event: SessionActionFailed) -> None:
        self.notify(event.error, title=f"Could not {event.what}", severity="error", markup=False)

    # --- keys -----------------------------------------------------------------------------

    def on_key(self, event: events.Key) -> None:
        search = self.query_one("#browser-search", Input)
        table = self.query_one(SessionTable)
        if search.has_focus and event.key == "down":
            table.focus()
            event.stop()
        elif table.has_focus and event.is_printable and event.character not in ("r", "d", "/"):
            # type-to-search: the first letter moves to the search box
            search.focus()
            search.insert_text_at_cursor(event.character or "")
            event.stop()
            event.prevent_default()

    def action_search(self) -> None:
        self.query_one("#browser-search", Input).focus()

    @on(Input.Submitted, "#browser-search")
    @on(DataTable.RowSelected, "#browser-table")
    def action_open(self) -> None:
        selected = self.query_one(SessionTable).selected_id
        if selected is None:
            self.notify("No session selected.", severity="warning")
            return
        self.dismiss(BrowserResult(selected, frozenset(self.deleted)))

    def action_close(self) -> None:
        rename = self.query_one("#browser-rename", Input)
        search = self.query_one("#browser-search", Input)
        if not rename.has_class("hidden"):
            self._end_rename()
        elif search.has_focus and search.value:
            search.value = ""
        else:
            self.dismiss(BrowserResult(None, frozenset(self.deleted)))

    # --- rename ---------------------------------------------------------------------------

    def action_rename(self) -> None:
        selected = self.query_one(SessionTable).selected
        if selected is None:
            self.notify("No session selected.", severity="warning")
            return
        rename = self.query_one("#browser-rename", Input)
        rename.border_title = f"rename {selected.id[:8]} — Enter saves · Esc cancels"
        rename.value = selected.title
        rename.remove_class("hidden")
        rename.focus()

    @on(Input.Submitted, "#browser-rename")
    def rename_submitted(self, event: Input.Submitted) -> None:
        selected = self.query_one(SessionTable).selected_id
        title = event.value.strip()
        if selected is not None and title:
            self._rename(selected, title)
        elif not title:
            self.notify("A title cannot be empty.", severity="warning")
            return
        self._end_rename()

    def _end_rename(self) -> None:
        self.query_one("#browser-rename", Input).add_class("hidden")
        self.query_one(SessionTable).focus()

    @work(thread=True, exit_on_error=False, group="browser-write")
    def _rename(self, session_id: str, title: str) -> None:
        try:
            self.store.rename(session_id, title)
        except LogitlabError as exc:
            self.post_message(SessionActionFailed("rename", str(exc)))
        self.app.call_from_thread(self.refresh_list)

    # --- delete ---------------------------------------------------------------------------

    def action_delete(self) -> None:
        selected = self.query_one(SessionTable).selected
        if selected is None:
            self.notify("No session selected.", severity="warning")
            return
        current = " (the one open now)" if selected.id == self.current_id else ""
        question = (
            f"Delete “{selected.title or '(untitled)'}”{current}: {selected.message_count} "
            "messages with all their tokens? This cannot be undone; export it first to keep a copy."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(selected.id)

        self.app.push_screen(ConfirmScreen(question), answered)

    @work(thread=True, exit_on_error=False, group="browser-write")
    def _delete(self, session_id: str) -> None:
        try:
            self.store.delete(session_id)
            self.deleted.add(session_id)
        except LogitlabError as exc:
            self.post_message(SessionActionFailed("delete", str(exc)))
        self.app.call_from_thread(self.refresh_list)

    def binding_sections(self) -> list[tuple[str, list[Any]]]:
        return [("app", list(self.app.BINDINGS)), ("sessions", list(self.BINDINGS))]
