"""The workbench mid-reply in every shipped theme (pytest-textual-snapshot).

The reply is driven in step-through mode against the fake engine, so the frame
is deterministic: every accepted step is posted at once (free-running batches
depend on timing), and the screen rests with the next candidates on show. One
token is forced (candidate 2), so the frame carries every chip kind — high,
mid and low probability, forced — on the theme's token-stream background.

After an intended UI change: ``pytest tests/test_theme_snapshots.py --snapshot-update``
and review the SVGs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from textual.pilot import Pilot

from tui.app import make_app
from tui.screens.main import MainScreen
from tui.theming import load_themes
from tui.widgets.prompt_input import PromptInput
from tui.widgets.token_stream import TokenStream

SHIPPED = sorted(load_themes(user_dir=Path("/nonexistent"))[0])
SIZE = (120, 36)
WAIT = 10.0


async def _wait_for(pilot: Pilot[None], condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _main(pilot: Pilot[None]) -> MainScreen:
    return next(s for s in pilot.app.screen_stack if isinstance(s, MainScreen))


async def _mid_reply(pilot: Pilot[None]) -> None:
    """Step mode on, ask, accept four tokens, force candidate 2, accept one more."""
    await _wait_for(pilot, lambda: _main(pilot).facts is not None, "the model to load")
    await _wait_for(pilot, lambda: pilot.app.screen is _main(pilot), "the loading screen to close")
    main = _main(pilot)
    await pilot.press("ctrl+t")
    main.query_one(PromptInput).post_message(
        PromptInput.Submitted("What is the capital of France?")
    )

    def proposal_at(index: int) -> Callable[[], bool]:
        return lambda: main.proposal is not None and main.proposal.index == index

    for accepted, key in enumerate(("space", "space", "space", "space", "2", "space")):
        await _wait_for(pilot, proposal_at(accepted), f"proposal {accepted}")
        await pilot.press(key)
    await _wait_for(pilot, proposal_at(6), "proposal 6")
    await _wait_for(pilot, lambda: len(main.query_one(TokenStream).steps) == 6, "six chips")
    assert main.query_one(TokenStream).steps[4].forced  # the frame shows a forced chip
    pilot.app.clear_notifications()  # toasts time out: on a slow run they would vanish
    await pilot.pause()


@pytest.mark.timeout(120)  # a wedged worker fails the test instead of the run
@pytest.mark.parametrize("theme", SHIPPED)
def test_main_screen_mid_reply(theme: str, snap_compare: Callable[..., bool]) -> None:
    backend = FakeEngine()
    app = make_app(backend=backend, theme=theme, persist_theme=False)
    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=_mid_reply)
    finally:
        backend.close()
