"""How the workbench's state shows in its widgets, written once for every collaborator:
a reply's tokens in the token stream and inspector, the model's facts and settings."""

from __future__ import annotations

from typing import Any

from textual.screen import Screen

from engine.records import Step
from tui.widgets.model_view import ModelView
from tui.widgets.step_view import StepView
from tui.widgets.token_stream import TokenStream
from tui.workbench import Workbench

STREAM_TITLE = "tokens  ←/→ · b branch · f fan out · p/n reply · F5 branches"
# a scored prompt (a served echo / prompt_logprobs request): each token teacher-forced
SCORES_TITLE = "prompt scores  each token given the ones before it · ←/→"


def show_reply(
    screen: Screen[Any], steps: list[Step] | tuple[Step, ...], title: str | None = None
) -> None:
    """Show a reply's steps in the token stream (titled `title` if given) and the
    selected one in the inspector."""
    stream = screen.query_one(TokenStream)
    stream.clear()
    stream.append(steps)
    if title is not None:
        stream.border_title = title
    screen.query_one(StepView).show_step(stream.selected)


def show_model(workbench: Workbench, screen: Screen[Any]) -> None:
    """The Model tab: the loaded model's facts and each sampling value with its source."""
    if workbench.facts is None or (resolved := workbench.resolved(tell=False)) is None:
        return
    params, sources = resolved
    table = {name: (getattr(params, name), source) for name, source in sources.items()}
    screen.query_one(ModelView).show(workbench.facts, table)


def copy_text(screen: Screen[Any], text: str, what: str) -> None:
    """Put `text` on the clipboard (OSC 52) and say so; `what` names it ("reply")."""
    if not text:
        screen.notify(f"No {what} to copy.", severity="warning", markup=False)
        return
    screen.app.copy_to_clipboard(text)
    screen.notify(
        f"Copied the {what} ({len(text)} chars). If nothing arrives, your terminal "
        "does not allow clipboard access (OSC 52).",
        markup=False,
    )
