"""The reply's tokens as chips, coloured by probability, with a step cursor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.reactive import reactive
from textual.signal import Signal
from textual.widget import Widget

from engine.records import Step
from engine.tokens import display_text
from tui.crash import CrashGuard

HIGH, MID = 0.6, 0.25  # raw-probability thresholds of the colour scale


def prob_class(step: Step) -> str:
    if step.special:
        return "special"
    if step.prob >= HIGH:
        return "high"
    return "mid" if step.prob >= MID else "low"


def chip_text(step: Step) -> str:
    return step.piece if step.special else display_text(step.text or step.piece)


# A step is "unsure" (where the reply could most likely fork) at an entropy of 2 nats
# or more: as unsure as a fair choice among e² ≈ 7.4 tokens. A fixed bar, not a
# share of the reply, so a confident reply has none and replies compare.
FORK_NATS = 2.0


def is_fork(step: Step) -> bool:
    """Whether `step` is a high-entropy step (an unknown entropy, NaN, is not)."""
    return step.entropy >= FORK_NATS


def next_fork(steps: Sequence[Step], after: int | None, direction: int = 1) -> int | None:
    """The index of the next high-entropy step after `after` (before it when
    `direction` is -1), wrapping around the reply; None when there is none."""
    count = len(steps)
    if not count:
        return None
    start = (-1 if direction > 0 else count) if after is None else after
    for offset in range(1, count + 1):
        index = (start + direction * offset) % count
        if is_fork(steps[index]):
            return index
    return None


class TokenStream(CrashGuard, Widget, can_focus=True):
    """Steps are appended in batches; the cursor selects the step the inspector shows."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "token-stream--high",
        "token-stream--mid",
        "token-stream--low",
        "token-stream--special",
        "token-stream--forced",
        "token-stream--cursor",
        "token-stream--empty",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,h", "screen.token_move(-1)", "Prev token", id="token.prev"),
        Binding("right,l", "screen.token_move(1)", "Next token", id="token.next"),
        Binding("home", "screen.token_jump(0)", "First token", show=False, id="token.first"),
        Binding("end", "screen.token_jump(-1)", "Last token", show=False, id="token.last"),
        Binding("b", "screen.branch", "Branch here", id="token.branch"),
        Binding("f", "screen.fan_out", "Fan out", id="token.fan_out"),
        Binding("p", "screen.reply_move(-1)", "Prev reply", show=False, id="token.prev_reply"),
        Binding("n", "screen.reply_move(1)", "Next reply", show=False, id="token.next_reply"),
        Binding("y", "screen.copy_token", "Copy token", id="token.copy"),
        Binding("e", "screen.next_fork(1)", "Next unsure step", id="token.next_fork"),
        Binding("E", "screen.next_fork(-1)", "Prev unsure step", show=False, id="token.prev_fork"),
        Binding("slash", "screen.lookup_token", "Look up token", id="token.lookup"),
    ]
    DEFAULT_CSS = """
    TokenStream { height: auto; min-height: 3; max-height: 10; overflow-y: auto; }
    """

    cursor: reactive[int | None] = reactive(None)

    class Selected(Message):
        def __init__(self, index: int | None) -> None:
            super().__init__()
            self.index = index

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        # published when the steps or the cursor change (the entropy line follows it)
        self.changed: Signal[TokenStream] = Signal(self, "changed")
        self.steps: list[Step] = []
        self.follow = True  # the cursor rides the newest token until the user moves it
        self._wrap = _Wrap()
        # the chips as one Text that grows as steps arrive (the cursor is laid over a
        # copy in render): rebuilding it every batch was the UI's largest per-batch
        # cost while streaming (bench/ui.py, variant off-stream)
        self._forget_chips()

    def _forget_chips(self) -> None:
        self._chips, self._chips_count = Text(), 0
        self._starts: list[int] = []  # each chip's offset in _chips

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._forget_chips()  # the theme changed: restyle all

    def append(self, steps: tuple[Step, ...] | list[Step]) -> None:
        self.steps.extend(steps)
        if self.follow and self.steps:
            self.cursor = len(self.steps) - 1
        lines = self._wrap.lines
        for step in steps:
            self._wrap.add(cell_len(chip_text(step)))
        # a layout pass (the whole screen) only when the stream grows a line:
        # per batch it cost more CPU than the decode could spare (bench/ui.py)
        self.refresh(layout=self._wrap.lines != lines)
        self.changed.publish(self)

    def truncate(self, count: int) -> None:
        del self.steps[count:]
        self._forget_chips()
        self.cursor = min(self.cursor or 0, count - 1) if count else None
        self._rewrap()
        self.changed.publish(self)

    def clear(self) -> None:
        self.steps.clear()
        self._forget_chips()
        self.follow = True
        self.cursor = None
        self._rewrap()
        self.changed.publish(self)

    def on_resize(self) -> None:
        self._rewrap()

    def _rewrap(self) -> None:
        self._wrap = _Wrap(self.content_region.width)
        for step in self.steps:
            self._wrap.add(cell_len(chip_text(step)))
        self.refresh(layout=True)

    @property
    def selected(self) -> Step | None:
        if self.cursor is None or not 0 <= self.cursor < len(self.steps):
            return None
        return self.steps[self.cursor]

    def watch_cursor(self, cursor: int | None) -> None:
        self.post_message(self.Selected(cursor))
        self.changed.publish(self)

    def action_move(self, delta: int) -> None:
        if not self.steps:
            return
        current = len(self.steps) - 1 if self.cursor is None else self.cursor
        self.cursor = max(0, min(len(self.steps) - 1, current + delta))
        self.follow = self.cursor == len(self.steps) - 1

    def action_jump(self, index: int) -> None:
        if self.steps:
            self.cursor = index % len(self.steps)
            self.follow = self.cursor == len(self.steps) - 1

    def action_next_fork(self, direction: int) -> None:
        """Move to the next (or previous) high-entropy step: where the reply was most
        likely to fork (entropy of `FORK_NATS` or more)."""
        found = next_fork(self.steps, self.cursor, direction)
        if found is None:
            self.notify(
                f"No step of this reply has an entropy of {FORK_NATS:g} nats or more.",
                markup=False,
            )
            return
        self.action_jump(found)

    def render(self) -> Text:
        if not self.steps:
            return Text(
                "no tokens yet — send a message",
                style=self.get_component_rich_style("token-stream--empty"),
            )
        if self._chips_count < len(self.steps):
            self._extend(self.steps[self._chips_count :])
        out = self._chips.copy()
        if self.cursor is not None and 0 <= self.cursor < len(self._starts):
            start = self._starts[self.cursor]
            end = start + len(chip_text(self.steps[self.cursor]))
            out.stylize(self.get_component_rich_style("token-stream--cursor"), start, end)
        return out

    def _extend(self, steps: list[Step]) -> None:
        styles = {
            name: self.get_component_rich_style(f"token-stream--{name}")
            for name in ("high", "mid", "low", "special")
        }
        forced = self.get_component_rich_style("token-stream--forced")
        for step in steps:
            style = styles[prob_class(step)]
            if step.forced:
                style = style + forced
            self._starts.append(len(self._chips))
            self._chips.append(chip_text(step), style)
            self._chips.append(" ")
        self._chips_count += len(steps)


class _Wrap:
    """Lines the chips fill at a width: greedy, like Rich wrapping words at spaces
    (chips hold no spaces: `display_text()` shows them as ·)."""

    def __init__(self, width: int = 0) -> None:
        self.width = max(width, 1)
        self.lines = 0
        self._fill = 0

    def add(self, chip: int) -> None:
        if self.lines and self._fill + 1 + chip <= self.width:
            self._fill += 1 + chip
            return
        self.lines += 1 + max(chip - 1, 0) // self.width  # a chip wider than a line folds
        self._fill = chip % self.width or min(chip, self.width)
