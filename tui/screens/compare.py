"""The Compare view: where two runs of one reply part, token by token, and by how much.

Opened over the workbench with side A (the current run) and side B (the dialog's
spec). The comparison runs on a worker thread (B loads, both sides score the reply,
B runs free) with a progress bar; Esc cancels it, between steps, and a second Esc
leaves at once. Then: the summary, the tokenization check (before any number, when
the sides tokenize the prompt differently), a sparkline of KL per step, both token
paths (tui/widgets/compare_paths.py) and, for the selected step, both sides'
candidates side by side. Keys move over the steps and jump between disagreements.
`on_done` receives the finished comparison (the workbench saves it with the session).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, ProgressBar, Sparkline, Static

from engine.compare import (
    CompareCancelled,
    CompareProgress,
    Comparison,
    Side,
    SideSpec,
    close_side,
    compare_sides,
    open_side,
)
from engine.compare.sides import Prompt
from engine.errors import LogitlabError
from tui.screens.guard import ScreenGuard
from tui.widgets.candidate_table import fmt_prob
from tui.widgets.compare_paths import ComparePaths, disagreements, next_index

STAGES = {"load": "loading", "reply": "A replies", "score": "scoring", "free": "B runs free"}


def summary_text(comparison: Comparison) -> str:
    """The comparison's totals in one line."""
    s = comparison.summary
    if comparison.problem:
        return comparison.problem
    if not s.steps:
        return "no steps to compare"
    parts = [f"{s.steps} steps"]
    if s.mean_kl is not None and s.max_kl is not None:
        exact = all(step.exact for step in comparison.steps)
        label = "KL" if exact else "KL (top-N estimate)"
        parts.append(f"{label} mean {s.mean_kl:.4f} · max {s.max_kl:.4f} nats")
    if s.same_top1 is not None:
        parts.append(f"same top-1 {s.same_top1:.1%}")
    diverge = comparison.first_divergence
    parts.append(
        "B never left the path" if diverge is None else f"first divergence: step {diverge}"
    )
    if s.ppl_a is not None and s.ppl_b is not None:
        parts.append(f"PPL A {s.ppl_a:.3f} / B {s.ppl_b:.3f}")
    return " · ".join(parts)


def tokenization_text(comparison: Comparison) -> Text:
    """Whether both sides saw the same prompt ids; else both lists from the first difference."""
    t = comparison.tokenization
    if t.same:
        return Text(f"tokenization: the same {len(t.a_ids)} prompt ids on both sides")
    at = t.first_difference or 0
    text = Text(f"tokenization differs at prompt position {at}: ", style="bold")
    for name, ids, tokens in (("A", t.a_ids, t.a_tokens), ("B", t.b_ids, t.b_tokens)):
        shown = [
            f"{i}:{tokens[k] if k < len(tokens) else ''}"
            for k, i in enumerate(ids[at : at + 8], at)
        ]
        text.append(f"\n  {name} ({len(ids)} ids) … " + " ".join(shown))
    return text


def side_label(described: object) -> str:
    """A side's description (``Comparison.a`` / ``.b``) in a few words."""
    if not isinstance(described, dict):
        return "?"
    parts = [str(described.get("model") or "?"), str(described.get("backend") or "")]
    for key in ("engine", "dtype", "quantize"):
        value = described.get(key)
        if value and value not in ("auto", "none") and str(value) not in parts:
            parts.append(str(value))
    spec = described.get("spec")
    if isinstance(spec, dict):  # what was asked beyond the model's own facts
        asked = [f"{k}={v}" for k, v in spec.items() if str(v) not in parts]
        if asked:
            parts.append("· " + ", ".join(asked))
    return " ".join(p for p in parts if p)


