"""The records a comparison produces, and their JSON (DESIGN.md's `compare --format json`).

`Comparison.to_json()` is exactly the documented shape::

    {"a": {...}, "b": {...},
     "tokenization": {"same", "a_ids", "b_ids", "first_difference"},
     "steps": [{"step", "token_id", "token", "logprob_a", "logprob_b", "kl", "exact",
                "rank_b", "top1_a", "top1_b", "agree"}],
     "first_divergence": int | null,
     "summary": {"steps", "mean_kl", "median_kl", "p99_kl", "max_kl", "same_top1",
                 "rms_dp", "ppl_a", "ppl_b"}}

``to_json(extended=True)`` adds what the workbench keeps with a session and the shape
leaves out: each step's candidates on both sides (``top_a`` / ``top_b``), B's free
path (``b_path``), the token texts of the prompts, and why the steps are missing
(``problem``: different vocabularies). `Comparison.from_json` reads either form back
(a missing extension is empty) and refuses a malformed one with a `ValueError` naming
the field. JSON has no infinity or NaN: such numbers are written as null.

`kl` is KL(A‖B) in nats on the shared path; `exact` is false where a side gave only
its top-N and the number is the estimate of engine/compare/kl.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FORMAT_VERSION = 1


@dataclass(frozen=True)
class CompareCandidate:
    """One of a side's most likely tokens at a step (raw distribution)."""

    token_id: int
    token: str  # how the token shows (the engine's token_display)
    logprob: float

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    def to_json(self) -> dict[str, Any]:
        return {"token_id": self.token_id, "token": self.token, "logprob": _num(self.logprob)}

    @classmethod
    def from_json(cls, data: Any, where: str) -> CompareCandidate:
        obj = _obj(data, where)
        return cls(
            _int(obj, "token_id", where), _str(obj, "token", where), _flt(obj, "logprob", where)
        )


@dataclass(frozen=True)
class CompareStep:
    """Position `step` of the shared path: its token under both sides.

    `logprob_a` / `logprob_b`: the path token's raw logprob under each; `rank_b` its
    1-based rank under B (0: unknown, a remote B outside its top-N); `top1_a` /
    `top1_b`: each side's most likely token there; `agree`: they are the same.
    `top_a` / `top_b`: each side's candidates (the workbench's Step tab).
    """

    step: int
    token_id: int
    token: str
    logprob_a: float
    logprob_b: float
    kl: float
    exact: bool
    rank_b: int
    top1_a: int
    top1_b: int
    agree: bool
    top_a: tuple[CompareCandidate, ...] = ()
    top_b: tuple[CompareCandidate, ...] = ()

    @property
    def dp(self) -> float:
        """B's probability of the path token minus A's (llama-perplexity's Δp)."""
        return math.exp(self.logprob_b) - math.exp(self.logprob_a)

    def to_json(self, extended: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step": self.step,
            "token_id": self.token_id,
            "token": self.token,
            "logprob_a": _num(self.logprob_a),
            "logprob_b": _num(self.logprob_b),
            "kl": _num(self.kl),
            "exact": self.exact,
            "rank_b": self.rank_b,
            "top1_a": self.top1_a,
            "top1_b": self.top1_b,
            "agree": self.agree,
        }
        if extended:
            out["top_a"] = [c.to_json() for c in self.top_a]
            out["top_b"] = [c.to_json() for c in self.top_b]
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> CompareStep:
        obj = _obj(data, where)
        return cls(
            step=_int(obj, "step", where),
            token_id=_int(obj, "token_id", where),
            token=_str(obj, "token", where),
            logprob_a=_flt(obj, "logprob_a", where),
            logprob_b=_flt(obj, "logprob_b", where),
            kl=_flt(obj, "kl", where),
            exact=_bool(obj, "exact", where),
            rank_b=_int(obj, "rank_b", where),
            top1_a=_int(obj, "top1_a", where),
            top1_b=_int(obj, "top1_b", where),
            agree=_bool(obj, "agree", where),
            top_a=_candidates(obj.get("top_a", []), f"{where}.top_a"),
            top_b=_candidates(obj.get("top_b", []), f"{where}.top_b"),
        )


@dataclass(frozen=True)
class Tokenization:
    """How each side tokenized the prompt: `same` ids, else the first position where
    they differ (an extra BOS, another template, another tokenizer).
    `a_tokens` / `b_tokens`: the ids' texts, for the aligned view."""

    a_ids: tuple[int, ...]
    b_ids: tuple[int, ...]
    a_tokens: tuple[str, ...] = ()
    b_tokens: tuple[str, ...] = ()

    @property
    def same(self) -> bool:
        return self.a_ids == self.b_ids

    @property
    def first_difference(self) -> int | None:
        return first_difference(self.a_ids, self.b_ids)

    def to_json(self, extended: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "same": self.same,
            "a_ids": list(self.a_ids),
            "b_ids": list(self.b_ids),
            "first_difference": self.first_difference,
        }
        if extended:
            out["a_tokens"], out["b_tokens"] = list(self.a_tokens), list(self.b_tokens)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "tokenization") -> Tokenization:
        obj = _obj(data, where)
        return cls(
            a_ids=_ints(obj, "a_ids", where),
            b_ids=_ints(obj, "b_ids", where),
            a_tokens=_strs(obj.get("a_tokens", []), f"{where}.a_tokens"),
            b_tokens=_strs(obj.get("b_tokens", []), f"{where}.b_tokens"),
        )


