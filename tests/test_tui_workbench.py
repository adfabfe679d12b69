"""Pilot tests of the workbench over the scripted fake engine (no torch)."""

from __future__ import annotations

from typing import Any

import pytest
from textual.command import CommandPalette

from tests.fake_engine import DEFAULT_REPLY, FakeEngine
from tests.tui_helpers import (
    SIZE,
    fake_app,
    finished,
    palette_entries,
    ready,
    replied,
    send,
    until,
)
from tui.conversation import tree_of
from tui.screens.loading import LoadingScreen
from tui.widgets.chat_pane import ChatPane
from tui.widgets.prompt_tokens import PromptTokens
from tui.widgets.status_bar import StatusBar
from tui.widgets.step_view import StepView
from tui.widgets.token_stream import TokenStream

pytestmark = pytest.mark.anyio


@pytest.fixture
def backend():
    backend = FakeEngine()
    yield backend
    backend.close()


async def test_send_streams_reply_tokens_and_inspector(backend: FakeEngine) -> None:
    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await replied(pilot, "What is the capital of France?")
        await pilot.pause(0.1)
        assert "Paris" in screen.query_one(ChatPane).reply_text
        stream = screen.query_one(TokenStream)
        assert len(stream.steps) == len(DEFAULT_REPLY.split()) + 1
        assert stream.steps[-1].special and stream.steps[-1].finish_reason == "stop"
        assert screen.query_one(StepView).candidate_count == 3
        assert screen.query_one(PromptTokens).view is not None
        status = screen.query_one(StatusBar)
        assert status.context_used > 0 and status.tokens_per_second == pytest.approx(40.0)
        assert screen.conversation.last_reply.finish_reason == "stop"  # type: ignore[union-attr]
        # the next message can be sent straight away
        await send(pilot, "And Germany?")
        await until(pilot, lambda: finished(screen) and len(screen.conversation.turns) == 4)


async def test_escape_cancels_keeping_partial_reply() -> None:
    backend = FakeEngine(pause_at=3)
    app = fake_app(backend)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(pilot)
            await send(pilot, "hi")
            await until(pilot, lambda: screen.gen_run is not None and screen.gen_run.active)
            await pilot.pause(0.1)
            await pilot.press("escape")
            await until(pilot, lambda: finished(screen))
            reply = screen.conversation.last_reply
            assert reply is not None and reply.finish_reason == "cancelled"
            assert 0 < len(reply.steps) < len(DEFAULT_REPLY.split())
            assert reply.content and reply.content in DEFAULT_REPLY
            assert screen.query(".chat-cancelled")
            backend.pause_at = None
            await send(pilot, "again")
            await until(pilot, lambda: finished(screen) and len(screen.conversation.turns) == 4)
            assert screen.conversation.last_reply.finish_reason == "stop"  # type: ignore[union-attr]
    finally:
        backend.close()


async def _first_proposal(pilot: Any) -> Any:
    """Step mode on, "hi" sent: the screen once the first proposal waits for a pick."""
    screen = await ready(pilot)
    await pilot.press("ctrl+t")
    await send(pilot, "hi")
    await until(pilot, lambda: screen.proposal is not None)
    return screen


async def test_step_mode_accept_and_choose_candidate_two(backend: FakeEngine) -> None:
    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _first_proposal(pilot)
        assert screen.query_one(StatusBar).step_mode
        first = screen.proposal
        assert screen.query_one(StepView).candidate_count == len(first.top)  # type: ignore[union-attr]
        await pilot.press("space")
        await until(pilot, lambda: screen.proposal is not None and screen.proposal.index == 1)
        stream = screen.query_one(TokenStream)
        assert stream.steps[0].token_id == first.sampled and not stream.steps[0].forced  # type: ignore[union-attr]
        second = screen.proposal
        await pilot.press("2")
        await until(pilot, lambda: len(stream.steps) == 2)
        chosen = stream.steps[1]
        assert chosen.forced and chosen.token_id == second.top[1].token_id  # type: ignore[union-attr]
        await pilot.press("c")
        await until(pilot, lambda: finished(screen))
        assert screen.conversation.last_reply.finish_reason == "stop"  # type: ignore[union-attr]


