"""What a request asks of the prompt, and the legacy completions route's bodies.

`Scoring` reads a request's scoring fields: OpenAI's legacy ``echo`` with
``logprobs`` (the prompt's tokens first in the choice's logprobs), vLLM's
``prompt_logprobs: N`` (its own field, on both endpoints) and ``max_tokens: 0``
(score only, generate nothing). A scoring job scores its prompt on the engine's
worker before generating (engine/serve/queue.py); `completion_body` builds the
response from the jobs' ends, one choice per prompt of a batch (lm-eval sends
lists of token-id lists), in the order they were given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidParameterError
from engine.serve import openai_shapes as shapes
from engine.serve.openai_shapes import BytesOf, ResponseMeta
from engine.serve.prompt_scores import echo_logprobs, joined, vllm_prompt_logprobs
from engine.serve.schemas import MAX_TOP_LOGPROBS, SamplingFields
from engine.serve.streaming import Done


@dataclass(frozen=True)
class Scoring:
    """How a request scores its prompt: `echo_top` candidates in the echoed legacy
    logprobs (None: no echoed scores), `vllm_top` in vLLM's ``prompt_logprobs`` (None:
    not asked), and whether it generates at all."""

    echo_top: int | None
    vllm_top: int | None
    generate: bool

    @property
    def top(self) -> int | None:
        """Candidates the engine scores with (None: the prompt is not scored)."""
        asked = [n for n in (self.echo_top, self.vllm_top) if n is not None]
        return max(asked) if asked else None

    @property
    def param(self) -> str:
        """The field a refusal names."""
        return "prompt_logprobs" if self.vllm_top is not None else "echo"


def scoring(body: SamplingFields, max_tokens: int | None, echo_top: int | None) -> Scoring:
    """The request's `Scoring`, or a 400 naming the field that cannot be honoured."""
    asked = body.prompt_logprobs
    if asked is not None and not 0 <= asked <= MAX_TOP_LOGPROBS:
        raise InvalidParameterError("prompt_logprobs", f"must be in [0, {MAX_TOP_LOGPROBS}]")
    if asked is not None and body.stream:
        raise InvalidParameterError("prompt_logprobs", "is not available with stream: true")
    return Scoring(echo_top, asked, generate=max_tokens != 0)


def completion_body(
    meta: ResponseMeta,
    ends: Sequence[Done],
    prompts: Sequence[tuple[list[int], str]],
    how: Scoring,
    echo: bool,
    bytes_of: BytesOf,
) -> dict[str, Any]:
    """A whole legacy completions response: one choice per prompt."""
    choices, prompt_tokens, completion_tokens = [], 0, 0
    for index, (end, (ids, text)) in enumerate(zip(ends, prompts, strict=True)):
        summary = end.result.summary
        shown = text if echo else ""
        logprobs = shapes.step_logprobs(meta, end.result.steps, bytes_of, len(shown))
        if how.echo_top is not None and end.scores is not None:
            logprobs = joined(echo_logprobs(ids, end.scores, how.echo_top, bytes_of), logprobs)
        finish = shapes.finish_reason(summary.finish_reason)
        choice = shapes.choice(meta, shown + summary.text, logprobs, finish, index)
        choices.append({**choice, **prompt_fields(ids, end, how, bytes_of)})
        prompt_tokens += summary.prompt_tokens
        completion_tokens += summary.completion_tokens
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return shapes.whole(meta, choices, usage)


def prompt_fields(ids: list[int], end: Done, how: Scoring, bytes_of: BytesOf) -> dict[str, Any]:
    """vLLM's ``prompt_logprobs`` and ``prompt_token_ids`` where they were asked for
    (a legacy choice's fields; a chat response's top-level ones)."""
    if how.vllm_top is None or end.scores is None:
        return {}
    return {
        "prompt_logprobs": vllm_prompt_logprobs(ids, end.scores, how.vllm_top, bytes_of),
        "prompt_token_ids": list(ids),
    }
