"""Our own decode loop: one prefill, then one-token steps over an explicit KV cache.

`Decoder` is the local-transformers backend of the small decode protocol
(prefill / propose / step / rewind / cancel) the UI and CLI drive. Every step
yields a frozen `Step` with the raw and processed distributions' numbers, so the
inspector gets probabilities for free; iterating the decoder runs until a stop.

Why not ``model.generate()``: it hides the per-step distribution and cannot be
stepped, forced, rewound or cancelled between tokens. Parity with it (greedy
ids, processed scores, the multinomial draw) is checked by the tests.

The model itself sits behind a `ModelRunner` (forward ids on top of a cache,
crop the cache): `TransformersRunner` here, `LlamaRunner` (engine/decode/llama.py)
for GGUF files on llama.cpp. Everything else, sampling, numbers, text, is this
one loop, so both backends record the same numbers for the same logits.

The model forward for a committed token is run lazily, at the next `propose` or
`step`: a finished generation never pays for a forward it does not use, and a
rewind needs only one forward of the last kept token, never the prefix.
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from engine.decode.rules import finish_reason_after, prompt_problem, reply_summary
from engine.decode.sampling import (
    Stages,
    StepStats,
    choose,
    make_generator,
    process,
    summarize,
    why_dropped,
)
from engine.decode.textstream import TextStream, TokenTable
from engine.errors import GenerationError, InvalidParameterError
from engine.model.loading import LoadedModel
from engine.params import SamplingParams
from engine.records import (
    Candidate,
    FinishReason,
    GenerationSummary,
    Proposal,
    Step,
)


class ModelRunner(Protocol):
    """A model and its cache, as the loop needs them: one forward at a time."""

    def reset(self) -> None:
        """Start an empty cache (a new prefill)."""
        ...

    def forward(self, ids: list[int]) -> torch.Tensor:
        """Run `ids` on top of the cache; the last position's logits, [vocab] float32."""
        ...

    def cached(self) -> int:
        """How many positions the cache holds."""
        ...

    def crop(self, length: int) -> None:
        """Keep the first `length` positions of the cache, drop the rest."""
        ...


class DecodeModel(Protocol):
    """What the loop reads from a loaded model besides its runner."""

    @property
    def tokenizer(self) -> Any: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def context_window(self) -> int: ...
    @property
    def eos_token_ids(self) -> tuple[int, ...]: ...


class TransformersRunner:
    """A transformers causal LM over our growing KV cache (engine/decode/kv_cache.py)."""

    def __init__(self, model: Any, device: torch.device) -> None:
        self._model, self._device = model, device
        self._keep_one = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._cache: Any = None

    def reset(self) -> None:
        from engine.decode.kv_cache import new_cache

        self._cache = new_cache(self._model.config)

    def cached(self) -> int:
        return int(self._cache.get_seq_length()) if self._cache is not None else 0

    def crop(self, length: int) -> None:
        surplus = self.cached() - length
        if surplus > 0:
            self._cache.crop(-surplus)  # negative = drop that many (old and new transformers)

    def forward(self, ids: list[int]) -> torch.Tensor:
        """Only the last position goes through ``lm_head``."""
        input_ids = torch.tensor([ids], dtype=torch.long, device=self._device)  # [1, n]
        kwargs: dict[str, Any] = {"past_key_values": self._cache, "use_cache": True}
        if self._keep_one:
            kwargs["logits_to_keep"] = 1
        try:
            out = self._model(input_ids=input_ids, **kwargs)
        except torch.OutOfMemoryError as exc:
            raise GenerationError(f"out of memory on {self._device} during a decode step") from exc
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise GenerationError(
                    f"out of memory on {self._device} during a decode step"
                ) from exc
            raise
        logits: torch.Tensor = out.logits[0, -1].float()  # [vocab]
        return logits


@dataclass(frozen=True)
class _Draw:
    """The next token's distribution and the sampler's pick, before commit."""

    raw: torch.Tensor  # [vocab] float32 logits
    processed: torch.Tensor  # [vocab] float32, -inf where filtered
    stats: StepStats  # numbers for the sampled token
    proposal: Proposal
    seconds: float  # time spent producing this draw (forward included)


