"""The numbers of a comparison: KL(A‖B) per position, exact or estimated, and totals.

Exact: both sides gave the whole log-softmax row, ``KL = Σ_v p_A(v) (log p_A(v) -
log p_B(v))``, each term in float32 and their sum in float64 (identical rows give
exactly 0; a token A gives no mass adds nothing).

Estimate: a side that reports only its top-N (a remote server) leaves most of its
row unknown. The estimate is the KL between the two distributions coarsened to the
union of both top-N lists: each token of the union whose logprob both sides know
keeps its own bin, and everything else (the tokens one side did not report, the rest
of the vocabulary) shares one bin holding each side's remaining mass. Coarsening can
only lose information, so the estimate never exceeds the exact KL (a lower bound);
records built from it carry ``exact: false`` and are never passed off as exact.

`summarize` and `percentile` give the summary and the corpus report's statistics.
Imports torch: import it lazily from torch-free modules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from engine.compare.records import EMPTY_SUMMARY, CompareStep, CompareSummary

BLOCK = 128  # rows per block of KL work: bounded temporaries (3 x 25 MB at 49k tokens)
REST_FLOOR = 1e-6  # probability mass too small to be more than float rounding


def kl_rows(logprobs_a: torch.Tensor, logprobs_b: torch.Tensor) -> torch.Tensor:
    """KL(A‖B) per row, nats, float64 [n]; rows are log-softmax [n, vocab] of each side."""
    out = torch.empty(logprobs_a.shape[0], dtype=torch.float64)
    for lo in range(0, logprobs_a.shape[0], BLOCK):  # temporaries of BLOCK rows, not n
        a, b = logprobs_a[lo : lo + BLOCK].float(), logprobs_b[lo : lo + BLOCK].float()
        p = a.exp()  # [block, vocab]
        terms = torch.where(p > 0, p * (a - b), torch.zeros_like(a))  # 0·log 0 = 0
        # terms in float32 (a row's work), their sum in float64: equal rows give exactly 0
        out[lo : lo + BLOCK] = terms.sum(dim=-1, dtype=torch.float64)
    return out.clamp_min(0.0)  # rounding can dip a hair below 0


def kl_estimate(known_a: Mapping[int, float], known_b: Mapping[int, float]) -> float:
    """KL(A‖B) coarsened to the tokens both sides know (each side's token -> logprob)
    plus one bin for the rest; see the module docstring. Nats, >= 0."""
    both = known_a.keys() & known_b.keys()
    kl = 0.0
    mass_a = mass_b = 0.0
    for token in both:
        la, lb = known_a[token], known_b[token]
        pa = math.exp(la)
        mass_a += pa
        mass_b += math.exp(lb)
        if pa > 0:
            kl += pa * (la - lb)
    # the rest bin; masses below REST_FLOOR are rounding (everything was reported)
    rest_a, rest_b = 1.0 - mass_a, max(REST_FLOOR, 1.0 - mass_b)
    if rest_a > REST_FLOOR:
        kl += rest_a * (math.log(rest_a) - math.log(rest_b))
    return max(0.0, kl)


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) of `values`, linear between ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    at = (len(ordered) - 1) * q / 100.0
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def summarize(steps: Sequence[CompareStep]) -> CompareSummary:
    """The summary of `steps` (all None when there are none)."""
    if not steps:
        return EMPTY_SUMMARY
    kls = [s.kl for s in steps]
    n = len(steps)
    return CompareSummary(
        steps=n,
        mean_kl=math.fsum(kls) / n,
        median_kl=percentile(kls, 50),
        p99_kl=percentile(kls, 99),
        max_kl=max(kls),
        same_top1=sum(s.agree for s in steps) / n,
        rms_dp=math.sqrt(math.fsum(s.dp * s.dp for s in steps) / n),
        ppl_a=_ppl([s.logprob_a for s in steps]),
        ppl_b=_ppl([s.logprob_b for s in steps]),
    )


def _ppl(logprobs: Sequence[float]) -> float:
    mean_nll = -math.fsum(logprobs) / len(logprobs)
    return math.exp(mean_nll) if mean_nll < 700 else math.inf
