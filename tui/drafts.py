"""The unsent text of the message box lives in the session, so nothing typed is lost.

The prompt says when its text has settled (`PromptInput.DraftChanged`); the
screen hands it to the recorder, which writes it to the current session (and
starts one for a non-empty draft) and skips a draft it already holds. The app
hands it over once more on every way out, a crash included, and reopening a
session puts its draft back in the box.
"""

from __future__ import annotations

from engine.errors import InvalidParameterError
from tui.widgets.prompt_input import PromptInput
from tui.workbench import Workbench


def keep_draft(workbench: Workbench, text: str) -> None:
    """Hand `text` (what the message box holds) to the recorder."""
    facts = workbench.facts
    if facts is None:  # no model yet: no session can be started
        return
    try:
        params, _ = workbench.settings.resolve(facts.generation_config)
    except InvalidParameterError:
        return
    workbench.recorder.draft_changed(text, workbench.settings, params)


def switch_draft(workbench: Workbench, prompt: PromptInput, draft: str) -> None:
    """Another session is opened: the current draft stays with the current session,
    the opened one's comes back into the box. Call before `recorder.resume`."""
    keep_draft(workbench, prompt.text)
    prompt.load_draft(draft)
