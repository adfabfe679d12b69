"""Frozen records the decode loop yields; the UI, the CLI and sessions read them.

Token ids are the source of truth; `text` is derived from the running id list.
`logprob`/`prob`/`rank`/`entropy` without a prefix are of the **raw**
distribution (softmax of the model's logits, what the model believes); the
`processed_*` fields are of the distribution actually sampled from, after
repetition penalty, temperature, top-k, top-p and min-p. A token removed by a
filter has ``processed_logprob == -inf`` and ``processed_prob == 0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "cancelled", "context"]
FINISH_REASONS: tuple[str, ...] = ("stop", "length", "cancelled", "context")
# why a candidate could not be picked: the processor that removed it (in the order
# they run), or "greedy" (temperature 0 picks only the argmax)
DROP_REASONS: tuple[str, ...] = ("top-k", "top-p", "min-p", "greedy")


class _Probabilities:
    """`prob` and `processed_prob` from a record's `logprob` and `processed_logprob`."""

    logprob: float
    processed_logprob: float

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    @property
    def processed_prob(self) -> float:
        return math.exp(self.processed_logprob) if self.processed_logprob > -math.inf else 0.0


@dataclass(frozen=True)
class Candidate(_Probabilities):
    """One entry of a step's top-N: a token the model could have chosen."""

    token_id: int
    piece: str  # the raw vocabulary piece ("Ġthe", "<|im_end|>")
    logprob: float  # raw
    processed_logprob: float  # -inf when a filter removed it
    text: str = ""  # what this token would add to the text, decoded in context
    # why the sampler could not pick it: the processor that removed it ("top-k",
    # "top-p", "min-p"), "greedy" (not the argmax), None when it survived (or unknown)
    dropped_by: str | None = None


@dataclass(frozen=True)
class Step(_Probabilities):
    """One generated token with everything the inspector shows about it."""

    index: int
    token_id: int
    piece: str
    text: str  # the new complete-UTF-8 text this step adds (may be "")
    forced: bool
    logprob: float
    rank: int  # 1-based rank under the raw distribution
    entropy: float  # nats, raw distribution
    processed_logprob: float
    processed_rank: int
    processed_entropy: float
    top: tuple[Candidate, ...] = ()
    elapsed_ms: float = 0.0
    special: bool = False
    token_bytes: bytes = b""
    finish_reason: FinishReason | None = None  # set on the step that ended generation


@dataclass(frozen=True)
class Proposal:
    """The distribution over the next token before it is chosen (step-through mode).

    `sampled` is the token the sampler would pick; accepting it or forcing
    another goes through `Decoder.step(force=...)`.
    """

    index: int
    sampled: int
    top: tuple[Candidate, ...]
    entropy: float
    processed_entropy: float


@dataclass(frozen=True)
class TokenProbe(_Probabilities):
    """Any token's numbers at one position, recomputed from the full distribution
    (a token outside the recorded top-N included). Same meanings as a `Step`'s."""

    token_id: int
    logprob: float  # raw
    rank: int  # 1-based, raw
    processed_logprob: float  # -inf when a processor removed it
    processed_rank: int
    dropped_by: str | None = None  # as `Candidate.dropped_by`


@dataclass(frozen=True)
class PromptScores:
    """How the model scored each prompt token in context (teacher-forced, one forward):
    entry i is token i's raw log-probability and rank given tokens 0..i-1; the first
    token has no context, so its entries are None."""

    ids: tuple[int, ...]
    logprobs: tuple[float | None, ...]
    ranks: tuple[int | None, ...]

    def prob(self, position: int) -> float | None:
        logprob = self.logprobs[position]
        return None if logprob is None else math.exp(logprob)

    def surprisal_bits(self, position: int) -> float | None:
        """-log2 p: how surprised the model was by the token, in bits."""
        logprob = self.logprobs[position]
        return None if logprob is None else -logprob / math.log(2)

    @classmethod
    def from_scores(cls, ids: Sequence[int], scores: Sequence[TokenScore]) -> PromptScores:
        """The workbench's view of `PromptScoring.score(ids)` (positions 1.., in order)."""
        logprobs: list[float | None] = [None] * len(ids)
        ranks: list[int | None] = [None] * len(ids)
        for s in scores:
            logprobs[s.position] = s.logprob
            ranks[s.position] = s.rank if s.rank > 0 else None
        return cls(ids=tuple(int(i) for i in ids), logprobs=tuple(logprobs), ranks=tuple(ranks))


