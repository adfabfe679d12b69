"""The multi-line prompt: Enter sends, Ctrl+J or Shift+Enter inserts a newline."""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea

from tui.crash import CrashGuard

NEWLINE_KEYS = ("ctrl+j", "shift+enter")


class PromptInput(CrashGuard, TextArea):
    DEFAULT_CSS = """
    PromptInput { height: auto; min-height: 3; max-height: 8; }
    """

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, **kwargs: object) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, **kwargs)  # type: ignore[arg-type]
        self.placeholder = "Message (Enter sends, Ctrl+J newline, Ctrl+P commands)"

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            text = self.text.strip()
            if text:
                self.post_message(self.Submitted(text))
            return
        if event.key in NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)
