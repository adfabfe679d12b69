"""Sessions as plain frozen data: what a chat was, with every token's numbers.

A `Session` is what the store saves, the browser lists and the exporters write.
It holds no database handles and no UI types, so the TUI, the CLI and tests can
build and compare sessions freely. Timestamps are always timezone-aware UTC:
they are compared, sorted and written as RFC 3339, and a naive datetime would
silently mean "local time somewhere".

Branching never destroys data: when a reply is regenerated from some step on,
the part of the old reply that the new one no longer shares is kept as an
`Alternative` of the message (see `branched`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from engine.compare.records import Comparison
from engine.model.description import ModelDescription
from engine.params import SamplingParams
from engine.records import Step

Role = Literal["system", "user", "assistant"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")
SOURCES: tuple[str, ...] = ("hub", "local", "gguf", "remote")
TITLE_LENGTH = 60


def utc_now() -> datetime:
    """The current time, UTC-aware (what every `created_at`/`updated_at` holds)."""
    return datetime.now(UTC)


def rfc3339(value: datetime) -> str:
    """UTC, microseconds, ``Z``: one fixed-width spelling, so text order is time order
    (the store sorts on it) and exports compare as text."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_rfc3339(text: str) -> datetime:
    """Inverse of `rfc3339` (accepts any offset; returns UTC). Raises ValueError."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class ModelRecord:
    """Which model produced a session, as shown and exported (not how to reload it)."""

    id: str
    source: str  # "hub" | "local" | "gguf" | "remote" (device = the engine URL)
    device: str
    dtype: str
    quantize: str = "none"

    @classmethod
    def from_description(cls, model: ModelDescription) -> ModelRecord:
        """The record of the model an engine described."""
        return cls(
            id=model.model_id,
            source=model.source,
            # the backend rides in the device field ("cpu (llama.cpp)"): no schema change
            device=model.device
            if model.backend in ("transformers", "")
            else f"{model.device} ({model.backend})",
            dtype=model.dtype,
            quantize=model.quantize,
        )


@dataclass(frozen=True)
class SessionSettings:
    """What the user set for a session: restored when the session is reopened."""

    system_prompt: str = ""
    sampling: SamplingParams = field(default_factory=SamplingParams)


@dataclass(frozen=True)
class Alternative:
    """A cut-off tail of a reply that a branch replaced, kept so nothing is lost.

    `content` is the whole text of the replaced reply. `steps` are its steps from
    the first one that differs from the current reply on; their `index` is kept,
    so the shared prefix is the message's ``steps[:alternative.steps[0].index]``.
    """

    content: str
    finish_reason: str | None
    steps: tuple[Step, ...]
    created_at: datetime
    # the step where it leaves the current reply; None: its first step's index
    # (files and databases from before reply trees), filled in at construction
    parent_step: int | None = None
    seed: int | None = None  # the sampling seed of a fanned-out continuation

    def __post_init__(self) -> None:
        if self.parent_step is None:
            object.__setattr__(self, "parent_step", self.steps[0].index if self.steps else 0)

    @property
    def branch_index(self) -> int:
        """The step where this alternative leaves the current reply."""
        return self.parent_step if self.parent_step is not None else 0


@dataclass(frozen=True)
class SessionMessage:
    """One chat message; an assistant reply carries its generated steps."""

    role: str  # "system" | "user" | "assistant"
    content: str
    created_at: datetime
    finish_reason: str | None = None  # stop | length | cancelled | context (replies)
    steps: tuple[Step, ...] = ()
    alternatives: tuple[Alternative, ...] = ()
    id: int | None = None  # the store's row id; None until stored


@dataclass(frozen=True)
class StoredComparison:
    """A comparison of a reply against another run (engine/compare), kept with the session.

    `message_index`: the index in `Session.messages` of the reply it compares. `data`:
    `Comparison.to_json(extended=True)` as plain JSON (`Comparison.from_json(data)` reads
    it back), so a session can be stored, exported and diffed without the compare engine.
    """

    message_index: int
    created_at: datetime
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Session:
    """A whole conversation with the model and settings it ran under."""

    id: str
    title: str
    created_at: datetime
    updated_at: datetime
    model: ModelRecord
    settings: SessionSettings
    messages: tuple[SessionMessage, ...] = ()
    draft: str = ""  # typed in the message box, not sent yet (not part of the export)
    comparisons: tuple[StoredComparison, ...] = ()  # in the order they were made


@dataclass(frozen=True)
class SessionSummary:
    """One row of the session browser / `sessions list`."""

    id: str
    title: str
    model_id: str
    message_count: int
    created_at: datetime
    updated_at: datetime


def reply_from_steps(
    steps: Sequence[Step], finish_reason: str | None, created_at: datetime | None = None
) -> SessionMessage:
    """An assistant message from a generation's steps (text = their deltas joined).

    What the TUI appends when a reply finishes or is cancelled, and what
    ``generate --save`` stores.
    """
    return SessionMessage(
        role="assistant",
        content="".join(step.text for step in steps),
        created_at=created_at or utc_now(),
        finish_reason=finish_reason,
        steps=tuple(steps),
    )


def default_title(content: str) -> str:
    """A title from the start of the first user message: its first non-empty line."""
    line = next((ln.strip() for ln in content.splitlines() if ln.strip()), "")
    if len(line) <= TITLE_LENGTH:
        return line
    return line[: TITLE_LENGTH - 1].rstrip() + "…"


def branched(old: SessionMessage, new: SessionMessage) -> SessionMessage:
    """`new` replacing `old`, with `old`'s unshared tail kept as an alternative.

    The common prefix is the run of leading steps with the same token ids.
    Alternatives `old` already had are re-based: their prefix was ``old``'s
    steps up to their branch point, and the part of it that `new` no longer
    shares is prepended to them, so each alternative's prefix stays
    ``new.steps[:branch_index]``.
    """
    shared = _shared_prefix(old.steps, new.steps)
    rebased = tuple(
        replace(alt, steps=old.steps[shared : alt.branch_index] + alt.steps, parent_step=shared)
        if alt.branch_index > shared
        else alt
        for alt in old.alternatives
    )
    tail = Alternative(
        content=old.content,
        finish_reason=old.finish_reason,
        steps=old.steps[shared:],
        created_at=old.created_at,
        parent_step=shared,
    )
    return replace(new, alternatives=(*rebased, tail, *new.alternatives), id=old.id)


def _shared_prefix(a: tuple[Step, ...], b: tuple[Step, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x.token_id != y.token_id:
            break
        n += 1
    return n


def settings_to_dict(settings: SessionSettings) -> dict[str, Any]:
    """The flat settings object shared by the store and the export schema.

    ``seed`` is omitted when None and ``stop`` when empty (TOML has no null).
    """
    p = settings.sampling
    out: dict[str, Any] = {
        "system_prompt": settings.system_prompt,
        "temperature": float(p.temperature),
        "top_k": p.top_k,
        "top_p": float(p.top_p),
        "min_p": float(p.min_p),
        "repetition_penalty": float(p.repetition_penalty),
        "max_new_tokens": p.max_new_tokens,
    }
    if p.seed is not None:
        out["seed"] = p.seed
    if p.stop:
        out["stop"] = list(p.stop)
    out["top_logprobs"] = p.top_logprobs
    return out


def settings_from_dict(data: dict[str, Any]) -> SessionSettings:
    """Inverse of `settings_to_dict`; raises InvalidParameterError on a bad value."""
    sampling = {k: v for k, v in data.items() if k != "system_prompt"}
    if "stop" in sampling:
        sampling["stop"] = tuple(sampling["stop"])
    return SessionSettings(
        system_prompt=data.get("system_prompt", ""), sampling=SamplingParams(**sampling)
    )


# the numbers `Comparison.from_json` reads as 0 when absent, though an export leaves
# them out because they were null (TOML has no null): -inf logprobs, unknown KL
_NULLABLE_NUMBERS = ("logprob_a", "logprob_b", "kl")


def comparison_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` read as a comparison and written back as `Comparison.to_json(extended=True)`:
    the one form the store keeps and the exports carry. Null values an export left out
    (TOML has no null) read as null again; the sides' descriptions (``a``, ``b``: free
    form) keep no null members, so that a file says all of them, and their keys in
    sorted order (a TOML file moves tables after values). Raises ValueError naming the
    bad field."""
    steps = data.get("steps")
    if isinstance(steps, list):
        steps = [_with_nulls(s) for s in steps]
        data = {**data, "steps": steps}
    out = Comparison.from_json(dict(data)).to_json(extended=True)
    sides = {k: without_nulls(out[k], sort_keys=True) for k in ("a", "b")}
    return {**out, **sides}


def without_nulls(value: Any, *, sort_keys: bool = False) -> Any:
    """`value` with every null member of an object left out, at any depth (TOML has
    no null: an absent value is omitted); `sort_keys`: objects' keys sorted too."""
    if isinstance(value, Mapping):
        keys = sorted(value) if sort_keys else list(value)
        return {
            k: without_nulls(value[k], sort_keys=sort_keys) for k in keys if value[k] is not None
        }
    if isinstance(value, list | tuple):
        return [without_nulls(v, sort_keys=sort_keys) for v in value]
    return value


def _with_nulls(step: Any) -> Any:
    if not isinstance(step, dict):
        return step
    out = {**{k: None for k in _NULLABLE_NUMBERS}, **step}
    for side in ("top_a", "top_b"):
        if isinstance(out.get(side), list):
            out[side] = [{"logprob": None, **c} if isinstance(c, dict) else c for c in out[side]]
    return out
