"""Pilot tests of the reply tree: branch, the Branches view, switch, delete, fan out."""

from __future__ import annotations

import threading

import pytest

from tests.fake_engine import FakeEngine
from tests.tui_helpers import SIZE, fake_app, finished, ready, replied, send, until
from tui.conversation import tree_of
from tui.screens.branches import BranchesScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.fan_out import FanOutScreen, parse_fan_out
from tui.screens.main import MainScreen
from tui.widgets.chat_pane import ChatPane
from tui.widgets.status_bar import StatusBar
from tui.widgets.token_stream import TokenStream

pytestmark = pytest.mark.anyio


@pytest.fixture
def backend():
    backend = FakeEngine()
    yield backend
    backend.close()


async def branch_at(pilot, screen: MainScreen, at: int, candidate: str) -> None:
    await pilot.press("f4", "home", *["l"] * at)
    await pilot.press("b")
    await until(pilot, lambda: screen.proposal is not None)
    await pilot.press(candidate)
    await until(pilot, lambda: screen.proposal is not None and screen.proposal.index == at + 1)
    await pilot.press("c")
    await until(pilot, lambda: finished(screen))


async def test_branch_twice_open_switch_and_delete(backend: FakeEngine) -> None:
    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await replied(pilot, "hi")
        reply = screen.conversation.last_reply
        assert reply is not None
        first = list(reply.steps)
        await branch_at(pilot, screen, 2, "2")
        await branch_at(pilot, screen, 4, "3")
        tree = tree_of(reply)
        assert len(tree) == 3 and tree.current == 2
        assert tree.parent(1) == (0, 2) and tree.parent(2) == (1, 4)
        # the second branch reused the live reply: rewound, never restarted
        assert len(backend.started) == 1

        await pilot.press("f5")
        await until(pilot, lambda: isinstance(app.screen, BranchesScreen))
        view = app.screen
        assert view.selected == 2
        await pilot.press("up", "up")  # the root
        assert view.selected == 0
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        await pilot.pause(0.05)
        assert reply.steps == first and tree_of(reply).current == 0
        assert screen.query_one(TokenStream).steps == first
        assert "Paris" in screen.query_one(ChatPane).reply_text

        await pilot.press("f5")
        await until(pilot, lambda: isinstance(app.screen, BranchesScreen))
        await pilot.press("down")  # branch 2 (a child of the root)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, BranchesScreen))
        assert len(app.screen.reply_tree) == 2
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        tree = tree_of(reply)
        assert len(tree) == 2 and tree.current == 0
        assert tree.parent(1) == (0, 2)  # branch 3 re-attached where it leaves the root


class HoldTheThird(FakeEngine):
    """The third fan-out branch (the reply's third seed) waits at step 3 until stopped,
    so Esc is sure to stop it midway."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()

    def maybe_pause(self, index: int, cancel: threading.Event) -> None:
        super().maybe_pause(index, cancel)
        if index == 3 and self.started and len(self.started[-1].seeds) == 3:
            self.holding.set()
            cancel.wait(60)


async def test_fan_out_three_and_stop_one_midway() -> None:
    backend = HoldTheThird()
    app = fake_app(backend)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(pilot)
            await send(pilot, "hi")
            await until(pilot, lambda: finished(screen), timeout=10)
            reply = screen.conversation.last_reply
            assert reply is not None
            await pilot.press("f4", "home", "l", "f")
            await until(pilot, lambda: isinstance(app.screen, FanOutScreen))
            await pilot.press("enter")  # the default, 3
            await until(pilot, lambda: len(reply.alternatives) == 2, timeout=10)
            await until(pilot, lambda: "fan out 3/3" in str(screen.query_one(StatusBar).state))
            await until(pilot, backend.holding.is_set)
            await pilot.press("escape")  # stops the third midway: kept, cancelled
            await until(pilot, lambda: screen.gen_run is not None and not screen.gen_run.active)
            await until(pilot, lambda: "fanned out" in str(screen.query_one(StatusBar).state))
            tree = tree_of(reply)
            assert len(tree) == 4 and tree.current == 0
            seeds = [b.seed for b in tree.branches[1:]]
            assert len(set(seeds)) == 3
            assert [b.finish_reason for b in tree.branches[1:]] == ["stop", "stop", "cancelled"]
            # each continuation starts at the selected step (the fake's script repeats)
            assert all(b.steps[:1] == tuple(reply.steps[:1]) for b in tree.branches[1:])
            assert all(b.steps[1].index == 1 for b in tree.branches[1:])
            gen = backend.started[-1]
            assert gen.seeds == seeds and len(backend.started) == 1
    finally:
        backend.close()


def test_fan_out_k_is_checked() -> None:
    assert parse_fan_out(" 5 ") == 5
    for bad, why in (("1", "from 2 to 16"), ("17", "from 2 to 16"), ("x", "whole number")):
        with pytest.raises(ValueError, match=why):
            parse_fan_out(bad)


async def test_reopened_session_every_reply_is_inspectable(backend: FakeEngine) -> None:
    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        for text in ("hi", "again"):
            await send(pilot, text)
            await until(pilot, lambda: finished(screen))
        stream = screen.query_one(TokenStream)
        await pilot.press("f4", "p")
        assert screen.branches.shown == 1 and len(stream.steps) > 0
        assert "reply 1/2" in str(stream.border_title)
        await pilot.press("b")  # branching works on the last reply only
        await pilot.press("n")
        assert screen.branches.shown is None
        assert screen.query_one(StatusBar).context_used > len(stream.steps)


async def test_fan_out_reads_as_a_distribution_not_copies(backend: FakeEngine) -> None:
    """The fake's script repeats: every sample keeps the reply. The notice says so, and
    the Branches view folds the four identical paths into one row counted 4 times."""
    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await replied(pilot, "hi")
        reply = screen.conversation.last_reply
        assert reply is not None
        await pilot.press("f4", "home", "l", "l", "f")
        await until(pilot, lambda: isinstance(app.screen, FanOutScreen))
        await pilot.press("enter")  # the default, 3
        await until(pilot, lambda: "fanned out 3" in str(screen.query_one(StatusBar).state))
        assert len(tree_of(reply)) == 4
        assert any("3 of 3 kept the reply" in str(n.message) for n in app._notifications)
        await pilot.press("f5")
        await until(pilot, lambda: isinstance(app.screen, BranchesScreen))
        view = app.screen
        from textual.widgets import DataTable

        table = view.query_one(DataTable)
        assert table.row_count == 1
        assert str(table.get_row_at(0)[1]) == "4"
        detail = str(view.query_one("#branches-detail").render())
        assert "taken 4×" in detail
