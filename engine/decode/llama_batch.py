"""Several replies in one llama.cpp context: a sequence id per reply, one decode per step.

`LlamaSequences` is the llama.cpp counterpart of `BatchRunner` under a
`ContinuousBatch` (engine/decode/continuous.py): the rows of the batch are sequences
of their own llama.cpp context (``n_seq_max`` rows, each with its own KV cells),
made beside the engine's own context on the same weights. `join`
decodes the newcomers' prompts (several sequences packed into each ``n_batch``
batch, logits for each prompt's last token), `step` one token of every row in one
``llama_decode``, and `select` lets rows leave (their cells removed with
``llama_memory_seq_rm``, their sequence id free for the next one). No padding: each
token carries its own sequence id and position, and llama.cpp masks the other
sequences' cells, so a row's logits are those of its reply decoded alone on the
engine's own context: identical to the last bit on the bundled Q4_1 model, 4 sequences
x 8 steps (tests/test_serve_llama_batching.py). Not with llama.cpp's *unified* KV cache
(``kv_unified``, all sequences in one pool of cells): there the same replies part from
their lone numbers by 0.3-0.9 nats from the second sequence on (llama-cpp-python
0.3.36), so each sequence keeps its own cells.

The KV cache is allocated when the context is made, so it is sized, not grown
(`sequence_cells`): each row holds `row_cells` tokens (a full context window where
`KV_BUDGET` allows, at least `MIN_ROW_CELLS`), and `max_rows` rows fit the budget.
`ContinuousBatch` defers a newcomer while the rows are full, and a reply whose prompt
and ``max_new_tokens`` need more than a row holds runs alone on the engine's context.

Call everything on the engine's thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from engine.decode.llama import Entry, decode_entries, logits_row
from engine.errors import GenerationError

KV_BUDGET = 1 << 30  # bytes of the batch's KV cache
MIN_ROW_CELLS = 1024  # the fewest tokens a row holds (fewer rows rather than shorter)
CELL_STEP = 256


def kv_bytes_per_token(llm: Any) -> int:
    """Bytes one token's keys and values take in a float16 cache of `llm`'s model."""
    import llama_cpp

    model = llm._model.model
    layers = int(llama_cpp.llama_model_n_layer(model))
    heads, kv_heads = (
        int(llama_cpp.llama_model_n_head(model)),
        int(llama_cpp.llama_model_n_head_kv(model)),
    )
    head_dim = int(llama_cpp.llama_model_n_embd(model)) // max(heads, 1)
    return layers * 2 * kv_heads * head_dim * 2


def sequence_cells(window: int, rows: int, per_token: int) -> tuple[int, int]:
    """(tokens per row, rows) for a batch of at most `rows` within `KV_BUDGET`: the
    budget shared by the rows, at most a `window` each and at least `MIN_ROW_CELLS`
    (or the window, if smaller), as many rows as then fit (at least one)."""
    fits = KV_BUDGET // max(per_token, 1)  # tokens the budget holds
    cells = min(window, max(min(MIN_ROW_CELLS, window), fits // max(rows, 1)))
    if cells > CELL_STEP:  # llama.cpp pads a context to 256 cells: keep rows whole
        cells -= cells % CELL_STEP
    return cells, max(1, min(rows, fits // cells))


class LlamaSequences:
    """The rows of a continuous batch as sequences of one llama.cpp context."""

    def __init__(self, llm: Any, rows: int, window: int) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.n_vocab = int(llm.n_vocab())
        self.n_batch = int(llm.n_batch)
        cells, self.max_rows = sequence_cells(window, rows, kv_bytes_per_token(llm))
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
        params.n_ctx, params.n_seq_max = cells * self.max_rows, self.max_rows
        params.kv_unified = False  # each sequence its own cells (see the module doc)
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise GenerationError(
                f"llama.cpp could not make a context of {self.max_rows} sequences of {cells} tokens"
            )
        self.row_cells = min(cells, int(llama_cpp.llama_n_ctx_seq(self.ctx)))
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        self._batch = llama_cpp.llama_batch_init(max(self.n_batch, self.max_rows), 0, 1)
        self._free = list(range(self.max_rows))  # sequence ids not in use
        self.rows: list[tuple[int, int]] = []  # (sequence id, tokens held) in row order

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None
        if self.ctx:
            self._lib.llama_free(self.ctx)
            self.ctx = None

    def __del__(self) -> None:
        self.close()

    def join(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """New rows for `prompts` (after the others): the logits after each prompt,
        ``[len(prompts), vocab]`` float32."""
        if len(prompts) > len(self._free):
            raise GenerationError(f"{len(prompts)} rows join but {len(self._free)} are free")
        seqs = [self._free.pop(0) for _ in prompts]
        self.rows += [(seq, len(p)) for seq, p in zip(seqs, prompts, strict=True)]
        entries = [
            (int(token), pos, seq, pos == len(p) - 1)
            for seq, p in zip(seqs, prompts, strict=True)
            for pos, token in enumerate(p)
        ]
        last: list[torch.Tensor] = []
        for lo in range(0, len(entries), self.n_batch):
            chunk = entries[lo : lo + self.n_batch]
            self._decode(chunk)
            last += [self._row(i) for i, entry in enumerate(chunk) if entry[3]]
        return torch.stack(last)

    def step(self, tokens: Sequence[int]) -> torch.Tensor:
        """One token appended to every row, one decode: ``[rows, vocab]`` float32."""
        entries = [
            (int(t), held, seq, True) for t, (seq, held) in zip(tokens, self.rows, strict=True)
        ]
        self._decode(entries)
        self.rows = [(seq, held + 1) for seq, held in self.rows]
        return torch.stack([self._row(i) for i in range(len(entries))])

    def select(self, keep: Sequence[int]) -> None:
        """Keep the rows `keep` (in that order); the others' cells are freed."""
        kept = set(keep)
        for i, (seq, _held) in enumerate(self.rows):
            if i not in kept:
                self._lib.llama_memory_seq_rm(self._memory, seq, -1, -1)
                self._free.append(seq)
        self.rows = [self.rows[i] for i in keep]

    def compact(self) -> None:
        """Nothing to do: freed cells are reused where they are."""

    def clear(self) -> None:
        self._lib.llama_memory_clear(self._memory, True)
        self._free = sorted(self._free + [seq for seq, _ in self.rows])
        self.rows = []

    def _decode(self, entries: Sequence[Entry]) -> None:
        code = decode_entries(self._lib, self.ctx, self._batch, entries)
        if code != 0:
            raise GenerationError(
                f"llama.cpp could not decode a batch of {len(entries)} tokens (code {code})"
            )

    def _row(self, i: int) -> torch.Tensor:
        return logits_row(self._lib, self.ctx, i, self.n_vocab)
