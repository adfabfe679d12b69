"""Batched decoding (engine/decode/batch.py) on the tiny model: a prompt run inside a
padded batch gives what it gives alone when padded left with the mask, and something
else when padded right without it (seed 002's "wrong padding"); a batch row decodes
through our `Decoder` like a lone prompt."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.decode.batch import BatchRowRunner, BatchRunner, batch_logprob_rows, pad_id_of
from engine.decode.decoder import Decoder
from engine.errors import GenerationError, InvalidParameterError
from engine.params import SamplingParams


def _ids(tiny_model: Any, text: str) -> list[int]:
    return [int(i) for i in tiny_model.tokenizer.encode(text, add_special_tokens=False)]


def _runner(tiny_model: Any, padding: str = "left", mask: bool = True) -> BatchRunner:
    pad = pad_id_of(tiny_model.tokenizer, tiny_model.eos_token_ids)
    return BatchRunner(
        tiny_model.model,
        tiny_model.device,
        pad_id=pad,
        padding=padding,
        mask=mask,  # type: ignore[arg-type]
    )


def _alone_rows(tiny_model: Any, prompt: list[int], path: list[int]) -> torch.Tensor:
    """Teacher forcing of `path` after `prompt` in one plain forward: [len(path), vocab]."""
    with torch.inference_mode():
        logits = tiny_model.model(torch.tensor([[*prompt, *path]])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)[len(prompt) - 1 : len(prompt) - 1 + len(path)]


def test_left_padding_with_the_mask_matches_the_prompt_alone(tiny_model: Any) -> None:
    prompt, other = _ids(tiny_model, "1, 2, 3"), _ids(tiny_model, "A, B, C, D, E and more")
    assert len(other) > len(prompt)  # the prompt is the one padded
    path = _ids(tiny_model, ", 4, 5, 6")
    batched = batch_logprob_rows(_runner(tiny_model), prompt, [other], path)
    alone = _alone_rows(tiny_model, prompt, path)
    assert batched.shape == alone.shape
    assert torch.allclose(batched, alone, atol=1e-4)


@pytest.mark.parametrize(("padding", "mask"), [("right", False), ("right", True), ("left", False)])
def test_wrong_padding_changes_the_distributions(tiny_model: Any, padding: str, mask: bool) -> None:
    prompt, other = _ids(tiny_model, "1, 2, 3"), _ids(tiny_model, "A, B, C, D, E and more")
    path = _ids(tiny_model, ", 4, 5, 6")
    batched = batch_logprob_rows(_runner(tiny_model, padding, mask), prompt, [other], path)
    alone = _alone_rows(tiny_model, prompt, path)
    assert (batched - alone).abs().max() > 1e-2


def test_the_longest_row_is_the_same_whatever_the_padding(tiny_model: Any) -> None:
    """The row with no pads reads its own last token: right or left, masked or not."""
    long, short = _ids(tiny_model, "A, B, C, D, E and more"), _ids(tiny_model, "1, 2")
    path = _ids(tiny_model, " F, G")
    alone = _alone_rows(tiny_model, long, path)
    for padding in ("left", "right"):
        rows = batch_logprob_rows(_runner(tiny_model, padding, True), long, [short], path)
        assert torch.allclose(rows, alone, atol=1e-4), padding


def test_one_forward_per_step_for_the_whole_batch(tiny_model: Any) -> None:
    runner = _runner(tiny_model)
    calls: list[tuple[int, ...]] = []
    handle = tiny_model.model.register_forward_pre_hook(
        lambda _m, _args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True,
    )
    try:
        logits = runner.prefill([_ids(tiny_model, "1, 2, 3"), _ids(tiny_model, "A, B")])
        runner.step(logits.argmax(dim=-1).tolist())
    finally:
        handle.remove()
    width = max(len(_ids(tiny_model, "1, 2, 3")), len(_ids(tiny_model, "A, B")))
    assert calls == [(2, width), (2, 1)]
    assert logits.shape[0] == 2


def test_a_batch_row_decodes_like_the_prompt_alone(tiny_model: Any) -> None:
    prompt, other = _ids(tiny_model, "1, 2, 3"), _ids(tiny_model, "A, B, C, D, E and more")
    params = SamplingParams(max_new_tokens=8, top_logprobs=3)
    alone = Decoder(tiny_model, params)
    alone.prefill(prompt)
    lone = [s for s in alone]
    runner = BatchRowRunner(_runner(tiny_model), [other])
    inside = Decoder(tiny_model, params, runner=runner)
    inside.prefill(prompt)
    batched = [s for s in inside]
    assert [s.token_id for s in batched] == [s.token_id for s in lone]
    for a, b in zip(lone, batched, strict=True):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-4)
    assert runner.batch.batch_size == 2
    assert len(runner.batch.rows[0]) == len(prompt) + len(lone) - 1  # the last is unforwarded


def test_a_batch_row_refuses_a_rewind(tiny_model: Any) -> None:
    runner = BatchRowRunner(_runner(tiny_model), [_ids(tiny_model, "A, B")])
    decoder = Decoder(tiny_model, SamplingParams(max_new_tokens=4), runner=runner)
    decoder.prefill(_ids(tiny_model, "1, 2, 3"))
    decoder.step()
    decoder.step()
    with pytest.raises(GenerationError, match="cannot be rewound"):
        decoder.rewind(1)


def test_bad_batches_are_refused(tiny_model: Any) -> None:
    with pytest.raises(InvalidParameterError, match="padding"):
        _runner(tiny_model, padding="middle")
    runner = _runner(tiny_model)
    with pytest.raises(GenerationError, match="prefill"):
        runner.step([1])
    with pytest.raises(InvalidParameterError, match="non-empty"):
        runner.prefill([[1, 2], []])
    runner.prefill([[1, 2], [3]])
    with pytest.raises(InvalidParameterError, match="one token per row"):
        runner.step([1])
    with pytest.raises(InvalidParameterError, match="other prompt"):
        BatchRowRunner(runner, [])
