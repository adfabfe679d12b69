"""Batched decoding on transformers: several sequences, one forward per step.

`BatchRunner` holds a batch of rows over one KV cache with a batch dimension
(engine/decode/kv_cache.py's growing cache, ``[batch, heads, columns, dim]``): a
batched `prefill` pads the prompts to one length and runs them in one forward, then
each `step` appends one token to every row and runs one forward of ``[batch, 1]``.
Both return the logits every row reads next, ``[batch, vocab]``.

Padding is a condition to study, not only a convenience (seed tutorial 002, "wrong
padding"): a row is padded on the ``left`` or the ``right``, and with ``mask`` the
attention mask hides the pads and the position ids are derived from it
(``cumsum(mask) - 1``, as ``generate()`` does); without it every pad is attended
and positions count the pads. As ``generate()`` does, every row reads the logits of
the batch's last column and new tokens are appended after it, so with right padding
a short row continues from its pads: the seed's ``"1, 2, 33333333333"``.

`BatchRowRunner` shows one row of a `BatchRunner` as a `ModelRunner`, so our
`Decoder` (sampling, `Step` records) decodes that row while the others run beside it
(each other row continues with its own argmax): a prompt decoded inside a batch gives
the same records as alone, and a comparison of the two shows what the padding did.
The batch layer is the piece continuous batching builds on (``logitlab serve``,
engine/serve/batching.py): rows with their own cache lines, one forward for all;
`join` prefills newcomers among themselves and merges their cache into the running
batch's (the narrower side left padded with masked columns), `select` lets finished
rows leave and `compact` drops the columns no row uses any more.

Call everything on the engine's thread.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Literal

import torch

from engine.errors import GenerationError, InvalidParameterError

Padding = Literal["left", "right"]


class BatchRunner:
    """Rows decoded together: one forward per batched prefill or step (see the module doc)."""

    def __init__(
        self,
        model: Any,
        device: torch.device,
        *,
        pad_id: int,
        padding: Padding = "left",
        mask: bool = True,
    ) -> None:
        if padding not in ("left", "right"):
            raise InvalidParameterError("padding", f"{padding!r} is not left or right")
        self._model, self._device = model, device
        self._pad_id, self._padding, self._use_mask = int(pad_id), padding, bool(mask)
        self._keep_one = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # [batch, columns] long: 1 real, 0 pad
        self.rows: list[list[int]] = []  # each row's real tokens (no pads)

    @property
    def columns(self) -> int:
        """Positions in the cache (pads included)."""
        return 0 if self._mask is None else int(self._mask.shape[1])

    @property
    def batch_size(self) -> int:
        return len(self.rows)

    def pads(self, row: int) -> int:
        """How many pads row `row` holds."""
        assert self._mask is not None
        return int((self._mask[row] == 0).sum())

    @torch.inference_mode()
    def prefill(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Pad `prompts` to one length and run them in one forward; the logits of the
        last column, ``[batch, vocab]`` float32 (a new cache: anything before is gone)."""
        rows = [[int(i) for i in p] for p in prompts]
        if not rows or not all(rows):
            raise InvalidParameterError("prompts", "give at least one non-empty prompt")
        from engine.decode.kv_cache import new_cache

        width = max(len(r) for r in rows)
        ids, mask = [], []
        for r in rows:
            pad = [self._pad_id] * (width - len(r))
            ones, zeros = [1] * len(r), [0] * len(pad)
            left = self._padding == "left"
            ids.append(pad + r if left else r + pad)
            mask.append(zeros + ones if left else ones + zeros)
        self._cache = new_cache(self._model.config)
        self._mask = torch.tensor(mask, dtype=torch.long, device=self._device)  # [batch, width]
        self.rows = rows
        input_ids = torch.tensor(ids, dtype=torch.long, device=self._device)  # [batch, width]
        return self._forward(input_ids)

    @torch.inference_mode()
    def step(self, tokens: Sequence[int]) -> torch.Tensor:
        """Append one token to each row and run one forward of ``[batch, 1]``; the next
        logits of every row, ``[batch, vocab]`` float32."""
        if self._mask is None:
            raise GenerationError("prefill the batch before stepping it")
        if len(tokens) != self.batch_size:
            raise InvalidParameterError(
                "tokens", f"give one token per row ({self.batch_size}), got {len(tokens)}"
            )
        ones = torch.ones((self.batch_size, 1), dtype=torch.long, device=self._device)
        self._mask = torch.cat([self._mask, ones], dim=1)  # [batch, columns + 1]
        for row, token in zip(self.rows, tokens, strict=True):
            row.append(int(token))
        column = [[int(t)] for t in tokens]
        return self._forward(torch.tensor(column, dtype=torch.long, device=self._device))

    def expand(self, copies: int) -> None:
        """Make each row `copies` rows (row i becomes rows ``i * copies ..``), caches
        included: K samples of one prompt pay for one prefill."""
        if self._mask is None:
            raise GenerationError("prefill the batch before expanding it")
        for layer in self._cache.layers:
            layer.batch_repeat_interleave(copies)
        self._mask = self._mask.repeat_interleave(copies, dim=0)
        self.rows = [list(r) for r in self.rows for _ in range(copies)]

    def select(self, keep: Sequence[int]) -> None:
        """Keep only rows `keep` (in that order), caches included: a finished row stops
        costing compute."""
        if self._mask is None:
            raise GenerationError("prefill the batch before selecting rows")
        index = torch.tensor(list(keep), dtype=torch.long, device=self._device)
        for layer in self._cache.layers:
            layer.batch_select_indices(index)
        self._mask = self._mask.index_select(0, index)
        self.rows = [self.rows[i] for i in keep]

    @torch.inference_mode()
    def join(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Continuous batching: `prompts` join the running rows. They are prefilled in one
        forward among themselves (left padded, mask and positions from the mask), then
        their cache is merged into the batch's: the side with fewer columns is left padded
        with masked columns and the two are concatenated on the batch dimension, so every
        row keeps its own positions. The new rows' logits, ``[len(prompts), vocab]``; they
        are the last rows. An empty batch is a plain `prefill`. Left padding with the
        mask only: a right-padded or unmasked row could not be joined exactly."""
        if self._padding != "left" or not self._use_mask:
            raise InvalidParameterError("padding", "joining needs left padding with the mask")
        if self._mask is None or not self.rows:
            return self.prefill(prompts)
        old_cache, old_mask, old_rows = self._cache, self._mask, self.rows
        for layer in old_cache.layers:
            _check_mergeable(layer)
        logits = self.prefill(prompts)  # the newcomers' own cache: [new, heads, width', dim]
        new_cache, new_mask = self._cache, self._mask
        assert new_mask is not None
        width = max(old_mask.shape[1], new_mask.shape[1])
        for old, new in zip(old_cache.layers, new_cache.layers, strict=True):
            old.keys = torch.cat([_pad_left(old.keys, width, -2), _pad_left(new.keys, width, -2)])
            old.values = torch.cat(
                [_pad_left(old.values, width, -2), _pad_left(new.values, width, -2)]
            )  # [old + new, heads, width, dim]
        self._cache = old_cache
        self._mask = torch.cat([_pad_left(old_mask, width, -1), _pad_left(new_mask, width, -1)])
        self.rows = [*old_rows, *self.rows]
        return logits

    def compact(self) -> None:
        """Drop the leading columns that are a pad in every row (rows that left held
        them): the batch's width stays its longest row's."""
        if self._mask is None or not self.rows:
            return
        used = self._mask.any(dim=0).nonzero()  # [used columns, 1]
        first = int(used[0, 0]) if used.numel() else 0
        if first == 0:
            return
        for layer in self._cache.layers:
            _check_mergeable(layer)
            layer.keys = layer.keys[..., first:, :]
            layer.values = layer.values[..., first:, :]
        self._mask = self._mask[:, first:]

    def clear(self) -> None:
        """Forget every row and the cache (the next `join` starts a new batch)."""
        self._cache, self._mask, self.rows = None, None, []

    def _forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Run `input_ids` ``[batch, n]`` (the mask already covers them) on the cache."""
        assert self._mask is not None
        n = input_ids.shape[1]
        kwargs: dict[str, Any] = {"past_key_values": self._cache, "use_cache": True}
        if self._keep_one:
            kwargs["logits_to_keep"] = 1
        if self._use_mask:
            # generate()'s rule: positions count real tokens only; pads sit at position 1
            positions = self._mask.cumsum(dim=-1) - 1  # [batch, columns]
            positions = positions.masked_fill(self._mask == 0, 1)
            kwargs["attention_mask"] = self._mask
            kwargs["position_ids"] = positions[:, -n:]  # [batch, n]
        try:
            out = self._model(input_ids=input_ids, **kwargs)
        except torch.OutOfMemoryError as exc:
            raise GenerationError(f"out of memory on {self._device} in a batched step") from exc
        logits: torch.Tensor = out.logits[:, -1].float()  # [batch, vocab]
        return logits


class BatchRowRunner:
    """Row 0 of a batch as a `ModelRunner`: the decoder's prompt runs with `others` (the
    other rows' prompt ids) padded around it; each other row continues with its own
    argmax. A rewind is refused: a batch's pads cannot be cropped back into a prompt."""

    def __init__(self, batch: BatchRunner, others: Sequence[Sequence[int]]) -> None:
        if not others:
            raise InvalidParameterError("batch", "give at least one other prompt")
        self._batch = batch
        self._others = [[int(i) for i in o] for o in others]
        self._next: list[int] = []  # each other row's next token (its argmax)
        self._prefilled = False

    @property
    def batch(self) -> BatchRunner:
        return self._batch

    def reset(self) -> None:
        self._prefilled = False

    def cached(self) -> int:
        """Our row's positions in the cache (pads not counted)."""
        return len(self._batch.rows[0]) if self._prefilled else 0

    def crop(self, length: int) -> None:
        if self._prefilled and length < self.cached():
            raise GenerationError("a reply decoded inside a batch cannot be rewound")

    def forward(self, ids: list[int]) -> torch.Tensor:
        """The prompt (first call after `reset`: the batched prefill) or our row's next
        tokens, one batched step each; our row's last logits, ``[vocab]`` float32."""
        if not self._prefilled:
            logits = self._batch.prefill([ids, *self._others])
            self._prefilled = True
        else:
            for token in ids:
                logits = self._batch.step([token, *self._next])
        self._next = [int(t) for t in logits[1:].argmax(dim=-1).tolist()]
        return logits[0]


def batch_logprob_rows(
    batch: BatchRunner, prompt: Sequence[int], others: Sequence[Sequence[int]], path: Sequence[int]
) -> torch.Tensor:
    """Teacher forcing inside a batch: the raw log-softmax rows ``[len(path), vocab]``
    (CPU float32) of row 0 over `path` after `prompt`, each path token forced in one
    batched step while the other rows continue with their argmax."""
    runner = BatchRowRunner(batch, others)
    rows = []
    logits = runner.forward([int(i) for i in prompt])
    for i, token in enumerate(path):
        rows.append(torch.log_softmax(logits, dim=-1).cpu())
        if i + 1 < len(path):
            logits = runner.forward([int(token)])
    if not rows:
        return torch.empty((0, logits.shape[-1]))
    return torch.stack(rows)  # [len(path), vocab]


def _pad_left(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """`t` with zeros added before its columns (dimension `dim`) up to `width`: for the
    mask, pads; for keys and values, columns the mask hides."""
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _check_mergeable(layer: Any) -> None:
    """Only plain dynamic layers (keys and values ``[batch, heads, columns, dim]``) can be
    padded, merged or trimmed by column; a sliding-window layer cannot."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    if not isinstance(layer, DynamicLayer) or isinstance(layer, DynamicSlidingWindowLayer):
        raise GenerationError(f"rows cannot join a batch over a {type(layer).__name__} cache")


def pad_id_of(tokenizer: Any, eos_ids: Sequence[int]) -> int:
    """The tokenizer's pad token, else its first end-of-sequence id (the seed's
    ``tokenizer.pad_token = tokenizer.eos_token``)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    if isinstance(pad, int):
        return pad
    if eos_ids:
        return int(eos_ids[0])
    raise GenerationError("the tokenizer has no pad or end-of-sequence token to pad a batch with")
