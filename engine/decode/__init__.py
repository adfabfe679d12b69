"""The decode protocol and its implementations: our own loop over transformers
(`Decoder`: KV cache, sampling, text stream) behind `LocalEngine` / `LocalReply`.

Torch-free to import: the protocol types are plain; `Decoder`, `LocalEngine` and
the sampling functions import torch on first use. `RemoteEngine` (an
OpenAI-compatible server, `--engine URL`) is lazy too: it needs httpx, never torch.
"""

from typing import TYPE_CHECKING

from engine.decode.protocol import (
    Engine,
    ModelInternals,
    ProgressFn,
    PromptView,
    Reply,
    TokenizerAccess,
    logprob_distribution,
    model_internals,
    step_unavailable,
    steps,
    tokenizer_access,
)
from engine.decode.run import ReplyResult, run_reply
from engine.decode.textstream import TextStream, TokenTable
from engine.decode.tree import (
    Branch,
    BranchPoint,
    BranchStats,
    ReplyTree,
    branch_stats,
    reposition,
    reseed,
    shared_prefix,
)
from engine.lazy import lazy_exports

if TYPE_CHECKING:
    from engine.decode.decoder import Decoder
    from engine.decode.local import LocalEngine, LocalReply
    from engine.decode.remote import Capabilities, RemoteEngine, RemoteReply

__getattr__ = lazy_exports(
    __name__,
    {
        "Decoder": "decoder",
        "LocalEngine": "local",
        "LocalReply": "local",
        "Capabilities": "remote",
        "RemoteEngine": "remote",
        "RemoteReply": "remote",
    },
)

__all__ = [
    "Branch",
    "BranchPoint",
    "BranchStats",
    "Capabilities",
    "Decoder",
    "Engine",
    "LocalEngine",
    "LocalReply",
    "ModelInternals",
    "ProgressFn",
    "PromptView",
    "RemoteEngine",
    "RemoteReply",
    "Reply",
    "ReplyResult",
    "ReplyTree",
    "TextStream",
    "TokenTable",
    "TokenizerAccess",
    "branch_stats",
    "logprob_distribution",
    "model_internals",
    "reposition",
    "reseed",
    "run_reply",
    "shared_prefix",
    "step_unavailable",
    "steps",
    "tokenizer_access",
]
