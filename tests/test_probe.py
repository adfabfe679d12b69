"""Numbers beyond the recorded top-N: any token at a step, and prompt surprisal.

Both recompute from a fresh forward, so they must agree with what the decoder
recorded (candidates and the chosen token) and with a plain full forward pass.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from engine.decode import LocalEngine, prompt_scoring, run_reply, token_lookup
from engine.decode.probe import prompt_scores
from engine.errors import FeatureUnavailableError, InvalidParameterError
from engine.model import ModelSpec
from engine.params import SamplingParams
from engine.records import Step
from engine.tokens import ChatMessage
from tests.fake_engine import FakeEngine

CHAT = [ChatMessage("user", "Name a famous painter and one of their paintings.")]
SAMPLED = SamplingParams(
    temperature=0.8,
    top_k=6,
    top_p=0.9,
    min_p=0.02,
    repetition_penalty=1.3,
    max_new_tokens=8,
    seed=4,
    top_logprobs=10,
)


def _engine(loaded: Any) -> LocalEngine:
    engine = LocalEngine(loaded)
    engine.load(ModelSpec())
    return engine


def _same(a: float, b: float) -> bool:
    return (a == b == -math.inf) or abs(math.exp(a) - math.exp(b)) <= 1e-4


def _check_steps_match(engine: LocalEngine, params: SamplingParams, steps: list[Step]) -> None:
    prompt = engine.chat_ids(CHAT)
    generated = [s.token_id for s in steps]
    for step in steps:
        ids = prompt + generated[: step.index]
        tokens = [step.token_id, *(c.token_id for c in step.top)]
        chosen, *probes = engine.token_probabilities(ids, params, tokens)
        assert _same(chosen.logprob, step.logprob)
        assert _same(chosen.processed_logprob, step.processed_logprob)
        assert (chosen.rank, chosen.processed_rank) == (step.rank, step.processed_rank)
        for probe, candidate in zip(probes, step.top, strict=True):
            assert probe.token_id == candidate.token_id
            assert _same(probe.logprob, candidate.logprob)
            assert _same(probe.processed_logprob, candidate.processed_logprob)
            assert probe.dropped_by == candidate.dropped_by


@pytest.mark.parametrize("params", [SAMPLED, SamplingParams(temperature=0.0, max_new_tokens=6)])
def test_a_looked_up_token_equals_what_the_step_recorded_tiny(
    tiny_model: Any, params: SamplingParams
) -> None:
    engine = _engine(tiny_model)
    result = run_reply(engine.start(CHAT, params))
    _check_steps_match(engine, params, list(result.steps))


@pytest.mark.real_model
def test_a_looked_up_token_equals_what_the_step_recorded_bundled(real_model: Any) -> None:
    engine = _engine(real_model)
    result = run_reply(engine.start(CHAT, SAMPLED))
    assert any(c.dropped_by for s in result.steps for c in s.top)  # the filters did work
    _check_steps_match(engine, SAMPLED, list(result.steps))


def test_any_token_beyond_the_top_n_and_the_live_reply_is_untouched(tiny_model: Any) -> None:
    engine = _engine(tiny_model)
    params = SamplingParams(temperature=1.0, top_k=3, seed=1, max_new_tokens=6, top_logprobs=3)
    reply = engine.start(CHAT, params)
    reply.prefill()
    first = reply.step()
    ids = engine.chat_ids(CHAT)
    with torch.inference_mode():
        logits = tiny_model.model(torch.tensor([ids]), use_cache=False).logits[0, -1].float()
    raw = torch.log_softmax(logits, dim=-1)
    far = int(raw.argsort(descending=True)[100])  # rank 101: not recorded, removed by top-k
    (probe,) = engine.token_probabilities(ids, params, [far])
    assert probe.rank == 101 and probe.logprob == pytest.approx(float(raw[far]), abs=1e-5)
    assert probe.processed_logprob == -math.inf and probe.dropped_by == "top-k"
    assert probe.processed_rank == 4  # after the 3 kept tokens
    # the lookup ran on a cache of its own: the reply goes on as if nothing happened
    rest = [reply.step().token_id for _ in range(3)]
    again = engine.start(CHAT, params)
    again.prefill()
    assert [again.step().token_id for _ in range(4)] == [first.token_id, *rest]


def test_a_lookup_refuses_ids_outside_the_vocabulary(tiny_model: Any) -> None:
    engine = _engine(tiny_model)
    with pytest.raises(InvalidParameterError, match="not a token id"):
        engine.token_probabilities([1, 2], SAMPLED, [10**9])
    with pytest.raises(InvalidParameterError, match="empty"):
        engine.token_probabilities([], SAMPLED, [5])


def _fresh(loaded: Any, ids: list[int]) -> tuple[list[float], list[int]]:
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([ids]), use_cache=False).logits[0].float()
    lp = torch.log_softmax(logits[:-1], dim=-1)  # [n - 1, vocab]
    target = torch.tensor(ids[1:])[:, None]
    chosen = lp.gather(1, target)
    ranks = ((lp > chosen).sum(dim=-1) + 1).tolist()
    return chosen[:, 0].tolist(), ranks


@pytest.mark.parametrize("chunk", [3, 256])
def test_prompt_scores_equal_a_fresh_forward_tiny(tiny_model: Any, chunk: int) -> None:
    engine = _engine(tiny_model)
    ids = engine.chat_ids(CHAT)
    scores = prompt_scores(tiny_model, ids, chunk=chunk)
    logprobs, ranks = _fresh(tiny_model, ids)
    assert scores.ids == tuple(ids) and scores.logprobs[0] is None and scores.ranks[0] is None
    assert list(scores.logprobs[1:]) == pytest.approx(logprobs, abs=1e-4)
    # a random model has near-ties deep in the ranking: chunking may swap a neighbour
    near = zip(scores.ranks[1:], ranks, strict=True)
    assert all(abs(a - b) <= max(1, b // 100) for a, b in near)  # type: ignore[operator]


@pytest.mark.real_model
def test_prompt_scores_equal_a_fresh_forward_bundled(real_model: Any) -> None:
    engine = _engine(real_model)
    ids = engine.chat_ids([ChatMessage("system", "You are a pirate."), *CHAT])
    scores = engine.prompt_scores(ids)
    logprobs, ranks = _fresh(real_model, ids)
    assert [math.exp(lp) for lp in scores.logprobs[1:]] == pytest.approx(
        [math.exp(lp) for lp in logprobs], abs=1e-4
    )
    assert list(scores.ranks[1:]) == ranks
    assert scores.surprisal_bits(1) == pytest.approx(-logprobs[0] / math.log(2))


def test_engines_without_the_capabilities_say_so_in_one_line() -> None:
    for check in (token_lookup, prompt_scoring):
        with pytest.raises(FeatureUnavailableError) as info:
            check(FakeEngine())
        assert "\n" not in str(info.value) and "FakeEngine" in str(info.value)
