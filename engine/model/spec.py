"""What to load: the frozen `ModelSpec` the CLI, config and UI all build."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import InvalidParameterError

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZE = ("none", "8bit", "4bit")
_CUDA_N = re.compile(r"^cuda:\d+$")


@dataclass(frozen=True)
class ModelSpec:
    """A model to load and where/how to run it.

    `model` is a hub id, a local directory, or a path to a ``.gguf`` file;
    ``None`` means the bundled default (SmolLM2-135M-Instruct).
    """

    model: str | None = None
    gguf_file: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.device not in DEVICES and not _CUDA_N.match(self.device):
            raise InvalidParameterError(
                "device", f"{self.device!r} is not one of auto, cpu, cuda, cuda:N, mps"
            )
        if self.dtype not in DTYPES:
            raise InvalidParameterError(
                "dtype", f"{self.dtype!r} is not one of {', '.join(DTYPES)}"
            )
        if self.quantize not in QUANTIZE:
            raise InvalidParameterError(
                "quantize", f"{self.quantize!r} is not one of {', '.join(QUANTIZE)}"
            )
        if self.model is not None and not self.model.strip():
            raise InvalidParameterError("model", "must not be empty")

    @property
    def is_default(self) -> bool:
        return self.model is None

    @property
    def display_name(self) -> str:
        if self.model is None:
            return "SmolLM2-135M-Instruct (bundled)"
        return self.model if not self.gguf_file else f"{self.model}:{self.gguf_file}"
