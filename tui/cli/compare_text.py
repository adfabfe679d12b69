"""`logitlab compare --format text`: a comparison as a person reads it in a terminal.

Tokenization first (one line when both sides agree; both id lists aligned with the
first difference marked when not), then one row per step of the shared path: A's
token coloured by KL(A‖B) there, B's own free token beside it (the first divergence
marked ``▶``), the KL and both logprobs, B's rank of the token; then the summary.
The corpus report (``--file``) is llama-perplexity's table. Colours come from the
default theme's probability colours (close / apart / far); none where stdout is not
a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from engine.compare import Comparison
from engine.compare.corpus import CorpusReport

# KL bands (nats): below CLOSE the sides agree closely, from FAR on they are far apart
CLOSE, FAR = 0.01, 0.1
MARK = "▶"


def kl_band(kl: float) -> str:
    """ "high" (close), "mid" or "low" (far): the theme colour a token's KL gets."""
    if kl < CLOSE:
        return "high"
    return "mid" if kl < FAR else "low"


class Printer:
    """Rich text on `out`, styles from the default theme."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console

        from tui.theming import load_themes, theme_variable_defaults

        self.console = Console(file=out, highlight=False, soft_wrap=True)
        colours = theme_variable_defaults(load_themes()[0])
        self.styles = {
            "high": colours["prob-high"],
            "mid": colours["prob-mid"],
            "low": f"bold {colours['prob-low']}",
        }

    def line(self, *parts: tuple[str, str | None] | str) -> None:
        from rich.text import Text

        text = Text()
        for part in parts:
            if isinstance(part, str):
                text.append(part)
            else:
                text.append(part[0], part[1] or "")
        self.console.print(text)


def write_comparison(out: TextIO, c: Comparison) -> None:
    """The whole text report of `c` (tokenization, steps, summary)."""
    p = Printer(out)
    p.line(("A: ", "bold"), _side_line(c.a))
    p.line(("B: ", "bold"), _side_line(c.b))
    write_tokenization(p, c)
    if c.problem is not None:
        return
    if not c.steps:
        p.line(("the shared path is empty: nothing to compare", "dim"))
        return
    p.line("")
    p.line(("step  A's path            B free              KL        logprob A  logprob B  rank B", "bold"))  # fmt: skip
    for s in c.steps:
        b_id = c.b_path[s.step] if s.step < len(c.b_path) else None
        b_token = c.b_tokens[s.step] if b_id is not None else "(stopped)"
        mark = MARK if s.step == c.first_divergence else " "
        kl = f"{'≈' if not s.exact else ' '}{s.kl:.4f}" if math.isfinite(s.kl) else "     inf"
        p.line(
            f"{s.step:4d}  ",
            (f"{_cell(s.token):<18}", p.styles[kl_band(s.kl)]),
            f"{mark} ",
            (f"{_cell(b_token):<18}", "bold" if mark == MARK else None),
            f"{kl:>8}  {s.logprob_a:9.4f}  {s.logprob_b:9.4f}  {_rank(s.rank_b):>6}",
            ("  top-1 differs" if not s.agree else "", "dim"),
        )
    p.line("")
    write_summary(p, c)


def write_tokenization(p: Printer, c: Comparison) -> None:
    t = c.tokenization
    if t.same:
        p.line(("tokenization: ", "bold"), f"the same {len(t.a_ids)} prompt ids on both sides")
    else:
        p.line(
            ("tokenization differs", "bold"),
            f" at position {t.first_difference} ({len(t.a_ids)} ids on A, {len(t.b_ids)} on B):",
        )
        p.line(("   pos    A id  A token               B id  B token", "dim"))
        for i in range(max(len(t.a_ids), len(t.b_ids))):
            mark = MARK if i == t.first_difference else " "
            a = _column(t.a_ids, t.a_tokens, i)
            b = _column(t.b_ids, t.b_tokens, i)
            style = "bold" if i == t.first_difference else None
            p.line((f"{mark}{i:4d}  {a}  {b}", style))
    if c.problem is not None:
        p.line((c.problem, "bold"))


def write_summary(p: Printer, c: Comparison) -> None:
    s = c.summary
    exact = all(step.exact for step in c.steps)
    where = (
        f"first divergence at step {c.first_divergence} (B's own choice leaves the path)"
        if c.first_divergence is not None
        else "B running free never left the path"
    )
    p.line(("summary: ", "bold"), f"{s.steps} steps · {where}")
    label = "KL(A‖B)" if exact else "KL(A‖B) ≈ (top-N estimate, a lower bound)"
    p.line(
        f"  {label} nats: mean {_f(s.mean_kl)} · median {_f(s.median_kl)} · "
        f"99% {_f(s.p99_kl)} · max {_f(s.max_kl)}"
    )
    p.line(
        f"  same top-1 {_pct(s.same_top1)} · RMS Δp {_pct(s.rms_dp)} · "
        f"PPL A {_f(s.ppl_a)} · PPL B {_f(s.ppl_b)}"
    )


def write_corpus(out: TextIO, a: Mapping[str, Any], b: Mapping[str, Any], r: CorpusReport,
                 window: int, stride: int) -> None:  # fmt: skip
    """llama-perplexity's ``--kl-divergence`` report of a corpus."""
    p = Printer(out)
    p.line(("A: ", "bold"), _side_line(a))
    p.line(("B: ", "bold"), _side_line(b))
    p.line(f"{r.tokens} tokens · window {window}, stride {stride} · {r.elapsed_s:.1f} s")
    if not r.exact:
        p.line(("KL is a top-N estimate (a lower bound): a side gave only its top-N", "bold"))
    ratio = r.ppl_ratio
    rows: list[tuple[str, str]] = [
        ("PPL(A)", _f(r.ppl_a)),
        ("PPL(B)", _f(r.ppl_b)),
        ("PPL(B)/PPL(A)", _f(ratio)),
        ("ln(PPL(B)/PPL(A))", _f(math.log(ratio)) if ratio else "-"),
        ("Mean    KL", _f(r.kl_mean)),
        ("Median  KL", _f(r.kl_median)),
        ("99.9%   KL", _f(r.kl_p999)),
        ("99.0%   KL", _f(r.kl_p99)),
        ("Maximum KL", _f(r.kl_max)),
        ("Same top p", _pct(r.same_top1)),
        ("Mean    Δp", _pct(r.dp_mean, signed=True)),
        ("Maximum Δp", _pct(r.dp_max, signed=True)),
        *((f"{q:>5.1f}%  Δp", _pct(v, signed=True)) for q, v in r.dp_percentiles),
        ("Minimum Δp", _pct(r.dp_min, signed=True)),
        ("RMS     Δp", _pct(r.dp_rms)),
    ]
    for name, value in rows:
        p.line(f"  {name:<18} {value:>12}")


