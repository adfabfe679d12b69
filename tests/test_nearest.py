"""Nearest tokens by input-embedding cosine, on constructed embeddings where the answer is
known; tied-embedding detection; and the real model's neighbours stay fast."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from engine.errors import InvalidParameterError
from engine.model import nearest_tokens, ties_embeddings


class Constructed(nn.Module):
    """Six tokens in 3-d: 0 and 1 point the same way (1 longer), 2 is 45° from them,
    3 is orthogonal, 4 opposite; 5 is 0 slightly tilted."""

    def __init__(self, tied: bool) -> None:
        super().__init__()
        rows = torch.tensor(
            [[1, 0, 0], [3, 0, 0], [1, 1, 0], [0, 0, 1], [-1, 0, 0], [1, 0.1, 0]],
            dtype=torch.float32,
        )
        self.embed = nn.Embedding(6, 3)
        self.embed.weight.data.copy_(rows)
        self.head = nn.Linear(3, 6, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def get_input_embeddings(self) -> nn.Module:
        return self.embed

    def get_output_embeddings(self) -> nn.Module:
        return self.head


def test_neighbours_are_ordered_by_cosine_with_the_token_first() -> None:
    near = nearest_tokens(Constructed(tied=False), 0, 6)
    assert [n.token_id for n in near] == [0, 1, 5, 2, 3, 4]
    assert near[0].cosine == 1.0
    assert near[1].cosine == pytest.approx(1.0)
    assert near[3].cosine == pytest.approx(2**-0.5)
    assert near[4].cosine == pytest.approx(0.0, abs=1e-6)
    assert near[5].cosine == pytest.approx(-1.0)


def test_the_token_comes_first_even_with_an_exact_duplicate() -> None:
    near = nearest_tokens(Constructed(tied=False), 1, 2)
    assert [n.token_id for n in near] == [1, 0]


def test_tied_embeddings_are_detected() -> None:
    assert ties_embeddings(Constructed(tied=True))
    assert not ties_embeddings(Constructed(tied=False))


@pytest.mark.parametrize(("token_id", "n"), [(6, 3), (-1, 3), (0, 0)])
def test_bad_id_or_count_is_one_line(token_id: int, n: int) -> None:
    with pytest.raises(InvalidParameterError) as info:
        nearest_tokens(Constructed(tied=False), token_id, n)
    assert "\n" not in str(info.value)


@pytest.mark.real_model
def test_real_model_neighbours_are_fast_and_sensible(
    real_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fast because the normalised embedding matrix is built once per model: the
    second lookup normalises nothing (bench/vocab_lookup.py times the two)."""
    paris = real_model.tokenizer.convert_tokens_to_ids("ĠParis")
    nearest_tokens(real_model.model, paris, 10)  # builds the normalised matrix once
    normalised: list[tuple[int, ...]] = []
    normalize = torch.nn.functional.normalize

    def counting(rows: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        normalised.append(tuple(rows.shape))
        return normalize(rows, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "normalize", counting)
    near = nearest_tokens(real_model.model, paris, 10)
    vocab = real_model.model.get_input_embeddings().weight.shape[0]
    assert not any(shape[0] == vocab for shape in normalised)  # the matrix is reused
    assert near[0].token_id == paris
    assert ties_embeddings(real_model.model)
