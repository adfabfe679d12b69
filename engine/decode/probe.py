"""Numbers beyond what a step recorded, recomputed on demand on the engine's thread.

Any token's numbers at a position: the full distribution recomputed on demand.

A `Step` keeps the top-N candidates; a person asking "and how likely was *this*
token here?" needs the rest. `next_token_probes` runs the prefix through a fresh
`ModelRunner` (one forward, its own cache: the live reply's is untouched), applies
the sampling processors exactly as the decoder does (the repetition penalty
counting every id of the prefix) and reads each asked-for token's raw and
processed log-probability, rank and, where it was removed, the processor that
did it.

Scoring (`PromptScoring.score`, `FullDistributions.logprob_rows` on transformers):
`logit_chunks` runs a token path through the model by teacher forcing, in chunks
over one KV cache, and yields each chunk's raw logits for the positions asked for
(``[chunk, vocab]`` at most, so memory stays bounded whatever the length). The
prefix before the first scored position runs in large chunks with the logits of
its last position only (``logits_to_keep``). engine/decode/scoring.py turns the
logits into records, as it does for llama.cpp. `prompt_scores` is the Prompt tab's
older per-position view of the same numbers.

Call both on the engine's thread.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from engine.decode.sampling import Stages, process, why_dropped
from engine.decode.scoring import chunk_for, score_logits
from engine.errors import InvalidParameterError
from engine.params import SamplingParams
from engine.records import PromptScores, TokenProbe, TokenScore

# positions per forward before the first scored one (no logits kept but the last):
# large enough to run at full speed, small enough that an interrupt waits little
PREFIX = 1024

if TYPE_CHECKING:
    from engine.decode.decoder import ModelRunner
    from engine.model.loading import LoadedModel


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


def prompt_scores(loaded: LoadedModel, ids: list[int], chunk: int | None = None) -> PromptScores:
    """Each token's raw log-probability and rank given the tokens before it."""
    from engine.decode.score_request import check_request

    path = check_request(ids, start=1, top=0, context_window=loaded.context_window)
    return PromptScores.from_scores(path, score_path(loaded, path, chunk=chunk))


def score_path(
    loaded: LoadedModel,
    ids: list[int],
    *,
    top: int = 0,
    start: int = 1,
    chunk: int | None = None,
) -> tuple[TokenScore, ...]:
    """`PromptScoring.score` on transformers (arguments checked by the caller)."""
    records: list[TokenScore] = []
    for first, logits in logit_chunks(loaded.model, ids, start, chunk=chunk):
        targets = ids[first : first + logits.shape[0]]
        records += score_logits(logits, targets, first, top=top, pieces=pieces_of(loaded))
    return tuple(records)


@torch.inference_mode()
def logit_chunks(
    model: Any,  # a transformers causal LM
    ids: list[int],
    start: int,
    *,
    next_token: bool = False,
    chunk: int | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first_position, logits)`` per chunk: raw logits ``[n, vocab]`` (the model's
    dtype and device), row i the distribution over the token at position
    ``first_position + i`` given the ids before it. Positions ``start .. len(ids) - 1``
    (and ``len(ids)`` with `next_token`). One KV cache, one thread (the engine's)."""
    from engine.decode.kv_cache import new_cache

    stop = len(ids) + 1 if next_token else len(ids)  # positions start .. stop - 1
    if start >= stop:
        return
    device = next(model.parameters()).device
    step = chunk or chunk_for(int(model.config.get_text_config().vocab_size))
    keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    cache = new_cache(model.config)
    first_needed, end = start - 1, stop - 1  # input indices whose logits are wanted
    bounds = [(a, min(a + PREFIX, first_needed)) for a in range(0, first_needed, PREFIX)]
    bounds += [(a, min(a + step, end)) for a in range(first_needed, end, step)]
    for lo, hi in bounds:
        wanted = max(0, hi - max(lo, first_needed))
        extra = {"logits_to_keep": max(wanted, 1)} if keep else {}
        out = model(
            input_ids=torch.tensor([ids[lo:hi]], device=device),
            past_key_values=cache,
            use_cache=True,
            **extra,
        )
        if wanted:
            yield hi - wanted + 1, out.logits[0, -wanted:]  # [wanted, vocab]


def pieces_of(loaded: object) -> Callable[[list[int]], list[str]]:
    """The raw vocabulary pieces of ids ("" for an id the tokenizer does not have)."""
    tokenizer = getattr(loaded, "tokenizer", None)

    def pieces(ids: list[int]) -> list[str]:
        if tokenizer is None:
            return [""] * len(ids)
        found = tokenizer.convert_ids_to_tokens(ids)
        return [p if isinstance(p, str) else "" for p in found]

    return pieces