class CompareScreen(ScreenGuard, Screen[None]):
    palette_scope = "compare"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close / cancel", id="compare.close"),
        Binding("left,h", "move(-1)", "Prev step", id="compare.prev"),
        Binding("right,l", "move(1)", "Next step", id="compare.next"),
        Binding("n", "disagreement(1)", "Next disagreement", id="compare.next_disagreement"),
        Binding("N,p", "disagreement(-1)", "Prev disagreement", id="compare.prev_disagreement"),
        Binding("d", "divergence", "First divergence", id="compare.divergence"),
        Binding("home", "jump(0)", "First step", show=False, id="compare.first"),
        Binding("end", "jump(-1)", "Last step", show=False, id="compare.last"),
    ]

    def __init__(
        self,
        a: Side,
        b_spec: SideSpec,
        prompt: Prompt,
        path: list[int],
        *,
        on_done: Callable[[Comparison], None] | None = None,
        comparison: Comparison | None = None,
    ) -> None:
        """Run A against `b_spec` on `path` after `prompt`; or show `comparison` (saved)."""
        super().__init__()
        self.a, self.b_spec, self.prompt, self.path = a, b_spec, prompt, path
        self.on_done = on_done
        self.comparison: Comparison | None = comparison
        self.cancel = threading.Event()
        self.cursor = 0
        self.failure: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-running"):
            yield Static("", id="compare-stage", markup=False)
            yield ProgressBar(id="compare-progress", show_eta=False)
        with Vertical(id="compare-result"):
            yield Static("", id="compare-sides", markup=False)
            yield Static("", id="compare-summary", markup=False)
            yield Static("", id="compare-tokenization", markup=False)
            yield Sparkline([], id="compare-sparkline")
            yield VerticalScroll(id="compare-paths-box")
            yield Static("", id="compare-step", markup=False)
            with Horizontal(id="compare-candidates"):
                yield DataTable(id="compare-top-a", cursor_type="none", zebra_stripes=True)
                yield DataTable(id="compare-top-b", cursor_type="none", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        for side in ("a", "b"):
            table = self.query_one(f"#compare-top-{side}", DataTable)
            table.border_title = f"{side.upper()}'s candidates"
            table.add_columns("#", "token", "p", "logp")
        if self.comparison is not None:
            self._show(self.comparison)
            return
        self.query_one("#compare-result").display = False
        self._app = self.app  # for the worker thread
        self._stage(CompareProgress("load", "B", 0, 0))
        self.run_worker(self._run, thread=True, exclusive=True, group="compare")

    # --- the run (a worker thread) -----------------------------------------------------

    def _run(self) -> None:
        b: Side | None = None
        try:
            b = open_side(self.b_spec, "B", progress=self._loading)
            if self.cancel.is_set():
                raise CompareCancelled("the comparison was cancelled")
            comparison = compare_sides(
                self.a,
                b,
                self.prompt,
                path=self.path,
                progress=lambda p: self._later(self._stage, p),
                cancel=self.cancel,
            )
            self._later(self._finished, comparison)
        except CompareCancelled:
            self._later(self._cancelled)
        except LogitlabError as exc:
            self._later(self._failed, str(exc))
        except Exception as exc:  # a side's own trouble: one line, never a frozen screen
            self._later(self._failed, f"{type(exc).__name__}: {exc}")
        finally:
            if b is not None:
                close_side(b)

    def _loading(self, stage: str, fraction: float, detail: str) -> None:
        self._later(self._stage, CompareProgress("load", "B", int(fraction * 100), 100), detail)

    def _later(self, fn: Callable[..., None], *args: object) -> None:
        """Run `fn` on the UI thread, if the app and this screen are still there."""
        with contextlib.suppress(RuntimeError):  # the app has ended
            self._app.call_from_thread(lambda: fn(*args) if self.is_attached else None)

    def _stage(self, progress: CompareProgress, detail: str = "") -> None:
        what = STAGES.get(progress.stage, progress.stage)
        side = f" {progress.side}" if progress.side and progress.stage == "load" else ""
        count = f" {progress.done}/{progress.total}" if progress.total else ""
        if progress.stage == "load":
            count = f" · {detail}" if detail else ""
        cancel = " · Esc again leaves now" if self.cancel.is_set() else " · Esc cancels"
        self.query_one("#compare-stage", Static).update(f"{what}{side}{count}{cancel}")
        bar = self.query_one(ProgressBar)
        if progress.total:
            bar.update(total=progress.total, progress=progress.done)
        else:
            bar.update(total=None)

    def _finished(self, comparison: Comparison) -> None:
        self._show(comparison)
        if self.on_done is not None:
            self.on_done(comparison)

    def _cancelled(self) -> None:
        self.notify("Comparison cancelled.", severity="warning")
        self.dismiss()

    def _failed(self, line: str) -> None:
        self.failure = line
        self.notify(line, severity="error", markup=False)
        self.dismiss()

    # --- the result --------------------------------------------------------------------

    def _show(self, comparison: Comparison) -> None:
        self.comparison = comparison
        self.query_one("#compare-running").display = False
        self.query_one("#compare-result").display = True
        self.query_one("#compare-sides", Static).update(
            f"A: {side_label(comparison.a)}\nB: {side_label(comparison.b)}"
        )
        self.query_one("#compare-summary", Static).update(summary_text(comparison))
        self.query_one("#compare-tokenization", Static).update(tokenization_text(comparison))
        self.query_one(Sparkline).data = [max(s.kl, 0.0) for s in comparison.steps] or [0.0]
        box = self.query_one("#compare-paths-box", VerticalScroll)
        box.remove_children()
        box.mount(ComparePaths(comparison, id="compare-paths"))
        start = comparison.first_divergence
        marks = disagreements(comparison)
        self._select(
            start
            if start is not None and start < len(comparison.steps)
            else (marks[0] if marks else 0)
        )

    def _select(self, index: int) -> None:
        comparison = self.comparison
        if comparison is None or not comparison.steps:
            return
        index = max(0, min(index, len(comparison.steps) - 1))
        self.cursor = index
        for paths in self.query(ComparePaths):
            paths.select(index)
        step = comparison.steps[index]
        rank = str(step.rank_b) if step.rank_b else "beyond B's top-N"
        exact = "" if step.exact else " (top-N estimate)"
        agree = "both pick the same top-1" if step.agree else "top-1 differ"
        self.query_one("#compare-step", Static).update(
            f"step {step.step} · {step.token!r} · KL {step.kl:.5f} nats{exact} · "
            f"p A {fmt_prob(_exp(step.logprob_a)).strip()} · p B {fmt_prob(_exp(step.logprob_b)).strip()} · "
            f"rank under B {rank} · {agree}"
        )
        for side, top, chosen in (("a", step.top_a, step.top1_a), ("b", step.top_b, step.top1_b)):
            table = self.query_one(f"#compare-top-{side}", DataTable)
            table.clear()
            for n, cand in enumerate(top, 1):
                mark = "bold" if cand.token_id == step.token_id else ""
                table.add_row(
                    Text(str(n)),
                    Text(repr(cand.token), style=mark),
                    Text(fmt_prob(cand.prob)),
                    Text(f"{cand.logprob:.3f}"),
                )
            if not top:
                table.add_row(Text("–"), Text(f"top-1 id {chosen}"), Text(""), Text(""))

    # --- keys --------------------------------------------------------------------------

    def action_close(self) -> None:
        if self.comparison is None and not self.cancel.is_set():
            self.cancel.set()  # the worker stops between steps; then the screen closes
            self.query_one("#compare-stage", Static).update("cancelling… · Esc again leaves now")
            return
        self.cancel.set()
        self.dismiss()

    def action_move(self, delta: int) -> None:
        self._select(self.cursor + delta)

    def action_jump(self, index: int) -> None:
        if self.comparison is not None:
            self._select(index if index >= 0 else len(self.comparison.steps) - 1)

    def action_disagreement(self, direction: int) -> None:
        if self.comparison is None:
            return
        found = next_index(disagreements(self.comparison), self.cursor, direction)
        if found is None:
            self.notify("No more disagreements that way.", severity="information")
            return
        self._select(found)

    def action_divergence(self) -> None:
        if self.comparison is None:
            return
        at = self.comparison.first_divergence
        if at is None:
            self.notify("B never left A's path.", severity="information")
        elif at >= len(self.comparison.steps):
            self.notify(
                f"B left the path at step {at}, past its end.", severity="information", markup=False
            )
        else:
            self._select(at)


def _exp(logprob: float) -> float:
    return math.exp(logprob) if logprob > -math.inf else 0.0
