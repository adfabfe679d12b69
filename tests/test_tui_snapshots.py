"""Layouts under pytest-textual-snapshot, over the fake engine (no clocks, no torch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from tests.fake_engine import FakeEngine
from tests.tui_helpers import drained, fake_app, main_screen, ready, send, until
from tui.screens.branches import BranchesScreen
from tui.screens.loading import LoadingScreen
from tui.widgets.chat_pane import ChatPane
from tui.widgets.step_view import StepView
from tui.widgets.token_stream import TokenStream

SIZE = (100, 30)


@pytest.fixture
def paused() -> Iterator[FakeEngine]:
    backend = FakeEngine(pause_at=6, step_delay=0.04)
    yield backend
    backend.close()


def still(backend: FakeEngine, size: tuple[int, int] = SIZE):
    """The app with nothing that moves on its own: no animations, no blinking cursor."""
    app = fake_app(backend)
    app.animation_level = "none"
    return app


async def mid_reply(pilot: Pilot[None]) -> None:
    screen = await ready(pilot)
    screen.query_one("#prompt").cursor_blink = False  # type: ignore[attr-defined]
    await send(pilot, "What is the capital of France?")
    stream = screen.query_one(TokenStream)
    await until(pilot, lambda: len(stream.steps) == 6)
    # while a reply streams the inspector and the chat catch up on timers: wait for them
    await until(pilot, lambda: screen.query_one(StepView).shown is stream.steps[-1])
    await until(pilot, lambda: not screen.query_one(ChatPane).behind)
    await pilot.pause(0.1)


def test_main_screen_mid_reply(snap_compare, paused: FakeEngine) -> None:
    assert snap_compare(still(paused), terminal_size=SIZE, run_before=mid_reply)


def test_step_tab_selected_token(snap_compare, paused: FakeEngine) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await mid_reply(pilot)
        await pilot.press("f4", "home", "l", "l")
        await pilot.pause(0.1)

    assert snap_compare(still(paused), terminal_size=SIZE, run_before=before)


def test_prompt_tab(snap_compare, paused: FakeEngine) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await mid_reply(pilot)
        await main_screen(pilot.app).run_action("show_tab('tab-prompt')")  # type: ignore[arg-type]
        await pilot.pause(0.1)

    assert snap_compare(still(paused), terminal_size=SIZE, run_before=before)


def test_loading_screen_converting(snap_compare) -> None:
    backend = FakeEngine(hold_load=True)

    async def before(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: isinstance(pilot.app.screen, LoadingScreen))
        await until(
            pilot, lambda: "converting" in str(pilot.app.screen.query_one("#loading-stage").content)
        )  # type: ignore[attr-defined]

    app = still(backend)
    shoot = app.export_screenshot

    def shoot_then_load(*args: Any, **kwargs: Any) -> str:
        try:
            return shoot(*args, **kwargs)
        finally:
            backend.close()  # the load ends once the screenshot is taken, never before

    app.export_screenshot = shoot_then_load  # type: ignore[method-assign]
    try:
        assert snap_compare(app, terminal_size=(80, 24), run_before=before)
    finally:
        backend.close()


def test_main_screen_at_80x24(snap_compare, paused: FakeEngine) -> None:
    assert snap_compare(still(paused), terminal_size=(80, 24), run_before=mid_reply)


def test_branches_view_at_80x24(snap_compare) -> None:
    backend = FakeEngine()

    async def before(pilot: Pilot[None]) -> None:
        screen = await ready(pilot)
        screen.query_one("#prompt").cursor_blink = False  # type: ignore[attr-defined]
        await send(pilot, "What is the capital of France?")
        await until(
            pilot,
            lambda: (
                screen.conversation.last_reply is not None
                and screen.conversation.last_reply.finish_reason is not None
            ),
        )
        await pilot.press("f4", "home", "l", "l", "b")
        await until(pilot, lambda: screen.proposal is not None)
        await pilot.press("2")  # force candidate 2: the branch takes another token
        await until(pilot, lambda: screen.proposal is not None and screen.proposal.index == 3)
        await pilot.press("c")
        await until(pilot, lambda: not screen.replying and screen.proposal is None)
        await pilot.press("f5")
        await until(pilot, lambda: isinstance(pilot.app.screen, BranchesScreen))
        branches = pilot.app.screen
        assert isinstance(branches, BranchesScreen)
        table = branches.query_one(DataTable)
        await until(pilot, lambda: table.row_count == len(branches.reply_tree.branches) > 1)
        await drained(pilot, branches)  # the highlighted row's detail is shown

    try:
        assert snap_compare(still(backend), terminal_size=(80, 24), run_before=before)
    finally:
        backend.close()


@pytest.mark.parametrize("size", [(80, 24), (160, 45)], ids=["80x24", "160x45"])
def test_settings_sources_fit_on_one_line(snap_compare, size: tuple[int, int]) -> None:
    """The value-source column holds its longest word ("transformers") unwrapped."""

    async def before(pilot: Pilot[None]) -> None:
        await ready(pilot)
        await pilot.press("f2")
        await until(
            pilot, lambda: pilot.app.screen.query("#temperature-source").first() is not None
        )
        source = pilot.app.screen.query_one("#temperature-source")
        assert source.content_region.width >= len("transformers")
        await pilot.pause(0.1)

    backend = FakeEngine()
    try:
        assert snap_compare(still(backend), terminal_size=size, run_before=before)
    finally:
        backend.close()
