"""`ScreenGuard`: the base of our screens (and the palette): `CrashGuard`, and a
`dismiss` that only ever closes the screen it is called on.

Textual's `Screen.dismiss` pops whatever screen is on top. A screen that
closes itself from a message (an Input's Submitted, an OptionList's selection)
does so a moment after the key; if another key closed it first (Enter, then Esc
in the same burst), that second dismiss popped the screen underneath: the
random-key soak lost the workbench this way through the command palette
(issue 17). Here a screen that is no longer on top does nothing.
"""

from __future__ import annotations

from typing import Any, cast

from textual.await_complete import AwaitComplete
from textual.screen import Screen

from tui.crash import CrashGuard


class ScreenGuard(CrashGuard):
    """Put it first among a screen's bases."""

    def dismiss(self, result: Any = None) -> AwaitComplete:
        assert isinstance(self, Screen)
        if not self.is_attached or self.app.screen is not self:
            # already closed, or something is on top of it
            return cast(AwaitComplete, AwaitComplete.nothing())  # type: ignore[no-untyped-call]
        return cast(AwaitComplete, super().dismiss(result))  # type: ignore[misc]
