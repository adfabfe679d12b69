"""The Lens tab: the layer lens (logit lens) for the selected step or prompt token.

One line per layer (embeddings first, the model's real distribution last): the
chosen token's probability and rank at that layer, then the layer's top-K, each
cell shaded by probability. The layer from which the chosen token stays top-1 is
marked. Wider than the pane, the table scrolls both ways. The screen computes
the lens on a worker and hands the result here; this widget only draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import ScrollableContainer, Vertical
from textual.widgets import Static

from engine.model import LensResult
from tui.crash import CrashGuard

SHADES = " ░▒▓█"
TOKEN_WIDTH = 8
PROMPT = "Select a token in the stream (←/→), or a prompt token in the Prompt tab, to see it here."


def shade(p: float) -> str:
    """One block character whose density follows the probability."""
    return SHADES[min(len(SHADES) - 1, int(math.sqrt(max(0.0, p)) * len(SHADES)))]


def pct(p: float) -> str:
    return f"{p:4.0%}" if p >= 0.005 else (" <1%" if p > 0 else "  0%")


def cell(token: str, width: int = TOKEN_WIDTH) -> str:
    token = "".join(ch if ch.isprintable() else "·" for ch in token)
    return token[:width].ljust(width)


class LensView(CrashGuard, Vertical):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "lens-view--high",
        "lens-view--mid",
        "lens-view--low",
        "lens-view--settled",
        "lens-view--dim",
    }
    DEFAULT_CSS = """
    LensView { height: 1fr; }
    LensView > #lens-facts { height: auto; }
    LensView > #lens-scroll { height: 1fr; }
    LensView #lens-table { width: auto; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.result: LensResult | None = None
        self.label = ""

    def compose(self) -> ComposeResult:
        yield Static(PROMPT, id="lens-facts", markup=False)
        with ScrollableContainer(id="lens-scroll"):
            yield Static(id="lens-table", markup=False)

    def show_message(self, line: str) -> None:
        """One line instead of the table (nothing selected, unavailable, failed)."""
        self.result = None
        self._table().loading = False
        self.query_one("#lens-facts", Static).update(Text(line))
        self._table().update("")

    def show_pending(self, label: str) -> None:
        """A spinner while the lens for `label` is computed."""
        self.label = label
        self.query_one("#lens-facts", Static).update(Text(f"{label} · computing…"))
        self._table().loading = True

    def show_result(self, label: str, result: LensResult, display: Callable[[int], str]) -> None:
        self.result, self.label = result, label
        table = self._table()
        table.loading = False
        facts = Text()
        facts.append(label, style="bold")
        facts.append(f"\nchosen {display(result.target_id)!r}  ")
        settled = result.settles_at
        if settled is None:
            facts.append("never settles as top-1")
        else:
            name = result.rows[settled].name
            facts.append(
                f"top-1 from {name} on", self.get_component_rich_style("lens-view--settled")
            )
        self.query_one("#lens-facts", Static).update(facts)
        table.update(self._render_rows(result, display))

    def _render_rows(self, result: LensResult, display: Callable[[int], str]) -> Text:
        dim = self.get_component_rich_style("lens-view--dim")
        out = Text(no_wrap=True)
        out.append(f"{'layer':<5} {'chosen':>4} {'rank':>5}  top-{len(result.rows[0].top)}\n", dim)
        for row in result.rows:
            chosen = math.exp(row.target.logprob)
            name = "emb" if row.layer == 0 else f"L{row.layer}"
            mark = "▶" if row.layer == result.settles_at else " "
            out.append(f"{name:<4}{mark}", self.get_component_rich_style("lens-view--settled"))
            out.append(f" {pct(chosen)} ", self._band(chosen))
            out.append(f"{row.target.rank:>5}  ")
            for token in row.top:
                p = math.exp(token.logprob)
                style = self._band(p)
                if token.token_id == result.target_id:
                    style = style + self.get_component_rich_style("lens-view--settled")
                out.append(shade(p), style)
                out.append(cell(display(token.token_id)), style)
                out.append(f"{pct(p)} ", style)
            out.append("\n")
        out.rstrip()
        return out

    def _band(self, p: float) -> Style:
        band = "high" if p >= 0.5 else "mid" if p >= 0.1 else "low"
        return self.get_component_rich_style(f"lens-view--{band}")

    def _table(self) -> Static:
        return self.query_one("#lens-table", Static)
