"""The workbench's Compare view over a real (tiny) model: F9 on a reply, side B from
the dialog, the comparison on a worker, then the view's keys."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static, TextArea

from engine.decode import LocalEngine
from engine.errors import InvalidParameterError
from engine.model.spec import ModelSpec
from tests.tui_helpers import SIZE, finished, ready, send, until
from tui.app import make_app
from tui.screens.compare import CompareScreen
from tui.screens.compare_actions import b_side
from tui.screens.compare_dialog import CompareDialog
from tui.screens.main import MainScreen
from tui.settings import UISettings
from tui.widgets.compare_paths import ComparePaths

pytestmark = pytest.mark.anyio

TINY_REPLY = 12  # tokens


def tiny_app(tiny_model: Any, tiny_model_dir: Path, **kwargs: Any):  # type: ignore[no-untyped-def]
    spec = ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="float32")
    settings = UISettings(overrides={"temperature": 0.0, "max_new_tokens": TINY_REPLY})
    return make_app(
        LocalEngine(tiny_model), spec=spec, settings=settings, persist_theme=False, **kwargs
    )


async def compared(pilot: Any, lines: str) -> CompareScreen:
    """Send a message, open the dialog on its reply, compare against `lines`."""
    app = pilot.app
    screen = await ready(pilot)
    await send(pilot, "hello there")
    await until(pilot, lambda: finished(screen), timeout=60)
    await pilot.press("f9")
    await until(pilot, lambda: isinstance(app.screen, CompareDialog))
    app.screen.query_one(TextArea).text = lines
    await pilot.press("ctrl+r")
    await until(pilot, lambda: isinstance(app.screen, CompareScreen))
    view = app.screen
    await until(pilot, lambda: view.comparison is not None, timeout=120)
    await pilot.pause(0.05)
    return view


async def test_same_spec_on_both_sides_agrees_everywhere(
    tiny_model: Any, tiny_model_dir: Path
) -> None:
    app = tiny_app(tiny_model, tiny_model_dir)
    async with app.run_test(size=SIZE) as pilot:
        view = await compared(pilot, "")
        comparison = view.comparison
        assert comparison is not None
        reply = next(s for s in app.screen_stack if isinstance(s, MainScreen)).conversation
        steps = reply.last_reply.steps  # type: ignore[union-attr]
        assert [s.token_id for s in comparison.steps] == [s.token_id for s in steps]
        assert comparison.tokenization.same
        assert all(abs(s.kl) < 1e-6 and s.agree and s.exact for s in comparison.steps)
        assert comparison.first_divergence is None
        assert "B never left the path" in str(view.query_one("#compare-summary", Static).render())
        # the path token's logprob under A is the one the reply recorded
        for step, recorded in zip(comparison.steps, steps, strict=True):
            assert math.isclose(step.logprob_a, recorded.logprob, abs_tol=1e-4)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))


async def test_right_padding_without_mask_parts_and_keys_move(
    tiny_model: Any, tiny_model_dir: Path
) -> None:
    app = tiny_app(tiny_model, tiny_model_dir)
    async with app.run_test(size=SIZE) as pilot:
        view = await compared(pilot, "batch=A, B, C, D, E, F, G, H, I|x\npadding=right\nmask=off")
        comparison = view.comparison
        assert comparison is not None and comparison.steps
        assert max(s.kl for s in comparison.steps) > 1e-3  # the pitfall shows
        paths = view.query_one(ComparePaths)
        # the view opens on the first divergence, else the first disagreement
        expected = comparison.first_divergence
        assert paths.cursor == (
            expected if expected is not None and expected < len(comparison.steps) else paths.cursor
        )
        await pilot.press("home")
        assert view.cursor == 0
        await pilot.press("right", "right")
        assert view.cursor == 2 and paths.cursor == 2
        rows_a = view.query_one("#compare-top-a", DataTable).row_count
        rows_b = view.query_one("#compare-top-b", DataTable).row_count
        assert rows_a > 1 and rows_b > 1  # both sides' candidates, side by side
        marks = [i for i, s in enumerate(comparison.steps) if not s.agree]
        await pilot.press("home", "n")
        after_home = [m for m in marks if m > 0]
        assert view.cursor == (after_home[0] if after_home else 0)
        step_line = str(view.query_one("#compare-step", Static).render())
        assert f"step {comparison.steps[view.cursor].step}" in step_line


async def test_a_bad_line_is_refused_in_the_dialog(tiny_model: Any, tiny_model_dir: Path) -> None:
    app = tiny_app(tiny_model, tiny_model_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await send(pilot, "hello there")
        await until(pilot, lambda: finished(screen), timeout=60)
        await pilot.press("f9")
        await until(pilot, lambda: isinstance(app.screen, CompareDialog))
        app.screen.query_one(TextArea).text = "colour=red"
        await pilot.press("ctrl+r")
        await pilot.pause(0.05)
        assert isinstance(app.screen, CompareDialog)  # still open, nothing loaded
        error = str(app.screen.query_one("#compare-error", Static).render())
        assert "unknown key 'colour'" in error
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))


async def test_f9_without_a_reply_says_so(tiny_model: Any, tiny_model_dir: Path) -> None:
    app = tiny_app(tiny_model, tiny_model_dir)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f4", "f9")  # the token stream has focus: F9 is the screen's
        await pilot.pause(0.05)
        assert isinstance(app.screen, MainScreen)
        assert any("no reply to compare" in str(n.message) for n in app._notifications)


def test_b_starts_as_a_and_changes_what_the_lines_name(tiny_model_dir: Path) -> None:
    from engine.params import SamplingParams

    a = ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="float32", backend="transformers")
    params = SamplingParams(temperature=0.0, max_new_tokens=20)
    same = b_side([], a, params)
    assert same.engine == a and same.sampling == params
    hotter = b_side(["temperature=0.7", "seed=1"], a, params)
    assert hotter.engine == a
    assert hotter.sampling is not None and hotter.sampling.temperature == 0.7
    assert hotter.sampling.seed == 1 and hotter.sampling.max_new_tokens == 20
    other = b_side(["backend=llama.cpp"], a, params)
    assert isinstance(other.engine, ModelSpec)
    assert other.engine.model == a.model and other.engine.backend == "llama.cpp"
    assert other.engine.dtype == "auto"  # A's float32 does not apply to llama.cpp
    with pytest.raises(InvalidParameterError, match="side B"):
        b_side(["backend=llama.cpp", "dtype=float16"], a, params)
    new = b_side(["model=some/other"], a, params)
    assert isinstance(new.engine, ModelSpec) and new.engine.model == "some/other"
    assert new.engine.dtype == "auto"  # a new model starts from the defaults


async def test_a_comparison_is_kept_with_the_session_and_reopens(
    tiny_model: Any, tiny_model_dir: Path, recorder: Any
) -> None:
    from engine.compare import Comparison
    from engine.sessions.records import comparison_data
    from tests.tui_helpers import stored

    app = tiny_app(tiny_model, tiny_model_dir, recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        view = await compared(pilot, "temperature=0.9\nseed=3")
        made = view.comparison
        assert made is not None
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, MainScreen))
        store = stored(recorder)
        session = store.get(store.list()[0].id)
    [kept] = session.comparisons
    assert session.messages[kept.message_index].role == "assistant"
    # kept in the store's one form: the sides' descriptions without null members
    assert kept.data == comparison_data(made.to_json(extended=True))
    assert Comparison.from_json(kept.data).steps == made.steps
    made = Comparison.from_json(kept.data)

    # reopened: F9 offers the kept comparison, which opens without running anything
    reopened = tiny_app(tiny_model, tiny_model_dir, session=session)
    async with reopened.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("f4", "f9")
        await until(pilot, lambda: isinstance(reopened.screen, CompareDialog))
        dialog = reopened.screen
        assert dialog.saved and dialog.saved[0].startswith("B = ")
        dialog.query_one("#compare-presets").focus()
        await pilot.press("home", "enter")
        await until(pilot, lambda: isinstance(reopened.screen, CompareScreen))
        shown = reopened.screen
        assert shown.comparison == made
