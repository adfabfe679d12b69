"""The tokenizer playground: type any text and watch its tokens, live.

Plain text or "as a user message through the chat template" (Ctrl+R), the
special-token guard on or off (Ctrl+G; the summary says how many tokens the other
setting would change), and a vocabulary pane: the selected token's entry and its
nearest tokens by input-embedding cosine, or a search by id / piece / text
(Ctrl+F). Tokenizing runs on a worker after a short pause in typing, so a
10,000-character paste never blocks a key.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Static, TextArea

from engine.decode import Engine, model_internals, tokenizer_access
from engine.errors import FeatureUnavailableError, LogitlabError
from engine.tokens import ChatMessage, TokenInfo, VocabEntry
from tui.screens.guard import ScreenGuard

DEBOUNCE = 0.15  # seconds of quiet typing before re-tokenizing
NEAR = 8
MAX_ROWS = 2000  # the table shows the first tokens of a huge paste; the count is exact


class PlaygroundScreen(ScreenGuard, Screen[None]):
    palette_scope = "playground"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="playground.close"),
        Binding("ctrl+r", "toggle_chat", "Text/chat", priority=True, id="playground.chat"),
        Binding("ctrl+g", "toggle_guard", "Guard", priority=True, id="playground.guard"),
        Binding("ctrl+f", "search", "Vocab search", priority=True, id="playground.search"),
        Binding("f4", "focus_text", "Edit text", id="playground.text"),
    ]

    def __init__(self, backend: Engine, text: str = "") -> None:
        super().__init__()
        self.backend = backend
        self.initial = text
        self.chat = False
        self.guard = True  # special-token text stays plain text
        self.tokens: tuple[TokenInfo, ...] = ()
        self.other_count: int | None = None  # tokens under the other guard setting
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="pg-body"):
            with Vertical(id="pg-left"):
                yield TextArea(self.initial, id="pg-text", soft_wrap=True)
                yield Static(id="pg-summary", markup=False)
                yield DataTable(id="pg-tokens", cursor_type="row", zebra_stripes=True)
            with Vertical(id="pg-right"):
                yield Input(placeholder="id, piece or text (Enter)", id="pg-search")
                with VerticalScroll(id="pg-vocab-scroll"):
                    yield Static(
                        "Select a token to see its vocabulary entry.", id="pg-vocab", markup=False
                    )
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("pos", "id", "token", "bytes", "S")
        self.query_one("#pg-text").border_title = "text"
        self.query_one("#pg-vocab-scroll").border_title = "vocabulary"
        self.query_one(TextArea).focus()
        self.retokenize()

    # --- tokenizing ------------------------------------------------------------------

    @on(TextArea.Changed)
    def _typed(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE, self.retokenize)

    def retokenize(self) -> None:
        self._timer = None
        self._tokenize(self.query_one(TextArea).text, self.chat, self.guard)

    @work(thread=True, exclusive=True, exit_on_error=False, group="playground")
    def _tokenize(self, text: str, chat: bool, guard: bool) -> None:
        try:
            tokens = self._tokens_of(text, chat, allow_special=not guard)
            other = len(self._tokens_of(text, chat, allow_special=guard))
        except LogitlabError as exc:
            self.app.call_from_thread(self._show_error, str(exc))
            return
        self.app.call_from_thread(self._show_tokens, tokens, other)

    def _tokens_of(self, text: str, chat: bool, *, allow_special: bool) -> tuple[TokenInfo, ...]:
        if chat:
            view = self.backend.render_prompt(
                [ChatMessage("user", text)], allow_special=allow_special
            )
            return view.tokens
        return tokenizer_access(self.backend).text_tokens(text, allow_special=allow_special)

    def _show_error(self, error: str) -> None:
        self.query_one("#pg-summary", Static).update(Text(error))

    def _show_tokens(self, tokens: tuple[TokenInfo, ...], other: int) -> None:
        self.tokens, self.other_count = tokens, other
        specials = sum(t.special for t in tokens)
        summary = Text()
        summary.append(f"{len(tokens)} tokens", style="bold")
        summary.append(f"  {specials} special  ·  {'chat template' if self.chat else 'plain text'}")
        summary.append(f"  ·  guard {'on' if self.guard else 'off'}")
        if other != len(tokens):
            summary.append(f"  (guard {'off' if self.guard else 'on'}: {other} tokens)")
        self.query_one("#pg-summary", Static).update(summary)
        table = self.query_one(DataTable)
        table.clear()
        for token in tokens[:MAX_ROWS]:
            table.add_row(
                str(token.position),
                str(token.id),
                Text(token.display),  # Text: a token is never markup
                token.bytes.hex(" ") or "–",
                "S" if token.special else "",
            )

    # --- vocabulary --------------------------------------------------------------------

    @on(DataTable.RowHighlighted)
    def _row(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self.tokens):
            self.show_entry(self.tokens[event.cursor_row].id)

    @on(Input.Submitted, "#pg-search")
    def _search(self, event: Input.Submitted) -> None:
        query = event.value
        if not query:
            self._vocab(Text("Type an id, a piece or some text to search."))
            return
        try:
            index = tokenizer_access(self.backend).vocabulary()
            if query.strip().isdigit():
                found = [index.lookup_id(int(query))]
            else:
                found = index.search(query, "substring", 20)
        except LogitlabError as exc:
            self._vocab(Text(str(exc)))
            return
        if not found:
            self._vocab(Text(f"No token matches {query!r}."))
            return
        self.show_entry(found[0].id, also=found[1:])

    def show_entry(self, token_id: int, also: list[VocabEntry] | None = None) -> None:
        """The entry for `token_id`, then its nearest tokens (computed on a worker)."""
        try:
            entry = tokenizer_access(self.backend).vocabulary().lookup_id(token_id)
        except LogitlabError as exc:
            self._vocab(Text(str(exc)))
            return
        out = _entry_text(entry)
        if also:
            out.append("\nother matches\n", style="bold")
            for other in also:
                out.append(f"  {other.id:>6}  {other.display}\n")
        self._vocab(out)
        self._nearest(token_id, out)

    @work(thread=True, exclusive=True, exit_on_error=False, group="playground-near")
    def _nearest(self, token_id: int, shown: Text) -> None:
        out = shown.copy()
        try:
            internals = model_internals(self.backend)
            near = internals.nearest(token_id, NEAR)
            tied = internals.ties_embeddings()
            index = tokenizer_access(self.backend).vocabulary()
            out.append("\nnearest by input embedding\n", style="bold")
            for n in near:
                name = index.lookup_id(n.token_id).display if n.token_id < index.size else "?"
                out.append(f"  {n.cosine:6.3f}  {n.token_id:>6}  {name}\n")
            out.append(f"embeddings {'tied (input = output)' if tied else 'not tied'}\n")
        except FeatureUnavailableError as exc:
            out.append(f"\nnearest tokens unavailable: {exc}\n")
        except LogitlabError as exc:
            out.append(f"\n{exc}\n")
        self.app.call_from_thread(self._vocab, out)

    def _vocab(self, text: Text) -> None:
        self.query_one("#pg-vocab", Static).update(text)

    # --- actions -------------------------------------------------------------------------

    def action_toggle_chat(self) -> None:
        self.chat = not self.chat
        self.notify(
            "As a user message through the chat template" if self.chat else "Plain text",
            markup=False,
        )
        self.retokenize()

    def action_toggle_guard(self) -> None:
        self.guard = not self.guard
        self.notify(
            "Guard on: special-token text stays plain text"
            if self.guard
            else "Guard off: special-token text becomes control tokens",
            markup=False,
        )
        self.retokenize()

    def action_search(self) -> None:
        self.query_one("#pg-search", Input).focus()

    def action_focus_text(self) -> None:
        self.query_one(TextArea).focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def binding_sections(self) -> list[tuple[str, list[Any]]]:
        return [("app", list(self.app.BINDINGS)), ("playground", list(self.BINDINGS))]


def _entry_text(entry: VocabEntry) -> Text:
    out = Text()
    out.append(f"id {entry.id}", style="bold")
    out.append(f"  {'special' if entry.special else 'regular'}")
    if entry.partial:
        out.append("  partial UTF-8")
    out.append(f"\npiece   {entry.piece}\ntoken   {entry.display}\n")
    out.append(f"bytes   {entry.bytes.hex(' ') or '–'}\n")
    return out
