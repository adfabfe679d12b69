"""What to load: the frozen `ModelSpec` the CLI, config and UI all build."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from engine.errors import InvalidParameterError

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANTIZE = ("none", "8bit", "4bit")
# the backends a spec may name; each has its engine in engine/decode/registry.py
Backend = Literal["transformers", "llama.cpp"]
BACKENDS: tuple[str, ...] = ("auto", *get_args(Backend))
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
    # "auto": llama.cpp for a GGUF file when the binding is installed (engine/model/backend.py)
    backend: str = "auto"
    n_gpu_layers: int | None = None  # llama.cpp only: layers to offload (-1 = all)

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
        if self.backend not in BACKENDS:
            raise InvalidParameterError(
                "backend", f"{self.backend!r} is not one of {', '.join(BACKENDS)}"
            )
        if self.n_gpu_layers is not None and (
            isinstance(self.n_gpu_layers, bool)
            or not isinstance(self.n_gpu_layers, int)
            or self.n_gpu_layers < -1
        ):
            raise InvalidParameterError(
                "n_gpu_layers", f"must be an integer >= -1 (-1 = all), got {self.n_gpu_layers!r}"
            )
        # options one backend cannot honour are refused, never silently dropped
        if self.backend == "llama.cpp" and self.quantize != "none":
            raise InvalidParameterError(
                "quantize",
                "does not apply to --backend llama.cpp (a GGUF file is quantized already); "
                "drop it or use --backend transformers",
            )
        if self.backend == "llama.cpp" and self.dtype != "auto":
            raise InvalidParameterError(
                "dtype",
                "does not apply to --backend llama.cpp (it computes in the GGUF's own types); "
                "drop it or use --backend transformers",
            )
        if self.backend == "transformers" and self.n_gpu_layers is not None:
            raise InvalidParameterError(
                "n_gpu_layers",
                "applies to --backend llama.cpp only; use --device to place a transformers model",
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
