"""What the probability views add beyond the recorded top-K: why a candidate was
dropped, the entropy line and its jump key, any token's numbers at a step, and
the prompt's surprisal, over the fake engine (given the optional capabilities)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
from rich.text import Text
from textual.widgets import Static

from engine.errors import InvalidParameterError
from engine.params import SamplingParams
from engine.records import TokenProbe, TokenScore
from engine.tokens.vocab import VocabEntry
from tests.fake_engine import FakeEngine
from tests.tui_helpers import fake_app, replied, screen_text, until
from tui.screens.main import MainScreen
from tui.widgets.entropy_line import BARS, EntropyLine, spark
from tui.widgets.inspector import Inspector
from tui.widgets.prompt_tokens import PromptTokens
from tui.widgets.token_lookup import TokenLookupInput
from tui.widgets.token_stream import TokenStream, next_fork


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


# --- any token at a step, prompt surprisal ------------------------------------------------


class _Vocab:
    """Resolves a query like the real index: digits are ids, the rest by the fake vocab."""

    def __init__(self, engine: ProbeEngine) -> None:
        self.engine = engine

    def resolve(self, query: str, encode: object) -> tuple[VocabEntry, str]:
        if query == "nope":
            raise InvalidParameterError("token", "no token is exactly 'nope'")
        token_id = int(query) if query.isdigit() else self.engine.vocab.id(query)
        text = self.engine.vocab.text(token_id)
        return VocabEntry(token_id, text, text, text.encode(), False), ""


class ProbeEngine(FakeEngine):
    """The fake engine plus TokenLookup, TokenizerAccess and PromptScoring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lookups: list[tuple[tuple[int, ...], int]] = []
        self.scored: list[tuple[int, ...]] = []

    def text_tokens(self, text: str, *, allow_special: bool = False) -> tuple[Any, ...]:
        return ()

    def vocabulary(self) -> Any:
        return _Vocab(self)

    def token_probabilities(
        self, ids: Sequence[int], params: SamplingParams, tokens: Sequence[int]
    ) -> tuple[TokenProbe, ...]:
        self.lookups.append((tuple(ids), tokens[0]))
        rank = 57 + len(ids)  # differs by step, so a moved cursor shows new numbers
        return tuple(TokenProbe(t, math.log(0.003), rank, -math.inf, 4, "top-k") for t in tokens)

    def score(self, ids: Sequence[int], *, top: int = 0, start: int = 1) -> tuple[TokenScore, ...]:
        self.scored.append(tuple(ids))
        probs = [0.9 if i % 3 else 0.001 for i in range(start, len(ids))]
        return tuple(
            TokenScore(i, ids[i], math.log(p), 1 if p > 0.5 else 900, 1.0)
            for i, p in enumerate(probs, start)
        )


@pytest.mark.anyio
async def test_slash_looks_any_token_up_at_the_step_and_follows_the_cursor() -> None:
    backend = ProbeEngine()
    app = fake_app(backend)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await replied(pilot)
        stream = screen.query_one(TokenStream)
        stream.focus()
        await pilot.press("home", "right", "right", "slash")
        box = screen.query_one(TokenLookupInput)
        assert box.display and box.has_focus
        await pilot.press(*"999", "enter")
        await until(
            pilot, lambda: "look-up" in _lookup_text(screen) and "rank" in _lookup_text(screen)
        )
        text = _lookup_text(screen)
        assert "at step 2" in text and "0.3%" in text and "dropped by top-k" in text
        prompt = screen.query_one(PromptTokens).view
        assert prompt is not None
        assert backend.lookups[-1] == ((*prompt.ids, *(s.token_id for s in stream.steps[:2])), 999)
        await pilot.press("escape")
        assert not box.display and stream.has_focus
        await pilot.press("right")  # the look-up follows the cursor
        await until(pilot, lambda: "at step 3" in _lookup_text(screen))
        assert len(backend.lookups) == 2
        await pilot.press("left")  # cached: no new forward
        await until(pilot, lambda: "at step 2" in _lookup_text(screen))
        assert len(backend.lookups) == 2
        await pilot.press("slash", "ctrl+u", "enter")  # an empty query clears it
        await until(pilot, lambda: not screen.query_one("#lookup-result").display)


@pytest.mark.anyio
async def test_a_lookup_that_fails_or_cannot_run_says_so_in_one_line() -> None:
    app = fake_app(ProbeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await replied(pilot)
        screen.query_one(TokenStream).focus()
        await pilot.press("slash", *"nope", "enter")
        await until(pilot, lambda: "no token is exactly 'nope'" in _lookup_text(screen))
    app = fake_app(FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await replied(pilot)
        screen.query_one(TokenStream).focus()
        await pilot.press("slash", *"5", "enter")
        await until(pilot, lambda: "Token look-up unavailable" in _lookup_text(screen))
        assert "FakeEngine" in _lookup_text(screen)


def _lookup_text(screen: MainScreen) -> str:
    return str(screen.query_one("#lookup-result", Static).render())


@pytest.mark.anyio
async def test_s_colours_the_prompt_by_surprisal_computed_once_per_prompt() -> None:
    backend = ProbeEngine()
    app = fake_app(backend)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await replied(pilot)
        prompt = screen.query_one(PromptTokens)
        prompt.focus()
        await pilot.press("s")
        await until(pilot, lambda: prompt.scores is not None)
        assert screen.query_one(Inspector).active_tab == "tab-prompt"
        assert backend.scored == [tuple(prompt.view.ids)]  # type: ignore[union-attr]
        drawn: list[Text] = []
        update = prompt.update
        prompt.update = lambda content="", **kw: (drawn.append(content), update(content, **kw))[1]  # type: ignore[method-assign, func-returns-value]
        prompt.show(prompt.view, keep_cursor=True)  # type: ignore[arg-type]
        (text,) = drawn
        assert "surprisal (s)" in text.plain
        low = prompt.get_component_rich_style("prompt-tokens--p-low")
        high = prompt.get_component_rich_style("prompt-tokens--p-high")
        styles = {text.plain[s.start : s.end]: s.style for s in text.spans}
        tokens = prompt.view.tokens  # type: ignore[union-attr]
        # position 3 was scored p = 0.001 (low), position 4 p = 0.9 (high)
        assert styles[tokens[3].display].color == low.color  # type: ignore[union-attr]
        assert styles[tokens[4].display].color == high.color  # type: ignore[union-attr]
        await pilot.press("right")  # the selected token's numbers
        await until(pilot, lambda: "bits" in str(prompt.render()))
        await pilot.press("s")  # off again, and on: from the cache
        await until(pilot, lambda: prompt.scores is None)
        await pilot.press("s")
        await until(pilot, lambda: prompt.scores is not None)
        assert len(backend.scored) == 1


@pytest.mark.anyio
async def test_surprisal_on_an_engine_without_it_says_so() -> None:
    app = fake_app(FakeEngine())
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await replied(pilot)
        screen.query_one(PromptTokens).focus()
        await pilot.press("s")
        await until(
            pilot, lambda: any("surprisal unavailable" in n.message for n in app._notifications)
        )
        assert screen.probes.surprisal is False
