"""`Step` records as OpenAI's response shapes (chat and legacy completions): the
logprobs, whole responses and stream chunks the routes (engine/serve/app.py) send.

`logprob` is the raw softmax (what the model believes), the same number as
`logitlab generate --format jsonl`; `processed_logprob` (an extension) is of the
distribution actually sampled from. JSON has no -inf: a raw logprob that
underflowed is clamped to -9999.0 (OpenAI's own floor, and a float so typed
clients still parse it); a processed logprob of a filtered-out token is null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.records import Candidate, FinishReason, GenerationSummary, Step

LOGPROB_FLOOR = -9999.0
BytesOf = Callable[[int], bytes]


def raw_logprob(value: float) -> float:
    return value if math.isfinite(value) else LOGPROB_FLOOR


def processed_logprob(value: float) -> float | None:
    return value if math.isfinite(value) else None


def token_text(data: bytes) -> str:
    """A token as OpenAI writes it: its text, or ``bytes:\\xNN`` for a partial UTF-8 piece."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in data)


def finish_reason(reason: FinishReason | None) -> str | None:
    """OpenAI's names: a full context window is ``length``; a cancel is vLLM's ``abort``."""
    return {"stop": "stop", "length": "length", "context": "length", "cancelled": "abort"}.get(
        reason or ""
    )


def _candidate(c: Candidate, bytes_of: BytesOf) -> dict[str, Any]:
    data = bytes_of(c.token_id)
    return {
        "token": token_text(data),
        "logprob": raw_logprob(c.logprob),
        "bytes": list(data),
        "token_id": c.token_id,
        "processed_logprob": processed_logprob(c.processed_logprob),
    }


def chat_logprob(step: Step, top_n: int, bytes_of: BytesOf) -> dict[str, Any]:
    """One entry of ``choices[0].logprobs.content``."""
    data = step.token_bytes or bytes_of(step.token_id)
    return {
        "token": token_text(data),
        "logprob": raw_logprob(step.logprob),
        "bytes": list(data),
        "top_logprobs": [_candidate(c, bytes_of) for c in step.top[:top_n]],
        "token_id": step.token_id,
        "processed_logprob": processed_logprob(step.processed_logprob),
    }


def chat_logprobs(steps: Sequence[Step], top_n: int, bytes_of: BytesOf) -> dict[str, Any]:
    return {"content": [chat_logprob(s, top_n, bytes_of) for s in steps], "refusal": None}


def legacy_logprobs(
    steps: Sequence[Step], top_n: int, bytes_of: BytesOf, offset: int = 0
) -> dict[str, Any]:
    """The legacy completions shape; `offset` is where these steps' text starts."""
    tokens, token_logprobs, tops, offsets = [], [], [], []
    token_ids, processed, candidates = [], [], []
    for step in steps:
        tokens.append(token_text(step.token_bytes or bytes_of(step.token_id)))
        token_logprobs.append(raw_logprob(step.logprob))
        tops.append(
            {token_text(bytes_of(c.token_id)): raw_logprob(c.logprob) for c in step.top[:top_n]}
        )
        offsets.append(offset)
        offset += len(step.text)
        token_ids.append(step.token_id)
        processed.append(processed_logprob(step.processed_logprob))
        candidates.append([_candidate(c, bytes_of) for c in step.top[:top_n]])
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": tops,
        "text_offset": offsets,
        "token_ids": token_ids,
        "processed_token_logprobs": processed,
        # the top_logprobs with ids (a dict keyed by text loses them, and merges
        # candidates that print alike): what step-through over HTTP forces from
        "top_candidates": candidates,
    }


def usage(summary: GenerationSummary) -> dict[str, int]:
    return {
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens,
        "total_tokens": summary.prompt_tokens + summary.completion_tokens,
    }


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# --- whole responses and stream chunks ------------------------------------------------------
# Chat and legacy completions share one envelope; what differs is the object name and
# the choice (a message or a text, chat or legacy logprobs), so each is written once.


@dataclass(frozen=True)
class ResponseMeta:
    """What every body of one response repeats: its id, time, model, and the logprobs
    asked for (`logprobs` false: none; `top`: candidates per token)."""

    id: str
    created: int
    model: str
    top: int
    logprobs: bool
    chat: bool  # chat completions, else legacy completions

    @property
    def object(self) -> str:
        return "chat.completion" if self.chat else "text_completion"

    @property
    def chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"


def envelope(meta: ResponseMeta, object_: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": meta.id,
        "object": object_,
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
    }


def step_logprobs(
    meta: ResponseMeta, steps: Sequence[Step], bytes_of: BytesOf, offset: int = 0
) -> dict[str, Any] | None:
    """The logprobs of `steps` in the response's shape (None when not asked for);
    `offset`: where these steps' text starts (legacy ``text_offset``)."""
    if not meta.logprobs:
        return None
    if meta.chat:
        return chat_logprobs(steps, meta.top, bytes_of)
    return legacy_logprobs(steps, meta.top, bytes_of, offset)


def choice(
    meta: ResponseMeta, text: str, logprobs: Any, finish: str | None, index: int = 0
) -> dict[str, Any]:
    """One choice of a whole response: a message (chat) or a text (legacy)."""
    if meta.chat:
        message = {"role": "assistant", "content": text}
        return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish}
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}


def whole(
    meta: ResponseMeta, choices: list[dict[str, Any]], usage_: dict[str, int]
) -> dict[str, Any]:
    """A whole (non-streamed) response around its choices."""
    body = {**envelope(meta, meta.object, choices), "usage": usage_}
    if meta.chat:
        body["system_fingerprint"] = None
    return body


def response(
    meta: ResponseMeta, summary: GenerationSummary, steps: Sequence[Step], bytes_of: BytesOf,
    echo: str = "",
) -> dict[str, Any]:  # fmt: skip
    """A whole (non-streamed) response; `echo`: the prompt text legacy ``echo`` puts first."""
    logprobs = step_logprobs(meta, steps, bytes_of, len(echo))
    one = choice(meta, echo + summary.text, logprobs, finish_reason(summary.finish_reason))
    return whole(meta, [one], usage(summary))


def chunk(
    meta: ResponseMeta, text: str | None, logprobs: Any = None, finish: str | None = None
) -> dict[str, Any]:
    """One streamed chunk. Chat: `text` is the delta's content (None: an empty delta,
    the finish chunk's); the first chunk's role comes from `first_chunk`."""
    if meta.chat:
        delta = {} if text is None else {"content": text}
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text or "", "logprobs": logprobs, "finish_reason": finish}
    return envelope(meta, meta.chunk_object, [choice])


def first_chunk(meta: ResponseMeta) -> dict[str, Any]:
    """Chat streams open with the assistant's role and no content."""
    choice = {
        "index": 0,
        "delta": {"role": "assistant", "content": ""},
        "logprobs": None,
        "finish_reason": None,
    }
    return envelope(meta, meta.chunk_object, [choice])


def usage_chunk(meta: ResponseMeta, summary: GenerationSummary) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage``: no choices, the usage."""
    return {**envelope(meta, meta.chunk_object, []), "usage": usage(summary)}
