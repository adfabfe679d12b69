"""The conversation: user turns as text, replies as Markdown streamed by appending."""

from __future__ import annotations

import time

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from textual.containers import VerticalScroll
from textual.timer import Timer
from textual.widgets import Markdown, Static

from tui.crash import CrashGuard

# seconds between the streaming reply's appends: each one re-parses the last block,
# lays the screen out and scrolls the chat (two paints), the costliest update while
# streaming; the token stream shows every batch as it comes (bench/ui.py)
APPEND_EVERY = 0.5

FINISH_NOTES = {
    "cancelled": "⏹ cancelled",
    "length": "… stopped at max new tokens",
    "context": "… context window full",
    "error": "✗ failed",
}


def reply_parser() -> MarkdownIt:
    """Markdown as the model wrote it: a single line break stays a line break (a
    haiku, a list written one item per line), where CommonMark would join the lines.

    markdown-it's ``breaks`` option acts only in its HTML renderer; Textual renders
    the tokens itself, so a core rule turns each soft break into a hard one."""
    parser = MarkdownIt("gfm-like")
    parser.core.ruler.push("hard_breaks", _hard_breaks)
    return parser


def _hard_breaks(state: StateCore) -> None:
    for block in state.tokens:
        for child in block.children or ():
            if child.type == "softbreak":
                child.type = "hardbreak"


class ChatPane(CrashGuard, VerticalScroll):
    """Append-only: a reply grows by `Markdown.append` (the last block re-parsed);
    nothing re-renders the transcript.

    Text arrives at once for the first batch, then in chunks at most every
    `APPEND_EVERY` seconds (a timer appends what is left when the reply pauses,
    as in step mode). Not Textual's `MarkdownStream`: its own task appends after
    the batch's handler has returned, so every batch cost a second layout and
    paint (bench/ui.py)."""

    DEFAULT_CSS = """
    ChatPane { height: 1fr; }
    ChatPane > .chat-user, ChatPane > .chat-note { height: auto; }
    ChatPane > Markdown { height: auto; margin: 0; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.can_focus = False
        self._reply: Markdown | None = None
        self._streaming = False  # the last reply is growing
        self._pending: list[str] = []  # its text not appended yet
        self._appended_at = 0.0  # time.monotonic() of the last append
        self._timer: Timer | None = None

    def on_mount(self) -> None:
        self.anchor()

    async def add_user(self, text: str) -> None:
        await self.mount(Static(text, classes="chat-user", markup=False))

    async def begin_reply(self) -> None:
        self._reply = Markdown(classes="chat-reply", parser_factory=reply_parser)
        await self.mount(self._reply)
        self._start_streaming()

    def _start_streaming(self) -> None:
        self._drop_pending()
        self._streaming, self._appended_at = True, 0.0

    def _stop_streaming(self) -> None:
        self._streaming = False
        self._drop_pending()

    def _drop_pending(self) -> None:
        self._pending.clear()
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    async def add_reply(self, content: str, reason: str | None, alternatives: int = 0) -> None:
        """A finished reply, whole (reopening a session): no stream, it is complete."""
        if alternatives:
            kept = f"⎇ {alternatives} alternative{'s' if alternatives > 1 else ''} kept"
            await self.mount(Static(kept, classes="chat-note chat-branch", markup=False))
        self._stop_streaming()
        self._reply = Markdown(content, classes="chat-reply", parser_factory=reply_parser)
        await self.mount(self._reply)
        note = FINISH_NOTES.get(reason or "")
        if note:
            await self.mount(Static(note, classes=f"chat-note chat-{reason}", markup=False))

    async def append(self, delta: str) -> None:
        if not (self._streaming and delta):
            return
        self._pending.append(delta)
        wait = self._appended_at + APPEND_EVERY - time.monotonic()
        if wait <= 0:
            await self.flush()
        elif self._timer is None:
            self._timer = self.set_timer(wait, self.flush)

    async def flush(self) -> None:
        """Append the text that is waiting (a timer calls it, and the reply's end)."""
        text = "".join(self._pending)
        self._drop_pending()
        if text and self._reply is not None:
            self._appended_at = time.monotonic()
            await self._reply.append(text)

    async def finish_reply(self, reason: str) -> None:
        await self.flush()
        self._stop_streaming()
        note = FINISH_NOTES.get(reason)
        # a reply that ends as the app quits has no pane to show its note in
        # (the recorder has saved it already); mounting then would raise
        if note and self.is_attached:
            await self.mount(Static(note, classes=f"chat-note chat-{reason}", markup=False))

    async def restart_reply(self, content: str, note: str) -> None:
        """After a branch: the last reply shows the kept prefix and streams again."""
        if self._reply is None:
            await self.begin_reply()
        assert self._reply is not None
        await self.mount(
            Static(note, classes="chat-note chat-branch", markup=False), before=self._reply
        )
        await self._reply.update(content)
        self._start_streaming()

    async def replace_reply(self, content: str) -> None:
        """The last reply shows another branch of itself, whole (not streaming)."""
        self._stop_streaming()
        if self._reply is not None:
            await self._reply.update(content)

    @property
    def behind(self) -> bool:
        """Whether the streaming reply has text not shown yet (a chunk due soon)."""
        return bool(self._pending)

    @property
    def reply_text(self) -> str:
        return self._reply.source + "".join(self._pending) if self._reply is not None else ""

    async def clear(self) -> None:
        self._stop_streaming()
        self._reply = None
        await self.remove_children()
