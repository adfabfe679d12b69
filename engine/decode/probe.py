"""Numbers beyond what a step recorded, recomputed on demand on the engine's thread.

Any token's numbers at a position: the full distribution recomputed on demand.

A `Step` keeps the top-N candidates; a person asking "and how likely was *this*
token here?" needs the rest. `next_token_probes` runs the prefix through a fresh
`ModelRunner` (one forward, its own cache: the live reply's is untouched), applies
the sampling processors exactly as the decoder does (the repetition penalty
counting every id of the prefix) and reads each asked-for token's raw and
processed log-probability, rank and, where it was removed, the processor that
did it.

Prompt surprisal: `prompt_scores` scores each prompt token by the logits at the
position before it (teacher forcing), so a person sees which words of their
system prompt the model did not expect. The forward runs in chunks over one KV
cache, so only a chunk's logits (``[chunk, vocab]``) are ever held.

Call both on the engine's thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from engine.decode.sampling import Stages, process, why_dropped
from engine.errors import InvalidParameterError
from engine.params import SamplingParams
from engine.records import PromptScores, TokenProbe

if TYPE_CHECKING:
    from engine.decode.decoder import ModelRunner
    from engine.model.loading import LoadedModel

CHUNK = 256  # prompt positions per forward: 256 x 49k vocab x 4 bytes = 50 MB of logits


@torch.inference_mode()
def next_token_probes(
    runner: ModelRunner, ids: Sequence[int], params: SamplingParams, tokens: Sequence[int]
) -> tuple[TokenProbe, ...]:
    """The numbers of each of `tokens` as the token after `ids` (see the module doc)."""
    prefix = [int(i) for i in ids]
    if not prefix:
        raise InvalidParameterError("ids", "is empty; the first token has no distribution")
    runner.reset()
    raw = runner.forward(prefix)  # [vocab] float32
    seen = torch.zeros(raw.shape[-1], dtype=torch.bool, device=raw.device)
    if params.repetition_penalty != 1.0:
        seen[torch.tensor(prefix, dtype=torch.long, device=raw.device)] = True
    return token_probes(raw, params, seen, tokens)


def token_probes(
    raw: torch.Tensor, params: SamplingParams, seen: torch.Tensor, tokens: Sequence[int]
) -> tuple[TokenProbe, ...]:
    """`tokens`' numbers under raw logits `raw` ([vocab]) and the processed row the
    decoder would sample from. Ranks are 1-based, 1 + how many tokens score higher."""
    vocab = raw.shape[-1]
    for token in tokens:
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab:
            raise InvalidParameterError("token", f"{token!r} is not a token id (0..{vocab - 1})")
    stages: Stages = []
    processed = process(raw, params, seen, stages=stages)  # [vocab]
    raw_lp = torch.log_softmax(raw.float(), dim=-1)  # [vocab]
    proc_lp = torch.log_softmax(processed, dim=-1)  # [vocab]
    index = torch.tensor(list(tokens), dtype=torch.long, device=raw.device)  # [n]
    rows = []
    for logprobs in (raw_lp, proc_lp):
        chosen = logprobs.index_select(0, index)  # [n]
        ranks = (logprobs[None, :] > chosen[:, None]).sum(dim=-1) + 1  # [n]
        rows += [chosen.double(), ranks.double()]
    best = processed.argmax().reshape(1).double()  # [1]: greedy's pick
    values = torch.cat([*rows, best]).tolist()
    n = len(tokens)
    why = why_dropped(params, stages, tokens, int(values[-1]))
    return tuple(
        TokenProbe(
            token_id=int(token),
            logprob=values[i],
            rank=int(values[n + i]),
            processed_logprob=values[2 * n + i],
            processed_rank=int(values[3 * n + i]),
            dropped_by=why[i],
        )
        for i, token in enumerate(tokens)
    )


def prompt_scores(loaded: LoadedModel, ids: list[int], chunk: int = CHUNK) -> PromptScores:
    """Each token's raw log-probability and rank given the tokens before it."""
    from engine.decode.kv_cache import new_cache

    if not ids:
        raise InvalidParameterError("ids", "is empty; there is no prompt to score")
    if len(ids) > loaded.context_window:
        raise InvalidParameterError(
            "ids", f"{len(ids)} tokens do not fit the context window of {loaded.context_window}"
        )
    model = loaded.model
    device = next(model.parameters()).device
    logprobs: list[float | None] = [None]
    ranks: list[int | None] = [None]
    with torch.inference_mode():
        cache = new_cache(model.config)
        for start in range(0, len(ids) - 1, chunk):
            inputs = ids[start : start + chunk]
            targets = ids[start + 1 : start + 1 + chunk]
            out = model(
                input_ids=torch.tensor([inputs], device=device),
                past_key_values=cache,
                use_cache=True,
            )
            scores = torch.log_softmax(out.logits[0, : len(targets)].float(), dim=-1)  # [n, vocab]
            target = torch.tensor(targets, device=device)[:, None]  # [n, 1]
            chosen = scores.gather(1, target)  # [n, 1]
            rank = (scores > chosen).sum(dim=-1) + 1  # [n]
            logprobs += chosen[:, 0].tolist()
            ranks += [int(r) for r in rank.tolist()]
    return PromptScores(ids=tuple(ids), logprobs=tuple(logprobs), ranks=tuple(ranks))
