"""What the probability views add beyond the recorded top-K: why a candidate was
dropped, the entropy line and its jump key, any token's numbers at a step, and
the prompt's surprisal, over the fake engine (given the optional capabilities)."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from tests.fake_engine import FakeEngine
from tests.tui_helpers import fake_app, finished, ready, screen_text, send, until
from tui.screens.main import MainScreen
from tui.widgets.entropy_line import BARS, EntropyLine, spark
from tui.widgets.token_stream import TokenStream, next_fork


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def replied(pilot: Pilot[None], text: str = "What is the capital of France?") -> MainScreen:
    screen = await ready(pilot)
    await send(pilot, text)
    await until(pilot, lambda: finished(screen))
    return screen


def test_spark_scale_and_unknown_entropy() -> None:
    assert spark(0.0) == BARS[0] and spark(4.0) == BARS[-1] and spark(99.0) == BARS[-1]
    assert spark(float("nan")) == " "


@pytest.mark.anyio
async def test_the_entropy_line_draws_one_bar_per_step_and_marks_forks() -> None:
    app = fake_app(FakeEngine(unsure=(2, 5)))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await replied(pilot)
        stream = screen.query_one(TokenStream)
        line = screen.query_one(EntropyLine)
        drawn = line.render().plain
        assert drawn.startswith("H ") and len(drawn) == 2 + len(stream.steps)
        assert drawn[2 + 2] == drawn[2 + 5] == spark(2.5)
        fork = line.get_component_rich_style("entropy-line--fork")
        spans = {span.start: span.style for span in line.render().spans}
        assert fork.color is not None and spans[2 + 5].color == fork.color  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_e_jumps_to_the_next_high_entropy_step_and_wraps() -> None:
    app = fake_app(FakeEngine(unsure=(2, 5)))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await replied(pilot)
        stream = screen.query_one(TokenStream)
        stream.focus()
        await pilot.press("home", "e")
        assert stream.cursor == 2
        await pilot.press("e")
        assert stream.cursor == 5
        await pilot.press("e")
        assert stream.cursor == 2  # wraps to the first
        await pilot.press("E")
        assert stream.cursor == 5
        await pilot.pause()
        assert "step 5" in screen_text(app)  # the Step tab follows the cursor


@pytest.mark.anyio
async def test_e_says_so_when_no_step_is_unsure() -> None:
    app = fake_app(FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await replied(pilot)
        stream = screen.query_one(TokenStream)
        stream.focus()
        before = stream.cursor
        await pilot.press("e")
        await until(pilot, lambda: any("2 nats" in n.message for n in app._notifications))
        assert stream.cursor == before


def test_next_fork_without_steps_or_cursor() -> None:
    assert next_fork([], None) is None


@pytest.mark.anyio
async def test_the_entropy_line_keeps_the_cursor_in_view_when_the_reply_is_wider() -> None:
    words = " ".join(f"w{i}" for i in range(120))
    app = fake_app(FakeEngine([words]))
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await replied(pilot, "count")
        stream = screen.query_one(TokenStream)
        line = screen.query_one(EntropyLine)
        width = line.content_region.width - 2
        assert len(stream.steps) > width
        assert line.window(width)[-1] == len(stream.steps) - 1  # follows the newest
        stream.focus()
        await pilot.press("home")
        assert line.window(width)[0] == 0
        await pilot.press(*["right"] * (width + 3))
        shown = line.window(width)
        assert stream.cursor in shown and shown[-1] == stream.cursor
