"""The Prompt tab: the rendered chat template as tokens, coloured by message span."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Static

from engine.decode import PromptView
from engine.records import PromptScores

ORIGINS = ("template", "system", "user", "assistant", "text")
# surprisal colours: the probability the model gave a prompt token in context
SURPRISAL_BANDS = ("high", "mid", "low")
SURPRISAL_HIGH, SURPRISAL_MID = 0.5, 0.05


def surprisal_band(p: float) -> str:
    return "high" if p >= SURPRISAL_HIGH else "mid" if p >= SURPRISAL_MID else "low"


# shown elsewhere or too long for the map: the template itself is the token view above
_NOT_LISTED = frozenset({"chat_template", "added_tokens", "eos_tokens"})


PROMPT_SURPRISAL = Binding("s", "screen.toggle_surprisal", "Surprisal", id="prompt_token.surprisal")


class PromptTokens(Static, can_focus=True):
    """Focus it (Tab) and move with ←/→ to select a prompt token: the Lens tab then
    explains what the model predicted after it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,h", "move(-1)", "Prev prompt token", id="prompt_token.prev"),
        Binding("right,l", "move(1)", "Next prompt token", id="prompt_token.next"),
        Binding("home", "jump(0)", "First prompt token", show=False, id="prompt_token.first"),
        Binding("end", "jump(-1)", "Last prompt token", show=False, id="prompt_token.last"),
        PROMPT_SURPRISAL,
    ]

    class Selected(Message):
        """A prompt token was selected (its position in the prompt)."""

        def __init__(self, position: int) -> None:
            super().__init__()
            self.position = position

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        *(f"prompt-tokens--{o}" for o in ORIGINS),
        "prompt-tokens--special",
        "prompt-tokens--warning",
        "prompt-tokens--dim",
        "prompt-tokens--cursor",
        *(f"prompt-tokens--p-{band}" for band in SURPRISAL_BANDS),
    }
    DEFAULT_CSS = "PromptTokens { height: auto; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("The prompt appears here when you send a message.", **kwargs)
        self.view: PromptView | None = None
        self.cursor: int | None = None
        # the prompt's surprisal when it is shown (`s`): scores of `view`'s ids, or
        # a line saying it is being computed or why it is not there
        self.scores: PromptScores | None = None
        self.scores_note: str | None = None

    def show_scores(self, scores: PromptScores | None, note: str | None = None) -> None:
        """Colour by surprisal (`scores`), or plain again (None, with `note` saying why)."""
        self.scores, self.scores_note = scores, note
        if self.view is not None:
            self.show(self.view, keep_cursor=True)

    def action_move(self, delta: int) -> None:
        if self.view is None or not self.view.tokens:
            return
        last = self.view.count - 1
        start = last if self.cursor is None else self.cursor
        self._select(max(0, min(last, start + delta)))

    def action_jump(self, index: int) -> None:
        if self.view is not None and self.view.tokens:
            self._select(index % self.view.count)

    def _select(self, position: int) -> None:
        self.cursor = position
        if self.view is not None:
            self.show(self.view, keep_cursor=True)
        self.post_message(self.Selected(position))

    def _band(self, p: float) -> Style:
        return self.get_component_rich_style(f"prompt-tokens--p-{surprisal_band(p)}")

    def _surprisal_header(self, out: Text, scores: PromptScores | None) -> None:
        """The surprisal legend and the selected token's numbers (or the note)."""
        dim = self.get_component_rich_style("prompt-tokens--dim")
        if scores is None:
            if self.scores_note:
                out.append(f"{self.scores_note}\n", dim)
            return
        out.append("surprisal (s): p the model gave each token in context  ", dim)
        out.append(f"≥{SURPRISAL_HIGH:.0%}", self._band(1.0))
        out.append(" · ", dim)
        out.append(f"≥{SURPRISAL_MID:.0%}", self._band(SURPRISAL_MID))
        out.append(" · ", dim)
        out.append(f"<{SURPRISAL_MID:.0%}", self._band(0.0))
        out.append("\n")
        if self.cursor is None or not 0 <= self.cursor < len(scores.ids):
            return
        p, rank = scores.prob(self.cursor), scores.ranks[self.cursor]
        bits = scores.surprisal_bits(self.cursor)
        if p is None or bits is None:
            out.append(f"token {self.cursor}: the first token has no context\n", dim)
        else:
            # a remote server's rank is unknown beyond the candidates it sent
            shown = rank if rank is not None else "unknown"
            out.append(f"token {self.cursor}: p {p:.2%}  rank {shown}  {bits:.1f} bits\n")

    def show(self, view: PromptView, *, keep_cursor: bool = False) -> None:
        self.view = view
        if not keep_cursor:
            self.cursor = None
        dim = self.get_component_rich_style("prompt-tokens--dim")
        special = self.get_component_rich_style("prompt-tokens--special")
        out = Text()
        out.append(f"{view.count} tokens / {view.context_window} context window", style="bold")
        out.append(f"  ({view.count / max(view.context_window, 1):.1%})\n", dim)
        for warning in view.warnings:
            out.append(f"⚠ {warning}\n", self.get_component_rich_style("prompt-tokens--warning"))
        scores = self.scores if self.scores and self.scores.ids == tuple(view.ids) else None
        self._surprisal_header(out, scores)
        out.append("\n")
        cursor = self.get_component_rich_style("prompt-tokens--cursor")
        for token in view.tokens:
            style = (
                self.get_component_rich_style(f"prompt-tokens--{token.origin}")
                if token.origin in ORIGINS
                else dim
            )
            if scores is not None:
                p = scores.prob(token.position)
                style = dim if p is None else self._band(p)
            if token.special:
                style = style + special
            if token.position == self.cursor:
                style = style + cursor
            out.append(token.display, style)
            out.append(" ")
            if token.display.endswith("↵"):
                out.append("\n")
        out.append("\n\nspecial tokens\n", style="bold")
        for name, value in view.special_tokens.items():
            if name in _NOT_LISTED:
                continue
            if isinstance(value, dict) and "token" in value:
                out.append(f"  {name:<12} {value['token']} (id {value.get('id')})\n")
            elif name == "additional" and value:
                listed = ", ".join(f"{v['token']} ({v['id']})" for v in value)
                out.append(f"  {name:<12} {listed}\n", dim)
            elif isinstance(value, list | tuple | int | str | bool):
                out.append(f"  {name:<12} {value}\n", dim)
        out.append("\nids: ", dim)
        out.append(" ".join(str(t.id) for t in view.tokens), dim)
        self.update(out)
