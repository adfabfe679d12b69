"""The corpus report: ``llama-perplexity --kl-divergence`` without a logits file.

llama.cpp's tool writes the base model's logits for a whole corpus to disk (gigabytes)
and compares a second model against the file. Here both sides run window by window
and each window's two sets of rows meet in memory: the report keeps one small number
per token (KL, Δp, top-1 agreement, both logprobs) and never a row.

Windows are the caller's (`score`'s sliding windows: ``(begin, end, start)`` over the
path, start the first position scored in the window); each side runs its own prefix
(its prompt, or the BOS its tokenizer adds) before the first window. Statistics are
llama-perplexity's: KL mean / median / 99th / 99.9th / max, the fraction of tokens
whose top-1 agree, Δp (B's probability of the token minus A's) percentiles and RMS,
each side's perplexity and their ratio.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.compare.run import CompareProgress, ProgressFn, aligned, step_records
from engine.compare.sides import Chunk, CompareCancelled, Side

# Δp percentiles llama-perplexity prints, in its order
DP_PERCENTILES: tuple[float, ...] = (99.9, 99.0, 95.0, 90.0, 75.0, 50.0, 25.0, 10.0, 5.0, 1.0, 0.1)

# the report's numbers, None in a report of no tokens
_NUMBERS: tuple[str, ...] = (
    "kl_mean",
    "kl_median",
    "kl_p99",
    "kl_p999",
    "kl_max",
    "same_top1",
    "dp_mean",
)
_NUMBERS += ("dp_rms", "dp_max", "dp_min", "ppl_a", "ppl_b", "ppl_ratio")

Window = tuple[int, int, int]  # (begin, end, start): path[begin:end], scored from begin+start


@dataclass
class CorpusTotals:
    """Per-token numbers gathered window by window (one float each, never a row)."""

    kl: list[float] = field(default_factory=list)
    dp: list[float] = field(default_factory=list)
    nll_a: float = 0.0
    nll_b: float = 0.0
    same_top1: int = 0
    exact: bool = True

    @property
    def tokens(self) -> int:
        return len(self.kl)


@dataclass(frozen=True)
class CorpusReport:
    """The report over a corpus (see the module doc); `elapsed_s` the wall time."""

    tokens: int
    exact: bool
    kl_mean: float | None
    kl_median: float | None
    kl_p99: float | None
    kl_p999: float | None
    kl_max: float | None
    same_top1: float | None
    dp_mean: float | None
    dp_rms: float | None
    dp_max: float | None
    dp_min: float | None
    dp_percentiles: tuple[tuple[float, float], ...]
    ppl_a: float | None
    ppl_b: float | None
    ppl_ratio: float | None
    elapsed_s: float

    @classmethod
    def of(cls, totals: CorpusTotals, elapsed_s: float) -> CorpusReport:
        from engine.compare.kl import percentile

        n = totals.tokens
        if n == 0:
            empty: dict[str, Any] = dict.fromkeys(_NUMBERS)
            return cls(
                tokens=0, exact=totals.exact, dp_percentiles=(), elapsed_s=elapsed_s, **empty
            )
        ppl_a, ppl_b = _exp(totals.nll_a / n), _exp(totals.nll_b / n)
        return cls(
            tokens=n,
            exact=totals.exact,
            kl_mean=math.fsum(totals.kl) / n,
            kl_median=percentile(totals.kl, 50),
            kl_p99=percentile(totals.kl, 99),
            kl_p999=percentile(totals.kl, 99.9),
            kl_max=max(totals.kl),
            same_top1=totals.same_top1 / n,
            dp_mean=math.fsum(totals.dp) / n,
            dp_rms=math.sqrt(math.fsum(d * d for d in totals.dp) / n),
            dp_max=max(totals.dp),
            dp_min=min(totals.dp),
            dp_percentiles=tuple((q, percentile(totals.dp, q)) for q in DP_PERCENTILES),
            ppl_a=ppl_a,
            ppl_b=ppl_b,
            ppl_ratio=ppl_b / ppl_a if ppl_a and math.isfinite(ppl_a) else None,
            elapsed_s=elapsed_s,
        )

    def to_json(self) -> dict[str, Any]:
        def num(v: float | None) -> float | None:
            return v if v is not None and math.isfinite(v) else None

        return {
            "tokens": self.tokens,
            "exact": self.exact,
            "kl": {
                "mean": num(self.kl_mean),
                "median": num(self.kl_median),
                "p99": num(self.kl_p99),
                "p99_9": num(self.kl_p999),
                "max": num(self.kl_max),
            },
            "same_top1": num(self.same_top1),
            "dp": {
                "mean": num(self.dp_mean),
                "rms": num(self.dp_rms),
                "max": num(self.dp_max),
                "min": num(self.dp_min),
                "percentiles": {
                    f"p{q:g}".replace(".", "_"): num(v) for q, v in self.dp_percentiles
                },
            },
            "ppl_a": num(self.ppl_a),
            "ppl_b": num(self.ppl_b),
            "ppl_ratio": num(self.ppl_ratio),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def compare_corpus(
    a: Side,
    b: Side,
    path: Sequence[int],
    windows: Sequence[Window],
    *,
    prefix_a: Sequence[int] = (),
    prefix_b: Sequence[int] = (),
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    on_window: Callable[[CorpusTotals], None] | None = None,
) -> CorpusReport:
    """The report of both sides over `path` window by window (see the module doc).

    The first window (``begin == 0``) runs after each side's prefix; with a prefix on
    both sides its first scored position may be 0. A cancel stops between chunks and
    raises `CompareCancelled`; `on_window` sees the totals after each window.
    """
    report = progress or (lambda _p: None)
    stop = cancel if cancel is not None else threading.Event()
    ids = [int(i) for i in path]
    totals = CorpusTotals()
    started = time.perf_counter()
    total = sum(end - begin - start for begin, end, start in windows)
    report(CompareProgress("score", "", 0, total))
    for begin, end, start in windows:
        first = begin + start
        head_a = list(prefix_a) if begin == 0 else []
        head_b = list(prefix_b) if begin == 0 else []
        context_a, context_b = [*head_a, *ids[begin:first]], [*head_b, *ids[begin:first]]
        scored = ids[first:end]
        chunks = aligned(
            a.distributions(context_a, scored, stop), b.distributions(context_b, scored, stop)
        )
        for chunk_a, chunk_b in chunks:
            if stop.is_set():
                raise CompareCancelled("the comparison was cancelled")
            lo = chunk_a.first
            _add(totals, chunk_a, chunk_b, scored[lo : lo + chunk_a.length], a, b)
            report(CompareProgress("score", "", totals.tokens, total))
        if on_window is not None:
            on_window(totals)
    return CorpusReport.of(totals, time.perf_counter() - started)


def _add(
    totals: CorpusTotals, chunk_a: Chunk, chunk_b: Chunk, tokens: Sequence[int], a: Side, b: Side
) -> None:
    """One aligned span's numbers into `totals` (whole rows: vectorised, no records)."""
    if chunk_a.rows is None or chunk_b.rows is None:
        for s in step_records(chunk_a, chunk_b, tokens, 0, a, b):
            _add_one(totals, s.kl, s.logprob_a, s.logprob_b, s.agree)
        totals.exact = False
        return
    import torch

    from engine.compare.kl import kl_rows

    rows_a, rows_b = chunk_a.rows, chunk_b.rows
    target = torch.tensor([int(t) for t in tokens], dtype=torch.long)[:, None]  # [n, 1]
    kls = kl_rows(rows_a, rows_b).tolist()
    lp_a = rows_a.gather(1, target)[:, 0].tolist()
    lp_b = rows_b.gather(1, target)[:, 0].tolist()
    agree = (rows_a.argmax(dim=-1) == rows_b.argmax(dim=-1)).tolist()
    for kl, la, lb, same in zip(kls, lp_a, lp_b, agree, strict=True):
        _add_one(totals, kl, la, lb, bool(same))


def _add_one(totals: CorpusTotals, kl: float, lp_a: float, lp_b: float, agree: bool) -> None:
    totals.kl.append(kl)
    totals.dp.append(math.exp(lp_b) - math.exp(lp_a))
    totals.nll_a -= lp_a
    totals.nll_b -= lp_b
    totals.same_top1 += agree


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf
