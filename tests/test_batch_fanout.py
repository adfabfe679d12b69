"""Fan-out as one batched run (engine/decode/fanout.py) on the tiny model: the same
continuations as the sequential fan-out (seed for seed), one forward per step for all
rows, steps numbered after the path, a stop ends every row as cancelled; engines that
cannot batch keep the sequential fan-out."""

from __future__ import annotations

from typing import Any

import pytest

from engine.decode import BranchFinished, BranchProgressed, FanOutFinished, ReplyDriver
from engine.decode import fanout as fanout_module
from engine.params import SamplingParams
from engine.tokens import ChatMessage

MESSAGES = [ChatMessage("user", "Tell me a story")]
PARAMS = SamplingParams(temperature=1.0, top_k=0, max_new_tokens=12, top_logprobs=3)
SEEDS = [11, 12, 13, 14]


def _fan_out(
    engine: Any, monkeypatch: pytest.MonkeyPatch, batched: bool, seeds: list[int] = SEEDS
) -> tuple[list[Any], list[int]]:
    """(events, target) of a reply fanned out from its step 2."""
    monkeypatch.setattr("engine.decode.driver.can_batch", lambda _e: batched)
    events: list[Any] = []
    driver = ReplyDriver(engine, MESSAGES, PARAMS.with_changes(seed=5), on_event=events.append)
    driver.run()
    target = driver.live[:2]
    events.clear()
    driver.fan_out(target, seeds)
    return events, target


def test_batched_fan_out_gives_the_sequential_continuations(
    tiny_engine: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _model = tiny_engine
    sequential, target = _fan_out(engine, monkeypatch, batched=False)
    batched, target_b = _fan_out(engine, monkeypatch, batched=True)
    assert target == target_b
    by_seed = {e.seed: e for e in sequential if isinstance(e, BranchFinished)}
    got = {e.seed: e for e in batched if isinstance(e, BranchFinished)}
    assert sorted(got) == SEEDS and sorted(by_seed) == SEEDS
    for seed in SEEDS:
        a, b = by_seed[seed], got[seed]
        assert [s.token_id for s in b.steps] == [s.token_id for s in a.steps]
        assert [s.index for s in b.steps] == [s.index for s in a.steps]
        assert b.steps[0].index == len(target)
        assert b.finish_reason == a.finish_reason
        for x, y in zip(a.steps, b.steps, strict=True):
            assert y.logprob == pytest.approx(x.logprob, abs=1e-4)
            assert [c.token_id for c in y.top] == [c.token_id for c in x.top]
    assert batched[0] == BranchProgressed(0, len(SEEDS), 0, SEEDS[0])
    assert batched[-1] == FanOutFinished(len(SEEDS), cancelled=False)


def test_one_forward_per_step_for_all_rows(
    tiny_engine: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _model = tiny_engine
    model = engine.loaded.model
    shapes: list[tuple[int, ...]] = []
    handle = model.register_forward_pre_hook(
        lambda _m, _a, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        events, _ = _fan_out(engine, monkeypatch, batched=True)
    finally:
        handle.remove()
    branches = [e for e in events if isinstance(e, BranchFinished)]
    longest = max(len(b.steps) for b in branches)
    # after the reply's own forwards: one prefill, then one step per token but the last
    # (a committed token is forwarded when the next one is drawn)
    fan = shapes[-(longest - 1) :]
    prefill = shapes[-longest]
    assert prefill[0] == 1  # the prompt and path run once, then copied into K rows
    assert all(n == 1 for _rows, n in fan)
    assert fan[0][0] == len(SEEDS)
    assert [rows for rows, _n in fan] == sorted((rows for rows, _n in fan), reverse=True)


def test_a_stop_ends_every_row_as_cancelled(
    tiny_engine: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _model = tiny_engine
    monkeypatch.setattr("engine.decode.driver.can_batch", lambda _e: True)
    events: list[Any] = []
    driver = ReplyDriver(engine, MESSAGES, PARAMS, on_event=events.append)
    driver.run()
    target = driver.live[:1]
    events.clear()

    def stop_after_progress(event: Any) -> None:
        events.append(event)
        if isinstance(event, BranchProgressed):
            driver.cancel_event.set()

    driver.on_event = stop_after_progress
    end = driver.fan_out(target, SEEDS)
    assert end == FanOutFinished(len(SEEDS), cancelled=True)
    finished = [e for e in events if isinstance(e, BranchFinished)]
    assert {e.finish_reason for e in finished} == {"cancelled"}
    assert all(len(e.steps) <= 1 for e in finished)


def test_only_a_transformers_engine_in_this_process_batches(tiny_engine: tuple[Any, Any]) -> None:
    from tests.fake_engine import FakeEngine

    engine, _model = tiny_engine
    assert fanout_module.can_batch(engine)
    assert not fanout_module.can_batch(FakeEngine())


def test_the_fan_out_summary_reads_as_a_distribution() -> None:
    names = {3: " Paris", 9: " Lyon", 7: " Nice"}
    display = names.__getitem__
    reply = [1, 2, 3, 4]
    same = [[1, 2, 3, 4]] * 3
    assert fanout_module.fan_out_summary(reply, 2, same, display) == "3 of 3 kept the reply"
    spread = [[1, 2, 3, 5]] * 6 + [[1, 2, 9]] * 2
    assert fanout_module.fan_out_summary(reply, 2, spread, display) == "6× Paris, 2× Lyon"
    mixed = [[1, 2, 3, 4]] * 5 + [[1, 2, 9]] * 2 + [[1, 2, 7]] + [[1, 2]]
    assert fanout_module.fan_out_summary(reply, 2, mixed, display) == (
        "5 of 9 kept the reply · 2× Lyon, 1× Nice, 1× (end)"
    )