class Decoder:
    """A step-by-step generation over a `LoadedModel` with the given sampling params.

    `runner`: the model behind the loop (default: `loaded.model` on transformers).
    Not thread-safe: drive it from one thread; another thread may only set the
    cancel event (or call `cancel`).
    """

    def __init__(
        self,
        loaded: LoadedModel | DecodeModel,
        params: SamplingParams,
        cancel: threading.Event | None = None,
        *,
        runner: ModelRunner | None = None,
    ) -> None:
        self.loaded = loaded
        self.params = params
        self._device: torch.device = loaded.device
        if runner is None:
            assert isinstance(loaded, LoadedModel), (
                "a runner is needed for a non-transformers model"
            )
            runner = TransformersRunner(loaded.model, self._device)
        self._runner: ModelRunner = runner
        self._prefilled = False
        self._cancel = cancel if cancel is not None else threading.Event()
        self._eos = frozenset(int(i) for i in loaded.eos_token_ids)
        self._context = int(loaded.context_window)
        self._tokens = TokenTable(loaded.tokenizer)
        self._generator = make_generator(self._device, params.seed)
        self._seen: torch.Tensor | None = None  # [vocab] bool: ids in prompt + generated
        self._logits: torch.Tensor | None = None  # [vocab] float32, for the next position
        self._unforwarded: int | None = None  # last id in the sequence, not yet in the cache
        self._draw_cache: _Draw | None = None
        self._stream = TextStream(loaded.tokenizer, params.stop)
        self._prefill_seconds = 0.0
        self.prompt_ids: list[int] = []
        self.generated_ids: list[int] = []
        self.steps: list[Step] = []
        self.finish_reason: FinishReason | None = None

    # --- the protocol ----------------------------------------------------------------

    @torch.inference_mode()
    def prefill(self, prompt_ids: Sequence[int]) -> None:
        """Run the prompt once, filling the KV cache and the first logits.

        Raises `PromptTooLongError` before any work when the prompt leaves no
        room in the context window for one new token.
        """
        if self._prefilled:
            raise GenerationError("this decoder is already prefilled; start a new one")
        ids = [int(i) for i in prompt_ids]
        if (problem := prompt_problem(ids, self._context)) is not None:
            raise problem
        started = time.perf_counter()
        self._runner.reset()
        self._logits = self._runner.forward(ids)
        self._prefilled = True
        self._seen = torch.zeros(self._logits.shape[-1], dtype=torch.bool, device=self._device)
        self._mark_seen(ids)
        self.prompt_ids = ids
        self._prefill_seconds = time.perf_counter() - started

    @torch.inference_mode()
    def propose(self) -> Proposal:
        """The next token's candidates and the sampler's pick, without committing.

        A following `step()` commits exactly this draw (same random number).
        """
        self._check_can_step()
        return self._draw().proposal

    @torch.inference_mode()
    def step(self, force: int | None = None) -> Step:
        """Commit one token: the sampler's pick, or `force` (step-through choice)."""
        self._check_can_step()
        if force is not None:
            self._check_token(force)
        draw = self._draw()  # timed on its own (it may have run in propose())
        started = time.perf_counter()
        stats = draw.stats
        if force is not None and force != stats.token_id:
            stats = summarize(draw.raw, draw.processed, force, self.params.top_logprobs)
        token = stats.token_id
        self._commit(token)
        text = self._stream.push(token)
        reason = self._finish_reason_after(token)
        if reason is not None:
            text += self._stream.finish()
            self.finish_reason = reason
        step = Step(
            index=len(self.generated_ids) - 1,
            token_id=token,
            piece=self._tokens.piece(token),
            text=text,
            forced=force is not None,
            logprob=stats.logprob,
            rank=stats.rank,
            entropy=stats.entropy,
            processed_logprob=stats.processed_logprob,
            processed_rank=stats.processed_rank,
            processed_entropy=stats.processed_entropy,
            top=draw.proposal.top,
            elapsed_ms=(draw.seconds + time.perf_counter() - started) * 1000.0,
            special=self._tokens.is_special(token),
            token_bytes=self._tokens.token_bytes(token),
            finish_reason=reason,
        )
        self.steps.append(step)
        return step

    def reseed(self, seed: int) -> None:
        """A new sampling generator seeded with `seed`; the cache is kept."""
        self._generator = make_generator(self._device, seed)

    @torch.inference_mode()
    def rewind(self, n: int) -> None:
        """Drop the last `n` generated tokens and continue from there (a new branch).

        The KV cache is cropped, never recomputed: the next step runs one
        forward of the last kept token. A rewind also clears a previous cancel,
        since it starts a new branch the user asked for.
        """
        if not self._prefilled:
            raise GenerationError("nothing to rewind: call prefill() first")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(self.generated_ids):
            raise InvalidParameterError(
                "n", f"must be an integer in [0, {len(self.generated_ids)}], got {n!r}"
            )
        if n == 0:
            return
        keep = self.generated_ids[: len(self.generated_ids) - n]
        sequence = [*self.prompt_ids, *keep]
        self._runner.crop(len(sequence) - 1)
        self._unforwarded = sequence[-1]
        self._logits = None
        self._draw_cache = None
        self.generated_ids = keep
        self.steps = self.steps[: len(keep)]
        self.finish_reason = None
        self._cancel.clear()
        assert self._seen is not None
        self._seen.zero_()
        self._mark_seen(sequence)
        self._stream = TextStream.replay(self.loaded.tokenizer, self.params.stop, keep)

    @torch.inference_mode()
    def next_distribution(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Full raw and processed log-probabilities of the next token, [vocab] each.

        For views that need more than the recorded top-N (layer lens, compare,
        parity checks). Same draw as `propose`; returns copies on the CPU.
        """
        self._check_can_step()
        draw = self._draw()
        raw = torch.log_softmax(draw.raw, dim=-1)
        processed = torch.log_softmax(draw.processed, dim=-1)
        return raw.cpu().clone(), processed.cpu().clone()

    def cancel(self) -> None:
        """Ask the loop to stop before its next step (safe from any thread)."""
        self._cancel.set()

    def __iter__(self) -> Iterator[Step]:
        """Steps until a stop; a cancel ends it with finish reason ``cancelled``."""
        if not self._prefilled:
            raise GenerationError("call prefill() before iterating")
        while not self.done:
            yield self.step()

    # --- state -----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Finished, or cancelled: a cancel seen here ends the generation as
        ``cancelled`` (a rewind clears both and decoding can go on)."""
        if self.finish_reason is None and self._cancel.is_set() and self._prefilled:
            self.finish_reason = "cancelled"
        return self.finish_reason is not None

    @property
    def text(self) -> str:
        """The text emitted so far (the concatenation of the steps' deltas)."""
        return self._stream.text

    @property
    def prefill_seconds(self) -> float:
        return self._prefill_seconds

    def summary(self) -> GenerationSummary:
        """Throughput and usage of the finished generation (`reply_summary`: the one
        rule every engine reports by)."""
        return reply_summary(
            self.finish_reason,
            text=self.text,
            prompt_tokens=len(self.prompt_ids),
            steps=self.steps,
            prefill_ms=self._prefill_seconds * 1000.0,
        )

    # --- internals -------------------------------------------------------------------

    def _check_can_step(self) -> None:
        if not self._prefilled:
            raise GenerationError("call prefill() before stepping")
        if self.finish_reason is not None:
            raise GenerationError(
                f"the generation has finished ({self.finish_reason}); rewind to continue"
            )

    def _check_token(self, token: int) -> None:
        assert self._seen is not None
        vocab = self._seen.shape[0]
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab:
            raise InvalidParameterError(
                "force", f"must be a token id in [0, {vocab}), got {token!r}"
            )

    def _draw(self) -> _Draw:
        """Compute (once per position) the distributions and the sampler's pick."""
        if self._draw_cache is not None:
            return self._draw_cache
        started = time.perf_counter()
        raw = self._next_logits()
        assert self._seen is not None
        stages: Stages = []  # kept for `dropped_by`: no second run of the processors
        processed = process(raw, self.params, self._seen, stages=stages)
        sampled = choose(processed, self.params, self._generator)  # 0-d, on device
        stats = summarize(raw, processed, sampled, self.params.top_logprobs)
        proposal = Proposal(
            index=len(self.generated_ids),
            sampled=stats.token_id,
            top=self._candidates(stats, stages),
            entropy=stats.entropy,
            processed_entropy=stats.processed_entropy,
        )
        self._draw_cache = _Draw(raw, processed, stats, proposal, time.perf_counter() - started)
        return self._draw_cache

    def _candidates(self, stats: StepStats, stages: Stages) -> tuple[Candidate, ...]:
        return tuple(
            Candidate(
                token_id=token,
                piece=self._tokens.piece(token),
                logprob=lp,
                processed_logprob=plp,
                text=self._stream.peek(token),
                dropped_by=why,
            )
            for token, lp, plp, why in zip(
                stats.top_ids,
                stats.top_logprobs,
                stats.top_processed_logprobs,
                self._dropped_by(stats, stages),
                strict=True,
            )
        )

    def _dropped_by(self, stats: StepStats, stages: Stages) -> tuple[str | None, ...]:
        """Why each top candidate could not be picked (see `Candidate.dropped_by`),
        read from the processors' stages only when one of them was removed."""
        if not self.params.greedy and all(p > -math.inf for p in stats.top_processed_logprobs):
            return tuple(None for _ in stats.top_ids)
        return why_dropped(self.params, stages, stats.top_ids, stats.token_id)

    def _commit(self, token: int) -> None:
        self.generated_ids.append(token)
        self._mark_seen([token])
        self._unforwarded = token
        self._logits = None
        self._draw_cache = None

    def _finish_reason_after(self, token: int) -> FinishReason | None:
        return finish_reason_after(
            stopped=token in self._eos or self._stream.stopped is not None,
            generated=len(self.generated_ids),
            prompt_tokens=len(self.prompt_ids),
            max_new_tokens=self.params.max_new_tokens,
            context_window=self._context,
        )

    def _next_logits(self) -> torch.Tensor:
        if self._logits is None:
            assert self._unforwarded is not None
            self._logits = self._runner.forward([self._unforwarded])
            self._unforwarded = None
        return self._logits

    def _mark_seen(self, ids: Sequence[int]) -> None:
        """Track ids for the repetition penalty (skipped when there is none: hot path)."""
        assert self._seen is not None
        if self.params.repetition_penalty == 1.0:
            return
        vocab = self._seen.shape[0]
        index = torch.tensor([i for i in ids if 0 <= i < vocab], dtype=torch.long)
        self._seen[index.to(self._device)] = True
