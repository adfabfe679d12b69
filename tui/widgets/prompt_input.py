"""The multi-line prompt: Enter sends, Ctrl+J or Shift+Enter inserts a newline.

Its text is also the session's draft: once it has not changed for
`DRAFT_SECONDS`, `DraftChanged` tells the screen (tui/drafts.py).
"""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.timer import Timer
from textual.widgets import TextArea

from tui.crash import CrashGuard

NEWLINE_KEYS = ("ctrl+j", "shift+enter")
DRAFT_SECONDS = 0.8


class PromptInput(CrashGuard, TextArea):
    DEFAULT_CSS = """
    PromptInput { height: auto; min-height: 3; max-height: 8; }
    """

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class DraftChanged(Message):
        """The text has settled: keep it as the session's draft."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, **kwargs: object) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, **kwargs)  # type: ignore[arg-type]
        self.placeholder = "Message (Enter sends, Ctrl+J newline, Ctrl+P commands)"
        self._draft_timer: Timer | None = None

    def load_draft(self, text: str) -> None:
        """Show a reopened session's draft, the cursor at its end."""
        self.text = text
        self.move_cursor(self.document.end)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if self._draft_timer is not None:
            self._draft_timer.stop()
        self._draft_timer = self.set_timer(DRAFT_SECONDS, self._draft_settled)

    def _draft_settled(self) -> None:
        self._draft_timer = None
        self.post_message(self.DraftChanged(self.text))

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
