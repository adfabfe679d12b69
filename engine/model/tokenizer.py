"""`load_tokenizer(ModelSpec) -> LoadedTokenizer`: a model's tokenizer, no weights
and no torch, so `logitlab tokenize` answers at once.

transformers' Auto classes resolve a model's config class, which imports torch
(~4 s here); a checkpoint with a `tokenizer.json` needs none of that: the fast
tokenizer loads from it with its `tokenizer_config.json` and chat template, and
the context window and stop ids are read from the JSON config files directly.
Only a checkpoint without `tokenizer.json` (a SentencePiece-only model) goes
through `AutoTokenizer`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from engine.errors import CorruptModelError
from engine.model.checkpoint import (
    LoadProgress,
    ProgressCallback,
    SourceKind,
    context_window,
    eos_ids,
    quiet_transformers,
    resolve_checkpoint,
    short_error,
)
from engine.model.spec import ModelSpec


@dataclass(frozen=True)
class LoadedTokenizer:
    """A model's tokenizer and the facts about it that need no weights."""

    tokenizer: Any
    spec: ModelSpec
    source: SourceKind
    model_id: str
    checkpoint_dir: Path
    context_window: int
    eos_token_ids: tuple[int, ...]


def load_tokenizer(spec: ModelSpec, progress: ProgressCallback | None = None) -> LoadedTokenizer:
    """Only the tokenizer of what `spec` names: no weights are read (after a GGUF
    file's one-time conversion), and torch is not imported."""
    report = progress or (lambda _p: None)
    report(LoadProgress("resolving", 0.0, spec.display_name))
    with quiet_transformers():
        source, checkpoint, model_id, _ = resolve_checkpoint(spec, report)
        report(LoadProgress("loading weights", 0.6, f"{model_id} (tokenizer only)"))
        try:
            tokenizer = _tokenizer(checkpoint, spec)
        except Exception as exc:
            raise CorruptModelError(
                f"cannot load the tokenizer of {model_id} ({short_error(exc)})"
            ) from None
    config = _json_config(checkpoint / "config.json")
    generation = _json_config(checkpoint / "generation_config.json")
    report(LoadProgress("ready", 1.0, model_id))
    return LoadedTokenizer(
        tokenizer=tokenizer,
        spec=spec,
        source=source,
        model_id=model_id,
        checkpoint_dir=checkpoint,
        context_window=context_window(config, tokenizer),
        eos_token_ids=eos_ids(generation, config, tokenizer),
    )


def _tokenizer(checkpoint: Path, spec: ModelSpec) -> Any:
    if (checkpoint / "tokenizer.json").is_file() and not spec.trust_remote_code:
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(checkpoint)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=spec.trust_remote_code)


def _json_config(path: Path) -> SimpleNamespace:
    """A config file's top-level keys as attributes (empty when missing or unreadable),
    the shape `context_window` and `eos_ids` read from transformers' config objects."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    return SimpleNamespace(**data) if isinstance(data, dict) else SimpleNamespace()
