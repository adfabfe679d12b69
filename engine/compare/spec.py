"""What one side of a comparison is: `SideSpec`, and how ``--a`` / ``--b`` build it.

A side is a full engine spec (a `ModelSpec`, or a `RemoteSpec` for a server), its
sampling settings, the prompt form (chat template on or off) and optionally a
`BatchCondition`: the side's prompt runs inside a batch with other prompts, padded
left or right, with or without the attention mask (and the position ids derived
from it). `parse_side` reads the command line's ``KEY=VALUE`` items (DESIGN.md's
SPEC syntax); the workbench's Compare dialog builds the same record from its fields
(or with `parse_side` from typed text), so both refuse the same things in one line.

Sampling: a key left unset takes the value `logitlab generate` would use (the
model's generation config, then the library default), resolved once the side's model
is loaded (`SideSpec.sampling_for`); the workbench passes its current run's settings
whole (`SideSpec.sampling`).

Torch-free.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from engine.decode.registry import EngineSpec, RemoteSpec
from engine.errors import InvalidParameterError
from engine.model.spec import ModelSpec
from engine.params import SamplingParams, resolve_sampling

Padding = Literal["left", "right"]

# every key a side may set (DESIGN.md); the order is the one help and errors list
SPEC_KEYS: tuple[str, ...] = (
    "model",
    "backend",
    "device",
    "dtype",
    "quantize",
    "gguf-file",
    "engine",
    "engine-model",
    "temperature",
    "top-k",
    "top-p",
    "min-p",
    "repetition-penalty",
    "seed",
    "template",
    "batch",
    "padding",
    "mask",
)
_MODEL_KEYS = {"model", "backend", "device", "dtype", "quantize", "gguf-file"}
_SAMPLING_KEYS: dict[str, tuple[str, type]] = {
    "temperature": ("temperature", float),
    "top-k": ("top_k", int),
    "top-p": ("top_p", float),
    "min-p": ("min_p", float),
    "repetition-penalty": ("repetition_penalty", float),
    "seed": ("seed", int),
}
_ITEM = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_-]*)=")
BATCH_SEPARATOR = "|"


@dataclass(frozen=True)
class BatchCondition:
    """The side's prompt runs as row 0 of a batch with `prompts` (each rendered as the
    side renders its own), padded on `padding`; `mask`: the attention mask and the
    position ids derived from it are passed (off: every pad is attended, positions
    count the pads). Transformers only (engine/decode/batch.py)."""

    prompts: tuple[str, ...]
    padding: Padding = "left"
    mask: bool = True

    def __post_init__(self) -> None:
        if not self.prompts or not all(p.strip() for p in self.prompts):
            raise InvalidParameterError(
                "batch", f'give the other prompts, separated by "{BATCH_SEPARATOR}", none empty'
            )
        if self.padding not in ("left", "right"):
            raise InvalidParameterError("padding", f"{self.padding!r} is not left or right")

    def to_json(self) -> dict[str, Any]:
        return {"prompts": list(self.prompts), "padding": self.padding, "mask": self.mask}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchCondition:
        return cls(
            prompts=tuple(str(p) for p in data["prompts"]),
            padding=data["padding"],
            mask=bool(data["mask"]),
        )


@dataclass(frozen=True)
class SideSpec:
    """One side of a comparison (see the module docstring).

    `sampling`: exact settings (the workbench's current run); None resolves
    `overrides` (field name -> value, e.g. ``{"temperature": 0.7}``) over the
    model's generation config as `generate` does. `given`: the ``KEY=VALUE`` items as
    typed, for the report.
    """

    engine: EngineSpec = field(default_factory=ModelSpec)
    sampling: SamplingParams | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    template: bool = True
    batch: BatchCondition | None = None
    given: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.batch is not None and self.batch_refusal() is not None:
            raise InvalidParameterError("batch", self.batch_refusal() or "")

    def batch_refusal(self) -> str | None:
        """Why this side's batch condition cannot run, in one line; None when it can."""
        if isinstance(self.engine, RemoteSpec):
            return "a batch condition needs a local transformers model, not a remote engine"
        if self.engine.backend == "llama.cpp":
            return (
                "a batch condition runs on the transformers backend only "
                "(llama.cpp decodes one sequence here); use backend=transformers"
            )
        return None

    @property
    def model_spec(self) -> ModelSpec:
        """What the side's engine is loaded with (a remote one: its model's name)."""
        if isinstance(self.engine, RemoteSpec):
            return self.engine.model_spec
        if self.batch is not None and self.engine.backend == "auto":
            # batching is transformers' alone: `auto` would pick llama.cpp for a GGUF
            return replace(self.engine, backend="transformers")
        return self.engine

    def sampling_for(
        self, generation_config: Mapping[str, Any] | None, **changes: Any
    ) -> SamplingParams:
        """The side's sampling settings for a model whose file sets `generation_config`."""
        if self.sampling is not None:
            return self.sampling.with_changes(**changes) if changes else self.sampling
        params, _sources = resolve_sampling(generation_config, {**self.overrides, **changes})
        return params


def parse_side(items: Sequence[str], *, flag: str = "--a") -> SideSpec:
    """The side `items` describe: each ``KEY=VALUE`` (a value may hold commas and
    spaces), or one ``KEY=VALUE,KEY=VALUE`` shorthand where no value has a comma.

    An item splits as shorthand when every comma-separated part starts ``KEY=``;
    otherwise it is one ``KEY=VALUE``. Raises `InvalidParameterError` naming `flag`
    and the key: an unknown key, a key given twice, a bad value, options that do not
    go together (engine with model, padding without batch, batch on llama.cpp).
    """
    pairs: list[tuple[str, str]] = []
    for item in items:
        pairs += _split_item(item, flag)
    seen: dict[str, str] = {}
    for key, value in pairs:
        if key not in SPEC_KEYS:
            raise InvalidParameterError(flag, f"unknown key {key!r} (keys: {', '.join(SPEC_KEYS)})")
        if key in seen:
            raise InvalidParameterError(flag, f"{key} is given twice")
        if not value.strip():
            raise InvalidParameterError(flag, f"{key}= needs a value")
        seen[key] = value.strip() if key != "batch" else value
    try:
        return _side_from(seen, flag)
    except InvalidParameterError as exc:
        if exc.field.startswith("-"):
            raise
        raise InvalidParameterError(flag, str(exc)) from exc


def _split_item(item: str, flag: str) -> list[tuple[str, str]]:
    parts = item.split(",")
    pieces = parts if len(parts) > 1 and all(_ITEM.match(p) for p in parts) else [item]
    pairs = []
    for piece in pieces:
        match = _ITEM.match(piece)
        if match is None:
            raise InvalidParameterError(flag, f"{item!r} is not KEY=VALUE")
        pairs.append((match.group(1), piece[match.end() :]))
    return pairs


def _side_from(values: Mapping[str, str], flag: str) -> SideSpec:
    engine = _engine_spec(values, flag)
    overrides: dict[str, Any] = {}
    for key, (name, kind) in _SAMPLING_KEYS.items():
        if key in values:
            overrides[name] = _number(key, values[key], kind)
    if overrides:
        resolve_sampling({}, overrides)  # a bad value fails now, before anything loads
    batch = None
    if "batch" in values:
        batch = BatchCondition(
            prompts=tuple(p.strip() for p in values["batch"].split(BATCH_SEPARATOR)),
            padding=_choice("padding", values.get("padding", "left"), ("left", "right")),  # type: ignore[arg-type]
            mask=_on_off("mask", values.get("mask", "on")),
        )
    else:
        for key in ("padding", "mask"):
            if key in values:
                raise InvalidParameterError(flag, f"{key} only applies with batch=PROMPT|PROMPT")
    return SideSpec(
        engine=engine,
        overrides=overrides,
        template=_on_off("template", values.get("template", "on")),
        batch=batch,
        given=tuple(values.items()),
    )


def _engine_spec(values: Mapping[str, str], flag: str) -> EngineSpec:
    if "engine" in values:
        for key in ("model", "gguf-file", "backend", "device", "dtype", "quantize"):
            if key in values:
                raise InvalidParameterError(flag, f"engine= cannot be combined with {key}=")
        api_key = os.environ.get("LOGITLAB_API_KEY") or None
        return RemoteSpec(values["engine"], api_key=api_key, model=values.get("engine-model"))
    if "engine-model" in values:
        raise InvalidParameterError(flag, "engine-model only applies with engine=URL")
    given: dict[str, Any] = {k.replace("-", "_"): v for k, v in values.items() if k in _MODEL_KEYS}
    return ModelSpec(**given)


def _number(key: str, value: str, kind: type) -> int | float:
    try:
        return int(value) if kind is int else float(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise InvalidParameterError(key, f"{value!r} is not {what}") from None


def _on_off(key: str, value: str) -> bool:
    return _choice(key, value, ("on", "off")) == "on"


def _choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidParameterError(key, f"{value!r} is not {' or '.join(choices)}")
    return value
