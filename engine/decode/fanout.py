"""Fan-out as one batched run: K sampled continuations of one path, one forward per step.

The sequential fan-out (engine/decode/driver.py) rewinds one reply and samples K
continuations one after another: K times the decode. On transformers the K
continuations are rows of one batch instead (engine/decode/batch.py): the prompt and
the path so far are prefilled once and copied into K cache rows, then every step is
one forward of ``[K, 1]``; a row that stops leaves the batch. Each row is decoded by
its own `Decoder` (its seed, its sampling, its `Step` records) through `RowView`, a
`ModelRunner` that reads its row of the batch's logits, so the records are those of
the sequential fan-out (same processors, same random streams; logits equal within
batched float noise).

`batched_fan_out` yields what happens as it happens: ``("progress", finished_rows,
tokens)`` once per step and ``("branch", row, steps, finish_reason)`` as each row
stops; the driver turns them into its events. Torch-free to import; the work runs on
the engine's thread, one step per item.

K samples read as a distribution, not copies: `fan_out_summary` says what they did in
one line ("3 of 3 kept the reply", "6× Paris, 2× Lyon"); the Branches view folds
identical paths into one row with a count (`ReplyTree.repeats`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine.decode.rules import remaining_tokens
from engine.errors import LogitlabError
from engine.params import SamplingParams

if TYPE_CHECKING:
    import torch

    from engine.decode.batch import BatchRunner
    from engine.decode.decoder import Decoder
    from engine.records import Step

FanOutItem = tuple[Any, ...]  # ("progress", finished, tokens) | ("branch", row, steps, reason)


# the in-process models, by the module that defines each (not imported: none is loaded)
_IN_PROCESS = (
    ("engine.model.loading", "LoadedModel", "transformers"),
    ("engine.model.llama", "LlamaModel", "llama.cpp"),
)


def in_process(engine: object) -> str | None:
    """Which model `engine` runs in this process on its own thread ("transformers",
    "llama.cpp"), or None (a remote engine, or nothing loaded yet)."""
    if getattr(engine, "thread", None) is None:
        return None
    try:
        loaded = getattr(engine, "loaded", None)
    except LogitlabError:  # no model loaded yet
        return None
    for module, name, kind in _IN_PROCESS:
        found = sys.modules.get(module)
        if found is not None and isinstance(loaded, getattr(found, name)):
            return kind
    return None


def can_batch(engine: object) -> bool:
    """Whether `engine` runs a transformers model in this process (rows can share a batch)."""
    return in_process(engine) == "transformers"


class SharedBatch:
    """K rows of one `BatchRunner`, each read by its own decoder (`RowView`)."""

    def __init__(self, batch: BatchRunner, rows: int) -> None:
        self._batch, self._rows = batch, rows
        self._where: dict[int, int] = {}  # row -> its index in the batch now
        self._prompt: list[int] | None = None
        self._logits: torch.Tensor | None = None  # [live rows, vocab]

    def prefill(self, ids: list[int]) -> None:
        """One prefill of `ids`, copied into every row."""
        self._logits = self._batch.prefill([ids]).expand(self._rows, -1)  # [rows, vocab]
        self._batch.expand(self._rows)
        self._prompt = ids
        self._where = {row: row for row in range(self._rows)}

    def step(self, tokens: dict[int, int]) -> None:
        """One forward for the rows in `tokens` (row -> its last committed token); the
        other rows leave the batch."""
        live = sorted(tokens)
        if live != sorted(self._where):
            self._batch.select([self._where[row] for row in live])
            self._where = {row: i for i, row in enumerate(live)}
        self._logits = self._batch.step([tokens[row] for row in live])

    def logits(self, row: int, ids: list[int]) -> torch.Tensor:
        """Row `row`'s logits for its forward of `ids` (the prompt, or its last token)."""
        if self._prompt is None:
            self.prefill(ids)
        elif len(ids) != 1 and ids != self._prompt:
            raise RuntimeError("a fan-out row forwarded tokens the batch did not run")
        assert self._logits is not None
        return self._logits[self._where[row]]


