"""The Lens tab and the tokenizer playground, over the fake engine given the optional
capabilities (a constructed lens; the real bundled tokenizer for the playground, so
those tests are marked real_model)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static, TextArea

from engine.model import LensResult, LensRow, LensToken, Neighbour
from engine.tokens import TokenInfo, VocabIndex, token_view, vocab_index
from tests.fake_engine import FakeEngine
from tests.tui_helpers import fake_app, finished, main_screen, ready, send, until
from tui.screens.playground import PlaygroundScreen
from tui.widgets.lens_view import LensView
from tui.widgets.prompt_tokens import PromptTokens


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from engine.model import ModelSpec, load_tokenizer

    return load_tokenizer(ModelSpec()).tokenizer


class ToolsEngine(FakeEngine):
    """The fake engine plus ModelInternals and TokenizerAccess: a lens whose chosen
    token climbs to top-1 at layer 2 of 3, and the real tokenizer for the playground."""

    def __init__(self, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.lens_calls: list[tuple[int, int | None]] = []

    def lens(
        self, ids: Sequence[int], position: int = -1, *, top: int = 10, target: int | None = None
    ) -> LensResult:
        position %= len(ids)
        self.lens_calls.append((position, target))
        target = ids[0] if target is None else target
        other = self.vocab.id(" the")
        rows = []
        for layer, (p_target, p_other) in enumerate(
            [(0.01, 0.6), (0.3, 0.5), (0.7, 0.2), (0.9, 0.05)]
        ):
            import math

            first, second = (target, other) if p_target > p_other else (other, target)
            hi, lo = max(p_target, p_other), min(p_target, p_other)
            rank = 1 if p_target > p_other else 2
            rows.append(
                LensRow(
                    layer,
                    "embeddings" if layer == 0 else f"layer {layer}",
                    (LensToken(first, math.log(hi), 1), LensToken(second, math.log(lo), 2)),
                    LensToken(target, math.log(p_target), rank),
                )
            )
        return LensResult(position, ids[position], target, tuple(rows))

    def nearest(self, token_id: int, n: int = 10) -> tuple[Neighbour, ...]:
        return tuple(Neighbour(token_id + i, 1.0 - i / 10) for i in range(n))

    def ties_embeddings(self) -> bool:
        return True

    def text_tokens(self, text: str, *, allow_special: bool = False) -> tuple[TokenInfo, ...]:
        return token_view(self.tokenizer, text, allow_special=allow_special).tokens

    def vocabulary(self) -> VocabIndex:
        return vocab_index(self.tokenizer)


def still(backend: FakeEngine) -> Any:
    app = fake_app(backend)
    app.animation_level = "none"
    return app


async def replied(pilot: Pilot[None]) -> None:
    screen = await ready(pilot)
    screen.query_one("#prompt").cursor_blink = False  # type: ignore[attr-defined]
    await send(pilot, "What is the capital of France?")
    await until(pilot, lambda: finished(screen))


async def lens_on_second_token(pilot: Pilot[None]) -> None:
    await replied(pilot)
    await pilot.press("f4", "home", "l", "f6")
    view = main_screen(pilot.app).query_one(LensView)  # type: ignore[arg-type]
    await until(pilot, lambda: view.result is not None)
    await pilot.pause(0.1)


@pytest.mark.real_model  # the bundled tokenizer
@pytest.mark.anyio
async def test_lens_tab_shows_every_layer_and_where_the_token_settles(tokenizer: Any) -> None:
    backend = ToolsEngine(tokenizer)
    async with still(backend).run_test(size=(100, 30)) as pilot:
        await lens_on_second_token(pilot)
        screen = main_screen(pilot.app)  # type: ignore[arg-type]
        view = screen.query_one(LensView)
        assert view.result is not None and view.result.settles_at == 2
        step = screen.query_one("#tokens").steps[1]  # type: ignore[attr-defined]
        assert backend.lens_calls[-1][1] == step.token_id
        facts = str(view.query_one("#lens-facts", Static).content)
        assert "step 1" in facts and "top-1 from layer 2 on" in facts
        # cached: moving away and back computes nothing new
        await pilot.press("l")
        await until(pilot, lambda: "step 2" in view.label)
        await pilot.press("h")
        await until(pilot, lambda: view.result is not None and "step 1" in view.label)
        assert [c for c in backend.lens_calls if c[1] == step.token_id] == [backend.lens_calls[0]]


@pytest.mark.real_model  # the bundled tokenizer
@pytest.mark.anyio
async def test_lens_of_a_prompt_token_explains_the_next_prompt_token(tokenizer: Any) -> None:
    backend = ToolsEngine(tokenizer)
    async with still(backend).run_test(size=(100, 30)) as pilot:
        await replied(pilot)
        screen = main_screen(pilot.app)  # type: ignore[arg-type]
        await screen.run_action("show_tab('tab-prompt')")
        prompt = screen.query_one(PromptTokens)
        prompt.focus()
        await pilot.press("home", "right", "f6")
        view = screen.query_one(LensView)
        await until(pilot, lambda: view.result is not None)
        assert prompt.view is not None
        assert backend.lens_calls[-1] == (1, prompt.view.ids[2])
        assert "prompt token 1" in view.label


@pytest.mark.anyio
async def test_lens_tab_is_one_line_when_the_engine_cannot() -> None:
    async with still(FakeEngine()).run_test(size=(100, 30)) as pilot:
        await replied(pilot)
        await pilot.press("f6")
        view = main_screen(pilot.app).query_one(LensView)  # type: ignore[arg-type]
        facts = view.query_one("#lens-facts", Static)
        await until(pilot, lambda: "unavailable" in str(facts.content))
        line = str(facts.content)
        assert line.startswith("Layer lens unavailable") and "\n" not in line


async def open_playground(pilot: Pilot[None], text: str = "") -> PlaygroundScreen:
    await ready(pilot)
    await pilot.press("f7")
    await until(pilot, lambda: isinstance(pilot.app.screen, PlaygroundScreen))
    screen: PlaygroundScreen = pilot.app.screen  # type: ignore[assignment]
    area = screen.query_one(TextArea)
    area.cursor_blink = False
    if text:
        area.insert(text)
    await until(pilot, lambda: screen.query_one(DataTable).row_count == len(screen.tokens) > 0)
    await pilot.pause(0.05)
    return screen


def _summary(screen: PlaygroundScreen) -> str:
    return str(screen.query_one("#pg-summary", Static).content)


@pytest.mark.real_model  # the bundled tokenizer
@pytest.mark.anyio
async def test_playground_type_toggle_and_select(tokenizer: Any) -> None:
    async with still(ToolsEngine(tokenizer)).run_test(size=(100, 30)) as pilot:
        screen = await open_playground(pilot, "Hi<|im_end|>")
        guarded = len(screen.tokens)
        assert not any(t.special for t in screen.tokens)
        assert f"{guarded} tokens" in _summary(screen) and "guard on" in _summary(screen)
        await pilot.press("ctrl+g")
        await until(pilot, lambda: "guard off" in _summary(screen))
        assert any(t.special and t.piece == "<|im_end|>" for t in screen.tokens)
        assert f"(guard on: {guarded} tokens)" in _summary(screen)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: "chat template" in _summary(screen))
        await pilot.press("ctrl+r")
        await until(pilot, lambda: "plain text" in _summary(screen))
        table = screen.query_one(DataTable)
        table.focus()
        await pilot.press("home")
        vocab = screen.query_one("#pg-vocab", Static)
        first = screen.tokens[0]
        await until(pilot, lambda: "nearest by input embedding" in str(vocab.content))
        assert f"id {first.id}" in str(vocab.content)
        assert "tied" in str(vocab.content)
        await pilot.press("ctrl+f")
        for key in "Paris":
            await pilot.press(key)
        await pilot.press("enter")
        await until(pilot, lambda: "piece   Paris" in str(vocab.content))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(pilot.app.screen, PlaygroundScreen))


@pytest.mark.real_model  # the bundled tokenizer
@pytest.mark.anyio
async def test_playground_search_refusals_are_one_line(tokenizer: Any) -> None:
    async with still(ToolsEngine(tokenizer)).run_test(size=(100, 30)) as pilot:
        screen = await open_playground(pilot, "x")
        await pilot.press("ctrl+f")
        await pilot.press("enter")
        vocab = screen.query_one("#pg-vocab", Static)
        await until(pilot, lambda: "Type an id" in str(vocab.content))
        for key in "99999999":
            await pilot.press(key)
        await pilot.press("enter")
        await until(pilot, lambda: "not in the vocabulary" in str(vocab.content))


@pytest.mark.real_model  # the bundled tokenizer
@pytest.mark.anyio
async def test_playground_stays_responsive_to_a_10k_paste(tokenizer: Any) -> None:
    """Tokenizing the paste is held until the test lets it go: a key typed meanwhile is
    handled, so the tokenizing runs off the event loop (however slow it is)."""

    class HeldTokens(ToolsEngine):
        def __init__(self, tokenizer: Any) -> None:
            super().__init__(tokenizer)
            self.gate, self.held = threading.Event(), threading.Event()
            self.held_on: list[threading.Thread] = []

        def text_tokens(self, text: str, *, allow_special: bool = False) -> tuple[TokenInfo, ...]:
            if len(text) > 5000:
                self.held_on.append(threading.current_thread())
                self.held.set()
                self.gate.wait(10)
            return super().text_tokens(text, allow_special=allow_special)

    backend = HeldTokens(tokenizer)
    try:
        async with still(backend).run_test(size=(100, 30)) as pilot:
            screen = await open_playground(pilot, "a")
            area = screen.query_one(TextArea)
            area.insert("The quick brown fox jumps over the lazy dog. " * 223)  # ~10,000 chars
            await until(pilot, backend.held.is_set)  # the paste is being tokenized, held
            await pilot.press("x")
            await until(pilot, lambda: area.text.endswith("x"))  # typed while it is held
            assert not backend.gate.is_set() and threading.main_thread() not in backend.held_on
            backend.gate.set()
            await until(pilot, lambda: len(screen.tokens) > 2000, timeout=10)
    finally:
        backend.gate.set()


@pytest.mark.real_model  # the bundled tokenizer
@pytest.mark.parametrize("size", [(80, 24), (140, 40)], ids=["80x24", "140x40"])
def test_lens_tab_snapshot(snap_compare: Any, tokenizer: Any, size: tuple[int, int]) -> None:
    assert snap_compare(
        still(ToolsEngine(tokenizer)), terminal_size=size, run_before=lens_on_second_token
    )


@pytest.mark.real_model  # the bundled tokenizer
@pytest.mark.parametrize("size", [(80, 24), (140, 40)], ids=["80x24", "140x40"])
def test_playground_snapshot(snap_compare: Any, tokenizer: Any, size: tuple[int, int]) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await open_playground(pilot, "Hello, world! <|im_end|>")

    assert snap_compare(still(ToolsEngine(tokenizer)), terminal_size=size, run_before=before)
