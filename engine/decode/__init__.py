"""The decode protocol and its implementations: our own loop over transformers
(`Decoder`: KV cache, sampling, text stream) behind `LocalEngine` / `LocalReply`,
and GGUF files on llama.cpp (`LlamaEngine`, the same loop over llama.cpp's logits).
`open_engine(spec)` (engine/decode/registry.py) is the one place a spec becomes an
engine: a backend for a local model, `RemoteEngine` for a URL. `ReplyDriver` drives a
reply for a front end: step mode, branch resume, fan-out, one route for failures.

Torch-free to import: the protocol types are plain; `Decoder`, `LocalEngine` and
the sampling functions import torch on first use. `RemoteEngine` (an
OpenAI-compatible server, `--engine URL`) is lazy too: it needs httpx, never torch.
"""

from typing import TYPE_CHECKING

from engine.decode.driver import (
    BranchFinished,
    BranchProgressed,
    DriverEvent,
    FanOutFinished,
    PromptRendered,
    ProposalMade,
    ReplyDriver,
    ReplyFailed,
    ReplyFinished,
    ReplyStarted,
    StepDecoded,
)
from engine.decode.fanout import fan_out_summary
from engine.decode.protocol import (
    Engine,
    FullDistributions,
    ModelInternals,
    ProgressFn,
    PromptScoring,
    PromptView,
    Reply,
    TokenizerAccess,
    TokenLookup,
    full_distributions,
    logprob_distribution,
    model_internals,
    prompt_scoring,
    step_unavailable,
    steps,
    token_lookup,
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
    from engine.decode.backends import BackendEngine
    from engine.decode.decoder import Decoder
    from engine.decode.llama import LlamaEngine
    from engine.decode.local import LocalEngine, LocalReply
    from engine.decode.registry import EngineSpec, RemoteSpec, backend_engine, open_engine
    from engine.decode.remote import Capabilities, RemoteEngine, RemoteReply

__getattr__ = lazy_exports(
    __name__,
    {
        "BackendEngine": "backends",
        "Capabilities": "remote",
        "Decoder": "decoder",
        "LlamaEngine": "llama",
        "LocalEngine": "local",
        "LocalReply": "local",
        "RemoteEngine": "remote",
        "RemoteReply": "remote",
        "EngineSpec": "registry",
        "RemoteSpec": "registry",
        "backend_engine": "registry",
        "open_engine": "registry",
    },
)

__all__ = [
    "BackendEngine",
    "Branch",
    "BranchFinished",
    "BranchPoint",
    "BranchProgressed",
    "BranchStats",
    "Capabilities",
    "Decoder",
    "DriverEvent",
    "Engine",
    "EngineSpec",
    "FanOutFinished",
    "FullDistributions",
    "LlamaEngine",
    "LocalEngine",
    "LocalReply",
    "ModelInternals",
    "ProgressFn",
    "PromptRendered",
    "PromptScoring",
    "PromptView",
    "ProposalMade",
    "RemoteEngine",
    "RemoteReply",
    "RemoteSpec",
    "Reply",
    "ReplyDriver",
    "ReplyFailed",
    "ReplyFinished",
    "ReplyResult",
    "ReplyStarted",
    "ReplyTree",
    "StepDecoded",
    "TextStream",
    "TokenLookup",
    "TokenTable",
    "TokenizerAccess",
    "backend_engine",
    "branch_stats",
    "fan_out_summary",
    "full_distributions",
    "logprob_distribution",
    "model_internals",
    "open_engine",
    "prompt_scoring",
    "reposition",
    "reseed",
    "run_reply",
    "shared_prefix",
    "step_unavailable",
    "steps",
    "token_lookup",
    "tokenizer_access",
]
