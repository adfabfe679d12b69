"""The Step tab: one step (or a pending proposal) and its top-N candidates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from engine.records import Candidate, Proposal, Step, TokenProbe
from tui.widgets.candidate_table import (
    CandidateTable,
    TableStyles,
    fmt_prob,
    fmt_processed,
)
from tui.widgets.token_lookup import TokenLookupInput


def fmt_h(h: float) -> str:
    return "?" if math.isnan(h) else f"{h:.2f}"


class StepView(Vertical):
    """The candidates are a `CandidateTable` (lines of text), not a `DataTable`: it
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
    StepView > #lookup-result { height: auto; display: none; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.shown: Step | Proposal | None = None  # what the view shows now
        # which distribution a step's `logprob` is of: "raw" locally; a remote server
        # may report post-sampling ("processed") numbers or not say ("unknown")
        self.logprob_label = "raw"

    def compose(self) -> ComposeResult:
        yield Static("Select a token in the stream (←/→) to inspect it.", id="step-facts")
        yield CandidateTable(id="candidates")
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
        self._fill(proposal.top, chosen=proposal.sampled)

    def _fill(self, top: Sequence[Candidate], chosen: int | None = None) -> None:
        styles = TableStyles(
            raw=self.get_component_rich_style("step-view--raw"),
            processed=self.get_component_rich_style("step-view--processed"),
            sampled=self.get_component_rich_style("step-view--sampled"),
            dim=self.get_component_rich_style("step-view--dim"),
        )
        self.query_one(CandidateTable).show(top, chosen, self.logprob_label, styles)

    @property
    def candidate_count(self) -> int:
        return self.query_one(CandidateTable).count

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
