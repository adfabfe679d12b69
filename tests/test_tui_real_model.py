"""The real path: the workbench over the bundled SmolLM2 through LocalEngine."""

from __future__ import annotations

from typing import Any

import pytest

from engine.decode import LocalEngine
from tests.tui_helpers import SIZE, finished, greedy, ready, send, until
from tui.app import make_app
from tui.widgets.chat_pane import ChatPane
from tui.widgets.prompt_tokens import PromptTokens
from tui.widgets.step_view import StepView
from tui.widgets.token_stream import TokenStream

pytestmark = [pytest.mark.anyio, pytest.mark.real_model]


async def test_real_model_answers_paris(real_model: Any) -> None:
    app = make_app(LocalEngine(real_model), settings=greedy(), persist_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await send(pilot, "What is the capital of France?")
        await until(pilot, lambda: finished(screen), timeout=60)
        await pilot.pause(0.1)
        assert "Paris" in screen.query_one(ChatPane).reply_text
        stream = screen.query_one(TokenStream)
        assert stream.steps and stream.steps[-1].finish_reason == "stop"
        assert screen.query_one(StepView).candidate_count > 1
        view = screen.query_one(PromptTokens).view
        assert view is not None and any(t.special for t in view.tokens)
        assert {t.origin for t in view.tokens} >= {"template", "user"}


async def test_real_model_token_lookup_and_prompt_surprisal(real_model: Any) -> None:
    """The look-up of a recorded candidate shows the numbers the step recorded, and
    the prompt's surprisal comes from the real model, through the workbench."""
    import math

    from textual.widgets import Static

    app = make_app(LocalEngine(real_model), settings=greedy(), persist_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await send(pilot, "What is the capital of France?")
        await until(pilot, lambda: finished(screen), timeout=60)
        stream = screen.query_one(TokenStream)
        stream.focus()
        await pilot.press("home", "right")
        candidate = stream.steps[1].top[1]
        await pilot.press("slash", *str(candidate.token_id), "enter")
        result = screen.query_one("#lookup-result", Static)
        await until(pilot, lambda: "rank" in str(result.render()), timeout=30)
        assert f"{math.exp(candidate.logprob):5.1%}" in str(result.render())
        assert "greedy" in str(result.render())  # greedy: only the argmax can be picked
        prompt = screen.query_one(PromptTokens)
        prompt.focus()
        await pilot.press("s")
        await until(pilot, lambda: prompt.scores is not None, timeout=30)
        assert prompt.scores is not None and prompt.view is not None
        assert len(prompt.scores.logprobs) == prompt.view.count
