"""Helpers shared by the TUI tests: build the app over the fake engine, wait for states."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from textual.command import CommandList, CommandPalette
from textual.message_pump import MessagePump
from textual.pilot import Pilot

from engine.sessions import SessionStore
from tests.fake_engine import FakeEngine
from tests.timeouts import TIMEOUT_SCALE
from tui.app import LogitlabApp, make_app
from tui.screens.main import MainScreen
from tui.settings import UISettings
from tui.store_recorder import StoreRecorder

SIZE = (100, 30)


def fake_app(backend: FakeEngine | None = None, **kwargs: object) -> LogitlabApp:
    return make_app(backend or FakeEngine(), persist_theme=False, **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def driving(
    backend: FakeEngine, size: tuple[int, int] = SIZE, **kwargs: object
) -> AsyncIterator[Pilot[None]]:
    """The app over `backend`, headless at `size`; the backend's gates are opened
    at the end so no worker is left waiting."""
    app = fake_app(backend, **kwargs)
    try:
        async with app.run_test(size=size) as pilot:
            yield pilot  # type: ignore[misc]
    finally:
        backend.close()


def main_screen(app: LogitlabApp) -> MainScreen:
    return next(s for s in app.screen_stack if isinstance(s, MainScreen))


async def until(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for `condition`; fail after `timeout` seconds times LOGITLAB_TEST_TIMEOUT_SCALE."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout * TIMEOUT_SCALE
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)


async def drained(pilot: Pilot[None], *targets: MessagePump) -> None:
    """Every message already posted to each target, then to the app, has been handled,
    and the screen refreshed after: a callback queued behind them has run. What a test
    asserts did *not* happen would have happened by then."""
    for target in (*targets, pilot.app):
        ran: list[bool] = []
        target.call_later(target.call_after_refresh, ran.append, True)
        await until(pilot, lambda ran=ran: bool(ran))  # type: ignore[misc]


async def ready(pilot: Pilot[None]) -> MainScreen:
    app = pilot.app
    await until(
        pilot, lambda: isinstance(app.screen, MainScreen) and main_screen(app).facts is not None
    )  # type: ignore[arg-type]
    return main_screen(app)  # type: ignore[arg-type]


async def send(pilot: Pilot[None], text: str) -> None:
    screen = main_screen(pilot.app)  # type: ignore[arg-type]
    screen.query_one("#prompt").focus()
    screen.query_one("#prompt").insert(text)  # type: ignore[attr-defined]
    await pilot.press("enter")


async def replied(pilot: Pilot[None], text: str = "What is the capital of France?") -> MainScreen:
    """The workbench once `text` is sent and its reply has finished."""
    screen = await ready(pilot)
    await send(pilot, text)
    await until(pilot, lambda: finished(screen))
    return screen


def finished(screen: MainScreen) -> bool:
    reply = screen.conversation.last_reply
    return (
        reply is not None
        and reply.finish_reason is not None
        and not (screen.gen_run and screen.gen_run.active)
    )


def screen_text(app: LogitlabApp) -> str:
    """What the top screen shows now, as plain text (toasts included)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text for strip in strips)


def palette_entries(app: LogitlabApp) -> list[str]:
    """The command palette's hits as plain text (title and help), scrolled out of view
    or not; empty when the palette is not the top screen."""
    if not isinstance(app.screen, CommandPalette):
        return []
    return [str(option.prompt) for option in app.screen.query_one(CommandList).options]


def greedy() -> UISettings:
    return UISettings(overrides={"temperature": 0.0})


def stored(recorder: StoreRecorder) -> SessionStore:
    """The recorder's store once its pending writes have landed."""
    recorder.flush()
    assert recorder.store is not None
    return recorder.store
