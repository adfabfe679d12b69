"""The Step tab's token look-up box: type an id, a 'piece' or text, Enter."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input

from tui.crash import CrashGuard

PLACEHOLDER = "any token: id, 'piece' or text · Enter · empty Enter clears · Esc closes"


class TokenLookupInput(CrashGuard, Input):
    """Hidden until `/` in the token stream opens it; the screen handles `Submitted`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close look-up", id="lookup.close"),
    ]
    DEFAULT_CSS = "TokenLookupInput { display: none; }"

    class Closed(Message):
        """Esc: the box should close (what it found stays shown)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(placeholder=PLACEHOLDER, **kwargs)  # type: ignore[arg-type]

    def action_close(self) -> None:
        self.post_message(self.Closed())