async def test_step_mode_continue_pressed_while_a_forced_step_decodes() -> None:
    """`c` right after `2`, while the forced token is still being decoded: the reply goes
    on by itself after that step, with the forced token kept, and no proposal waits."""
    backend = FakeEngine(step_delay=0.3)
    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _first_proposal(pilot)
        pick = screen.proposal.top[1].token_id  # type: ignore[union-attr]
        await pilot.press("2", "c")  # the forced step takes 0.3 s: c lands during it
        await until(pilot, lambda: finished(screen))
        reply = screen.conversation.last_reply
        assert reply is not None and reply.finish_reason == "stop"
        assert reply.steps[0].forced and reply.steps[0].token_id == pick
        assert len(reply.steps) > 2 and not any(s.forced for s in reply.steps[1:])
        assert screen.proposal is None and screen.query_one(StatusBar).step_mode  # mode kept


async def test_step_mode_escape_stops(backend: FakeEngine) -> None:
    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _first_proposal(pilot)
        await pilot.press("escape")
        await until(pilot, lambda: finished(screen))
        assert screen.conversation.last_reply.finish_reason == "cancelled"  # type: ignore[union-attr]


async def test_branch_keeps_old_tail_as_alternative(backend: FakeEngine) -> None:
    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await replied(pilot, "hi")
        reply = screen.conversation.last_reply
        assert reply is not None
        original = list(reply.steps)
        await pilot.press("f4")  # focus the token stream
        await pilot.press("home", "l", "l")
        assert screen.query_one(TokenStream).cursor == 2
        await pilot.press("b")
        await until(pilot, lambda: screen.proposal is not None)
        assert screen.proposal.index == 2  # type: ignore[union-attr]
        pick = screen.proposal.top[1].token_id  # type: ignore[union-attr]
        await pilot.press("2")
        await until(pilot, lambda: screen.proposal is not None and screen.proposal.index == 3)
        await pilot.press("c")
        await until(pilot, lambda: finished(screen))
        assert len(reply.alternatives) == 1
        assert reply.alternatives[0].steps == tuple(original)
        assert tree_of(reply).parent(1) == (0, 2)
        assert reply.steps[:2] == original[:2]
        assert reply.steps[2].forced and reply.steps[2].token_id == pick
        assert screen.query(".chat-branch")


async def test_settings_refuse_invalid_values_inline(backend: FakeEngine) -> None:
    from textual.widgets import Input, Static

    from tui.screens.settings import SettingsScreen

    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, SettingsScreen))
        dialog = app.screen
        assert str(dialog.query_one("#temperature-source", Static).content) == "model"
        dialog.query_one("#temperature", Input).value = "-1"
        dialog.query_one("#top_p", Input).value = "abc"
        await pilot.pause()
        assert "temperature: must be a number >= 0" in str(
            dialog.query_one("#temperature-error", Static).content
        )
        assert "not a number" in str(dialog.query_one("#top_p-error", Static).content)
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, SettingsScreen)  # refused
        dialog.query_one("#temperature", Input).value = "0.5"
        dialog.query_one("#top_p", Input).value = "0.8"
        await pilot.pause()
        assert str(dialog.query_one("#temperature-source", Static).content) == "user"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: not isinstance(app.screen, SettingsScreen))
        params, sources = screen.settings.resolve(screen.facts.generation_config)  # type: ignore[union-attr]
        assert params.temperature == 0.5 and sources["temperature"] == "user"
        assert sources["top_p"] == "user" and sources["min_p"] == "transformers"


