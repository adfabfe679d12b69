"""Keys typed while the model loads are not lost: they go to the message box, and an
Enter among them sends the message once the model is ready (type-ahead)."""

from __future__ import annotations

import pytest

from tests.fake_engine import FakeEngine
from tests.tui_helpers import SIZE, fake_app, finished, ready, until
from tui.screens.loading import LoadingScreen
from tui.widgets.chat_pane import ChatPane
from tui.widgets.prompt_input import PromptInput

pytestmark = pytest.mark.anyio


async def test_typed_then_enter_while_loading_is_sent_once_ready() -> None:
    backend = FakeEngine(hold_load=True)
    app = fake_app(backend)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, LoadingScreen))
            await pilot.press(*"hi thre", "backspace", "backspace", *"ere", "enter")
            loading = app.screen
            assert isinstance(loading, LoadingScreen)
            assert loading.typed == "hi there" and loading.send_typed
            await pilot.press(*"more")  # after Enter: the message is on its way
            assert loading.typed == "hi there"
            backend.load_gate.set()
            screen = await ready(pilot)
            await until(pilot, lambda: finished(screen))
            assert screen.conversation.turns[0].content == "hi there"
            assert screen.query_one(PromptInput).text == ""  # sent, not left behind
            assert screen.query_one(ChatPane).reply_text
    finally:
        backend.close()


async def test_typed_without_enter_is_kept_in_the_message_box() -> None:
    backend = FakeEngine(hold_load=True)
    app = fake_app(backend)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, LoadingScreen))
            await pilot.press(*"draft")
            backend.load_gate.set()
            screen = await ready(pilot)
            await pilot.pause(0.05)
            assert screen.query_one(PromptInput).text == "draft"
            assert not screen.conversation.turns  # nothing sent
    finally:
        backend.close()
