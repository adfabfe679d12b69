"""One line: model, device, dtype, quantization, context, speed, TTFT, step mode, session."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget


class StatusBar(Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"status-bar--mode", "status-bar--dim"}
    DEFAULT_CSS = "StatusBar { height: 1; }"

    model: reactive[str] = reactive("loading…")
    device: reactive[str] = reactive("")
    dtype: reactive[str] = reactive("")
    quantize: reactive[str] = reactive("")
    backend: reactive[str] = reactive("")  # named when not the default (transformers)
    context_used: reactive[int] = reactive(0)
    context_window: reactive[int] = reactive(0)
    tokens_per_second: reactive[float | None] = reactive(None)
    ttft_ms: reactive[float | None] = reactive(None)
    step_mode: reactive[bool] = reactive(False)
    state: reactive[str] = reactive("")
    session: reactive[str] = reactive("")  # "session 1a2b3c4d", "not saving", or nothing

    def render(self) -> Text:
        dim = self.get_component_rich_style("status-bar--dim")
        out = Text(no_wrap=True, overflow="ellipsis")
        if self.step_mode:
            out.append(" STEP ", self.get_component_rich_style("status-bar--mode"))
            out.append(" ")
        out.append(self.model)
        if self.device:  # a separator, not a space: names and devices both vary
            out.append(" │ ")
            out.append(f"{self.device} {self.dtype}", dim)
            if self.quantize != "none" and self.quantize != self.dtype:
                out.append(f" {self.quantize}", dim)
            if self.backend and self.backend != "transformers":
                out.append(f" {self.backend}", dim)
        if self.context_window:
            out.append(f" │ ctx {self.context_used}/{self.context_window}")
        tps = "–" if self.tokens_per_second is None else f"{self.tokens_per_second:.1f}"
        out.append(f" │ {tps} tok/s")
        ttft = "–" if self.ttft_ms is None else f"{self.ttft_ms:.0f} ms"
        out.append(f" │ TTFT {ttft}")
        if self.state:
            out.append(f" │ {self.state}", dim)
        if self.session:
            out.append(f" │ {self.session}", dim)
        return out
