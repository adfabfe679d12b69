"""The decode protocol and its implementations: our own loop over transformers
(`Decoder`: KV cache, sampling, text stream) behind `LocalEngine` / `LocalReply`.

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
    from engine.decode.decoder import Decoder
    from engine.decode.local import LocalEngine, LocalReply

__getattr__ = lazy_exports(
    __name__, {"Decoder": "decoder", "LocalEngine": "local", "LocalReply": "local"}
)

__all__ = [
    "Decoder",
    "Engine",
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
    "model_internals",
    "run_reply",
    "steps",
    "tokenizer_access",
]
