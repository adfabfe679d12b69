"""The decode protocol and its implementations: our own loop over transformers
(`Decoder`: KV cache, sampling, text stream) behind `LocalEngine` / `LocalReply`,
and GGUF files on llama.cpp (`LlamaEngine`, the same loop over llama.cpp's logits).
`engine_for(spec)` picks the backend ``--backend`` asks for.

Torch-free to import: the protocol types are plain; `Decoder`, `LocalEngine` and
the sampling functions import torch on first use.
"""

from typing import TYPE_CHECKING

from engine.decode.protocol import (
    Engine,
    ModelInternals,
    ProgressFn,
    PromptView,
    Reply,
    TokenizerAccess,
    model_internals,
    steps,
    tokenizer_access,
)
from engine.decode.run import ReplyResult, run_reply
from engine.decode.textstream import TextStream, TokenTable
from engine.lazy import lazy_exports

if TYPE_CHECKING:
    from engine.decode.backends import BackendEngine, engine_for, new_engine
    from engine.decode.decoder import Decoder
    from engine.decode.llama import LlamaEngine
    from engine.decode.local import LocalEngine, LocalReply

__getattr__ = lazy_exports(
    __name__,
    {
        "BackendEngine": "backends",
        "Decoder": "decoder",
        "LlamaEngine": "llama",
        "LocalEngine": "local",
        "LocalReply": "local",
        "engine_for": "backends",
        "new_engine": "backends",
    },
)

__all__ = [
    "BackendEngine",
    "Decoder",
    "Engine",
    "LlamaEngine",
    "LocalEngine",
    "LocalReply",
    "ModelInternals",
    "ProgressFn",
    "PromptView",
    "Reply",
    "ReplyResult",
    "TextStream",
    "TokenTable",
    "TokenizerAccess",
    "engine_for",
    "model_internals",
    "new_engine",
    "run_reply",
    "steps",
    "tokenizer_access",
]
