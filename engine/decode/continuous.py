"""Continuous batching: replies that join and leave one running batch, one forward per step.

A server holds many replies at once. Decoded one after another, the sixteenth waits
for fifteen; decoded as rows of one batch (engine/decode/batch.py), every step is
one forward of ``[rows, 1]``, which on a memory-bound CPU or GPU costs little more
than one row's. `ContinuousBatch.advance` is one step of the batch: rows whose reply
has ended (finished, or cancelled since) leave it, the rows still running take one
batched decode step, the newcomers are prefilled among themselves and merged in
(`BatchRunner.join`: left padding, the mask and positions from the mask, as the seed
tutorial's padding lesson teaches), and then every row samples its next token.

Each row is decoded by its own `Decoder` (its sampling settings, its seed, its `Step`
records) through `BatchRow`, a `ModelRunner` that hands the decoder the logits the
batch computed for its row: the records are those of the reply run alone (same
processors, same random stream; logits equal within batched float noise, ~1e-5 in
float32). This is the pattern of the batched fan-out (engine/decode/fanout.py), with
rows that come and go.

The rows run on a `Rows`: a `BatchRunner` on transformers, or `LlamaSequences` on
llama.cpp (engine/decode/llama_batch.py: a sequence id per row, no padding), whose
rows are sized when it is made (``max_rows``, ``row_cells``): there a newcomer waits
while the rows are full and one too long for a row is refused with `RunsAlone`.

Call everything on the engine's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from engine.decode.rules import prompt_problem, reply_summary
from engine.errors import GenerationError
from engine.params import SamplingParams
from engine.records import GenerationSummary, Step

if TYPE_CHECKING:
    import torch

    from engine.decode.decoder import Decoder
    from engine.model.loading import LoadedModel


class BatchRow:
    """One row of a `ContinuousBatch` as a `ModelRunner`: `forward` returns the logits
    the batch computed for this row (its prompt's at the join, its last token's at each
    step). No rewind: a served reply only adds."""

    def __init__(self) -> None:
        self.pending: torch.Tensor | None = None  # [vocab] float32, set by the batch
        self._length = 0

    def reset(self) -> None:
        self._length = 0

    def forward(self, ids: list[int]) -> torch.Tensor:
        if self.pending is None:
            raise GenerationError("a batched row forwarded tokens the batch did not run")
        logits, self.pending = self.pending, None
        self._length += len(ids)
        return logits

    def cached(self) -> int:
        return self._length

    def crop(self, length: int) -> None:
        if length < self._length:
            raise GenerationError("a reply decoded in a shared batch cannot be rewound")


@dataclass(frozen=True)
class Newcomer:
    """A reply asking to join: `key` names it to the caller (a server's job)."""

    key: Any
    prompt_ids: Sequence[int]
    params: SamplingParams
    cancel: threading.Event


@dataclass(eq=False)
class Member:
    """A reply in the batch: its decoder and what the batch adds to its records."""

    key: Any
    prompt_ids: list[int]
    decoder: Decoder
    row: BatchRow
    prefill_ms: float = 0.0
    wait_ms: float = 0.0  # the shared forward this step waited for, added to its elapsed_ms
    steps: list[Step] = field(default_factory=list)

    def summary(self) -> GenerationSummary:
        """As a reply alone reports it (`reply_summary`), with the batch's timings."""
        return reply_summary(
            self.decoder.finish_reason,
            text=self.decoder.text,
            prompt_tokens=len(self.prompt_ids),
            steps=self.steps,
            prefill_ms=self.prefill_ms,
        )


@dataclass(frozen=True)
class Advanced:
    """What one `advance` did: the steps made (key, step) in row order, the members that
    left (finished or cancelled: read their steps and summary), the newcomers refused,
    and those deferred (keys, in order: no room in the rows' cache yet; offer them again)."""

    steps: list[tuple[Any, Step]]
    left: list[Member]
    refused: list[tuple[Any, Exception]]
    deferred: list[Any] = field(default_factory=list)


class Rows(Protocol):
    """What a `ContinuousBatch` runs its rows on: `BatchRunner` (transformers, one padded
    KV cache) or `LlamaSequences` (llama.cpp, a sequence id per row). Optionally
    ``max_rows`` (rows at once) and ``row_cells`` (tokens one row holds): see
    `ContinuousBatch`."""

    def join(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor: ...
    def step(self, tokens: Sequence[int]) -> torch.Tensor: ...
    def select(self, keep: Sequence[int]) -> None: ...
    def compact(self) -> None: ...
    def clear(self) -> None: ...


class RunsAlone(Exception):
    """A newcomer needs more tokens (its prompt and ``max_new_tokens``, within the
    context window) than a row holds: its caller runs it outside the batch."""


class ContinuousBatch:
    """Replies decoded as rows that they join and leave (`Rows`: a `BatchRunner` unless
    given). Where the rows are sized (``max_rows``, ``row_cells``), a newcomer is
    deferred while the rows are full, with every newcomer after it (arrival order), and
    one that needs more than ``row_cells`` tokens is refused with `RunsAlone`."""

    def __init__(self, loaded: LoadedModel, rows: Rows | None = None) -> None:
        self.loaded = loaded
        if rows is None:
            from engine.decode.batch import BatchRunner, pad_id_of

            pad = pad_id_of(loaded.tokenizer, loaded.eos_token_ids)
            rows = BatchRunner(loaded.model, loaded.device, pad_id=pad)
        self._batch: Rows = rows
        self._max_rows: int | None = getattr(rows, "max_rows", None)
        self._row_cells: int | None = getattr(rows, "row_cells", None)
        self.members: list[Member] = []  # in the batch's row order

    def __len__(self) -> int:
        return len(self.members)

    def advance(self, newcomers: Sequence[Newcomer] = ()) -> Advanced:
        """One step of the batch (see the module doc): leave, step, join, sample."""
        left = self._leave()
        if self.members:
            tokens = [m.decoder.generated_ids[-1] for m in self.members]
            started = time.perf_counter()
            logits = self._batch.step(tokens)  # [rows, vocab]
            waited = (time.perf_counter() - started) * 1000.0
            for i, member in enumerate(self.members):
                member.row.pending, member.wait_ms = logits[i], waited
        refused, deferred = self._join(newcomers)
        steps: list[tuple[Any, Step]] = []
        for member in self.members:
            if member.decoder.done:  # cancelled since the step began: it leaves next
                continue
            step = member.decoder.step()
            step = replace(step, elapsed_ms=step.elapsed_ms + member.wait_ms)
            member.steps.append(step)
            steps.append((member.key, step))
        return Advanced(steps, left + self._leave(), refused, deferred)

    def close(self) -> None:
        """Let go of the rows' memory now (a llama.cpp context's KV cache is allocated
        whole), not when the batch is collected."""
        self.members = []
        close = getattr(self._batch, "close", None)
        if close is not None:
            close()

    def abandon(self) -> list[Member]:
        """Drop every row (the batch failed): the members, for the caller to report."""
        members, self.members = self.members, []
        self._batch.clear()
        return members

    def _join(self, newcomers: Sequence[Newcomer]) -> tuple[list[tuple[Any, Exception]], list[Any]]:
        refused: list[tuple[Any, Exception]] = []
        joining: list[Member] = []
        deferred: list[Any] = []
        for n in newcomers:
            ids = [int(i) for i in n.prompt_ids]
            problem: Exception | None = prompt_problem(ids, int(self.loaded.context_window))
            if problem is None and self._row_cells is not None:
                needs = min(len(ids) + n.params.max_new_tokens, int(self.loaded.context_window))
                if needs > self._row_cells:
                    problem = RunsAlone(f"{needs} tokens; a row holds {self._row_cells}")
            if problem is not None:
                refused.append((n.key, problem))
                continue
            full = self._max_rows is not None and len(self.members) + len(joining) >= self._max_rows
            if deferred or full:
                deferred.append(n.key)
                continue
            joining.append(member_of(self.loaded, n))
        if not joining:
            return refused, deferred
        started = time.perf_counter()
        logits = self._batch.join([m.prompt_ids for m in joining])  # [new rows, vocab]
        prefill_ms = (time.perf_counter() - started) * 1000.0
        for i, member in enumerate(joining):
            member.row.pending, member.prefill_ms = logits[i], prefill_ms
            member.decoder.prefill(member.prompt_ids)
        self.members += joining
        return refused, deferred

    def _leave(self) -> list[Member]:
        """Rows whose reply has ended leave the batch (their cache lines and columns)."""
        ended = [m.decoder.done for m in self.members]  # read once: a cancel may land now
        if not any(ended):
            return []
        done = [m for m, end in zip(self.members, ended, strict=True) if end]
        keep = [i for i, end in enumerate(ended) if not end]
        self.members = [self.members[i] for i in keep]
        if keep:
            self._batch.select(keep)
            self._batch.compact()
        else:
            self._batch.clear()
        return done


def member_of(loaded: LoadedModel, newcomer: Newcomer) -> Member:
    """A reply's decoder over its own `BatchRow`, not yet prefilled."""
    from engine.decode.decoder import Decoder

    row = BatchRow()
    decoder = Decoder(loaded, newcomer.params, newcomer.cancel, runner=row)
    return Member(newcomer.key, [int(i) for i in newcomer.prompt_ids], decoder, row)


def one_token_reply(
    loaded: LoadedModel, newcomer: Newcomer, logits: torch.Tensor, prefill_ms: float
) -> Member:
    """A reply of one token (``max_new_tokens`` 1) sampled from `logits`, its prompt's
    last row computed elsewhere (a batched prompt pass: engine/decode/batch_scoring.py):
    it never takes a row of the batch. Its step is in ``steps``; it has finished."""
    member = member_of(loaded, newcomer)
    member.row.pending, member.prefill_ms = logits, prefill_ms
    member.decoder.prefill(member.prompt_ids)
    member.steps.append(member.decoder.step())
    return member
