"""Sampling settings: a frozen, validated `SamplingParams`, and how defaults merge.

Effective values follow transformers' precedence: a value the user gave beats
the model's ``generation_config.json``, which beats the library default. Each
effective value keeps its source so the UI can show where it came from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from engine.errors import InvalidParameterError

Source = Literal["user", "model", "transformers", "logitlab"]

# transformers' GenerationConfig defaults (used when the model file says nothing)
TRANSFORMERS_DEFAULTS: dict[str, Any] = {
    "do_sample": False,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
}
LOGITLAB_DEFAULT_MAX_NEW_TOKENS = 256
MAX_TOP_LOGPROBS = 50


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen. ``temperature == 0`` means greedy (argmax)."""

    temperature: float = 0.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    max_new_tokens: int = LOGITLAB_DEFAULT_MAX_NEW_TOKENS
    seed: int | None = None
    stop: tuple[str, ...] = ()
    top_logprobs: int = 10

    def __post_init__(self) -> None:
        _check(self)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def with_changes(self, **changes: Any) -> SamplingParams:
        """A copy with some fields changed, validated again."""
        return replace(self, **changes)


def _check(p: SamplingParams) -> None:
    def bad(name: str, why: str) -> InvalidParameterError:
        return InvalidParameterError(name, why)

    if not _is_number(p.temperature) or not math.isfinite(p.temperature) or p.temperature < 0:
        raise bad("temperature", f"must be a number >= 0 (0 = greedy), got {p.temperature!r}")
    if not _is_int(p.top_k) or p.top_k < 0:
        raise bad("top_k", f"must be an integer >= 0 (0 = off), got {p.top_k!r}")
    if not _is_number(p.top_p) or not 0.0 < p.top_p <= 1.0:
        raise bad("top_p", f"must be in (0, 1], got {p.top_p!r}")
    if not _is_number(p.min_p) or not 0.0 <= p.min_p < 1.0:
        raise bad("min_p", f"must be in [0, 1), got {p.min_p!r}")
    if (
        not _is_number(p.repetition_penalty)
        or not math.isfinite(p.repetition_penalty)
        or p.repetition_penalty <= 0
    ):
        raise bad("repetition_penalty", f"must be a number > 0, got {p.repetition_penalty!r}")
    if not _is_int(p.max_new_tokens) or p.max_new_tokens < 1:
        raise bad("max_new_tokens", f"must be an integer >= 1, got {p.max_new_tokens!r}")
    if p.seed is not None and (not _is_int(p.seed) or not 0 <= p.seed < 2**63):
        raise bad("seed", f"must be an integer in [0, 2^63), got {p.seed!r}")
    if not isinstance(p.stop, tuple) or not all(isinstance(s, str) and s for s in p.stop):
        raise bad("stop", "must be a tuple of non-empty strings")
    if not _is_int(p.top_logprobs) or not 0 <= p.top_logprobs <= MAX_TOP_LOGPROBS:
        raise bad(
            "top_logprobs", f"must be an integer in [0, {MAX_TOP_LOGPROBS}], got {p.top_logprobs!r}"
        )


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(SamplingParams))


def resolve_sampling(
    model_generation_config: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[SamplingParams, dict[str, Source]]:
    """Merge user overrides over the model's generation config over library defaults.

    `model_generation_config` is the dict of values the model file set
    explicitly (``GenerationConfig.to_diff_dict()`` or the json file's content);
    `overrides` are values the user gave (None values are ignored). Returns the
    params and, for each field, where its value came from.

    transformers samples only when ``do_sample`` is true; otherwise it is greedy
    whatever the temperature. We fold that into ``temperature = 0``.
    """
    model = dict(model_generation_config or {})
    user = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(user) - set(FIELD_NAMES)
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidParameterError(name, "is not a sampling setting")

    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}

    def pick(
        name: str,
        model_key: str | None = None,
        default: Any = None,
        default_source: Source = "transformers",
    ) -> None:
        key = model_key or name
        if name in user:
            values[name], sources[name] = user[name], "user"
        elif model.get(key) is not None:
            values[name], sources[name] = model[key], "model"
        else:
            values[name], sources[name] = default, default_source

    do_sample = bool(model.get("do_sample", TRANSFORMERS_DEFAULTS["do_sample"]))
    if "temperature" in user:
        values["temperature"], sources["temperature"] = float(user["temperature"]), "user"
    elif not do_sample:
        values["temperature"] = 0.0
        sources["temperature"] = "model" if "do_sample" in model else "transformers"
    else:
        pick("temperature", default=TRANSFORMERS_DEFAULTS["temperature"])
        values["temperature"] = float(values["temperature"])
    pick("top_k", default=TRANSFORMERS_DEFAULTS["top_k"])
    pick("top_p", default=TRANSFORMERS_DEFAULTS["top_p"])
    pick("min_p", default=TRANSFORMERS_DEFAULTS["min_p"])
    pick("repetition_penalty", default=TRANSFORMERS_DEFAULTS["repetition_penalty"])
    pick("max_new_tokens", default=LOGITLAB_DEFAULT_MAX_NEW_TOKENS, default_source="logitlab")
    pick("seed", default=None, default_source="logitlab")
    pick("stop", default=(), default_source="logitlab")
    pick("top_logprobs", default=10, default_source="logitlab")
    if isinstance(values["stop"], str):
        values["stop"] = (values["stop"],)
    values["stop"] = tuple(values["stop"])
    for name in ("top_p", "min_p", "repetition_penalty"):
        if _is_int(values[name]):
            values[name] = float(values[name])
    return SamplingParams(**values), sources
