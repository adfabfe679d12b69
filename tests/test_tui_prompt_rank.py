"""The Prompt tab's selected-token line: a rank a remote server did not send reads
"unknown", never "None"."""

from __future__ import annotations

import math

import pytest
from textual.app import App, ComposeResult

from engine.decode import PromptView
from engine.records import PromptScores
from engine.tokens.views import TokenInfo
from tui.widgets.prompt_tokens import PromptTokens

pytestmark = pytest.mark.anyio


def _token(position: int, text: str) -> TokenInfo:
    data = text.encode()
    return TokenInfo(position, 10 + position, text, text, data, special=False, partial=False)


class _Host(App[None]):
    def compose(self) -> ComposeResult:
        yield PromptTokens()


async def test_an_unknown_rank_reads_unknown() -> None:
    view = PromptView(tokens=(_token(0, "a"), _token(1, "b"), _token(2, "c")), context_window=64)
    scores = PromptScores(ids=(10, 11, 12), logprobs=(None, math.log(0.5), math.log(0.25)),
                          ranks=(None, None, 3))  # fmt: skip
    async with _Host().run_test() as pilot:
        widget = pilot.app.query_one(PromptTokens)
        widget.show(view)
        widget.show_scores(scores)
        widget.action_jump(1)
        await pilot.pause()
        assert "token 1: p 50.00%  rank unknown" in str(widget.render())
        widget.action_jump(2)
        await pilot.pause()
        assert "token 2: p 25.00%  rank 3" in str(widget.render())
