"""Scoring several prompts in one batch: one forward per chunk of positions for all.

A server asked to score many prompts at once (lm-eval sends lists of token-id
prompts, from several connections at once) would score them one after another,
one forward (or more) each. `score_paths` runs them as the rows of one batch
instead. The rows are padded on the right and no attention mask is needed: under
causal attention a real token only sees the positions before it, all real, so each
row's logits are those of the prompt alone (within batched float noise, ~1e-6 in
float32); the pads' own logits are computed and ignored. Position ids count from 0
in every row, as alone.

Each path asks for its scores (`ScoringPath.top` candidates, positions 1.. as
`PromptScoring.score`: engine/decode/scoring.py turns the logits into the records)
and, with `ScoringPath.next_token`, the raw logits after its last token as well: a
reply of one token (lm-eval's ``echo`` + ``max_tokens: 1``) is sampled from them
without running its prompt a second time.

Prompts are grouped by length (sorted, a group's padding kept under a quarter of
its tokens and its size under `GROUP_TOKENS`) so a short prompt never pays for a
long one's width; a group runs in chunks of positions whose float32 logits stay
within `scoring.ROW_BUDGET`, over one KV cache, like `probe.logit_chunks`.

Call on the engine's thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from engine.decode.probe import pieces_of
from engine.decode.scoring import chunk_for, score_logits
from engine.records import TokenScore

if TYPE_CHECKING:
    from engine.model.loading import LoadedModel

GROUP_TOKENS = 8192  # padded tokens per group: bounds the cache and activations
PAD_SHARE = 0.25  # most of a group's padded tokens that may be padding


@dataclass(frozen=True)
class ScoringPath:
    """A prompt to run: its ids, the candidates per scored position (`top`; None: no
    scores wanted) and whether the logits after its last token are wanted."""

    ids: Sequence[int]
    top: int | None
    next_token: bool = False


@dataclass(frozen=True)
class ScoredPath:
    """A path's records (positions 1..; empty when no scores were wanted) and, when
    asked, the raw float32 logits ``[vocab]`` of the token after it."""

    scores: tuple[TokenScore, ...]
    next_logits: torch.Tensor | None


def groups_of(lengths: Sequence[int], budget: int = GROUP_TOKENS) -> list[list[int]]:
    """Indices of `lengths` in groups run together: sorted by length, a group grows
    while its padded size fits `budget` and its padding stays within `PAD_SHARE`."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        width = lengths[i]  # the widest so far: sorted ascending
        padded = width * (len(current) + 1)
        if current and (padded > budget or padded - (real + width) > PAD_SHARE * padded):
            groups.append(current)
            current, real = [], 0
        current.append(i)
        real += width
    if current:
        groups.append(current)
    return groups


@torch.inference_mode()
def score_paths(
    loaded: LoadedModel, paths: Sequence[ScoringPath], *, pad_id: int
) -> list[ScoredPath]:
    """Each path's `ScoredPath`, in the order given (see the module doc)."""
    lengths = [len(p.ids) for p in paths]
    if any(n == 0 for n in lengths):
        raise ValueError("a path to score is empty")
    out: list[ScoredPath | None] = [None] * len(paths)
    for group in groups_of(lengths):
        scored = _score_group(loaded, [paths[i] for i in group], pad_id)
        for i, one in zip(group, scored, strict=True):
            out[i] = one
    return [s for s in out if s is not None]


def _score_group(
    loaded: LoadedModel, paths: Sequence[ScoringPath], pad_id: int
) -> list[ScoredPath]:
    from engine.decode.kv_cache import new_cache

    model = loaded.model
    rows = [[int(i) for i in p.ids] for p in paths]
    width = max(len(r) for r in rows)
    batch = torch.tensor(
        [r + [pad_id] * (width - len(r)) for r in rows], dtype=torch.long, device=loaded.device
    )  # [rows, width], right padded
    vocab = int(model.config.get_text_config().vocab_size)
    step = chunk_for(vocab * len(rows))  # positions per forward: rows x step logits in budget
    pieces = pieces_of(loaded)
    cache = new_cache(model.config)
    scores: list[list[TokenScore]] = [[] for _ in rows]
    nexts: list[torch.Tensor | None] = [None] * len(rows)
    for lo in range(0, width, step):
        hi = min(lo + step, width)
        logits = model(input_ids=batch[:, lo:hi], past_key_values=cache, use_cache=True).logits
        for r, (ids, path) in enumerate(zip(rows, paths, strict=True)):
            # input index i predicts position i + 1: scored while i + 1 < len(ids)
            last = min(hi, len(ids) - 1)
            if path.top is not None and lo < last:
                targets = ids[lo + 1 : last + 1]
                scores[r] += score_logits(
                    logits[r, : last - lo], targets, lo + 1, top=path.top, pieces=pieces
                )
            if path.next_token and lo <= len(ids) - 1 < hi:
                nexts[r] = logits[r, len(ids) - 1 - lo].float().clone()  # [vocab]
    return [ScoredPath(tuple(s), n) for s, n in zip(scores, nexts, strict=True)]
