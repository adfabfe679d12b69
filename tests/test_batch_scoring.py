"""Several prompts scored in one batch (engine/decode/batch_scoring.py): each row's
records and next-token logits are those of the prompt scored alone, however the
prompts are grouped and chunked."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.decode import batch_scoring
from engine.decode.batch import pad_id_of
from engine.decode.batch_scoring import ScoringPath, groups_of, score_paths
from engine.decode.decoder import TransformersRunner
from engine.decode.probe import score_path

PROMPTS = [
    [5, 17, 30, 8],
    [9, 12],
    [3, 44, 19, 27, 31, 6, 2, 11, 40, 13, 22, 7, 18],
    [21],
    [4, 4, 4, 4, 4, 4, 4],
]


def _pad(loaded: Any) -> int:
    return pad_id_of(loaded.tokenizer, loaded.eos_token_ids)


def _next_alone(loaded: Any, ids: list[int]) -> torch.Tensor:
    runner = TransformersRunner(loaded.model, loaded.device)
    runner.reset()
    with torch.inference_mode():
        return runner.forward(ids)


def _same_scores(got: tuple[Any, ...], want: tuple[Any, ...]) -> None:
    assert [(s.position, s.token_id, s.rank) for s in got] == [
        (s.position, s.token_id, s.rank) for s in want
    ]
    assert [s.logprob for s in got] == pytest.approx([s.logprob for s in want], abs=1e-5)
    assert [s.entropy for s in got] == pytest.approx([s.entropy for s in want], abs=1e-5)
    for g, w in zip(got, want, strict=True):
        assert [c.token_id for c in g.top] == [c.token_id for c in w.top]
        assert [c.logprob for c in g.top] == pytest.approx([c.logprob for c in w.top], abs=1e-5)
        assert g.piece == w.piece


@pytest.mark.parametrize("tiny_chunks", [False, True])  # one forward; three positions each
def test_each_row_equals_its_prompt_scored_alone(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch, tiny_chunks: bool
) -> None:
    if tiny_chunks:  # a row's positions split over chunks, the cache carried between
        monkeypatch.setattr(batch_scoring, "chunk_for", lambda _vocab: 3)
    paths = [
        ScoringPath(ids, top=i % 3 + 1, next_token=i % 2 == 0) for i, ids in enumerate(PROMPTS)
    ]
    got = score_paths(tiny_model, paths, pad_id=_pad(tiny_model))
    assert len(got) == len(PROMPTS)
    for ids, path, scored in zip(PROMPTS, paths, got, strict=True):
        _same_scores(scored.scores, score_path(tiny_model, ids, top=path.top or 0))
        assert len(scored.scores) == len(ids) - 1
        if path.next_token:
            assert scored.next_logits is not None
            want = _next_alone(tiny_model, ids)
            assert torch.allclose(scored.next_logits, want, atol=1e-5)
        else:
            assert scored.next_logits is None


def test_rows_run_together_and_a_path_without_scores_gets_only_its_next_logits(
    tiny_model: Any,
) -> None:
    sizes: list[tuple[int, int]] = []
    handle = tiny_model.model.register_forward_pre_hook(
        lambda _m, _a, kw: sizes.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    try:
        paths = [ScoringPath([5, 17, 30, 8], None, next_token=True), ScoringPath([9, 12, 3], 2)]
        got = score_paths(tiny_model, paths, pad_id=_pad(tiny_model))
    finally:
        handle.remove()
    assert sizes == [(2, 4)]  # one forward, both rows, right padded to the longest
    assert got[0].scores == () and got[0].next_logits is not None
    assert got[1].next_logits is None and len(got[1].scores) == 2


def test_groups_keep_padding_small_and_sizes_bounded() -> None:
    lengths = [10, 200, 12, 11, 190, 9, 205]
    groups = groups_of(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        widths = [lengths[i] for i in group]
        padded = max(widths) * len(widths)
        assert padded - sum(widths) <= 0.25 * padded
    assert [sorted(g) for g in groups] == [[0, 2, 3, 5], [1, 4, 6]]
    assert all(len(g) == 1 for g in groups_of([100] * 5, budget=150))  # two would not fit
    assert groups_of([], budget=10) == []
