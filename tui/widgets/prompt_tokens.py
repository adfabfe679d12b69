"""The Prompt tab: the rendered chat template as tokens, coloured by message span."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Static

from engine.decode import PromptView

ORIGINS = ("template", "system", "user", "assistant", "text")
# shown elsewhere or too long for the map: the template itself is the token view above
_NOT_LISTED = frozenset({"chat_template", "added_tokens", "eos_tokens"})


class PromptTokens(Static, can_focus=True):
    """Focus it (Tab) and move with ←/→ to select a prompt token: the Lens tab then
    explains what the model predicted after it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,h", "move(-1)", "Prev prompt token", id="prompt_token.prev"),
        Binding("right,l", "move(1)", "Next prompt token", id="prompt_token.next"),
        Binding("home", "jump(0)", "First prompt token", show=False, id="prompt_token.first"),
        Binding("end", "jump(-1)", "Last prompt token", show=False, id="prompt_token.last"),
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
    }
    DEFAULT_CSS = "PromptTokens { height: auto; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("The prompt appears here when you send a message.", **kwargs)
        self.view: PromptView | None = None
        self.cursor: int | None = None

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
        out.append("\n")
        cursor = self.get_component_rich_style("prompt-tokens--cursor")
        for token in view.tokens:
            style = (
                self.get_component_rich_style(f"prompt-tokens--{token.origin}")
                if token.origin in ORIGINS
                else dim
            )
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
