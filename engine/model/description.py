"""`ModelDescription`: what every front end shows about the model an engine serves.

One typed record for the status bar, the Model tab, session records and
`/v1/models`, whichever engine produced it (a local checkpoint, a GGUF file or a
remote server). Torch-free, so front ends can hold one without importing torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.model.spec import ModelSpec


@dataclass(frozen=True)
class ModelDescription:
    """The loaded model, as the UI and session records describe it."""

    spec: ModelSpec
    model_id: str
    source: str  # "hub" | "local" | "gguf" | "remote"
    device: str
    dtype: str
    quantize: str
    context_window: int
    architecture: str = ""
    parameters_total: int = 0
    parameters_by_kind: Mapping[str, int] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)  # config_essentials()
    generation_config: Mapping[str, Any] = field(default_factory=dict)  # what the model file set
    backend: str = "transformers"  # "transformers" | "llama.cpp" | "remote"
    # one line each that front ends show once (a backend fallen back from, and why)
    notices: tuple[str, ...] = ()
