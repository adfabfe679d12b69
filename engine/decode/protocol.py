"""The decode protocol every front end drives: an `Engine` and the `Reply` it starts.

An engine loads and describes a model, renders a prompt and starts replies; a
reply is decoded one `prefill` and then `propose` / `step(force)` at a time, can
be rewound and cancelled, and reports a `GenerationSummary`. The workbench, the
CLI and the server use only these names, so another implementation (llama.cpp,
an OpenAI-compatible server) plugs in under all of them. Methods may block:
front ends with an event loop call them from a worker thread.

Optional capabilities (`ModelInternals`, `TokenizerAccess`, `TokenLookup`,
`PromptScoring`, `FullDistributions`) are protocols an engine may implement; a
front end asks through the helper of the same name (`prompt_scoring(engine)`...),
which returns the engine or raises a one-line `FeatureUnavailableError`.

Scoring (`PromptScoring.score`): for a token path ``ids`` and each position ``p`` in
``start .. len(ids) - 1``, the raw logprob of ``ids[p]`` given ``ids[:p]``, its
1-based rank, the entropy (nats) of that distribution and its top-N, as
`engine.records.TokenScore` records in position order. The first token is never
scored (no context). Engines compute it in chunks so memory stays bounded, and
reduce logits to records in one shared place, engine/decode/scoring.py
(`score_logits`; `check_request` is the argument rule). `FullDistributions` is the
lower level under it: the whole float32 log-softmax row of every position, chunk by
chunk (the compare view reads two models' rows on the same path).

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
    Proposal,
    Step,
    TokenProbe,
    TokenScore,
)
from engine.tokens.chat import ChatMessage
from engine.tokens.views import TokenInfo

if TYPE_CHECKING:
    import torch

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
    """An engine that can score a token path against itself (teacher forcing): the
    Prompt tab's surprisal, `logitlab score`, the server's ``echo`` + ``logprobs``.

    Implemented by the transformers engine (`LocalEngine`), llama.cpp (`LlamaEngine`)
    and, where the server can score a prompt, the remote engine; `BackendEngine`
    offers it when its current backend does. `PromptScores.from_scores(ids, scores)`
    turns the records into the workbench's per-position view.
    """

    def score(self, ids: Sequence[int], *, top: int = 0, start: int = 1) -> tuple[TokenScore, ...]:
        """One `TokenScore` per position ``start .. len(ids) - 1``, in order: the raw
        logprob, 1-based rank and entropy (nats) of ``ids[p]`` given ``ids[:p]``, and
        the `top` (0..50) most likely tokens there.

        The whole of `ids` is the context (it must fit the context window); `start`
        only skips reporting earlier positions (a sliding window scores its new
        tokens), ``start == len(ids)`` reports none. Computed in chunks (memory
        bounded by a chunk's ``[chunk, vocab]`` rows), on the engine's thread; blocks.
        Bad arguments raise `InvalidParameterError`; equal to one full forward of
        `ids` within float32 noise (transformers: 1e-4 on logprobs).
        """
        ...


@runtime_checkable
class FullDistributions(Protocol):
    """An engine that can give the whole next-token distribution at every position of
    a token path (transformers and llama.cpp; not a remote server)."""

    def logprob_rows(
        self, ids: Sequence[int], start: int = 1, *, next_token: bool = False
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first_position, rows)`` chunk by chunk, positions ascending and contiguous:
        ``rows`` is float32 ``[n, vocab]`` log-softmax on the CPU, row ``i`` the raw
        distribution over the token at position ``first_position + i`` given
        ``ids[:first_position + i]``. Positions run ``start .. len(ids) - 1``, and
        ``len(ids)`` too with `next_token` (the distribution after the last id).

        Each chunk is computed on the engine's thread when the iterator is advanced
        (a chunk's rows are at most `scoring.ROW_BUDGET` bytes); the caller's torch
        work on them runs on its own thread (wrap it in ``engine.thread.call`` to
        keep torch on one thread, see engine/model/thread.py). Consume or close the
        iterator before other work on the same engine: llama.cpp's one KV cache is
        shared, and an interleaved reply costs a re-evaluation of the path.
        """
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
    """`engine` as a `PromptScoring`, or a FeatureUnavailableError saying why not.

    An engine that has a `score` method but cannot use it now (a remote server that
    offers neither ``prompt_logprobs`` nor ``echo`` with ``logprobs``) may define
    ``score_unavailable() -> str | None``: its line is the refusal."""
    if isinstance(engine, PromptScoring):
        check = getattr(engine, "score_unavailable", None)
        why = check() if callable(check) else None
        if why is None:
            return engine
        raise FeatureUnavailableError(why)
    raise FeatureUnavailableError(
        f"this engine ({_name(engine)}) cannot score the prompt: it returns logits "
        "for the last position only"
    )


def full_distributions(engine: object) -> FullDistributions:
    """`engine` as a `FullDistributions`, or a FeatureUnavailableError saying why not."""
    if isinstance(engine, FullDistributions):
        return engine
    raise FeatureUnavailableError(
        f"this engine ({_name(engine)}) cannot give whole distributions: it reports "
        "only the top candidates"
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
