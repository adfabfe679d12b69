"""Choose side B of a comparison: the current run is A; B is what differs from it.

One ``KEY=VALUE`` per line (the keys of ``logitlab compare --b``: a model, a backend,
an engine URL, sampling settings, a batch condition); a key left out is A's. Presets
fill the lines for the questions people bring: quantized against full precision,
another dtype, another temperature, the same prompt inside a padded batch. Ctrl+R
(or the button) compares; a bad line is refused in one line, here, before anything
loads. Dismisses with the lines, or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from engine.compare import SPEC_KEYS
from engine.errors import InvalidParameterError
from tui.screens.guard import ScreenGuard

# (label, lines): the presets; {other} is the backend A does not run on
PRESETS: tuple[tuple[str, str], ...] = (
    ("the other backend (llama.cpp Q4_1 ⇄ transformers float32)", "backend={other}"),
    ("another dtype: bfloat16", "dtype=bfloat16"),
    ("sampling: temperature 0.7, seed 1", "temperature=0.7\nseed=1"),
    (
        "in a padded batch: right padding, no mask (the pitfall)",
        "batch=A, B, C, D, E|Hello there, how are you today?\npadding=right\nmask=off",
    ),
    (
        "in a padded batch: left padding with the mask (the fix)",
        "batch=A, B, C, D, E|Hello there, how are you today?\npadding=left\nmask=on",
    ),
    ("without the chat template", "template=off"),
)


def spec_lines(text: str) -> list[str]:
    """The ``KEY=VALUE`` items of the dialog's text: one per non-empty line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


class CompareDialog(ScreenGuard, ModalScreen[list[str] | int | None]):
    """Dismisses with B's lines, the index of a saved comparison to open, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "compare", "Compare", priority=True, id="compare.run"),
        Binding("escape", "cancel", "Cancel", id="compare.cancel"),
    ]

    def __init__(
        self, a_label: str, other_backend: str, check: object, saved: Sequence[str] = ()
    ) -> None:
        """`check(lines)` raises `InvalidParameterError` for lines it refuses; `saved`:
        a label for each comparison of this reply kept with the session."""
        super().__init__()
        self.a_label, self.other_backend = a_label, other_backend
        self._check = check
        self.saved = list(saved)

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-box", classes="dialog"):
            yield Static("Compare this reply with side B", classes="dialog-title")
            yield Static(f"A (this run): {self.a_label}", id="compare-a", markup=False)
            yield Static(
                "B: one KEY=VALUE per line; a key left out is A's. Keys: " + ", ".join(SPEC_KEYS),
                id="compare-help",
                markup=False,
            )
            yield OptionList(
                *(
                    Option(f"open saved: {label}", id=f"saved-{i}")
                    for i, label in enumerate(self.saved)
                ),
                *(Option(label, id=str(i)) for i, (label, _) in enumerate(PRESETS)),
                id="compare-presets",
            )
            yield TextArea(self._preset(0), id="compare-spec", soft_wrap=True)
            yield Static("", id="compare-error", classes="field-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="compare-cancel")
                yield Button("Compare (ctrl+r)", id="compare-go", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#compare-box").border_title = "compare"
        self.query_one(TextArea).focus()

    def _preset(self, index: int) -> str:
        return PRESETS[index][1].format(other=self.other_backend)

    @on(OptionList.OptionSelected, "#compare-presets")
    def preset_chosen(self, event: OptionList.OptionSelected) -> None:
        chosen = event.option.id or "0"
        if chosen.startswith("saved-"):
            self.dismiss(int(chosen.removeprefix("saved-")))
            return
        area = self.query_one(TextArea)
        area.text = self._preset(int(chosen))
        area.focus()

    @on(Button.Pressed, "#compare-go")
    def action_compare(self) -> None:
        lines = spec_lines(self.query_one(TextArea).text)
        try:
            self._check(lines)  # type: ignore[operator]
        except InvalidParameterError as exc:
            self.query_one("#compare-error", Static).update(str(exc))
            return
        self.dismiss(lines)

    @on(Button.Pressed, "#compare-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
