"""How steps reach the screen: deadline batches, paced intervals, the inspector."""

from __future__ import annotations

import threading

import pytest

import tui.screens.main as main_module
from engine.records import Step
from tests.fake_engine import FakeEngine
from tests.timeouts import scaled
from tests.tui_helpers import driving, ready, send, until
from tui import pacing
from tui.driver import StepBatcher
from tui.messages import StepsDecoded
from tui.widgets.step_view import StepView
from tui.widgets.token_stream import TokenStream

pytestmark = pytest.mark.anyio


def _step(index: int) -> Step:
    return Step(index, 100 + index, "x", "x", False, -0.1, 1, 0.5, -0.1, 1, 0.5)


def test_batcher_posts_the_first_step_at_once_and_the_rest_by_the_deadline() -> None:
    posted: list[tuple[int, ...]] = []
    three = threading.Event()

    def post(message: object) -> None:
        assert isinstance(message, StepsDecoded)
        posted.append(tuple(s.index for s in message.steps))
        if sum(map(len, posted)) == 3:
            three.set()

    batcher = StepBatcher(post, lambda: 0.2)
    batcher.add(_step(0))
    assert posted == [(0,)]  # time to first token: no wait
    batcher.add(_step(1))
    batcher.add(_step(2))
    # no further step comes (a slow model): the pending ones still land, on the batcher's own
    # timer (no add, no close); how soon is bench/ui.py's to measure
    # (in one batch, unless this thread stalled past the deadline between the two adds)
    assert three.wait(scaled(30))
    assert posted[0] == (0,) and [i for batch in posted[1:] for i in batch] == [1, 2]
    batcher.add(_step(3))
    batcher.close()  # closing flushes what is pending, in order
    assert [i for batch in posted for i in batch] == [0, 1, 2, 3]


def test_pacer_spaces_batches_by_the_main_threads_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.004, 0.008, 0.5, 1.0])
    monkeypatch.setattr(pacing.time, "thread_time", lambda: next(clock))
    pacer = pacing.FramePacer(budget=0.1, shortest=0.03, longest=0.25)
    pacer.reset()
    assert pacer.interval_after_update() == pytest.approx(0.04)  # 4 ms / 10%
    assert pacer.interval_after_update() == pytest.approx(0.04)
    assert pacer.interval_after_update() == 0.25  # an expensive paint: capped


async def test_moving_the_cursor_mid_reply_shows_that_step_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the streaming refresh timer is made far longer than the wait below, so the step
    # can only have been shown by the key (a fixed 50 ms pause flaked on a busy CI)
    monkeypatch.setattr(main_module, "INSPECT_WHILE_STREAMING", 60.0)
    async with driving(FakeEngine(pause_at=6, step_delay=0.02)) as pilot:
        screen = await ready(pilot)
        await send(pilot, "What is the capital of France?")
        stream = screen.query_one(TokenStream)
        await until(pilot, lambda: len(stream.steps) == 6)
        assert screen.gen_run is not None and screen.gen_run.active  # still streaming
        stream.focus()
        pilot.app.simulate_key("home")  # not pilot.press: it waits out the refresh timer too
        # shown when the key is handled, not by the streaming refresh timer
        view = screen.query_one(StepView)
        await until(pilot, lambda: view.shown is stream.steps[0], timeout=10)
        assert screen._inspect_timer is None
