"""The Step tab's candidates: rank, token, id, raw and processed probability.

Laid out by hand in fixed-width columns rather than as a Rich `Table`: measuring a
Rich table took ~4 ms per paint and the inspector repaints while a reply streams
(bench/ui.py); lines of text take ~0.3 ms. A narrow view drops the bars first,
then the id column, before anything is cut.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from engine.records import Candidate
from engine.tokens import display_text

BAR_WIDTH = 5
EIGHTHS = " ▏▎▍▌▋▊▉█"
TOKEN_CELLS = 12  # a longer token is cut: the facts above show the selected one whole
GAP = "  "
PROB = 5  # "12.3%", "8e-04", "  —  "

FILTERED = "  —  "  # a candidate the sampling filters removed: not a probability
FILTERED_LEGEND = "— filtered out by top-k/top-p/min-p"
# why the sampler could not pick a candidate (`Candidate.dropped_by`), for the legend
DROP_MEANINGS = {
    "top-k": "not among the k most likely",
    "top-p": "outside the nucleus",
    "min-p": "below min-p × the best",
}
GREEDY_LEGEND = "dim: greedy (temperature 0) picks only the most likely token"


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar in eighth-blocks; `fraction` in [0, 1]."""
    cells = max(0.0, min(1.0, fraction)) * width
    full = int(cells)
    rest = EIGHTHS[int((cells - full) * 8)] if full < width else ""
    return ("█" * full + rest).ljust(width)


def fmt_prob(p: float) -> str:
    if math.isnan(p):  # a remote server did not say
        return "  ?  "
    return f"{p:5.1%}" if p >= 0.001 else ("   0 " if p == 0 else f"{p:.0e}")


def fmt_processed(logprob: float) -> str:
    """A processed probability; `FILTERED` where a filter removed the token (-inf),
    so it never reads as a probability that rounded to zero."""
    return FILTERED if logprob == -math.inf else fmt_prob(math.exp(logprob))


def drop_legend(top: Sequence[Candidate]) -> list[str]:
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


@dataclass(frozen=True, slots=True)
class TableStyles:
    raw: Style  # the raw probability's bar
    processed: Style  # the processed probability's bar
    sampled: Style  # the mark on the chosen token
    dim: Style  # what the sampler could not pick, and the legend


def candidate_table(
    top: Sequence[Candidate],
    chosen: int | None,
    label: str,
    width: int,
    styles: TableStyles,
) -> Text:
    """The table as text lines that fit `width` cells, then the legend (which wraps)."""
    if not top:
        return Text()
    tokens = [display_text(c.text or c.piece) for c in top]
    token_cells = min(TOKEN_CELLS, max(len("token"), *map(cell_len, tokens)))
    id_cells = max(len("id"), *(len(str(c.token_id)) for c in top))
    reason = max(
        (len(c.dropped_by or "") for c in top if c.processed_logprob == -math.inf), default=0
    )
    lean = 3 + len(GAP) + token_cells + 2 * (len(GAP) + PROB)  # rank, token, two numbers
    with_ids = lean + len(GAP) + id_cells
    show_bars = width >= with_ids + 2 + BAR_WIDTH + max(BAR_WIDTH, reason)
    show_ids = show_bars or width >= with_ids
    raw_cells = PROB + 1 + BAR_WIDTH if show_bars else PROB
    header = Text(f"{'#':>3}{GAP}{'token':<{token_cells}}")
    if show_ids:
        header.append(f"{GAP}{'id':>{id_cells}}")
    header.append(f"{GAP}{label[:raw_cells]:<{raw_cells}}{GAP}processed")
    rows = []
    for rank, (cand, token) in enumerate(zip(top, tokens, strict=True), 1):
        line = Text()
        line.append("›" if cand.token_id == chosen else " ", styles.sampled)
        line.append(f"{rank:>2}{GAP}")
        # Text.append of a str: a token is never markup
        line.append(set_cell_size(token, token_cells))
        if show_ids:
            line.append(f"{GAP}{cand.token_id:>{id_cells}}")
        line.append(f"{GAP}{fmt_prob(cand.prob)}")
        if show_bars:
            line.append(" ")
            line.append(bar(cand.prob), styles.raw)
        line.append(GAP)
        line.append_text(_processed_cell(cand, show_bars, styles))
        rows.append(line)
    widest = max(cell_len(line.plain) for line in (header, *rows))
    lines = [header, Text("─" * min(width, widest)), *rows]
    for line in lines:
        line.truncate(width)
    lines.extend(Text(legend, styles.dim) for legend in drop_legend(top))
    return Text("\n").join(lines)


def _processed_cell(cand: Candidate, show_bars: bool, styles: TableStyles) -> Text:
    """The processed probability and its bar; a removed candidate shows "—" and,
    where the bar would be, the processor that removed it; one greedy decoding
    could not pick is dimmed."""
    if cand.processed_logprob == -math.inf:
        cell = Text(FILTERED)
        if show_bars and cand.dropped_by:
            cell.append(" " + cand.dropped_by, styles.dim)
        return cell
    cell = Text(fmt_processed(cand.processed_logprob))
    if show_bars:
        cell.append(" ")
        cell.append(bar(cand.processed_prob), styles.processed)
    if cand.dropped_by == "greedy":
        cell.stylize(styles.dim)
    return cell


class CandidateTable(Widget):
    """Draws the candidates it is given at whatever width it has; its height is
    its container's, so showing another step never needs a layout pass."""

    DEFAULT_CSS = "CandidateTable { height: 1fr; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._top: tuple[Candidate, ...] = ()
        self._chosen: int | None = None
        self._label = "raw"
        self._styles: TableStyles | None = None

    def show(
        self, top: Sequence[Candidate], chosen: int | None, label: str, styles: TableStyles
    ) -> None:
        self._top, self._chosen, self._label, self._styles = tuple(top), chosen, label, styles
        self.refresh()

    @property
    def count(self) -> int:
        return len(self._top)

    def render(self) -> Text:
        if self._styles is None:
            return Text()
        return candidate_table(
            self._top, self._chosen, self._label, self.content_region.width, self._styles
        )
