"""The decode protocol every front end drives: an `Engine` and the `Reply` it starts.

An engine loads and describes a model, renders a prompt and starts replies; a
reply is decoded one `prefill` and then `propose` / `step(force)` at a time, can
be rewound and cancelled, and reports a `GenerationSummary`. The workbench, the
CLI and the server use only these names, so another implementation (llama.cpp,
an OpenAI-compatible server) plugs in under all of them. Methods may block:
front ends with an event loop call them from a worker thread.

Torch-free on purpose: importing the protocol costs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from engine.errors import FeatureUnavailableError
from engine.model.description import ModelDescription
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from engine.records import (
    FinishReason,
    GenerationSummary,
    PromptScores,
    Proposal,
    Step,
    TokenProbe,
)
from engine.tokens.chat import ChatMessage
from engine.tokens.views import TokenInfo

if TYPE_CHECKING:
    from engine.model.embeddings import Neighbour
    from engine.model.lens import LensResult
    from engine.tokens.vocab import VocabIndex

# (stage, fraction 0..1, detail): a load's progress, without importing torch
ProgressFn = Callable[[str, float, str], None]


@dataclass(frozen=True)
class PromptView:
    """A rendered chat prompt as the inspector shows it: the engine's own token
    views (ids, pieces, display text, special flags, origins), the context window,
    what the injection guard said, and the model's special tokens."""

    tokens: tuple[TokenInfo, ...]
    context_window: int
    warnings: tuple[str, ...] = ()
    special_tokens: Mapping[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.tokens)

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]


class Reply(Protocol):
    """One reply being decoded. Not thread-safe: drive it from one thread; any
    thread may call `cancel` (the loop stops between steps)."""

    prompt_tokens: int

    def prefill(self) -> float:
        """Run the prompt (and any kept prefix) through the model; the time it took in ms."""
        ...

    def propose(self) -> Proposal:
        """The next token's distribution and the sampler's pick, before committing it."""
        ...

    def step(self, force: int | None = None) -> Step:
        """Commit the next token (the sampled one, or `force`) and describe it."""
        ...

    def rewind(self, n: int) -> None:
        """Drop the last `n` tokens of the reply (a kept prefix included)."""
        ...

    def cancel(self) -> None: ...

    @property
    def done(self) -> bool: ...

    @property
    def finish_reason(self) -> FinishReason | None: ...

    def summary(self) -> GenerationSummary: ...


class Engine(Protocol):
    """Everything a front end needs from a model, wherever it runs."""

    def load(self, spec: ModelSpec, progress: ProgressFn | None = None) -> ModelDescription:
        """Load (or connect to) the model `spec` names; replaces any model held before."""
        ...

    def render_prompt(
        self, messages: Sequence[ChatMessage], *, allow_special: bool = False
    ) -> PromptView:
        """The chat template's rendering of `messages` as tokens."""
        ...

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Plain text (no chat template) to ids, with the special-token guard."""
        ...

    def token_display(self, token_id: int) -> str:
        """How a token shows: special tokens as written, others with visible whitespace."""
        ...

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes a token stands for (byte-level pieces decoded)."""
        ...

    def start(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        allow_special: bool = False,
        cancel: threading.Event | None = None,
        prefix: Sequence[int] = (),
    ) -> Reply:
        """A reply to `messages`. `prefix`: ids of the reply generated before (a stored
        reply being branched): prefilled with the prompt, steps numbered after it."""
        ...

    def start_ids(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        cancel: threading.Event | None = None,
        prefix: Sequence[int] = (),
    ) -> Reply:
        """A reply continuing exactly these prompt ids (no template, no re-tokenizing)."""
        ...


def steps(reply: Reply) -> Iterator[Step]:
    """Every step of `reply` until it stops (prefill first if nobody has)."""
    while not reply.done:
        yield reply.step()


# --- optional capabilities: an engine offers them or a front end says so in one line ---


