"""A seeded random-key soak over the fake engine (issue 17).

First the command palette is opened on top of every screen and dialog (the
crash of issue 17 was the palette over the session browser); then a few
thousand seeded random keys, drawn from every binding the app declares plus
text and navigation keys, go to the app while replies stream. Throughout, the
app must keep running, its screen stack must stay sane, and it must report no
error. Quitting is neutralised (counted, not done) so the soak runs to the end.

The soak is a number of keys, never a time budget: a loaded machine presses the
same keys, only slower (the pytest timeout scales with LOGITLAB_TEST_TIMEOUT_SCALE).
Replay or widen it by hand (LOGITLAB_SOAK_TRACE=N prints the stack after each key
from key N on):

    LOGITLAB_SOAK_SEEDS=1,2,3 LOGITLAB_SOAK_KEYS=5000 \
        .venv/bin/python -m pytest tests/test_tui_soak.py -s

The seed is random.Random's; the interleaving with the fake engine's worker
threads is not seeded, so a replay usually, not always, fails the same way.
"""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from collections import Counter, deque
from pathlib import Path

import pytest
import textual.app as textual_app
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.screen import Screen

from tests.fake_engine import FakeEngine
from tests.soak_keys import KeyPicker
from tests.tui_helpers import (
    fake_app,
    finished,
    main_screen,
    palette_entries,
    ready,
    send,
    until,
)
from tui.app import LogitlabApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.error import ErrorScreen
from tui.screens.export import ExportScreen
from tui.screens.help import HelpScreen
from tui.screens.import_session import ImportScreen
from tui.screens.loading import LoadingScreen
from tui.screens.main import MainScreen
from tui.screens.model_picker import ModelPickerScreen
from tui.screens.sessions import SessionBrowserScreen
from tui.screens.settings import SettingsScreen
from tui.store_recorder import StoreRecorder

pytestmark = pytest.mark.anyio

SEEDS = [int(s) for s in os.environ.get("LOGITLAB_SOAK_SEEDS", "20250117").split(",")]
KEYS = int(os.environ.get("LOGITLAB_SOAK_KEYS", "1000"))
CHECK_EVERY = 25
# print each key and the screen stack after it, from this key on (replaying a failure)
TRACE_FROM = int(os.environ["LOGITLAB_SOAK_TRACE"]) if "LOGITLAB_SOAK_TRACE" in os.environ else None
SIZES = ((100, 30), (80, 24), (160, 50))  # one per seed
# a screen may appear once on the stack, CommandPalette and dialogs included
MAX_DEPTH = 6


def stack_problems(app: LogitlabApp) -> list[str]:
    """What is wrong with the screen stack, if anything."""
    stack = app.screen_stack
    names = [type(s).__name__ for s in stack]
    problems = []
    if len(stack) < 2 or type(stack[0]) is not Screen or not isinstance(stack[1], MainScreen):
        problems.append(f"the stack does not start with the workbench: {names}")
    counts = Counter(type(s) for s in stack)
    problems += [f"{t.__name__} {n} times: {names}" for t, n in counts.items() if n > 1]
    if len(stack) > MAX_DEPTH:
        problems.append(f"{len(stack)} screens deep: {names}")
    if any(isinstance(s, MainScreen) for s in stack[2:]):
        problems.append(f"a second workbench: {names}")
    return problems


async def palette_over(pilot: Pilot[None], screen_type: type[Screen[object]]) -> None:
    """Open the palette on the top screen (of `screen_type`), see hits, close it."""
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, screen_type))
    await pilot.press("ctrl+p")
    await until(pilot, lambda: len(palette_entries(app)) > 0)
    await pilot.press(*"se")  # a search, not only discovery
    await pilot.pause(0.05)
    await pilot.press("escape")
    await until(pilot, lambda: isinstance(app.screen, screen_type))
    assert not isinstance(app.screen, CommandPalette)


async def back_to_workbench(pilot: Pilot[None]) -> None:
    app = pilot.app
    for _ in range(6):
        if isinstance(app.screen, MainScreen):
            return
        await pilot.press("escape")
        await pilot.pause(0.05)
    assert isinstance(app.screen, MainScreen), app.screen_stack


