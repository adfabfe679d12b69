"""What to load and how: the spec, devices, the bundled default, GGUF conversion,
loading, the model's anatomy, its internals (the layer lens, nearest tokens by
embedding) and the one thread torch runs on.

Torch-free to import: `load`, `describe` and friends import torch on first use.
"""

from typing import TYPE_CHECKING

from engine.lazy import lazy_exports
from engine.model.backend import (
    INSTALL_COMMAND as LLAMACPP_INSTALL_COMMAND,
)
from engine.model.backend import (
    gguf_without_binding,
    llama_cpp_available,
    resolve_backend,
)
from engine.model.description import ModelDescription
from engine.model.spec import BACKENDS, DTYPES, QUANTIZE, ModelSpec
from engine.model.thread import EngineThread

if TYPE_CHECKING:
    from engine.model.checkpoint import LoadProgress, quiet_transformers
    from engine.model.embeddings import Neighbour, nearest_tokens, ties_embeddings
    from engine.model.info import ModelInfo, describe, describe_llama
    from engine.model.lens import LensResult, LensRow, LensToken, logit_lens
    from engine.model.llama import LlamaModel, load_llama
    from engine.model.loading import LoadedModel, load
    from engine.model.tokenizer import LoadedTokenizer, load_tokenizer

__getattr__ = lazy_exports(
    __name__,
    {
        "LoadedModel": "loading",
        "LoadedTokenizer": "tokenizer",
        "LoadProgress": "checkpoint",
        "quiet_transformers": "checkpoint",
        "load": "loading",
        "load_tokenizer": "tokenizer",
        "ModelInfo": "info",
        "describe": "info",
        "describe_llama": "info",
        "LlamaModel": "llama",
        "load_llama": "llama",
        "LensResult": "lens",
        "LensRow": "lens",
        "LensToken": "lens",
        "logit_lens": "lens",
        "Neighbour": "embeddings",
        "nearest_tokens": "embeddings",
        "ties_embeddings": "embeddings",
    },
)

__all__ = [
    "BACKENDS",
    "DTYPES",
    "LLAMACPP_INSTALL_COMMAND",
    "QUANTIZE",
    "EngineThread",
    "LensResult",
    "LensRow",
    "LensToken",
    "LlamaModel",
    "LoadProgress",
    "LoadedModel",
    "LoadedTokenizer",
    "ModelDescription",
    "ModelInfo",
    "ModelSpec",
    "Neighbour",
    "describe",
    "describe_llama",
    "gguf_without_binding",
    "llama_cpp_available",
    "load",
    "load_llama",
    "load_tokenizer",
    "logit_lens",
    "nearest_tokens",
    "quiet_transformers",
    "resolve_backend",
    "ties_embeddings",
]
