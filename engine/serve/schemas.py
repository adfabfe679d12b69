"""Request bodies of the OpenAI-compatible endpoints, validated by pydantic.

Only what the server honours is declared; unknown fields are ignored (OpenAI
clients send extras such as ``user``), except the few the server refuses on
purpose, which `refuse_unsupported` names in a 400. Range checks the engine's
`SamplingParams` already makes are left to it, so one message wording serves
the CLI and the server.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import InvalidParameterError

MAX_TOP_LOGPROBS = 20  # OpenAI's bound
MAX_BATCH = 64  # prompts in one legacy completions request


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[TextPart] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingFields(BaseModel):
    """Fields chat and legacy completions share (OpenAI's plus vLLM's extensions)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    top_k: int | None = None  # vLLM: -1 or 0 = off
    min_p: float | None = None
    repetition_penalty: float | None = None
    # vLLM's extension: score the prompt, N candidates per position (0: the token only)
    prompt_logprobs: int | None = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None


class CompletionRequest(SamplingFields):
    prompt: str | list[int] | list[str] | list[list[int]]
    logprobs: int | None = None
    echo: bool = False
    suffix: str | None = None


class TokenizeRequest(BaseModel):
    """vLLM's /tokenize: a prompt, or chat messages rendered with the template."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessageIn] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True
    return_token_strs: bool = False


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    tokens: list[int]


# Fields OpenAI defines that this server does not implement: refused, never ignored,
# so a client never believes it got something it did not.
_UNSUPPORTED = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
    "logit_bias",
    "best_of",
    "audio",
    "modalities",
    "prediction",
)


def refuse_unsupported(request: SamplingFields) -> None:
    """400 for `n` other than 1, and for OpenAI features this server does not offer."""
    if request.n is not None and request.n != 1:
        raise InvalidParameterError("n", f"only n = 1 is supported, got {request.n}")
    extra = request.model_extra or {}
    for name in _UNSUPPORTED:
        if extra.get(name) not in (None, [], {}):
            raise InvalidParameterError(name, "is not supported by this server")
    for name in ("presence_penalty", "frequency_penalty"):
        value = extra.get(name)
        if value not in (None, 0, 0.0):
            raise InvalidParameterError(
                name, "is not supported; use repetition_penalty (vLLM's extension)"
            )


def stop_tuple(stop: str | list[str] | None) -> tuple[str, ...] | None:
    if stop is None:
        return None
    items = [stop] if isinstance(stop, str) else list(stop)
    if len(items) > 4 or not all(items):
        raise InvalidParameterError("stop", "must be up to 4 non-empty strings")
    return tuple(items)


def sampling_overrides(request: SamplingFields, max_tokens: int | None) -> dict[str, Any]:
    """The request's values as `resolve_sampling` overrides (None = the model's default)."""
    top_k = request.top_k
    if top_k is not None and top_k == -1:  # vLLM spells "off" as -1
        top_k = 0
    return {
        "max_new_tokens": max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "top_k": top_k,
        "min_p": request.min_p,
        "repetition_penalty": request.repetition_penalty,
        "seed": request.seed,
        "stop": stop_tuple(request.stop),
    }
