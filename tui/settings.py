"""What the user set in the Settings screen, and how it merges with the model's defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine.params import FIELD_NAMES, SamplingParams, Source, resolve_sampling

# (field, label, kind) in the order the Settings screen shows them
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("temperature", "temperature (0 = greedy)", "float"),
    ("top_k", "top-k (0 = off)", "int"),
    ("top_p", "top-p", "float"),
    ("min_p", "min-p", "float"),
    ("repetition_penalty", "repetition penalty", "float"),
    ("max_new_tokens", "max new tokens", "int"),
    ("seed", "seed (empty = random)", "seed"),
    ("top_logprobs", "candidates shown", "int"),
)


@dataclass(frozen=True)
class UISettings:
    system_prompt: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)  # sampling values the user set
    allow_special: bool = False  # let special-token text in messages become special tokens

    def resolve(
        self, generation_config: Mapping[str, Any]
    ) -> tuple[SamplingParams, dict[str, Source]]:
        """Effective sampling params and each value's source (raises InvalidParameterError)."""
        return resolve_sampling(generation_config, self.overrides)

    def with_changes(self, **changes: Any) -> UISettings:
        return replace(self, **changes)

    def restored(
        self, system_prompt: str, sampling: SamplingParams, generation_config: Mapping[str, Any]
    ) -> UISettings:
        """These settings with a saved session's: the sampling values that differ from
        what the model would give on its own become the user's overrides, so a reopened
        session samples exactly as it did and the sources still read "model" elsewhere."""
        base, _sources = resolve_sampling(generation_config, {})
        overrides = {
            name: getattr(sampling, name)
            for name in FIELD_NAMES
            if getattr(sampling, name) != getattr(base, name)
        }
        return replace(self, system_prompt=system_prompt, overrides=overrides)


def parse_value(name: str, kind: str, text: str) -> Any:
    """Parse a field's text; raises ValueError with a reason a user can act on."""
    text = text.strip()
    if kind == "seed":
        if not text:
            return None
        kind = "int"
    if not text:
        raise ValueError("a value is required")
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not {'an integer' if kind == 'int' else 'a number'}"
        ) from None
