"""A scored prompt (`TokenScore` records from `PromptScoring.score`) in the shapes the
server sends and stores.

- `echo_logprobs`: OpenAI's legacy ``echo`` + ``logprobs``: the prompt's tokens first
  in ``tokens`` / ``token_logprobs`` / ``top_logprobs`` / ``text_offset``, the first
  token's logprob and candidates ``null`` (it has no context), with this server's
  extensions (``token_ids``, ``top_candidates``) as for generated tokens;
- `vllm_prompt_logprobs`: vLLM's ``prompt_logprobs``: ``null`` first, then per position
  a dict ``token_id (str) -> {"logprob", "rank", "decoded_token"}`` holding the actual
  token and the top N (N + 1 entries where the actual token is not among them);
- `prompt_steps`: the records as `Step`s (``forced``: teacher-forced), what a recorded
  session keeps on the prompt's user message so it opens with its surprisal.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any

from engine.records import Candidate, Step, TokenScore
from engine.serve.openai_shapes import BytesOf, raw_logprob, token_text


def _texts(ids: Sequence[int], bytes_of: BytesOf) -> list[str]:
    """What each token adds to the text, decoded in context (a partial UTF-8 piece adds
    "" and the token that completes it adds the character)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    return [decoder.decode(bytes_of(int(i))) for i in ids]


def _by_position(ids: Sequence[int], scores: Sequence[TokenScore]) -> list[TokenScore | None]:
    at: list[TokenScore | None] = [None] * len(ids)
    for s in scores:
        at[s.position] = s
    return at


def echo_logprobs(
    ids: Sequence[int], scores: Sequence[TokenScore], top: int, bytes_of: BytesOf
) -> dict[str, Any]:
    """The prompt's part of a legacy ``logprobs`` object (offsets from 0)."""
    out: dict[str, list[Any]] = {
        "tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": [],
        "token_ids": [], "processed_token_logprobs": [], "top_candidates": [],
    }  # fmt: skip
    offset = 0
    for token_id, text, score in zip(
        ids, _texts(ids, bytes_of), _by_position(ids, scores), strict=True
    ):
        out["tokens"].append(token_text(bytes_of(int(token_id))))
        out["text_offset"].append(offset)
        out["token_ids"].append(int(token_id))
        out["processed_token_logprobs"].append(None)  # nothing was sampled here
        offset += len(text)
        if score is None:
            for key in ("token_logprobs", "top_logprobs", "top_candidates"):
                out[key].append(None)
            continue
        best = score.top[:top]
        out["token_logprobs"].append(raw_logprob(score.logprob))
        out["top_logprobs"].append(
            {token_text(bytes_of(c.token_id)): raw_logprob(c.logprob) for c in best}
        )
        out["top_candidates"].append([_candidate(c.token_id, c.logprob, bytes_of) for c in best])
    return out


def _candidate(token_id: int, logprob: float, bytes_of: BytesOf) -> dict[str, Any]:
    data = bytes_of(token_id)
    return {
        "token": token_text(data),
        "logprob": raw_logprob(logprob),
        "bytes": list(data),
        "token_id": token_id,
        "processed_logprob": None,
    }


def joined(prompt: dict[str, Any], generated: dict[str, Any] | None) -> dict[str, Any]:
    """The prompt's legacy logprobs followed by the generated tokens' (whose offsets
    already start after the echoed prompt)."""
    if generated is None:
        return prompt
    return {key: prompt[key] + list(generated.get(key) or []) for key in prompt}


def vllm_prompt_logprobs(
    ids: Sequence[int], scores: Sequence[TokenScore], top: int, bytes_of: BytesOf
) -> list[dict[str, dict[str, Any]] | None]:
    """vLLM's ``prompt_logprobs`` for `ids` (see the module doc)."""
    out: list[dict[str, dict[str, Any]] | None] = []
    for token_id, score in zip(ids, _by_position(ids, scores), strict=True):
        if score is None:
            out.append(None)
            continue
        entries = {
            str(c.token_id): _vllm_entry(c.logprob, rank, c.token_id, bytes_of)
            for rank, c in enumerate(score.top[:top], start=1)
        }
        if str(token_id) not in entries:
            entries[str(token_id)] = _vllm_entry(score.logprob, score.rank, token_id, bytes_of)
        out.append(entries)
    return out


def _vllm_entry(logprob: float, rank: int, token_id: int, bytes_of: BytesOf) -> dict[str, Any]:
    return {
        "logprob": raw_logprob(logprob),
        "rank": rank if rank > 0 else None,
        "decoded_token": token_text(bytes_of(int(token_id))),
    }


def prompt_steps(
    ids: Sequence[int], scores: Sequence[TokenScore], bytes_of: BytesOf
) -> tuple[Step, ...]:
    """The scored positions as teacher-forced `Step`s (``index`` = the position): raw
    numbers, and the same as processed ones (nothing was sampled)."""
    texts = _texts(ids, bytes_of)
    steps = []
    for s in scores:
        data = bytes_of(s.token_id)
        top = tuple(
            Candidate(
                token_id=c.token_id,
                piece=c.piece or token_text(bytes_of(c.token_id)),
                logprob=c.logprob,
                processed_logprob=c.logprob,
                text=token_text(bytes_of(c.token_id)),
            )
            for c in s.top
        )
        steps.append(
            Step(
                index=s.position,
                token_id=s.token_id,
                piece=s.piece or token_text(data),
                text=texts[s.position],
                forced=True,
                logprob=s.logprob,
                rank=s.rank,
                entropy=s.entropy,
                processed_logprob=s.logprob,
                processed_rank=s.rank,
                processed_entropy=s.entropy,
                top=top,
                token_bytes=data,
            )
        )
    return tuple(steps)
