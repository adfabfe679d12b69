"""The layer lens: its last row is the model's real next-token distribution (the decode
loop's recorded raw step, to 1e-4), on the bundled model and a tiny random one; rows,
ranks and the settling layer; engines without hidden states say so in one line."""

from __future__ import annotations

import math
from typing import Any

import pytest

from engine.decode import Decoder, LocalEngine, model_internals
from engine.errors import FeatureUnavailableError, InvalidParameterError
from engine.model import LensResult, LensRow, LensToken
from engine.params import SamplingParams
from engine.tokens import ChatMessage, chat_prompt_ids


def _check_fidelity(loaded: Any, prompt_ids: list[int]) -> None:
    """Greedy steps through our loop; the lens at each step's position ends in its distribution."""
    decoder = Decoder(loaded, SamplingParams(temperature=0.0, max_new_tokens=3, top_logprobs=10))
    decoder.prefill(prompt_ids)
    engine = LocalEngine(loaded)
    engine.load(loaded.spec)
    generated: list[int] = []
    for _ in range(3):
        step = decoder.step()
        ids = [*prompt_ids, *generated]
        lens = engine.lens(ids, -1, top=10, target=step.token_id)
        last = lens.rows[-1]
        assert len(lens.rows) == loaded.model.config.num_hidden_layers + 1
        assert lens.rows[0].name == "embeddings"
        assert last.target.token_id == step.token_id
        assert abs(last.target.logprob - step.logprob) < 1e-4
        assert last.target.rank == step.rank
        for ours, recorded in zip(last.top, step.top, strict=True):
            assert ours.token_id == recorded.token_id
            assert abs(ours.logprob - recorded.logprob) < 1e-4
        generated.append(step.token_id)


@pytest.mark.real_model
def test_last_row_is_the_recorded_step_on_the_bundled_model(real_model: Any) -> None:
    ids = chat_prompt_ids(real_model.tokenizer, [ChatMessage("user", "What is 2+2?")])
    _check_fidelity(real_model, ids)


def test_last_row_is_the_recorded_step_on_a_tiny_random_model(tiny_model: Any) -> None:
    _check_fidelity(tiny_model, tiny_model.tokenizer.encode("Hello there, how are"))


def test_prompt_positions_predict_the_next_prompt_token_ranked(tiny_model: Any) -> None:
    engine = LocalEngine(tiny_model)
    engine.load(tiny_model.spec)
    ids = tiny_model.tokenizer.encode("one two three four")
    lens = engine.lens(ids, 1, top=3, target=ids[2])
    assert lens.position == 1 and lens.input_id == ids[1] and lens.target_id == ids[2]
    assert all(len(row.top) == 3 and row.top[0].rank == 1 for row in lens.rows)
    for row in lens.rows:
        total = sum(math.exp(t.logprob) for t in row.top)
        assert total <= 1.0 + 1e-5
        assert row.target.rank >= 1


@pytest.mark.parametrize(
    ("position", "top"),
    [(99, 5), (-99, 5), (0, 0), (0, 51)],
    ids=["past", "before", "top0", "top51"],
)
def test_bad_position_or_top_is_one_line(tiny_model: Any, position: int, top: int) -> None:
    engine = LocalEngine(tiny_model)
    engine.load(tiny_model.spec)
    with pytest.raises(InvalidParameterError) as info:
        engine.lens([1, 2, 3], position, top=top)
    assert "\n" not in str(info.value)


def test_settles_at_is_the_first_layer_of_the_final_top1_run() -> None:
    def row(layer: int, rank: int) -> LensRow:
        return LensRow(layer, f"layer {layer}", (), LensToken(7, -1.0, rank))

    result = LensResult(0, 1, 7, (row(0, 1), row(1, 3), row(2, 1), row(3, 1)))
    assert result.settles_at == 2
    assert LensResult(0, 1, 7, (row(0, 1), row(1, 2))).settles_at is None


def test_an_engine_without_hidden_states_says_so_in_one_line() -> None:
    from tests.fake_engine import FakeEngine

    with pytest.raises(FeatureUnavailableError) as info:
        model_internals(FakeEngine())
    assert "hidden states" in str(info.value) and "\n" not in str(info.value)