async def palette_on_every_screen(pilot: Pilot[None], backend: FakeEngine) -> None:
    app = pilot.app
    main = main_screen(app)
    press = pilot.press
    await palette_over(pilot, MainScreen)
    await send(pilot, "What is [/] in markup?")
    await until(pilot, lambda: finished(main))
    await until(pilot, lambda: main.session_id is not None)
    for keys, screen_type in (
        (["f1"], HelpScreen),
        (["f2"], SettingsScreen),
        (["f3"], ModelPickerScreen),
        (["ctrl+e"], ExportScreen),
        (["ctrl+o"], SessionBrowserScreen),
    ):
        await press(*keys)
        await palette_over(pilot, screen_type)
        if screen_type is SessionBrowserScreen:
            table = app.screen.query_one("#browser-table")
            await until(pilot, lambda t=table: t.row_count > 0)
            await press("d")  # delete asks first
            await palette_over(pilot, ConfirmScreen)
            await press("n")
            await palette_over(pilot, SessionBrowserScreen)
        await back_to_workbench(pilot)
    main.action_import_session()  # the palette's "Import session…" (no key)
    await palette_over(pilot, ImportScreen)
    await back_to_workbench(pilot)
    backend.load_gate.clear()  # hold the next load on the loading screen
    await press("f3")
    await until(pilot, lambda: isinstance(app.screen, ModelPickerScreen))
    await press("enter")
    await palette_over(pilot, LoadingScreen)
    backend.load_gate.set()
    await until(pilot, lambda: isinstance(app.screen, MainScreen) and main.facts is not None)
    app.inject_fault("handler")  # the one error this test expects
    await palette_over(pilot, ErrorScreen)
    await back_to_workbench(pilot)


@pytest.mark.app_errors  # the ErrorScreen is opened on purpose, once
@pytest.mark.timeout(60 + KEYS / 10)  # ends a hang (~70 keys/s here); conftest scales it
@pytest.mark.parametrize("seed", SEEDS)
async def test_random_keys_do_not_break_the_app(
    seed: int, recorder: StoreRecorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # exports and screenshots land here

    async def settled(*_args: object, **_kwargs: object) -> None:
        await asyncio.sleep(0)

    # Pilot waits, per key, for the process to look idle by its CPU time: with replies
    # streaming on worker threads (and other processes on the machine) that is up to
    # a second a key. Each press still waits for every widget of the screen to have
    # handled its messages (Pilot._wait_for_screen).
    monkeypatch.setattr(textual_app, "wait_for_idle", settled)
    backend = FakeEngine(
        replies=["The [bold]capital[/] of **France** is Paris [/].", "Short."], step_delay=0.002
    )
    app = fake_app(backend, recorder=recorder)
    quits: list[int] = []
    app.exit = lambda *a, **k: quits.append(1)
    pick = KeyPicker(seed)
    recent: deque[str] = deque(maxlen=40)
    pressed = 0
    started = time.monotonic()

    def fail(why: str) -> None:
        pytest.fail(
            f"soak seed {seed}: {why} after {pressed} keys; last keys: {list(recent)}\n"
            f"replay: LOGITLAB_SOAK_SEEDS={seed} LOGITLAB_SOAK_KEYS={pressed} "
            "pytest tests/test_tui_soak.py",
            pytrace=False,
        )

    def check() -> None:
        if app.crash is not None or app.return_code not in (None, 0):
            fail(f"the app ended: {app.crash}")
        unexpected = [r for r in app.error_reports if "injected fault" not in r.summary]
        if unexpected:
            first = unexpected[0]
            log = first.log_path.read_text() if first.log_path else ""
            fail(f"{first.summary} in {first.where} ({len(unexpected)} errors); {log[-3000:]}")
        if problems := stack_problems(app):
            fail("; ".join(problems))

    try:
        async with app.run_test(size=SIZES[seed % len(SIZES)]) as pilot:
            await ready(pilot)
            await palette_on_every_screen(pilot, backend)
            check()
            while pressed < KEYS:
                key = pick()
                recent.append(key)
                await pilot.press(key)
                pressed += 1
                if TRACE_FROM is not None and pressed > TRACE_FROM:
                    print(pressed, repr(key), [type(s).__name__ for s in app.screen_stack])
                if pressed % CHECK_EVERY == 0:
                    check()
            check()
            backend.close()  # let a held reply or load finish
            await back_to_workbench(pilot)
            assert app.is_running
    except pytest.fail.Exception:
        raise
    except BaseException as exc:
        where = traceback.extract_tb(exc.__traceback__)
        inside = [f"{f.name}:{f.lineno}" for f in where if f.filename == __file__]
        fail(f"{type(exc).__name__}: {exc} (at {' < '.join(reversed(inside))})")
    elapsed = time.monotonic() - started
    print(f"soak seed {seed}: {pressed} keys in {elapsed:.1f} s, {len(quits)} quits ignored")
    assert pressed == KEYS
