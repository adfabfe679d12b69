"""Scoring a token path: the one place logits become `TokenScore` records.

Every backend that implements `PromptScoring.score` (engine/decode/protocol.py)
does two things: it produces the raw logits of the positions asked for, in
chunks, from its own forward (transformers: teacher forcing over one KV cache,
engine/decode/probe.py; llama.cpp: a batch with logits on for every position,
engine/decode/llama.py), and hands each chunk to `score_logits` here. So the
numbers (log-softmax in float32, the 1-based rank, the entropy in nats, the
top-N) are computed the same way on every backend, and the same way a `Step`'s
are (engine/decode/sampling.py).

Positions: position ``p`` of ``ids`` (``1 <= p < len(ids)``) is the token
``ids[p]`` given ``ids[:p]``; its row is the distribution after ``ids[p - 1]``.
The first token has no context and is never scored. `check_request` (score_request.py) is the
argument rule every implementation applies (a remote one too), `chunk_for` the
chunk size that keeps a chunk's float32 rows within `ROW_BUDGET` bytes.

Imports torch: import it lazily from torch-free modules.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

import torch

from engine.records import ScoredCandidate, TokenScore

if TYPE_CHECKING:
    from engine.model.thread import EngineThread

T = TypeVar("T")

# a chunk's float32 rows: 128 MB (680 positions of a 49k vocabulary, 200 of 150k);
# the reduction holds about three such tensors at once
ROW_BUDGET = 128 * 1024 * 1024
MIN_CHUNK, MAX_CHUNK = 16, 2048

Pieces = Callable[[list[int]], list[str]]  # ids -> raw vocabulary pieces


def chunk_for(vocab: int, budget: int = ROW_BUDGET) -> int:
    """Positions per chunk so that a chunk's float32 rows stay within `budget` bytes."""
    fits = budget // (4 * max(vocab, 1))
    return max(MIN_CHUNK, min(MAX_CHUNK, fits - fits % 16 if fits >= 32 else fits))


def log_softmax_rows(logits: torch.Tensor) -> torch.Tensor:
    """Raw logits [n, vocab] (any dtype, any device) -> float32 log-probs [n, vocab]."""
    return torch.log_softmax(logits.float(), dim=-1)


def score_logits(
    logits: torch.Tensor,
    targets: Sequence[int],
    first_position: int,
    *,
    top: int = 0,
    pieces: Pieces | None = None,
) -> list[TokenScore]:
    """Records for positions ``first_position ..`` from their raw logits.

    `logits` [n, vocab]: row i is the distribution over the token at position
    ``first_position + i``; `targets` (n ids) are the tokens actually there.
    """
    return score_logprobs(log_softmax_rows(logits), targets, first_position, top=top, pieces=pieces)


def score_logprobs(
    logprobs: torch.Tensor,
    targets: Sequence[int],
    first_position: int,
    *,
    top: int = 0,
    pieces: Pieces | None = None,
) -> list[TokenScore]:
    """`score_logits` for rows already log-softmaxed (float32 [n, vocab])."""
    n = logprobs.shape[0]
    if n != len(targets):
        raise ValueError(f"{n} rows for {len(targets)} targets")
    if n == 0:
        return []
    target = torch.tensor([int(t) for t in targets], dtype=torch.long, device=logprobs.device)
    chosen = logprobs.gather(1, target[:, None])  # [n, 1]
    rank = (logprobs > chosen).sum(dim=-1) + 1  # [n]
    # -inf entries give 0 * -inf = nan: nansum drops them, as for a Step
    entropy = -(logprobs.exp() * logprobs).nansum(dim=-1)  # [n]
    columns = [chosen[:, 0].double(), rank.double(), entropy.double()]  # 3 x [n]
    if top:
        best, best_ids = logprobs.topk(min(top, logprobs.shape[-1]), dim=-1)  # [n, k] x 2
        columns += [best.double().T.reshape(-1), best_ids.double().T.reshape(-1)]
    values = torch.cat(columns).tolist()  # one transfer for the chunk
    k = min(top, logprobs.shape[-1]) if top else 0
    top_lp = [values[3 * n + j * n : 3 * n + (j + 1) * n] for j in range(k)]
    top_id = [
        [int(v) for v in values[3 * n + (k + j) * n : 3 * n + (k + j + 1) * n]] for j in range(k)
    ]
    names = _names(pieces, targets, top_id)
    records = []
    for i, token in enumerate(targets):
        candidates = tuple(
            ScoredCandidate(top_id[j][i], top_lp[j][i], names.get(top_id[j][i], ""))
            for j in range(k)
        )
        records.append(
            TokenScore(
                position=first_position + i,
                token_id=int(token),
                logprob=values[i],
                rank=int(values[n + i]),
                entropy=values[2 * n + i],
                top=candidates,
                piece=names.get(int(token), ""),
            )
        )
    return records


def _names(
    pieces: Pieces | None, targets: Sequence[int], top_ids: list[list[int]]
) -> dict[int, str]:
    if pieces is None:
        return {}
    wanted = sorted({int(t) for t in targets} | {i for row in top_ids for i in row})
    return dict(zip(wanted, pieces(wanted), strict=True))


def rows_of(
    chunks: Iterator[tuple[int, torch.Tensor]],
) -> Generator[tuple[int, torch.Tensor], None, None]:
    """Raw logit chunks -> `FullDistributions.logprob_rows`' float32 CPU log-softmax rows."""
    for first, logits in chunks:
        yield first, log_softmax_rows(logits).cpu()


def on_thread(thread: EngineThread, items: Generator[T, None, None]) -> Iterator[T]:
    """`items`, each one produced on `thread` (torch stays on the engine's thread).
    Closing the result closes `items` there too."""
    done = object()
    try:
        while (item := thread.call(next, items, done)) is not done:
            yield item
    finally:
        thread.call(items.close)
