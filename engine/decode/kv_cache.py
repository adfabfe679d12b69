"""A KV cache that grows in place instead of re-concatenating every step.

transformers' `DynamicLayer.update` does ``torch.cat([keys, new])`` for every
layer on every step, copying the whole cache each time (O(n) per token, and
``model.generate()`` pays it too). `GrowingLayer` writes new keys/values into a
preallocated buffer that doubles when full and hands the model views of the
filled part. Same values, same logits (the tests compare them); cropping for
rewind stays a slice of the view, as in `DynamicLayer`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

_MIN_CAPACITY = 256


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` whose keys/values are views into a doubling buffer."""

    _key_buffer: torch.Tensor | None = None

    def __init__(self) -> None:  # typed: DynamicLayer's own __init__ is not
        super().__init__()  # type: ignore[no-untyped-call]

    _value_buffer: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # key_states, value_states: [batch, kv_heads, new, head_dim]
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self._key_buffer = self._value_buffer = None
        filled = self.get_seq_length()
        needed = filled + key_states.shape[-2]
        if not self._views_are_ours() or needed > self._capacity():
            self._regrow(key_states, value_states, filled, max(_MIN_CAPACITY, 2 * needed))
        keys, values = self._key_buffer, self._value_buffer
        assert keys is not None and values is not None
        keys[..., filled:needed, :] = key_states
        values[..., filled:needed, :] = value_states
        self.keys, self.values = keys[..., :needed, :], values[..., :needed, :]
        return self.keys, self.values

    def _capacity(self) -> int:
        return 0 if self._key_buffer is None else self._key_buffer.shape[-2]

    def _views_are_ours(self) -> bool:
        """Keys/values still view our buffers (a crop keeps that; a batch
        operation that replaces them does not, and then we copy afresh)."""
        keys, values = self.keys, self.values
        if self._key_buffer is None or self._value_buffer is None or keys is None or values is None:
            return False
        return (
            keys.data_ptr() == self._key_buffer.data_ptr()
            and values.data_ptr() == self._value_buffer.data_ptr()
            and keys.shape[:-2] == self._key_buffer.shape[:-2]
        )

    def _regrow(
        self, key_states: torch.Tensor, value_states: torch.Tensor, filled: int, capacity: int
    ) -> None:
        def buffer(like: torch.Tensor) -> torch.Tensor:
            return like.new_empty((*like.shape[:-2], capacity, like.shape[-1]))

        keys, values = buffer(key_states), buffer(value_states)
        if filled and self.keys is not None and self.values is not None:
            keys[..., :filled, :] = self.keys
            values[..., :filled, :] = self.values
        self._key_buffer, self._value_buffer = keys, values


def new_cache(config: Any) -> DynamicCache:
    """A cache for `config`'s model: growing layers where transformers would use plain
    dynamic ones; sliding-window and other special layers are left as they are."""
    cache = DynamicCache(config=config)
    cache.layers = [
        GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    return cache