def _side_line(side: Mapping[str, Any]) -> str:
    parts = [str(side.get("model")), str(side.get("backend"))]
    if side.get("dtype") and side.get("backend") == "transformers":
        parts.append(str(side["dtype"]))
    if side.get("quantize") not in (None, "none"):
        parts.append(str(side["quantize"]))
    parts.append("template on" if side.get("template") else "template off")
    batch = side.get("batch")
    if batch:
        mask = "mask" if batch.get("mask") else "no mask"
        parts.append(
            f"in a batch of {len(batch['prompts']) + 1}, {batch['padding']} padding, {mask}"
        )
    t = side.get("sampling", {}).get("temperature")
    parts.append("greedy" if t == 0 else f"temperature {t}")
    return " · ".join(parts)


def _column(ids: Sequence[int], tokens: Sequence[str], i: int) -> str:
    if i >= len(ids):
        return f"{'':>6}  {'':<20}"
    token = tokens[i] if i < len(tokens) else ""
    return f"{ids[i]:>6}  {_cell(token):<20}"


def _cell(token: str) -> str:
    shown = repr(token)[1:-1]
    return shown if len(shown) <= 18 else shown[:17] + "…"


def _rank(rank: int) -> str:
    return str(rank) if rank > 0 else "?"


def _f(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.6f}" if abs(value) < 1000 else f"{value:.1f}"


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{100 * value:+.3f}%" if signed else f"{100 * value:.3f}%"
