"""The reply's tokens as chips, coloured by probability, with a step cursor.

A Line API widget of a fixed height that scrolls itself: the chips are laid out
in lines as they arrive (a batch touches the last line or two), each line's strip
is kept until its chips or the cursor on it change, and the window of lines in
view moves with the cursor. So a batch repaints the lines that changed, never
the reply, and never makes the screen lay itself out again (bench/ui.py: as one
wrapped Text, and then as a ScrollView whose growing virtual size asked for a
layout of the whole screen, it was the UI's largest per-batch cost). A column at
the right edge shows where the window lies when the reply is taller than it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.cells import cell_len, chop_cells
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region
from textual.message import Message
from textual.reactive import reactive
from textual.signal import Signal
from textual.strip import Strip
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
    """Steps are appended in batches; the cursor selects the step the inspector
    shows, and the view scrolls to keep it in sight."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "token-stream--high",
        "token-stream--mid",
        "token-stream--low",
        "token-stream--special",
        "token-stream--forced",
        "token-stream--cursor",
        "token-stream--empty",
        "token-stream--track",
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
    TokenStream { height: 30%; min-height: 5; }
    """
    TRACK, THUMB = "│", "┃"  # the position column: the reply, and the lines in view

    cursor: reactive[int | None] = reactive(None, repaint=False)  # watch_cursor repaints its lines

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
        self.top = 0  # the first line in view
        self._layout = _Lines(1)
        self._strips: dict[int, Strip] = {}  # painted lines by index, until they change
        self._styles: dict[str, Style] | None = None

    # --- the steps ------------------------------------------------------------------

    def append(self, steps: tuple[Step, ...] | list[Step]) -> None:
        first = len(self.steps)
        self.steps.extend(steps)
        touched = self._layout.add([chip_text(step) for step in steps])
        for line in touched:
            self._strips.pop(line, None)
        if not first:
            self._strips.clear()  # the empty-stream message goes
        if self.follow and self.steps:
            self.cursor = len(self.steps) - 1
        self._repaint(touched)
        self.changed.publish(self)

    def truncate(self, count: int) -> None:
        del self.steps[count:]
        self.cursor = min(self.cursor or 0, count - 1) if count else None
        self._relayout()
        self.changed.publish(self)

    def clear(self) -> None:
        self.steps.clear()
        self.follow = True
        self.cursor = None
        self._relayout()
        self.changed.publish(self)

    @property
    def line_count(self) -> int:
        """Lines the chips fill at the current width (the window shows some of them)."""
        return len(self._layout.lines)

    @property
    def selected(self) -> Step | None:
        if self.cursor is None or not 0 <= self.cursor < len(self.steps):
            return None
        return self.steps[self.cursor]

    # --- the cursor and the window ----------------------------------------------------

    def watch_cursor(self, old: int | None, cursor: int | None) -> None:
        lines: set[int] = set()
        for index in (old, cursor):
            if index is not None and index < len(self.steps):
                lines.update(self._layout.lines_of(index))
        for line in lines:
            self._strips.pop(line, None)
        self._repaint(lines)
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

    def scroll_lines(self, delta: int) -> None:
        """Move the window without moving the cursor (the mouse wheel)."""
        self._set_top(self.top + delta)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self.scroll_lines(-1)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self.scroll_lines(1)

    def _set_top(self, top: int) -> bool:
        top = max(0, min(top, len(self._layout.lines) - self.content_size.height))
        if top == self.top:
            return False
        self.top = top
        self.refresh()
        return True

    def _reveal(self) -> bool:
        """Move the window as little as it takes to show the cursor's first line;
        whether it moved."""
        if self.cursor is None or self.cursor >= len(self.steps):
            return False
        line = self._layout.lines_of(self.cursor).start
        height = self.content_size.height
        if line < self.top:
            return self._set_top(line)
        if height and line >= self.top + height:
            return self._set_top(line - height + 1)
        return False

    def _repaint(self, lines: range | set[int]) -> None:
        """Repaint these lines where they are in view (the whole view if it moved)."""
        if self._reveal():
            return
        width, height = self.content_size
        for line in lines:
            if self.top <= line < self.top + height:
                self.refresh(Region(0, line - self.top, width, 1))
        if len(self._layout.lines) > height:
            self.refresh(Region(width - 1, 0, 1, height))  # the position column

    # --- painting -------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None  # the theme changed: restyle all
        self._strips.clear()

    def on_resize(self) -> None:
        self._relayout()

    def _relayout(self) -> None:
        """Lay all the chips out again (a new width, a shorter reply)."""
        self._layout = _Lines(self.content_size.width - 1)  # the position column
        self._layout.add([chip_text(step) for step in self.steps])
        self._strips.clear()
        self.top = max(0, min(self.top, len(self._layout.lines) - self.content_size.height))
        self._reveal()
        self.refresh()

    def _style(self, name: str) -> Style:
        if self._styles is None:
            base = self.rich_style
            self._styles = {
                name: base + self.get_component_rich_style(f"token-stream--{name}")
                for name in ("high", "mid", "low", "special", "forced", "cursor", "empty", "track")
            }
            self._styles[""] = base
        return self._styles[name]

    def render_line(self, y: int) -> Strip:
        line = self.top + y
        strip = self._strips.get(line)
        if strip is None:
            strip = self._strips[line] = self._paint(line)
        width = self.content_size.width
        return Strip.join([strip.crop_extend(0, width - 1, self._style("")), self._position(y)])

    def _position(self, y: int) -> Strip:
        """The position column's cell on row `y`: a thumb over the lines in view."""
        total, height = len(self._layout.lines), self.content_size.height
        if total <= height:
            return Strip([Segment(" ", self._style(""))])
        start = self.top * height // total
        end = max(start + 1, -(-(self.top + height) * height // total))
        mark = self.THUMB if start <= y < end else self.TRACK
        return Strip([Segment(mark, self._style("track"))])

    def _paint(self, line: int) -> Strip:
        if not self.steps:
            if line:
                return Strip([])
            return Strip([Segment("no tokens yet — send a message", self._style("empty"))])
        if line >= len(self._layout.lines):
            return Strip([])
        segments: list[Segment] = []
        gap = Segment(" ", self._style(""))
        for piece in self._layout.lines[line]:
            if segments:
                segments.append(gap)
            step = self.steps[piece.step]
            style = self._style(prob_class(step))
            if step.forced:
                style += self._style("forced")
            if piece.step == self.cursor:
                style += self._style("cursor")
            segments.append(Segment(piece.text, style))
        return Strip(segments)


@dataclass(frozen=True, slots=True)
class _Piece:
    step: int
    text: str  # the chip, or the part of a chip wider than a line that falls on this one


class _Lines:
    """Chips laid out in lines of `width` cells, greedy like Rich wrapping words
    at spaces (chips hold no spaces: `display_text()` shows them as ·), one space
    between chips; a chip wider than a line folds over as many as it needs."""

    def __init__(self, width: int) -> None:
        self.width = max(width, 1)
        self.lines: list[list[_Piece]] = []
        self._first: list[int] = []  # each step's first line
        self._fill = 0  # cells used on the last line

    def add(self, chips: list[str]) -> range:
        """Lay out the next chips; returns the lines they touched."""
        start = max(len(self.lines) - 1, 0)
        for chip in chips:
            step, cells = len(self._first), cell_len(chip)
            if self.lines and self._fill + 1 + cells <= self.width:
                self._first.append(len(self.lines) - 1)
                self.lines[-1].append(_Piece(step, chip))
                self._fill += 1 + cells
                continue
            self._first.append(len(self.lines))
            parts = chop_cells(chip, self.width) if cells > self.width else [chip]
            for part in parts:
                self.lines.append([_Piece(step, part)])
            self._fill = cell_len(parts[-1])
        return range(start, len(self.lines))

    def lines_of(self, step: int) -> range:
        """The lines a step's chip lies on (more than one only where it folds)."""
        first = self._first[step]
        last = self._first[step + 1] if step + 1 < len(self._first) else len(self.lines) - 1
        if last > first and self.lines[last][0].step != step:
            last -= 1  # the next step starts a line of its own
        return range(first, max(last, first) + 1)
