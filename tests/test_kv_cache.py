"""The growing KV cache holds exactly what transformers' DynamicCache holds."""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from engine.decode.kv_cache import GrowingLayer, new_cache


def _states(length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (1, 3, length, 8)  # [batch, kv_heads, new, head_dim]
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


def test_growing_layer_matches_dynamic_layer_through_growth_crop_and_batch_ops() -> None:
    ours, theirs = GrowingLayer(), DynamicLayer()
    script: list[tuple[str, int]] = [("update", 300)]  # past the first capacity (256)
    script += [("update", 1)] * 20 + [("crop", -5)] + [("update", 1)] * 10
    script += [("update", 400), ("repeat", 2), ("update", 1), ("crop", -3), ("update", 2)]
    for seed, (op, arg) in enumerate(script):
        if op == "update":
            k, v = _states(arg, seed)
            if ours.get_seq_length() and ours.keys.shape[0] == 2:  # type: ignore[union-attr]
                k, v = k.repeat(2, 1, 1, 1), v.repeat(2, 1, 1, 1)
            got = ours.update(k, v)
            want = theirs.update(k, v)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        elif op == "crop":
            ours.crop(arg)
            theirs.crop(arg)
        else:
            ours.batch_repeat_interleave(arg)
            theirs.batch_repeat_interleave(arg)
        assert ours.get_seq_length() == theirs.get_seq_length()


def test_model_logits_equal_with_either_cache(tiny_model: Any) -> None:
    model = tiny_model.model
    prompt = torch.tensor([[1, 382, 611, 28, 2]])
    logits: dict[str, list[torch.Tensor]] = {}
    for name, cache in (
        ("ours", new_cache(model.config)),
        ("dynamic", DynamicCache(config=model.config)),
    ):
        assert (name == "ours") == any(isinstance(layer, GrowingLayer) for layer in cache.layers)
        seen = logits.setdefault(name, [])
        with torch.inference_mode():
            out = model(input_ids=prompt, past_key_values=cache, use_cache=True)
            for _ in range(40):
                token = out.logits[:, -1].argmax(-1, keepdim=True)  # [1, 1]
                seen.append(out.logits[0, -1])
                out = model(input_ids=token, past_key_values=cache, use_cache=True)
    for a, b in zip(logits["ours"], logits["dynamic"], strict=True):
        assert torch.equal(a, b)
