"""The Branches view: the shown reply's tree, one row per branch, with its numbers.

Rows are the tree in depth-first order (a child indented under its parent);
each says where the branch leaves its parent (step, the token each side took
and its probability) and what the branch is (text, length, cumulative
logprob, perplexity, finish reason, fan-out seed). The view edits a copy of
the tree and hands it back when it closes; the workbench shows and saves it.
"""

from __future__ import annotations

import math
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static

from engine.decode import ReplyTree, branch_stats
from engine.records import Step
from tui.screens.confirm import ConfirmScreen
from tui.screens.guard import ScreenGuard
from tui.widgets.candidate_table import fmt_prob

PREVIEW = 60
PIECE = 10  # a branch point's token in the table, quotes included


def _token(step: Step | None, width: int = 0) -> str:
    """A token and its probability ("'·fruit' 12.3%"); with `width`, the piece is
    shortened so the probability always shows."""
    if step is None:
        return "(end)"
    shown = repr((step.text or step.piece).replace("\n", "⏎"))
    if width and len(shown) > width:
        shown = shown[: width - 2] + "…" + shown[-1]
    return f"{shown} {fmt_prob(math.exp(step.logprob)).strip()}"


def _number(value: float, spec: str) -> str:
    return "—" if math.isnan(value) else ("∞" if math.isinf(value) else format(value, spec))


class BranchesScreen(ScreenGuard, ModalScreen[ReplyTree | None]):
    """Dismisses with the (possibly edited) tree, its current branch the one to show."""

    palette_scope = "branches"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="branches.open"),
        Binding("left_square_bracket", "sibling(-1)", "Prev sibling", id="branches.prev"),
        Binding("right_square_bracket", "sibling(1)", "Next sibling", id="branches.next"),
        Binding("d,delete", "delete", "Delete", id="branches.delete"),
        Binding("escape,f5", "close", "Close", id="branches.close"),
    ]

    def __init__(self, tree: ReplyTree, *, editable: bool, title: str = "branches") -> None:
        super().__init__()
        self.reply_tree, self.editable, self.title_text = tree, editable, title
        self.changed = False

    def compose(self) -> ComposeResult:
        with Vertical(id="branches-box", classes="dialog"):
            yield DataTable(id="branches-table", cursor_type="row", zebra_stripes=True)
            yield Static(id="branches-detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        box = self.query_one("#branches-box")
        box.border_title = self.title_text
        table = self.query_one(DataTable)
        table.add_columns("#", "×", "at", "took", "instead of", "len", "Σlogp", "ppl", "end")
        self._fill(self.reply_tree.current)
        table.focus()

    # --- the table --------------------------------------------------------------------

    def _fill(self, select: int) -> None:
        table = self.query_one(DataTable)
        table.clear()
        # branches that took the same path are one row, counted (K samples of one
        # continuation read as a distribution, not K copies)
        self._repeats = self.reply_tree.repeats()
        rows = [(i, depth) for i, depth in self.reply_tree.order() if i in self._repeats]
        self._rows = [i for i, _ in rows]
        for i, depth in rows:
            branch = self.reply_tree.branches[i]
            count = len(self._repeats[i])
            stats = branch_stats(branch)
            point = self.reply_tree.branch_point(i)
            mark = "●" if i == self.reply_tree.current else " "
            label = Text(f"{mark}{'·' * depth}{i + 1}")
            at = str(point.step) if point else "root"
            took = _token(point.child_token, PIECE) if point else ""
            other = _token(point.parent_token, PIECE) if point else ""
            end = branch.finish_reason or "…"
            if branch.seed is not None:
                end += f" s{branch.seed}"
            table.add_row(
                label,
                Text(f"{count}" if count > 1 else ""),
                Text(at),
                Text(took),
                Text(other),
                Text(str(stats.length)),
                Text(_number(stats.logprob, ".1f")),
                Text(_number(stats.perplexity, ".2f")),
                Text(end),
                key=str(i),
            )
        table.move_cursor(row=self._row_of(select))
        self._describe()

    def _row_of(self, index: int) -> int:
        """The table row showing branch `index` (a repeat shows in its group's row)."""
        for row, first in enumerate(self._rows):
            if index in self._repeats[first]:
                return row
        return 0

    @property
    def selected(self) -> int:
        row = self.query_one(DataTable).cursor_row
        return self._rows[min(max(row, 0), len(self._rows) - 1)]

    def on_data_table_row_selected(self) -> None:
        self.action_open()  # Enter on the table

    def on_data_table_row_highlighted(self) -> None:
        self._describe()

    def _describe(self) -> None:
        i = self.selected
        branch = self.reply_tree.branches[i]
        point = self.reply_tree.branch_point(i)
        where = "the first path"
        if point is not None:
            where = (
                f"leaves branch {point.parent + 1} at step {point.step}: took "
                f"{_token(point.child_token)} instead of {_token(point.parent_token)}"
            )
        seeds = [b.seed for b in (self.reply_tree.branches[j] for j in self._repeats[i])]
        known = [str(x) for x in seeds if x is not None]
        seed = f" · seed {', '.join(known)}" if known else ""
        if len(seeds) > 1:
            seed = f" · taken {len(seeds)}×{seed}"
        shown = " (shown)" if i == self.reply_tree.current else ""
        text = branch.text.replace("\n", " ")
        preview = text if len(text) <= PREVIEW * 2 else text[: PREVIEW * 2 - 1] + "…"
        detail = Text(f"branch {i + 1}{shown}{seed} · {where}\n", style="bold")
        detail.append(preview or "(empty)")
        self.query_one("#branches-detail", Static).update(detail)

    # --- actions ----------------------------------------------------------------------

    def action_sibling(self, delta: int) -> None:
        siblings = self.reply_tree.siblings(self.selected)
        if len(siblings) < 2:
            self.notify("This branch has no siblings at its branch point.", severity="warning")
            return
        target = siblings[(siblings.index(self.selected) + delta) % len(siblings)]
        self.query_one(DataTable).move_cursor(row=self._row_of(target))

    def action_open(self) -> None:
        if not self.editable and self.selected != self.reply_tree.current:
            self.notify(
                "Only the last reply's branches can be opened; this one is shown read-only.",
                severity="warning",
            )
            return
        self.reply_tree = self.reply_tree.switch(self.selected)
        self.dismiss(self.reply_tree)

    def action_delete(self) -> None:
        i = self.selected
        if not self.editable:
            self.notify("Only the last reply's branches can be deleted.", severity="warning")
            return
        if i == self.reply_tree.current:
            self.notify("This branch is the one shown; open another first.", severity="warning")
            return
        n = branch_stats(self.reply_tree.branches[i]).length

        def answered(yes: bool | None) -> None:
            if yes:
                self.reply_tree = self.reply_tree.delete(i)
                self.changed = True
                self._fill(self.reply_tree.current)
                self.notify(f"Deleted branch {i + 1}.", markup=False)

        self.app.push_screen(ConfirmScreen(f"Delete branch {i + 1} ({n} tokens)?"), answered)

    def action_close(self) -> None:
        self.dismiss(self.reply_tree if self.changed else None)
