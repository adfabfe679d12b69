"""Sampling as small pure functions on one logits row, in transformers' order.

Order (transformers ``GenerationMixin._get_logits_processor``): logits upcast to
float32, repetition penalty over prompt + generated ids, then only when
sampling temperature -> top-k -> top-p -> min-p, then softmax and one
``torch.multinomial`` draw (greedy: argmax). Each function takes and returns a
``[vocab]`` float32 row and never changes its input, so each is testable alone
and the decoder can keep the raw row next to the processed one.

`summarize` turns (raw, processed, chosen) into every number a `Step` records
with one device -> host transfer, so recording stays cheap on a GPU too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from engine.params import SamplingParams

FILTERED = float("-inf")


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """Penalise every token in `seen` once (CTRL paper; transformers' formula).

    logits: [vocab] float32; seen: [vocab] bool mask of ids in prompt + generated.
    A negative logit is multiplied by the penalty, a positive one divided, so a
    penalty > 1 always makes a seen token less likely.
    """
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)  # [vocab]
    return torch.where(seen, penalised, logits)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by the temperature (> 0); 1.0 is the identity, as in transformers."""
    if temperature == 1.0:
        return logits
    return logits / temperature


def apply_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep tokens scoring at least the k-th best (ties at the boundary stay); 0 = off."""
    if top_k <= 0:
        return logits
    k = min(top_k, logits.shape[-1])
    kth = torch.topk(logits, k).values[-1]  # scalar tensor
    return logits.masked_fill(logits < kth, FILTERED)


def apply_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus: drop the least likely tokens whose total mass is <= 1 - top_p.

    Mirrors transformers exactly (ascending sort, ``cumsum <= 1 - p``, always keep
    the best token) so the kept set is identical even at float ties.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, sorted_ids = torch.sort(logits, descending=False)  # [vocab] each
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # [vocab]
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[-1:] = False
    remove = remove_sorted.scatter(0, sorted_ids, remove_sorted)  # back to vocab order
    return logits.masked_fill(remove, FILTERED)


def apply_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop tokens less likely than ``min_p`` times the best token's probability."""
    if min_p <= 0.0:
        return logits
    probs = torch.softmax(logits, dim=-1)  # [vocab]
    remove = probs < min_p * probs.max()
    remove[probs.argmax()] = False
    return logits.masked_fill(remove, FILTERED)


GREEDY = "greedy"  # a candidate greedy decoding cannot pick: only the argmax can be chosen


def _filters(
    params: SamplingParams,
) -> tuple[tuple[str, Callable[[torch.Tensor], torch.Tensor]], ...]:
    """The processors after the repetition penalty, named, in transformers' order
    (none when greedy). Temperature cannot remove a token; the others can."""
    if params.greedy:
        return ()
    return (
        ("temperature", lambda s: apply_temperature(s, params.temperature)),
        ("top-k", lambda s: apply_top_k(s, params.top_k)),
        ("top-p", lambda s: apply_top_p(s, params.top_p)),
        ("min-p", lambda s: apply_min_p(s, params.min_p)),
    )


def process(
    logits: torch.Tensor,
    params: SamplingParams,
    seen: torch.Tensor,
    *,
    stages: Stages | None = None,
) -> torch.Tensor:
    """The distribution actually sampled from, as logits: every processor in order.

    logits: [vocab] (any float dtype); seen: [vocab] bool. Greedy applies only the
    repetition penalty, as transformers does when ``do_sample`` is false.
    `stages`, when given, receives the scores after the penalty (named None) and
    after each later processor: references to rows the processors make anyway, so
    `removed_by` can say which one dropped a token without running them again.
    """
    scores = logits.float()
    scores = apply_repetition_penalty(scores, seen, params.repetition_penalty)
    if stages is not None:
        stages.append((None, scores))
    for name, apply in _filters(params):
        scores = apply(scores)
        if stages is not None:
            stages.append((name, scores))
    return scores


Stages = list[tuple[str | None, torch.Tensor]]


def dropped_by(
    logits: torch.Tensor, params: SamplingParams, seen: torch.Tensor, ids: Sequence[int]
) -> tuple[str | None, ...]:
    """For each of `ids`, the processor that first removed it (set its logit to -inf),
    or None where it survived every one: "top-k", "top-p" or "min-p".

    logits: [vocab] raw; seen: [vocab] bool. Runs the processors; a caller that has
    just run them keeps their stages instead (`process(..., stages=)`, `removed_by`).
    """
    stages: Stages = []
    process(logits, params, seen, stages=stages)
    return removed_by(stages, ids)


def why_dropped(
    params: SamplingParams, stages: Stages, ids: Sequence[int], best: int
) -> tuple[str | None, ...]:
    """Why each of `ids` could not be picked: `removed_by` when sampling; when greedy,
    `GREEDY` for all but `best` (the processed row's argmax, the only pick)."""
    if params.greedy:
        return tuple(None if t == best else GREEDY for t in ids)
    return removed_by(stages, ids)


def removed_by(stages: Stages, ids: Sequence[int]) -> tuple[str | None, ...]:
    """`dropped_by` from the stages one `process` call kept: for each of `ids`, the
    first stage after which its score is -inf (None: it survived, or the model itself
    gave it -inf). One small gather per stage and one host transfer. The repetition
    penalty and the temperature scale logits and never remove one."""
    if not ids or len(stages) < 2:
        return tuple(None for _ in ids)
    index = torch.tensor(list(ids), dtype=torch.long, device=stages[0][1].device)  # [n]
    table = torch.stack(
        [torch.isfinite(scores.index_select(0, index)) for _, scores in stages]
    ).tolist()  # [stages][n] bool
    names = [name for name, _ in stages]
    return tuple(
        next((names[row] for row in range(len(names)) if not table[row][column]), None)
        for column in range(len(ids))
    )


def choose(
    processed: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> torch.Tensor:
    """The token to pick: argmax when greedy, else one multinomial draw.

    processed: [vocab]. Returns a 0-d long tensor (kept on device: no sync here).
    The draw is over a ``[1, vocab]`` row like transformers', so the same
    generator state gives the same token.
    """
    if params.greedy:
        return torch.argmax(processed)
    probs = torch.softmax(processed, dim=-1).unsqueeze(0)  # [1, vocab]
    return torch.multinomial(probs, num_samples=1, generator=generator)[0, 0]


def make_generator(device: torch.device, seed: int | None) -> torch.Generator:
    """A private RNG on the decode device: seeded for reproducibility, else random."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


@dataclass(frozen=True)
class StepStats:
    """Every number a step records, moved to Python in one transfer."""

    token_id: int
    logprob: float
    rank: int
    entropy: float
    processed_logprob: float
    processed_rank: int
    processed_entropy: float
    top_ids: tuple[int, ...]
    top_logprobs: tuple[float, ...]
    top_processed_logprobs: tuple[float, ...]


def summarize(
    raw: torch.Tensor, processed: torch.Tensor, token: torch.Tensor | int, top_n: int
) -> StepStats:
    """Log-probabilities, ranks, entropies and the top-N of both distributions.

    raw, processed: [vocab] float32 logits; token: 0-d tensor or int. All the
    maths stays on the device and one float64 vector crosses to the host (ids
    are exact in float64). Ranks are 1-based: 1 + how many tokens score higher.
    """
    raw_lp = torch.log_softmax(raw.float(), dim=-1)  # [vocab]
    token_t = torch.as_tensor(token, device=raw.device).reshape(1)  # [1]
    raw_part = _chosen_stats(raw_lp, token_t)  # [3]
    if processed is raw:  # greedy without penalty: one distribution, computed once
        proc_lp, proc_part = raw_lp, raw_part
    else:
        proc_lp = torch.log_softmax(processed, dim=-1)  # [vocab]
        proc_part = _chosen_stats(proc_lp, token_t)  # [3]
    head = [token_t.double(), raw_part, proc_part]
    if top_n > 0:
        top_lp, top_ids = torch.topk(raw_lp, min(top_n, raw_lp.shape[-1]))  # [n] each
        head += [top_ids.double(), top_lp.double(), proc_lp.index_select(0, top_ids).double()]
    values = torch.cat(head).tolist()
    n = (len(values) - 7) // 3  # values: token, 3 raw, 3 processed, then 3 x top-n
    return StepStats(
        token_id=int(values[0]),
        logprob=values[1],
        rank=int(values[2]),
        entropy=values[3],
        processed_logprob=values[4],
        processed_rank=int(values[5]),
        processed_entropy=values[6],
        top_ids=tuple(int(v) for v in values[7 : 7 + n]),
        top_logprobs=tuple(values[7 + n : 7 + 2 * n]),
        top_processed_logprobs=tuple(values[7 + 2 * n : 7 + 3 * n]),
    )


def _chosen_stats(logprobs: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """[logprob, rank, entropy] of `token` under `logprobs` ([vocab]) as float64 [3].

    Filtered entries (-inf) give 0 * -inf = nan in the entropy terms; nansum
    drops them, which is their true contribution (0).
    """
    chosen = logprobs.index_select(0, token)  # [1]
    rank = (logprobs > chosen).sum().reshape(1) + 1  # [1]
    entropy = -(logprobs.exp() * logprobs).nansum().reshape(1)  # [1]
    return torch.cat([chosen.double(), rank.double(), entropy.double()])
