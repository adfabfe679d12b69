"""The unsent text of the message box lives in the session, so nothing typed is lost.

The prompt says when its text has settled (`PromptInput.DraftChanged`); the
screen hands it to the recorder, which writes it to the current session (and
starts one for a non-empty draft) and skips a draft it already holds. The app
hands it over once more on every way out, a crash included, and reopening a
session puts its draft back in the box.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from textual.css.query import NoMatches

from engine.errors import InvalidParameterError
from tui.widgets.prompt_input import PromptInput

if TYPE_CHECKING:
    from tui.screens.main import MainScreen


def keep_draft(screen: MainScreen, text: str | None = None) -> None:
    """Hand `text` (default: what the message box holds now) to the recorder."""
    facts = screen.facts
    if facts is None:  # no model yet: no session can be started
        return
    if text is None:
        try:
            text = screen.query_one(PromptInput).text
        except NoMatches:
            return
    try:
        params, _ = screen.settings.resolve(facts.generation_config)
    except InvalidParameterError:
        return
    screen.recorder.draft_changed(text, screen.settings, params)


def switch_draft(screen: MainScreen, draft: str) -> None:
    """Another session is opened: the current draft stays with the current session,
    the opened one's comes back into the box. Call before `recorder.resume`."""
    keep_draft(screen)
    with contextlib.suppress(NoMatches):
        screen.query_one(PromptInput).load_draft(draft)
