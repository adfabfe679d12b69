"""Continuous batching in `logitlab serve` (engine/serve/batching.py over
engine/decode/batch.py's `BatchRunner.join`): rows join a running batch and leave it,
and every request's numbers are those of running it alone. Real `openai` / httpx
clients against a live server on a free loopback port; the tiny random model for
speed, one test on the bundled model."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.decode.batch import BatchRunner
from engine.decode.decoder import TransformersRunner

pytestmark = pytest.mark.timeout(180)


@torch.inference_mode()
def _alone(model: Any, ids: list[int], steps: int) -> list[torch.Tensor]:
    """Greedy logits of `ids` decoded alone: the prompt's, then one per step."""
    runner = TransformersRunner(model, torch.device("cpu"))
    runner.reset()
    out = [runner.forward(ids)]
    for _ in range(steps):
        out.append(runner.forward([int(out[-1].argmax())]))
    return out


def test_rows_join_a_running_batch_with_their_own_positions(tiny_model: Any) -> None:
    model = tiny_model.model
    a, b, c = [1, 40, 50, 60, 70], [1, *range(100, 111)], [1, 7, 8]
    batch = BatchRunner(model, torch.device("cpu"), pad_id=2)
    seen: dict[int, list[torch.Tensor]] = {0: [batch.join([a])[0]]}
    for _ in range(3):  # `a` runs alone, then `b` (longer) and `c` (shorter) join
        seen[0].append(batch.step([int(seen[0][-1].argmax())])[0])
    joined = batch.join([b, c])
    assert joined.shape[0] == 2 and batch.batch_size == 3
    seen[1], seen[2] = [joined[0]], [joined[1]]
    for _ in range(4):
        logits = batch.step([int(seen[r][-1].argmax()) for r in range(3)])
        for r in range(3):
            seen[r].append(logits[r])
    batch.select([1, 2])  # `a` leaves: its columns before `b`'s first token go
    batch.compact()
    assert batch.columns == len(b) + 4 and batch.pads(0) == 0 and batch.pads(1) == len(b) - len(c)
    for _ in range(2):
        logits = batch.step([int(seen[r][-1].argmax()) for r in (1, 2)])
        for i, r in enumerate((1, 2)):
            seen[r].append(logits[i])
    for r, prompt in enumerate((a, b, c)):
        ref = _alone(model, prompt, len(seen[r]) - 1)
        assert [int(x.argmax()) for x in seen[r]] == [int(x.argmax()) for x in ref]
        for got, want in zip(seen[r], ref, strict=True):
            diff = (torch.log_softmax(got, -1) - torch.log_softmax(want, -1)).abs().max()
            assert float(diff) < 1e-3


def test_join_needs_left_padding_with_the_mask(tiny_model: Any) -> None:
    from engine.errors import InvalidParameterError

    batch = BatchRunner(tiny_model.model, torch.device("cpu"), pad_id=2, padding="right")
    with pytest.raises(InvalidParameterError, match="left padding"):
        batch.join([[1, 2, 3]])
