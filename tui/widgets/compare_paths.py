"""The Compare view's token paths: the shared path (A's reply) coloured by KL(A‖B),
and B running free from the prompt, its first step off the path marked.

One chip per token, as in the token stream. A chip's colour is how far B's
distribution is from A's there (`kl_class`); a step where the two sides' top-1
differ is underlined; the selected step is reversed on both rows. B's row shows
B's own tokens: the same as A's up to the first divergence, which is marked, and
B's own continuation after it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from engine.compare import Comparison
from engine.tokens import display_text

CLOSE, APART = 0.01, 0.1  # KL (nats) thresholds of the colour scale


def kl_class(kl: float) -> str:
    """The colour class of a step's KL: close (< 0.01 nats), apart (≥ 0.1), else between."""
    if math.isnan(kl):
        return "unknown"
    if kl < CLOSE:
        return "close"
    return "between" if kl < APART else "apart"


def disagreements(comparison: Comparison) -> list[int]:
    """The steps where the sides' top-1 differ, in order."""
    return [i for i, s in enumerate(comparison.steps) if not s.agree]


def next_index(marks: Sequence[int], at: int, direction: int) -> int | None:
    """The next (direction 1) or previous (-1) entry of sorted `marks` after `at`."""
    if direction > 0:
        return next((m for m in marks if m > at), None)
    return next((m for m in reversed(marks) if m < at), None)


class ComparePaths(Static):
    """Both token paths of a comparison with a step cursor (`select`)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "compare-paths--label",
        "compare-paths--close",
        "compare-paths--between",
        "compare-paths--apart",
        "compare-paths--unknown",
        "compare-paths--disagree",
        "compare-paths--cursor",
        "compare-paths--diverge",
        "compare-paths--same",
    }

    def __init__(self, comparison: Comparison, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.comparison = comparison
        self.cursor = 0

    def select(self, index: int) -> None:
        self.cursor = index
        self.update(self.render_paths())

    def on_mount(self) -> None:
        self.update(self.render_paths())

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self.is_mounted:
            self.update(self.render_paths())

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"compare-paths--{name}")

    def render_paths(self) -> Text:
        comparison = self.comparison
        text = Text()
        text.append("A · the shared path, coloured by KL(A‖B)\n", self._style("label"))
        for i, step in enumerate(comparison.steps):
            style = self._style(kl_class(step.kl))
            if not step.agree:
                style += self._style("disagree")
            if i == self.cursor:
                style += self._style("cursor")
            text.append(_chip(step.token), style)
            text.append(" ")
        if not comparison.steps:
            text.append("(no steps)", self._style("label"))
        diverge = comparison.first_divergence
        where = "never left it" if diverge is None else f"left it at step {diverge}"
        text.append(f"\n\nB · running free from the prompt: {where}\n", self._style("label"))
        for i, token in enumerate(comparison.b_tokens):
            if diverge is None or i < diverge:
                style = self._style("same")
            elif i == diverge:
                style = self._style("diverge")
            else:
                style = Style()
            if i == self.cursor:
                style += self._style("cursor")
            if i == diverge:
                text.append("⟂", self._style("diverge"))
            text.append(_chip(token), style)
            text.append(" ")
        if not comparison.b_tokens:
            text.append("(no tokens)", self._style("label"))
        return text


def _chip(token: str) -> str:
    """A token as shown (the engine's display already makes whitespace visible)."""
    return display_text(token) if token else "∅"
