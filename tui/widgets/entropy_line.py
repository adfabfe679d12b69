"""A one-line sparkline of each step's entropy, above the token stream.

Entropy (raw distribution, nats) says how unsure the model was at a step: where
it is high the reply was most likely to fork, and the token stream's `e` jumps
there. A step counts as high-entropy at `FORK_NATS` (2 nats) or more, the
token stream's rule. Bars share one fixed scale (0 to
`SCALE_NATS`, higher clipped) so replies compare at a glance. Wider than the
line, it shows a window of steps that keeps the stream's cursor in view.
"""

from __future__ import annotations

import math
from typing import ClassVar

from rich.text import Text
from textual.widget import Widget

from tui.crash import CrashGuard
from tui.widgets.token_stream import FORK_NATS, TokenStream, is_fork

SCALE_NATS = 4.0
BARS = "▁▂▃▄▅▆▇█"
LABEL = "H "


def spark(entropy: float) -> str:
    if math.isnan(entropy):
        return " "
    level = int(max(0.0, min(entropy, SCALE_NATS)) / SCALE_NATS * (len(BARS) - 1) + 0.5)
    return BARS[level]


class EntropyLine(CrashGuard, Widget):
    """Draws from the token stream it is given; repaints when the stream changes."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "entropy-line--calm",
        "entropy-line--fork",
        "entropy-line--cursor",
        "entropy-line--label",
    }
    DEFAULT_CSS = "EntropyLine { height: 1; }"

    def __init__(self, stream: TokenStream, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stream = stream
        self._start = 0  # the first step in view when the reply is wider than the line
        self.tooltip = (
            f"entropy of each step (nats, raw); bright ≥ {FORK_NATS:g}: "
            "where the reply could fork. e jumps to the next one in the token stream."
        )

    def on_mount(self) -> None:
        self.stream.changed.subscribe(self, self._stream_changed)

    def _stream_changed(self, _stream: TokenStream) -> None:
        self.refresh()

    def window(self, width: int) -> range:
        """The steps in view at `width` columns: all of them when they fit, else a
        window that moves only as far as it must to keep the cursor in it."""
        count = len(self.stream.steps)
        if count <= width:
            self._start = 0
            return range(count)
        cursor = self.stream.cursor if self.stream.cursor is not None else count - 1
        if self.stream.follow:
            self._start = count - width
        elif cursor < self._start:
            self._start = cursor
        elif cursor >= self._start + width:
            self._start = cursor - width + 1
        self._start = max(0, min(self._start, count - width))
        return range(self._start, self._start + width)

    def render(self) -> Text:
        steps = self.stream.steps
        out = Text(no_wrap=True, overflow="crop")
        out.append(LABEL, self.get_component_rich_style("entropy-line--label"))
        if not steps:
            return out
        calm = self.get_component_rich_style("entropy-line--calm")
        fork = self.get_component_rich_style("entropy-line--fork")
        cursor = self.get_component_rich_style("entropy-line--cursor")
        for index in self.window(max(1, self.content_region.width - len(LABEL))):
            step = steps[index]
            style = fork if is_fork(step) else calm
            if index == self.stream.cursor:
                style = style + cursor
            out.append(spark(step.entropy), style)
        return out
