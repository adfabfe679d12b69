"""Ask how many continuations to sample from the selected token (2 to 16)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tui.screens.guard import ScreenGuard

FAN_MIN, FAN_MAX, FAN_DEFAULT = 2, 16, 3


def parse_fan_out(text: str) -> int:
    """K from what the user typed; ValueError with a one-line reason."""
    try:
        k = int(text.strip())
    except ValueError:
        raise ValueError(f"K must be a whole number from {FAN_MIN} to {FAN_MAX}") from None
    if not FAN_MIN <= k <= FAN_MAX:
        raise ValueError(f"K must be from {FAN_MIN} to {FAN_MAX}, got {k}")
    return k


class FanOutScreen(ScreenGuard, ModalScreen[int | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="fanout.cancel"),
    ]

    def __init__(self, at: int, seeds_from: int) -> None:
        super().__init__()
        self.at, self.seeds_from = at, seeds_from

    def compose(self) -> ComposeResult:
        with Vertical(id="fanout-box", classes="dialog"):
            yield Static(
                f"Sample K continuations from step {self.at} ({FAN_MIN}-{FAN_MAX}), with the "
                f"current sampling settings; seeds {self.seeds_from}, {self.seeds_from + 1}, …",
                markup=False,
            )
            yield Input(str(FAN_DEFAULT), id="fanout-k")
            yield Static("", id="fanout-error", classes="field-error", markup=False)

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        try:
            k = parse_fan_out(event.value)
        except ValueError as exc:
            self.query_one("#fanout-error", Static).update(str(exc))
            return
        self.dismiss(k)

    def action_cancel(self) -> None:
        self.dismiss(None)
