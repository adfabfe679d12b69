"""The Step tab: one step (or a pending proposal) and its top-N candidates."""

from __future__ import annotations

import math
from typing import ClassVar

from rich.box import SIMPLE_HEAD
from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from engine.records import Candidate, Proposal, Step, TokenProbe
from engine.tokens import display_text
from tui.widgets.token_lookup import TokenLookupInput

BAR_WIDTH = 5
EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar in eighth-blocks; `fraction` in [0, 1]."""
    cells = max(0.0, min(1.0, fraction)) * width
    full = int(cells)
    rest = EIGHTHS[int((cells - full) * 8)] if full < width else ""
    return ("█" * full + rest).ljust(width)


FILTERED = "  —  "  # a candidate the sampling filters removed: not a probability
FILTERED_LEGEND = "— filtered out by top-k/top-p/min-p"
# why the sampler could not pick a candidate (`Candidate.dropped_by`), for the legend
DROP_MEANINGS = {
    "top-k": "not among the k most likely",
    "top-p": "outside the nucleus",
    "min-p": "below min-p × the best",
}
GREEDY_LEGEND = "dim: greedy (temperature 0) picks only the most likely token"


def drop_legend(top: tuple[Candidate, ...] | list[Candidate]) -> list[str]:
    """The legend lines for the reasons `top` shows: each processor that removed a
    candidate, filtered ones of an older record (no reason kept), greedy."""
    reasons = {c.dropped_by for c in top}
    lines = []
    if named := [f"{name}: {DROP_MEANINGS[name]}" for name in DROP_MEANINGS if name in reasons]:
        lines.append("— dropped by " + " · ".join(named) + "; the rest could be sampled")
    if any(c.processed_logprob == -math.inf and c.dropped_by is None for c in top):
        lines.append(FILTERED_LEGEND)
    if "greedy" in reasons:
        lines.append(GREEDY_LEGEND)
    return lines


def fmt_prob(p: float) -> str:
    if math.isnan(p):  # a remote server did not say
        return "  ?  "
    return f"{p:5.1%}" if p >= 0.001 else ("   0 " if p == 0 else f"{p:.0e}")


def fmt_h(h: float) -> str:
    return "?" if math.isnan(h) else f"{h:.2f}"


def fmt_processed(logprob: float) -> str:
    """A processed probability; `FILTERED` where a filter removed the token (-inf),
    so it never reads as a probability that rounded to zero."""
    return FILTERED if logprob == -math.inf else fmt_prob(math.exp(logprob))


class StepView(Vertical):
    """The candidates are a Rich table in a `Static`, not a `DataTable`: a Static
    keeps its painted lines while its content and size are unchanged, so the
    layout passes a streaming reply causes do not repaint it (a DataTable
    repainted at ~5 ms each, on every pass: bench/ui.py)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "step-view--raw",
        "step-view--processed",
        "step-view--sampled",
        "step-view--dim",
    }
    DEFAULT_CSS = """
    StepView { height: 1fr; }
    StepView > #step-facts { height: auto; }
    StepView > #candidates { height: 1fr; }
    StepView > #lookup-result { height: auto; display: none; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._rows = 0
        self.shown: Step | Proposal | None = None  # what the view shows now
        # which distribution a step's `logprob` is of: "raw" locally; a remote server
        # may report post-sampling ("processed") numbers or not say ("unknown")
        self.logprob_label = "raw"

    def compose(self) -> ComposeResult:
        yield Static("Select a token in the stream (←/→) to inspect it.", id="step-facts")
        yield Static(id="candidates")
        yield Static(id="lookup-result", markup=False)
        yield TokenLookupInput(id="lookup")

    def show_step(self, step: Step | None) -> None:
        self.shown = step
        facts = self.query_one("#step-facts", Static)
        if step is None:
            facts.update("Select a token in the stream (←/→) to inspect it.")
            self._fill(())
            return
        text = Text()
        text.append(f"step {step.index}  ", style="bold")
        text.append(repr(step.piece))
        text.append(f"  id {step.token_id}")
        if step.forced:
            text.append("  forced", self.get_component_rich_style("step-view--sampled"))
        if step.special:
            text.append("  special")
        text.append(f"\nbytes {' '.join(f'{b:02x}' for b in step.token_bytes) or '–'}")
        rank = str(step.rank or "?")
        text.append(
            f"\n{self.logprob_label:<10}p {fmt_prob(step.prob)}  rank {rank:<4} H {fmt_h(step.entropy)}"
        )
        if math.isnan(step.processed_logprob):
            text.append("\nprocessed  unknown (the server reports one distribution)")
        else:
            text.append(
                f"\nprocessed  p {fmt_processed(step.processed_logprob)}  rank {step.processed_rank or '?':<4} H {fmt_h(step.processed_entropy)}"
            )
            why = next((c.dropped_by for c in step.top if c.token_id == step.token_id), None)
            if step.processed_logprob == -math.inf and why is not None:
                text.append(f"\n  forced past {why}: the sampler could not have picked it")
        if step.finish_reason:
            text.append(f"\nfinished: {step.finish_reason}")
        facts.update(text)
        self._fill(step.top, chosen=step.token_id)

    def show_proposal(self, proposal: Proposal) -> None:
        self.shown = proposal
        facts = self.query_one("#step-facts", Static)
        text = Text()
        text.append(f"next token (step {proposal.index})", style="bold")
        text.append(
            f"  H {self.logprob_label} {fmt_h(proposal.entropy)} / processed {fmt_h(proposal.processed_entropy)}"
        )
        text.append("\nSpace/Enter accept ▶ sampled · 1-9 force candidate · c continue · Esc stop")
        facts.update(text)
        self._fill(proposal.top, chosen=proposal.sampled, numbered=True)

    def _fill(
        self,
        top: tuple[Candidate, ...] | list[Candidate],
        chosen: int | None = None,
        numbered: bool = False,
    ) -> None:
        table = Table(box=SIMPLE_HEAD, expand=False, pad_edge=False, show_edge=False)
        for column, justify in (("#", "right"), ("token", "left"), ("id", "right")):
            table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        table.add_column(self.logprob_label, no_wrap=True)
        table.add_column("processed", no_wrap=True)
        raw_style = self.get_component_rich_style("step-view--raw")
        processed_style = self.get_component_rich_style("step-view--processed")
        mark_style = self.get_component_rich_style("step-view--sampled")
        dim = self.get_component_rich_style("step-view--dim")
        for i, cand in enumerate(top):
            mark = Text("›", mark_style) if cand.token_id == chosen else Text(" ")
            label = f"{i + 1}"
            table.add_row(
                mark + Text(label),
                Text(display_text(cand.text or cand.piece)[:12]),  # Text: a token is never markup
                Text(str(cand.token_id)),
                Text(f"{fmt_prob(cand.prob)} ") + Text(bar(cand.prob), raw_style),
                self._processed_cell(cand, processed_style, dim),
            )
        self._rows = len(top)
        legend = [Text(line, dim) for line in drop_legend(top)]
        shown = Group(table, *legend) if legend else table
        # its height is the view's (1fr), whatever it holds: no layout pass
        self.query_one("#candidates", Static).update(shown if top else "", layout=False)

    @staticmethod
    def _processed_cell(cand: Candidate, bar_style: Style, dim: Style) -> Text:
        """The processed probability and its bar; a removed candidate shows "—" and,
        where the bar would be, the processor that removed it; one greedy decoding
        could not pick is dimmed."""
        if cand.processed_logprob == -math.inf:
            return Text(f"{FILTERED} ") + Text(cand.dropped_by or "", dim)
        cell = Text(f"{fmt_processed(cand.processed_logprob)} ")
        cell.append(bar(cand.processed_prob), bar_style)
        if cand.dropped_by == "greedy":
            cell.stylize(dim)
        return cell

    @property
    def candidate_count(self) -> int:
        return self._rows

    # --- any token, beyond the top-N (the screen computes, this draws) ----------------

    def open_lookup(self) -> None:
        box = self.query_one(TokenLookupInput)
        box.display = True
        box.focus()

    def close_lookup(self) -> None:
        self.query_one(TokenLookupInput).display = False

    @property
    def lookup_open(self) -> bool:
        return bool(self.query_one(TokenLookupInput).display)

    def show_lookup_message(self, line: str | None) -> None:
        """One line where the look-up's numbers go (pending, unavailable, failed);
        None hides it."""
        result = self.query_one("#lookup-result", Static)
        result.display = line is not None
        result.update(Text(line or "", self.get_component_rich_style("step-view--dim")))

    def show_probe(self, label: str, index: int, probe: TokenProbe) -> None:
        """A looked-up token's numbers at step `index`, recomputed from the full
        distribution: raw and processed probability and rank, and why it was dropped."""
        text = Text()
        text.append(f"look-up {label} at step {index}\n", style="bold")
        text.append(f"{self.logprob_label:<10}p {fmt_prob(probe.prob)}  rank {probe.rank}")
        text.append(
            f"\nprocessed  p {fmt_processed(probe.processed_logprob)}  rank {probe.processed_rank}"
        )
        if probe.dropped_by == "greedy":
            text.append(
                "  greedy: not the most likely", self.get_component_rich_style("step-view--dim")
            )
        elif probe.dropped_by is not None:
            text.append(
                f"  dropped by {probe.dropped_by}",
                self.get_component_rich_style("step-view--sampled"),
            )
        result = self.query_one("#lookup-result", Static)
        result.display = True
        result.update(text)
