"""The conversation: user turns as text, replies as Markdown streamed by appending."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from tui.crash import CrashGuard

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
    """Append-only: a reply grows through `MarkdownStream`; nothing re-renders the transcript."""

    DEFAULT_CSS = """
    ChatPane { height: 1fr; }
    ChatPane > .chat-user, ChatPane > .chat-note { height: auto; }
    ChatPane > Markdown { height: auto; margin: 0; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.can_focus = False
        self._reply: Markdown | None = None
        self._stream: MarkdownStream | None = None

    def on_mount(self) -> None:
        self.anchor()

    async def add_user(self, text: str) -> None:
        await self.mount(Static(text, classes="chat-user", markup=False))

    async def begin_reply(self) -> None:
        self._reply = Markdown(classes="chat-reply", parser_factory=reply_parser)
        await self.mount(self._reply)
        self._stream = Markdown.get_stream(self._reply)

    async def add_reply(self, content: str, reason: str | None, alternatives: int = 0) -> None:
        """A finished reply, whole (reopening a session): no stream, it is complete."""
        if alternatives:
            kept = f"⎇ {alternatives} alternative{'s' if alternatives > 1 else ''} kept"
            await self.mount(Static(kept, classes="chat-note chat-branch", markup=False))
        self._stream = None
        self._reply = Markdown(content, classes="chat-reply", parser_factory=reply_parser)
        await self.mount(self._reply)
        note = FINISH_NOTES.get(reason or "")
        if note:
            await self.mount(Static(note, classes=f"chat-note chat-{reason}", markup=False))

    async def append(self, delta: str) -> None:
        if self._stream is not None and delta:
            await self._stream.write(delta)

    async def finish_reply(self, reason: str) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        note = FINISH_NOTES.get(reason)
        # a reply that ends as the app quits has no pane to show its note in
        # (the recorder has saved it already); mounting then would raise
        if note and self.is_attached:
            await self.mount(Static(note, classes=f"chat-note chat-{reason}", markup=False))

    async def restart_reply(self, content: str, note: str) -> None:
        """After a branch: the last reply shows the kept prefix and streams again."""
        if self._stream is not None:
            await self._stream.stop()
        if self._reply is None:
            await self.begin_reply()
        assert self._reply is not None
        await self.mount(
            Static(note, classes="chat-note chat-branch", markup=False), before=self._reply
        )
        await self._reply.update(content)
        self._stream = Markdown.get_stream(self._reply)

    async def replace_reply(self, content: str) -> None:
        """The last reply shows another branch of itself, whole (not streaming)."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if self._reply is not None:
            await self._reply.update(content)

    @property
    def reply_text(self) -> str:
        return self._reply.source if self._reply is not None else ""

    async def clear(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
        self._stream = self._reply = None
        await self.remove_children()