@dataclass(frozen=True)
class CompareSummary:
    """Totals over the steps (engine/compare/kl.py `summarize`): KL statistics (nats),
    the fraction of steps whose top-1 agree, the root mean square of Δp and each
    side's perplexity of the path. None where there are no steps."""

    steps: int
    mean_kl: float | None
    median_kl: float | None
    p99_kl: float | None
    max_kl: float | None
    same_top1: float | None
    rms_dp: float | None
    ppl_a: float | None
    ppl_b: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "mean_kl": _num(self.mean_kl),
            "median_kl": _num(self.median_kl),
            "p99_kl": _num(self.p99_kl),
            "max_kl": _num(self.max_kl),
            "same_top1": _num(self.same_top1),
            "rms_dp": _num(self.rms_dp),
            "ppl_a": _num(self.ppl_a),
            "ppl_b": _num(self.ppl_b),
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "summary") -> CompareSummary:
        obj = _obj(data, where)
        return cls(
            steps=_int(obj, "steps", where),
            **{
                k: _opt_flt(obj, k, where)
                for k in (
                    "mean_kl",
                    "median_kl",
                    "p99_kl",
                    "max_kl",
                    "same_top1",
                    "rms_dp",
                    "ppl_a",
                    "ppl_b",
                )
            },
        )


@dataclass(frozen=True)
class Comparison:
    """A whole comparison: both sides' descriptions (``a`` / ``b``: the spec as given
    and resolved, the model), the prompt's tokenization, one `CompareStep` per token of
    the shared path, where B running free first left that path, and the summary.

    `b_path` / `b_tokens`: B's own free continuation (ids and texts), at most as long
    as the path. `problem`: one line when no steps could be computed (different
    vocabularies), else None.
    """

    a: Mapping[str, Any]
    b: Mapping[str, Any]
    tokenization: Tokenization
    steps: tuple[CompareStep, ...]
    first_divergence: int | None
    summary: CompareSummary
    b_path: tuple[int, ...] = ()
    b_tokens: tuple[str, ...] = ()
    problem: str | None = None

    def to_json(self, extended: bool = False) -> dict[str, Any]:
        """DESIGN.md's shape; `extended` adds candidates, B's path and `problem`."""
        out: dict[str, Any] = {
            "a": dict(self.a),
            "b": dict(self.b),
            "tokenization": self.tokenization.to_json(extended),
            "steps": [s.to_json(extended) for s in self.steps],
            "first_divergence": self.first_divergence,
            "summary": self.summary.to_json(),
        }
        if extended:
            out["b_path"] = list(self.b_path)
            out["b_tokens"] = list(self.b_tokens)
            out["problem"] = self.problem
            out["version"] = FORMAT_VERSION
        return out

    @classmethod
    def from_json(cls, data: Any) -> Comparison:
        """A comparison from `to_json`'s output (either form); ValueError names the field."""
        obj = _obj(data, "comparison")
        version = obj.get("version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"comparison.version: {version!r} is not {FORMAT_VERSION}")
        steps = obj.get("steps")
        if not isinstance(steps, list):
            raise ValueError("comparison.steps: must be a list")
        divergence = obj.get("first_divergence")
        if divergence is not None and (
            isinstance(divergence, bool) or not isinstance(divergence, int)
        ):
            raise ValueError("comparison.first_divergence: must be an integer or null")
        problem = obj.get("problem")
        if problem is not None and not isinstance(problem, str):
            raise ValueError("comparison.problem: must be a string or null")
        return cls(
            a=_obj(obj.get("a"), "comparison.a"),
            b=_obj(obj.get("b"), "comparison.b"),
            tokenization=Tokenization.from_json(obj.get("tokenization")),
            steps=tuple(CompareStep.from_json(s, f"steps[{i}]") for i, s in enumerate(steps)),
            first_divergence=divergence,
            summary=CompareSummary.from_json(obj.get("summary")),
            b_path=tuple(_int_list(obj.get("b_path", []), "comparison.b_path")),
            b_tokens=_strs(obj.get("b_tokens", []), "comparison.b_tokens"),
            problem=problem,
        )


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first index where `a` and `b` differ (one ending first counts); None if equal."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


# --- JSON helpers: numbers JSON can hold, fields checked by name -------------------------


def _num(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _obj(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: must be an object")
    return data


def _int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}.{key}: must be an integer")
    return value


def _bool(obj: Mapping[str, Any], key: str, where: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"{where}.{key}: must be true or false")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{where}.{key}: must be a string")
    return value


def _flt(obj: Mapping[str, Any], key: str, where: str) -> float:
    """A number; null reads back as the -inf / NaN it was written for (-inf: a logprob)."""
    value = obj.get(key, 0)
    if value is None:
        return -math.inf if key.startswith("logprob") else math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}.{key}: must be a number")
    return float(value)


def _opt_flt(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}.{key}: must be a number or null")
    return float(value)


def _int_list(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"{where}: must be a list of integers")
    return value


def _ints(obj: Mapping[str, Any], key: str, where: str) -> tuple[int, ...]:
    return tuple(_int_list(obj.get(key), f"{where}.{key}"))


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: must be a list of strings")
    return tuple(value)


def _candidates(value: Any, where: str) -> tuple[CompareCandidate, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{where}: must be a list")
    return tuple(CompareCandidate.from_json(c, f"{where}[{i}]") for i, c in enumerate(value))


EMPTY_SUMMARY = CompareSummary(0, None, None, None, None, None, None, None, None)
