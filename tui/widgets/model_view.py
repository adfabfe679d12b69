"""The Model tab: the `info` facts, with where each generation setting came from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from rich.text import Text
from textual.widgets import Static

from engine.model import ModelDescription


class ModelView(Static):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"model-view--dim"}
    DEFAULT_CSS = "ModelView { height: auto; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("No model loaded yet.", **kwargs)

    def show(self, facts: ModelDescription, generation: Mapping[str, tuple[Any, str]]) -> None:
        dim = self.get_component_rich_style("model-view--dim")
        out = Text()
        out.append(f"{facts.model_id}\n", style="bold")
        if facts.architecture:
            out.append(f"{facts.architecture} ({facts.source})\n", dim)
        out.append(
            f"backend {facts.backend}  device {facts.device}  dtype {facts.dtype}"
            f"  quantize {facts.quantize}\n"
        )
        out.append(f"context window {facts.context_window}\n")
        if facts.parameters_total:
            out.append(f"\nparameters {facts.parameters_total:,}\n", style="bold")
            total = max(facts.parameters_total, 1)
            for kind, count in facts.parameters_by_kind.items():
                out.append(f"  {kind:<16} {count:>13,} {100 * count / total:5.1f}%\n")
        engine = facts.config.get("engine") if facts.source == "remote" else None
        if isinstance(engine, Mapping):  # what the server offers (probed on connect)
            out.append("\nremote engine\n", style="bold")
            for key, value in engine.items():
                shown = ", ".join(map(str, value)) if isinstance(value, list) else value
                out.append(f"  {key:<20} {shown}\n")  # Text.append: never parsed as markup
            if not engine.get("token_id_prompts"):
                out.append("  step mode, forcing and branching: unavailable here\n", dim)
        elif facts.config:
            out.append("\nconfig\n", style="bold")
            for key, value in facts.config.items():
                out.append(f"  {key:<20} {value}\n")
        out.append("\ngeneration (effective · source)\n", style="bold")
        for name, (value, source) in generation.items():
            out.append(f"  {name:<20} {value!s:<10} ")
            out.append(f"{source}\n", dim)
        self.update(out)
