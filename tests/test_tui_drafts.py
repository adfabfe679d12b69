"""Nothing typed is lost: the message box's text is kept in the session (issue 17).

The draft is written once it settles, on every way out (a crash included), and
comes back when the session is reopened; sending it clears it. It lives in a
column of its own (schema 2) and is not part of the export.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.sessions.export import export_json
from engine.sessions.schema import MIGRATIONS
from engine.sessions.store import SessionStore
from tests.fake_engine import FakeEngine
from tests.session_factories import MODEL, SETTINGS, reply, user
from tests.tui_helpers import (
    SIZE,
    fake_app,
    finished,
    main_screen,
    ready,
    replied,
    send,
    stored,
    until,
)
from tui.crash import InjectedFault
from tui.store_recorder import StoreRecorder
from tui.widgets.prompt_input import DRAFT_SECONDS, PromptInput

pytestmark = pytest.mark.anyio


def only_draft(recorder: StoreRecorder) -> str | None:
    sessions = stored(recorder).list()
    return stored(recorder).get(sessions[0].id).draft if len(sessions) == 1 else None


# --- the store ------------------------------------------------------------------------


def test_the_draft_is_stored_and_not_activity(tmp_path: Path) -> None:
    with SessionStore(tmp_path / "s.db") as store:
        session = store.create(MODEL, SETTINGS)
        store.append_message(session.id, user("hi"))
        before = store.get(session.id).updated_at
        store.set_draft(session.id, "half [/] typed\nsecond line")
        again = store.get(session.id)
        assert again.draft == "half [/] typed\nsecond line"
        assert again.updated_at == before  # typing does not move a session up the list
        assert "draft" not in export_json(again)  # not part of the export schema


def test_a_version_1_database_gains_an_empty_draft(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        for statement in MIGRATIONS[1]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
    with SessionStore(path) as store:
        session = store.create(MODEL, SETTINGS, "old")
        store.append_message(session.id, reply(["Hi"]))
        assert store.get(session.id).draft == ""


# --- the workbench --------------------------------------------------------------------


async def test_a_settled_draft_starts_a_session_and_sending_clears_it(
    recorder: StoreRecorder,
) -> None:
    app = fake_app(FakeEngine(), recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        prompt = screen.query_one(PromptInput)
        prompt.focus()
        await pilot.press(*"half typed")
        await until(pilot, lambda: only_draft(recorder) == "half typed", DRAFT_SECONDS + 5)
        await until(pilot, lambda: screen.session_id is not None)  # the status bar knows
        prompt.clear()
        await send(pilot, "sent [bold]now[/]")
        await until(pilot, lambda: finished(screen))
        [summary] = stored(recorder).list()
        session = stored(recorder).get(summary.id)
        assert session.draft == "" and session.messages[0].content == "sent [bold]now[/]"
        assert session.title == "sent [bold]now[/]"


async def test_quitting_keeps_the_draft_at_once(recorder: StoreRecorder) -> None:
    app = fake_app(FakeEngine(), recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await replied(pilot, "hello")
        screen.query_one(PromptInput).insert("typed just before Ctrl+Q")
        await pilot.press("ctrl+q")  # well inside DRAFT_SECONDS
    assert only_draft(recorder) == "typed just before Ctrl+Q"


@pytest.mark.app_errors
async def test_a_draft_survives_a_crash_and_comes_back(recorder: StoreRecorder) -> None:
    app = fake_app(FakeEngine(), recorder=recorder)
    with pytest.raises(InjectedFault):
        async with app.run_test(size=SIZE) as pilot:
            screen = await replied(pilot, "hello")
            screen.query_one(PromptInput).insert("the thought I was typing")
            app.inject_fault("fatal")
            await until(pilot, lambda: app.crash is not None)
    assert app.return_code == 1
    [summary] = stored(recorder).list()
    session = stored(recorder).get(summary.id)
    assert session.draft == "the thought I was typing"

    reopened = fake_app(FakeEngine(), recorder=recorder, session=session)  # --session ID
    async with reopened.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        prompt = screen.query_one(PromptInput)
        assert prompt.text == "the thought I was typing"
        assert prompt.cursor_location == prompt.document.end
        await pilot.press("enter")  # sends it
        await until(pilot, lambda: finished(screen) and len(screen.conversation.turns) == 4)
    assert only_draft(recorder) == ""


async def test_switching_sessions_keeps_each_draft(recorder: StoreRecorder) -> None:
    store = recorder.store
    assert store is not None
    other = store.create(MODEL, SETTINGS, "other")
    store.append_message(other.id, user("q"))
    store.set_draft(other.id, "other's draft")
    app = fake_app(FakeEngine(), recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await send(pilot, "mine")
        await until(pilot, lambda: finished(screen) and screen.session_id is not None)
        mine = screen.session_id
        assert mine is not None
        screen.query_one(PromptInput).insert("my draft")
        screen.sessions.open(other.id)  # what the browser's Enter does
        await until(pilot, lambda: main_screen(app).session_id == other.id)
        assert screen.query_one(PromptInput).text == "other's draft"
        assert stored(recorder).get(mine).draft == "my draft"
        screen.sessions.open(mine)
        await until(pilot, lambda: main_screen(app).session_id == mine)
        assert screen.query_one(PromptInput).text == "my draft"