class RowView:
    """One row of a `SharedBatch` as a `ModelRunner` (no rewind: a fan-out only adds)."""

    def __init__(self, shared: SharedBatch, row: int) -> None:
        self._shared, self._row = shared, row
        self._length = 0

    def reset(self) -> None:
        self._length = 0

    def forward(self, ids: list[int]) -> torch.Tensor:
        self._length += len(ids)
        return self._shared.logits(self._row, ids)

    def cached(self) -> int:
        return self._length

    def crop(self, length: int) -> None:
        if length < self._length:
            from engine.errors import GenerationError

            raise GenerationError("a fanned-out row cannot be rewound")


def batched_fan_out(
    engine: Any,
    prompt_ids: Sequence[int],
    target: Sequence[int],
    params: SamplingParams,
    seeds: Sequence[int],
    cancel: threading.Event,
) -> Iterator[FanOutItem]:
    """K = len(seeds) continuations of `prompt_ids` + `target`, sampled with `params`
    (seed per row) in one batch, on `engine`'s thread (see the module doc). Steps are
    numbered after `target`; a cancel ends every row as ``cancelled``."""
    from engine.decode.scoring import on_thread

    return on_thread(
        engine.thread,
        _run(engine.loaded, [*prompt_ids, *target], len(target), params, seeds, cancel),
    )


def _run(
    loaded: Any,
    ids: list[int],
    offset: int,
    params: SamplingParams,
    seeds: Sequence[int],
    cancel: threading.Event,
) -> Generator[FanOutItem, None, None]:
    from engine.decode.batch import BatchRunner, pad_id_of
    from engine.decode.decoder import Decoder

    pad = pad_id_of(loaded.tokenizer, loaded.eos_token_ids)
    shared = SharedBatch(BatchRunner(loaded.model, loaded.device, pad_id=pad), len(seeds))
    budget = remaining_tokens(params.max_new_tokens, offset)
    decoders: list[Decoder] = []
    for row, seed in enumerate(seeds):
        row_params = params.with_changes(seed=seed, max_new_tokens=budget)
        decoder = Decoder(loaded, row_params, cancel, runner=RowView(shared, row))
        decoder.prefill(ids)
        decoders.append(decoder)
    live = list(range(len(seeds)))
    finished = 0
    while live:
        if decoders[live[0]].steps:  # after the first round: one forward for all
            shared.step({row: decoders[row].generated_ids[-1] for row in live})
        for row in live:
            if not decoders[row].done:
                decoders[row].step()
        yield ("progress", finished, len(decoders[live[0]].steps))
        for row in [r for r in live if decoders[r].done]:
            live.remove(row)
            finished += 1
            steps: list[Step] = [replace(s, index=s.index + offset) for s in decoders[row].steps]
            yield ("branch", row, steps, decoders[row].finish_reason)


# --- reading K samples as a distribution -------------------------------------------------------


def fan_out_summary(
    reply: Sequence[int],
    at: int,
    continuations: Sequence[Sequence[int]],
    display: Callable[[int], str],
) -> str:
    """K continuations of `reply` from step `at` (whole paths) in one line: "3 of 3 kept
    the reply", or by the token each took at `at`, most first: "6× Paris, 2× Lyon"
    (with "5 of 8 kept the reply · " in front where some did)."""
    total = len(continuations)
    kept = sum(1 for c in continuations if list(c) == list(reply))
    if kept == total:
        return f"{kept} of {total} kept the reply"
    firsts: dict[int | None, int] = {}
    for c in continuations:
        if list(c) != list(reply):
            token = int(c[at]) if len(c) > at else None
            firsts[token] = firsts.get(token, 0) + 1
    parts = [
        f"{n}× {display(t).strip() or repr(display(t)) if t is not None else '(end)'}"
        for t, n in sorted(firsts.items(), key=lambda item: -item[1])
    ]
    head = f"{kept} of {total} kept the reply · " if kept else ""
    return head + ", ".join(parts)