@dataclass(frozen=True)
class ScoredCandidate:
    """One of a scored position's top-N: a token the model expected there (raw)."""

    token_id: int
    logprob: float  # raw
    piece: str = ""  # the raw vocabulary piece, where the engine knows it ("" otherwise)

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)


@dataclass(frozen=True)
class TokenScore:
    """How the model scored the token at `position` of a text given the tokens before
    it (teacher forcing): what `PromptScoring.score` returns, one per scored position.

    `logprob`, `rank` and `entropy` are of the raw distribution at that position (the
    softmax of the logits after token ``position - 1``), as a `Step`'s are. `rank` is
    1-based (1 + how many tokens score strictly higher); 0 where unknown (a remote
    server that reports only its top-N). `entropy` is in nats; NaN where unknown.
    `top` is the N most likely tokens there, most likely first.
    """

    position: int
    token_id: int
    logprob: float
    rank: int
    entropy: float
    top: tuple[ScoredCandidate, ...] = ()
    piece: str = ""  # the raw vocabulary piece, where the engine knows it ("" otherwise)

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    @property
    def nll(self) -> float:
        """Negative log-likelihood, nats: what perplexity averages."""
        return -self.logprob

    @property
    def surprisal_bits(self) -> float:
        """-log2 p: how surprised the model was by the token, in bits."""
        return -self.logprob / math.log(2)


@dataclass(frozen=True)
class ScoreSummary:
    """Totals over scored tokens: `tokens` scored, `nll_sum` nats in all.

    `nll` is the mean nats per scored token, `ppl` = exp(nll). `bits_per_byte(n)` is
    the total in bits over `n` UTF-8 bytes of the scored text.
    """

    tokens: int = 0
    nll_sum: float = 0.0

    @classmethod
    def of(cls, scores: Sequence[TokenScore]) -> ScoreSummary:
        return cls(len(scores), math.fsum(-s.logprob for s in scores))

    def plus(self, scores: Sequence[TokenScore]) -> ScoreSummary:
        more = ScoreSummary.of(scores)
        return ScoreSummary(self.tokens + more.tokens, self.nll_sum + more.nll_sum)

    @property
    def nll(self) -> float:
        return self.nll_sum / self.tokens if self.tokens else math.nan

    @property
    def ppl(self) -> float:
        return math.exp(self.nll) if self.tokens else math.nan

    def bits_per_byte(self, n_bytes: int) -> float:
        return self.nll_sum / math.log(2) / n_bytes if n_bytes > 0 else math.nan


@dataclass(frozen=True)
class GenerationSummary:
    """What a finished generation reports: the JSONL summary object's data."""

    finish_reason: FinishReason
    text: str
    prompt_tokens: int
    completion_tokens: int
    tokens_per_second: float
    time_to_first_token_ms: float
    token_ids: tuple[int, ...] = field(default=())


def decode_rate(step_ms: Sequence[float], prefill_ms: float) -> float:
    """Tokens per second of decoding, the one formula every front end shows.

    The tokens after the first over the time after it (the prefill and the first
    token are reported apart, as time to first token), or 1 / TTFT for a
    one-token answer. `step_ms` are the steps' compute times (`Step.elapsed_ms`):
    time spent waiting for a person in step mode is not in them.
    """
    if len(step_ms) > 1 and (later := sum(step_ms[1:])) > 0:
        return 1000.0 * (len(step_ms) - 1) / later
    ttft = prefill_ms + (step_ms[0] if step_ms else 0.0)
    return 1000.0 * len(step_ms) / ttft if ttft > 0 else 0.0