async def test_help_and_palette_cover_every_binding(backend: FakeEngine) -> None:
    from textual.widgets import DataTable

    from tui.commands import COMMANDS
    from tui.screens.help import HelpScreen

    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        palette = {c.action.removeprefix("app.") for c in COMMANDS}
        sections = screen.binding_sections()
        for _area, bindings in sections:
            for binding in bindings:
                action = binding.action.removeprefix("screen.").removeprefix("app.")
                assert action in palette, f"{binding.key} -> {action} has no palette command"
        for command in COMMANDS:
            target = app if command.action.startswith("app.") else screen
            name = command.action.removeprefix("app.").split("(")[0]
            assert hasattr(target, f"action_{name}"), command
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        table = app.screen.query_one(DataTable)
        keys = {str(table.get_row_at(i)[1]) for i in range(table.row_count)}
        for _area, bindings in sections:
            for binding in bindings:
                assert binding.key.replace(",", " / ") in keys
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))


async def test_palette_runs_a_command(backend: FakeEngine) -> None:
    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"step-through")
        await until(pilot, lambda: "step-through" in "".join(palette_entries(app)).lower())
        await pilot.press("enter")
        await until(pilot, lambda: screen.step_mode)


async def test_load_failure_shows_message_then_pick_another_model() -> None:
    from textual.widgets import Input, Static

    from tui.screens.model_picker import ModelPickerScreen

    backend = FakeEngine(fail_load="model not found: 'nope'; check the id or path")
    app = fake_app(backend)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(
                pilot,
                lambda: isinstance(app.screen, LoadingScreen) and app.screen.has_class("failed"),
            )
            assert "model not found" in str(app.screen.query_one("#loading-error", Static).content)
            await pilot.press("enter")  # the focused "Pick another model" button
            await until(pilot, lambda: isinstance(app.screen, ModelPickerScreen))
            backend.fail_load = None
            app.screen.query_one("#model", Input).value = "other-model"
            await pilot.press("enter")
            screen = await ready(pilot)
            assert screen.facts.model_id == "other-model"  # type: ignore[union-attr]
            assert [s.model for s in backend.loads] == [None, "other-model"]
    finally:
        backend.close()


async def test_model_picker_reload_keeps_conversation(backend: FakeEngine) -> None:
    from textual.widgets import Input

    from tui.screens.model_picker import ModelPickerScreen

    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await replied(pilot, "hi")
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(app.screen, ModelPickerScreen))
        app.screen.query_one("#device", Input).value = "tpu"
        await pilot.press("enter")
        assert isinstance(app.screen, ModelPickerScreen)  # refused inline
        app.screen.query_one("#device", Input).value = "cpu"
        app.screen.query_one("#model", Input).value = "second"
        await pilot.press("enter")
        await until(pilot, lambda: screen.facts is not None and screen.facts.model_id == "second")
        assert len(screen.conversation.turns) == 2
        assert "Paris" in screen.query_one(ChatPane).reply_text


async def test_copy_token_and_reply(backend: FakeEngine) -> None:
    app = fake_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        screen = await replied(pilot, "hi")
        await pilot.press("f8")
        assert app.clipboard == screen.conversation.last_reply.content  # type: ignore[union-attr]
        await pilot.press("f4", "home", "y")
        assert app.clipboard == "The"


async def test_chat_keeps_the_models_line_breaks() -> None:
    """A single line break the model wrote stays one (a haiku, a list one item per line)."""
    from textual.widgets import Markdown
    from textual.widgets._markdown import MarkdownParagraph

    backend = FakeEngine(replies=["a\nb"])
    try:
        app = fake_app(backend)
        async with app.run_test(size=SIZE) as pilot:
            screen = await replied(pilot, "two lines please")
            await pilot.pause(0.1)
            reply = screen.query_one(ChatPane).query_one(".chat-reply", Markdown)
            paragraph = reply.query_one(MarkdownParagraph)
            lines = [
                strip.text.rstrip()
                for strip in paragraph.render_lines(paragraph.region.reset_offset)
            ]
            assert [line for line in lines if line] == ["a", "b"]
    finally:
        backend.close()
