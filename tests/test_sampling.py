"""Sampling functions against transformers' own processors, without a model."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from engine.decode.sampling import (
    apply_min_p,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    choose,
    dropped_by,
    make_generator,
    process,
    summarize,
)
from engine.errors import InvalidParameterError
from engine.params import SamplingParams, resolve_sampling

VOCAB = 257


def _logits(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(VOCAB, generator=generator) * 3  # [vocab]


def _ids(seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (1, 40), generator=generator)  # [1, n]


def _mask(ids: torch.Tensor) -> torch.Tensor:
    seen = torch.zeros(VOCAB, dtype=torch.bool)
    seen[ids.flatten()] = True
    return seen


def _theirs(
    processor: object, logits: torch.Tensor, ids: torch.Tensor | None = None
) -> torch.Tensor:
    input_ids = ids if ids is not None else torch.zeros((1, 1), dtype=torch.long)
    return processor(input_ids, logits.clone().unsqueeze(0))[0]  # type: ignore[operator]


@pytest.mark.parametrize("penalty", [0.7, 1.0, 1.3])
def test_repetition_penalty_matches_transformers(penalty: float) -> None:
    logits, ids = _logits(), _ids()
    ours = apply_repetition_penalty(logits, _mask(ids), penalty)
    theirs = _theirs(RepetitionPenaltyLogitsProcessor(penalty), logits, ids)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 1.7])
def test_temperature_matches_transformers(temperature: float) -> None:
    logits = _logits()
    theirs = _theirs(TemperatureLogitsWarper(temperature), logits)
    assert torch.equal(apply_temperature(logits, temperature), theirs)


@pytest.mark.parametrize("k", [1, 5, 50, VOCAB + 10])
def test_top_k_matches_transformers(k: int) -> None:
    logits = _logits()
    assert torch.equal(apply_top_k(logits, k), _theirs(TopKLogitsWarper(k), logits))


def test_top_k_zero_is_off() -> None:
    logits = _logits()
    assert apply_top_k(logits, 0) is logits


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.999])
def test_top_p_matches_transformers(p: float) -> None:
    logits = _logits(3)
    assert torch.equal(apply_top_p(logits, p), _theirs(TopPLogitsWarper(p), logits))


@pytest.mark.parametrize("p", [0.01, 0.2, 0.9])
def test_min_p_matches_transformers(p: float) -> None:
    logits = _logits(4)
    assert torch.equal(apply_min_p(logits, p), _theirs(MinPLogitsWarper(p), logits))


def test_filters_never_change_their_input() -> None:
    logits = _logits()
    before = logits.clone()
    apply_top_k(logits, 3)
    apply_top_p(logits, 0.5)
    apply_min_p(logits, 0.5)
    apply_repetition_penalty(logits, _mask(_ids()), 1.5)
    assert torch.equal(logits, before)


def test_process_applies_the_transformers_order() -> None:
    logits, ids = _logits(7), _ids(8)
    params = SamplingParams(
        temperature=0.7, top_k=40, top_p=0.8, min_p=0.05, repetition_penalty=1.2
    )
    expected = logits.clone().unsqueeze(0)
    for processor in (
        RepetitionPenaltyLogitsProcessor(1.2),
        TemperatureLogitsWarper(0.7),
        TopKLogitsWarper(40),
        TopPLogitsWarper(0.8),
        MinPLogitsWarper(0.05),
    ):
        expected = processor(ids, expected)
    assert torch.equal(process(logits, params, _mask(ids)), expected[0])


def test_greedy_applies_only_the_repetition_penalty() -> None:
    logits, ids = _logits(), _ids()
    params = SamplingParams(temperature=0.0, top_k=2, repetition_penalty=1.5)
    processed = process(logits, params, _mask(ids))
    assert torch.isfinite(processed).all()
    assert int(choose(processed, params, None)) == int(torch.argmax(processed))


def test_choose_draws_like_torch_multinomial() -> None:
    processed = apply_top_k(_logits(), 20)
    params = SamplingParams(temperature=1.0, seed=5)
    ours = [int(choose(processed, params, make_generator(torch.device("cpu"), 5)))]
    torch.manual_seed(5)
    theirs = [int(torch.multinomial(torch.softmax(processed, -1).unsqueeze(0), 1)[0, 0])]
    assert ours == theirs
    assert math.isfinite(float(processed[ours[0]]))


def test_summarize_reports_both_distributions() -> None:
    raw = _logits()
    processed = apply_top_k(raw, 3)
    worst = int(torch.argmin(raw))
    stats = summarize(raw, processed, worst, 5)
    raw_lp = torch.log_softmax(raw, -1)
    assert stats.token_id == worst
    assert stats.rank == VOCAB
    assert stats.logprob == pytest.approx(float(raw_lp[worst]), abs=1e-6)
    assert stats.processed_logprob == -math.inf
    assert stats.top_ids == tuple(torch.topk(raw, 5).indices.tolist())
    assert stats.top_processed_logprobs[3:] == (-math.inf, -math.inf)
    probs = raw_lp.exp()
    assert stats.entropy == pytest.approx(float(-(probs * raw_lp).sum()), rel=1e-5)
    assert 0 <= stats.processed_entropy <= math.log(3) + 1e-6
    assert len(summarize(raw, processed, worst, 0).top_ids) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("top_k", -1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_p", 1.0),
        ("repetition_penalty", 0.0),
        ("max_new_tokens", 0),
        ("seed", -1),
        ("top_logprobs", 51),
        ("stop", ("",)),
    ],
)
def test_invalid_params_name_the_field(field: str, value: object) -> None:
    with pytest.raises(InvalidParameterError) as info:
        SamplingParams(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field


def test_resolve_sampling_precedence_and_sources() -> None:
    params, sources = resolve_sampling(
        {"do_sample": True, "temperature": 0.6, "top_p": 0.9}, {"top_p": 0.5}
    )
    assert (params.temperature, params.top_p, params.top_k) == (0.6, 0.5, 50)
    assert sources["temperature"] == "model"
    assert sources["top_p"] == "user"
    assert sources["top_k"] == "transformers"
    greedy, sources = resolve_sampling({}, {})
    assert greedy.greedy
    assert sources["temperature"] == "transformers"


# --- why a candidate was dropped -----------------------------------------------------


def _scores(*logits: float) -> torch.Tensor:
    return torch.tensor(logits, dtype=torch.float32)  # [vocab]


NOTHING_SEEN = torch.zeros(6, dtype=torch.bool)


def test_dropped_by_names_the_first_processor_that_removed_each_token() -> None:
    # probabilities ~ .63 .23 .086 .032 .012 .004: top-k 4 drops 4 and 5; top-p 0.8
    # then keeps 0 and 1 (renormalised .64 + .24 >= 0.8) and drops 2 and 3; min-p 0.4
    # drops 1 (.24 < 0.4 x .64)
    logits = _scores(5.0, 4.0, 3.0, 2.0, 1.0, 0.0)
    params = SamplingParams(temperature=1.0, top_k=4, top_p=0.8, min_p=0.4)
    got = dropped_by(logits, params, NOTHING_SEEN, [0, 1, 2, 3, 4, 5])
    assert got == (None, "min-p", "top-p", "top-p", "top-k", "top-k")
    processed = process(logits, params, NOTHING_SEEN)
    # exactly the removed tokens are named, and each by a processor that ran
    assert [g is not None for g in got] == torch.isinf(processed).tolist()


def test_dropped_by_each_processor_alone() -> None:
    logits = _scores(5.0, 4.0, 3.0, 2.0, 1.0, 0.0)
    ids = [0, 1, 2, 5]
    top_k = SamplingParams(temperature=1.0, top_k=2)
    top_p = SamplingParams(temperature=1.0, top_p=0.5)
    min_p = SamplingParams(temperature=1.0, min_p=0.2)  # keeps p >= 0.2 x .63
    assert dropped_by(logits, top_k, NOTHING_SEEN, ids) == (None, None, "top-k", "top-k")
    assert dropped_by(logits, top_p, NOTHING_SEEN, ids) == (None, "top-p", "top-p", "top-p")
    assert dropped_by(logits, min_p, NOTHING_SEEN, ids) == (None, None, "min-p", "min-p")


def test_temperature_and_repetition_penalty_drop_nothing_and_greedy_filters_nothing() -> None:
    logits = _scores(5.0, 4.0, 3.0, 2.0, 1.0, 0.0)
    seen = torch.tensor([True, False, True, False, False, False])
    sampled = SamplingParams(temperature=0.3, repetition_penalty=2.0)
    assert dropped_by(logits, sampled, seen, range(6)) == (None,) * 6
    greedy = SamplingParams(temperature=0.0, top_k=1, repetition_penalty=2.0)
    assert dropped_by(logits, greedy, seen, range(6)) == (None,) * 6


def test_the_repetition_penalty_can_push_a_token_out_of_the_top_k() -> None:
    logits = _scores(5.0, 4.9, 0.0, 0.0, 0.0, 0.0)
    seen = torch.tensor([True, False, False, False, False, False])
    params = SamplingParams(temperature=1.0, top_k=1, repetition_penalty=1.5)
    assert dropped_by(logits, params, seen, [0, 1]) == ("top-k", None)