@runtime_checkable
class ModelInternals(Protocol):
    """An engine that can look inside its model (hidden states, embedding rows)."""

    def lens(
        self, ids: Sequence[int], position: int = -1, *, top: int = 10, target: int | None = None
    ) -> LensResult:
        """The layer lens at `position` of `ids`: each layer's prediction of what follows."""
        ...

    def nearest(self, token_id: int, n: int = 10) -> tuple[Neighbour, ...]:
        """The `n` tokens nearest `token_id` by input-embedding cosine, itself first."""
        ...

    def ties_embeddings(self) -> bool:
        """Whether the input and output embeddings are one matrix."""
        ...


@runtime_checkable
class TokenizerAccess(Protocol):
    """An engine whose tokenizer runs here: token views of any text, the vocabulary."""

    def text_tokens(self, text: str, *, allow_special: bool = False) -> tuple[TokenInfo, ...]:
        """Plain text (no template) as token views, with the special-token guard."""
        ...

    def vocabulary(self) -> VocabIndex:
        """The vocabulary index (built on first use)."""
        ...


@runtime_checkable
class TokenLookup(Protocol):
    """An engine that can recompute a next-token distribution in full: any token's
    numbers at any position, not only the top-N a step recorded."""

    def token_probabilities(
        self, ids: Sequence[int], params: SamplingParams, tokens: Sequence[int]
    ) -> tuple[TokenProbe, ...]:
        """Raw and processed numbers of each of `tokens` as the token after `ids`,
        processed with `params` (the repetition penalty counting every id in `ids`)."""
        ...


@runtime_checkable
class PromptScoring(Protocol):
    """An engine that can score a prompt against itself (teacher forcing)."""

    def prompt_scores(self, ids: Sequence[int]) -> PromptScores:
        """Each token's raw log-probability and rank given the ones before it."""
        ...


def model_internals(engine: object) -> ModelInternals:
    """`engine` as a `ModelInternals`, or a FeatureUnavailableError saying why not."""
    if isinstance(engine, ModelInternals):
        return engine
    raise FeatureUnavailableError(
        f"this engine ({_name(engine)}) cannot show hidden states or embeddings"
    )


def tokenizer_access(engine: object) -> TokenizerAccess:
    """`engine` as a `TokenizerAccess`, or a FeatureUnavailableError saying why not."""
    if isinstance(engine, TokenizerAccess):
        return engine
    raise FeatureUnavailableError(
        f"this engine ({_name(engine)}) has no local tokenizer to explore"
    )


def token_lookup(engine: object) -> TokenLookup:
    """`engine` as a `TokenLookup`, or a FeatureUnavailableError saying why not."""
    if isinstance(engine, TokenLookup):
        return engine
    raise FeatureUnavailableError(
        f"this engine ({_name(engine)}) cannot recompute a distribution: "
        "only the top candidates it reported are known"
    )


def prompt_scoring(engine: object) -> PromptScoring:
    """`engine` as a `PromptScoring`, or a FeatureUnavailableError saying why not."""
    if isinstance(engine, PromptScoring):
        return engine
    raise FeatureUnavailableError(
        f"this engine ({_name(engine)}) cannot score the prompt: it returns logits "
        "for the last position only"
    )


def step_unavailable(engine: object) -> str | None:
    """Why step-through (and forcing, branching) cannot run on `engine`, in one line;
    None where it can. An engine that cannot offer it has a `step_unavailable()`."""
    check = getattr(engine, "step_unavailable", None)
    return check() if callable(check) else None


def logprob_distribution(engine: object) -> str:
    """Which distribution a `Step.logprob` from `engine` is of: "raw" (local), or what a
    remote server reports ("raw", "processed", "unknown")."""
    caps = getattr(engine, "capabilities_or_none", None)
    found = caps() if callable(caps) else None
    if found is None:
        return "raw"
    distribution = str(found.distribution)
    return "raw" if distribution == "raw+processed" else distribution


def _name(engine: object) -> str:
    """The backend an engine runs ("llama.cpp"), else its class name."""
    backend = getattr(engine, "backend", None)
    return backend if isinstance(backend, str) else type(engine).__name__
