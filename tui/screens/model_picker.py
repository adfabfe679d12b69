"""Pick a model to load: id or path, GGUF file, device, dtype, quantization."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from engine.errors import InvalidParameterError
from engine.model import DTYPES, QUANTIZE, ModelSpec
from tui.screens.guard import ScreenGuard


class ModelPickerScreen(ScreenGuard, ModalScreen[ModelSpec | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="picker.cancel")
    ]

    def __init__(self, current: ModelSpec) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        spec = self.current
        with Vertical(id="picker-box", classes="dialog"):
            yield Static("Load a model", classes="dialog-title")
            yield Label("model: hub id, checkpoint dir or .gguf path (empty = bundled default)")
            yield Input(
                spec.model or "", placeholder="HuggingFaceTB/SmolLM2-135M-Instruct", id="model"
            )
            yield Label("GGUF file inside the model repo/dir (optional)")
            yield Input(spec.gguf_file or "", id="gguf")
            yield Label("device: auto, cpu, cuda, cuda:N, mps")
            yield Input(spec.device, id="device")
            with Horizontal(classes="dialog-row"):
                yield Select(
                    [(d, d) for d in DTYPES], value=spec.dtype, allow_blank=False, id="dtype"
                )
                yield Select(
                    [(q, q) for q in QUANTIZE],
                    value=spec.quantize,
                    allow_blank=False,
                    id="quantize",
                )
            yield Static("", id="picker-error", classes="field-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Load", id="load", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#model", Input).focus()

    def build_spec(self) -> ModelSpec:
        """The spec the form describes; raises InvalidParameterError naming the field."""
        model = self.query_one("#model", Input).value.strip() or None
        gguf = self.query_one("#gguf", Input).value.strip() or None
        return ModelSpec(
            model=model,
            gguf_file=gguf,
            device=self.query_one("#device", Input).value.strip() or "auto",
            dtype=str(self.query_one("#dtype", Select).value),
            quantize=str(self.query_one("#quantize", Select).value),
            trust_remote_code=self.current.trust_remote_code,
        )

    @on(Button.Pressed, "#load")
    @on(Input.Submitted)
    def submit(self) -> None:
        try:
            spec = self.build_spec()
        except InvalidParameterError as exc:
            self.query_one("#picker-error", Static).update(str(exc))
            return
        self.dismiss(spec)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
