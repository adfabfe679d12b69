"""Pilot tests of sessions in the workbench: autosave, browser, reopen, export/import.

Over the scripted fake engine and a real SessionStore in the test's temporary
data dir (conftest isolates it), so these check what actually lands in SQLite.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from engine.params import SamplingParams
from engine.sessions import export_json, import_session_text
from engine.sessions.records import SessionSettings
from engine.sessions.store import SessionStore
from tests.fake_engine import DEFAULT_REPLY, FakeEngine
from tests.session_factories import MODEL, reply, user
from tests.tui_helpers import SIZE, fake_app, finished, ready, replied, send, stored, until
from tui.screens.confirm import ConfirmScreen
from tui.screens.export import ExportScreen, default_path
from tui.screens.import_session import ImportScreen
from tui.screens.sessions import SessionBrowserScreen
from tui.store_recorder import StoreRecorder
from tui.widgets.chat_pane import ChatPane
from tui.widgets.session_table import SessionTable
from tui.widgets.status_bar import StatusBar
from tui.widgets.step_view import StepView
from tui.widgets.token_stream import TokenStream

pytestmark = pytest.mark.anyio


@pytest.fixture
def backend() -> Iterator[FakeEngine]:
    backend = FakeEngine()
    yield backend
    backend.close()


def seed_sessions(store: SessionStore) -> list[str]:
    """Three sessions; the Paris one has a reply with steps, candidates and settings."""
    settings = SessionSettings("Answer in one line.", SamplingParams(temperature=0.7, seed=7))
    ids = []
    for title, question, words in (
        ("cooking", "How long to boil an egg?", ["Nine", " minutes."]),
        ("", "What is the capital of France?", ["The", " capital", " is", " Paris."]),
        ("poetry", "A haiku about rain", ["Soft", " rain", " falls."]),
    ):
        session = store.create(MODEL, settings, title)
        store.append_message(session.id, user(question))
        store.append_message(session.id, reply(words))
        ids.append(session.id)
    return ids


async def test_autosave_commits_each_message_and_settings(
    backend: FakeEngine, recorder: StoreRecorder
) -> None:
    app = fake_app(backend, recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await send(pilot, "What is the capital of France?\nAnswer briefly.")
        await until(pilot, lambda: len(stored(recorder).list()) == 1)
        first = stored(recorder).get(stored(recorder).list()[0].id)
        assert [m.role for m in first.messages][:1] == ["user"]  # committed before the reply
        await until(pilot, lambda: finished(screen))
        store = stored(recorder)
        [summary] = store.list()
        session = store.get(summary.id)
        assert session.title == "What is the capital of France?"
        assert [m.role for m in session.messages] == ["user", "assistant"]
        answer = session.messages[1]
        assert answer.finish_reason == "stop" and answer.content == DEFAULT_REPLY
        assert answer.steps == tuple(screen.conversation.last_reply.steps)  # type: ignore[union-attr]
        assert answer.steps[0].top and answer.steps[-1].special
        await until(pilot, lambda: screen.session_id == summary.id)
        assert screen.query_one(StatusBar).session == f"session {summary.id[:8]}"
        # settings changes go to the session straight away
        screen.models.settings_saved(screen.settings.with_changes(system_prompt="Be terse."))
        assert stored(recorder).get(summary.id).settings.system_prompt == "Be terse."
        await send(pilot, "And Germany?")
        await until(pilot, lambda: finished(screen) and len(screen.conversation.turns) == 4)
        assert len(stored(recorder).get(summary.id).messages) == 4


async def test_cancelled_reply_is_saved_as_cancelled(recorder: StoreRecorder) -> None:
    backend = FakeEngine(pause_at=3)
    app = fake_app(backend, recorder=recorder)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(pilot)
            await send(pilot, "hi")
            await until(pilot, lambda: screen.gen_run is not None and screen.gen_run.active)
            await pilot.pause(0.1)
            await pilot.press("escape")
            await until(pilot, lambda: finished(screen))
            store = stored(recorder)
            answer = store.get(store.list()[0].id).messages[-1]
            assert answer.finish_reason == "cancelled"
            assert 0 < len(answer.steps) == len(screen.conversation.last_reply.steps)  # type: ignore[union-attr]
    finally:
        backend.close()


async def test_ctrl_n_starts_a_new_session(backend: FakeEngine, recorder: StoreRecorder) -> None:
    app = fake_app(backend, recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        screen.settings = screen.settings.with_changes(system_prompt="Kept.")
        await send(pilot, "first chat")
        await until(pilot, lambda: finished(screen))
        await pilot.press("ctrl+n")
        await until(pilot, lambda: not screen.conversation.turns)
        assert not screen.query_one(TokenStream).steps
        assert not screen.query(".chat-user")
        assert screen.settings.system_prompt == "Kept." and screen.facts is not None
        await send(pilot, "second chat")
        await until(pilot, lambda: finished(screen))
        titles = sorted(s.title for s in stored(recorder).list())
        assert titles == ["first chat", "second chat"]


async def test_browser_search_rename_delete(backend: FakeEngine, recorder: StoreRecorder) -> None:
    ids = seed_sessions(stored(recorder))
    app = fake_app(backend, recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, SessionBrowserScreen))
        browser = app.screen
        table = browser.query_one(SessionTable)
        await until(pilot, lambda: table.row_count == 3)
        assert table.summaries[0].id == ids[2]  # last activity first
        # typing searches titles and message text
        await pilot.press(*"paris")
        await until(pilot, lambda: table.row_count == 1)
        assert table.selected_id == ids[1]
        await pilot.press("escape")  # clears the search
        await until(pilot, lambda: table.row_count == 3)
        await pilot.press("down")  # from the search box into the list
        assert table.has_focus
        table.move_cursor(row=[s.id for s in table.summaries].index(ids[0]))
        # rename inline
        await pilot.press("r")
        rename = browser.query_one("#browser-rename", Input)
        assert rename.has_focus and rename.value == "cooking"
        rename.value = "eggs"
        await pilot.press("enter")
        await until(pilot, lambda: any(s.title == "eggs" for s in table.summaries))
        assert stored(recorder).get(ids[0]).title == "eggs"
        # delete asks; "n" keeps it, "y" removes it
        table.move_cursor(row=[s.id for s in table.summaries].index(ids[0]))
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: app.screen is browser)
        assert len(stored(recorder).list()) == 3
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: table.row_count == 2)
        assert ids[0] not in {s.id for s in stored(recorder).list()}


async def test_open_restores_chat_tokens_inspector_and_settings(
    backend: FakeEngine, recorder: StoreRecorder
) -> None:
    ids = seed_sessions(stored(recorder))
    app = fake_app(backend, recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, SessionBrowserScreen))
        table = app.screen.query_one(SessionTable)
        await until(pilot, lambda: table.row_count == 3)
        table.move_cursor(row=[s.id for s in table.summaries].index(ids[1]))
        await pilot.press("enter")
        await until(pilot, lambda: screen.session_id == ids[1] and app.screen is screen)
        saved = stored(recorder).get(ids[1])
        assert screen.query_one(ChatPane).reply_text == "The capital is Paris."
        assert "What is the capital of France?" in str(
            screen.query_one(".chat-user").render()  # type: ignore[attr-defined]
        )
        stream = screen.query_one(TokenStream)
        assert tuple(stream.steps) == saved.messages[1].steps
        assert stream.selected == saved.messages[1].steps[-1]
        assert screen.query_one(StepView).candidate_count == len(saved.messages[1].steps[-1].top)
        await pilot.press("f4", "home")
        assert screen.query_one(StepView).candidate_count == 2
        assert screen.settings.system_prompt == "Answer in one line."
        params, sources = screen.settings.resolve(screen.facts.generation_config)  # type: ignore[union-attr]
        assert params == saved.settings.sampling
        assert sources["max_new_tokens"] == "logitlab"  # unchanged values keep their source
        # the next message goes on in the same session
        await send(pilot, "And Spain?")
        await until(pilot, lambda: finished(screen) and len(screen.conversation.turns) == 4)
        assert len(stored(recorder).get(ids[1]).messages) == 4
        assert len(stored(recorder).list()) == 3


async def test_branch_a_reopened_reply_rebuilds_the_decoder(
    backend: FakeEngine, recorder: StoreRecorder
) -> None:
    app = fake_app(backend, recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await replied(pilot, "hi")
        session = stored(recorder).get(stored(recorder).list()[0].id)
    app = fake_app(backend, recorder=recorder, session=session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        assert screen.gen_run is None and screen.conversation.last_reply is not None
        original = list(screen.conversation.last_reply.steps)
        await pilot.press("f4", "home", "l", "l", "b")
        await until(pilot, lambda: screen.proposal is not None)
        assert screen.proposal.index == 2  # type: ignore[union-attr]
        started = backend.started[-1]
        assert started.prefix == [s.token_id for s in original[:2]]
        pick = screen.proposal.top[1].token_id  # type: ignore[union-attr]
        await pilot.press("2")
        await until(pilot, lambda: screen.proposal is not None and screen.proposal.index == 3)
        await pilot.press("c")
        await until(pilot, lambda: finished(screen))
        reply_turn = screen.conversation.last_reply
        assert reply_turn is not None and reply_turn.steps[:2] == original[:2]
        assert [s.index for s in reply_turn.steps] == list(range(len(reply_turn.steps)))
        assert reply_turn.steps[2].forced and reply_turn.steps[2].token_id == pick
        answer = stored(recorder).get(session.id).messages[-1]
        assert answer.steps == tuple(reply_turn.steps)
        [alternative] = answer.alternatives
        assert alternative.branch_index == 2 and alternative.steps == tuple(original[2:])
        assert len(stored(recorder).get(session.id).messages) == 2  # replaced, not appended


async def test_export_writes_a_file_import_accepts(
    backend: FakeEngine, recorder: StoreRecorder, tmp_path: Path
) -> None:
    app = fake_app(backend, recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        await replied(pilot, "Export me")
        await pilot.press("ctrl+e")
        await until(pilot, lambda: isinstance(app.screen, ExportScreen))
        dialog = app.screen
        session = stored(recorder).get(stored(recorder).list()[0].id)
        path_input = dialog.query_one("#export-path", Input)
        assert path_input.value == default_path(session, "json")
        assert path_input.value.startswith("./export-me-") and path_input.value.endswith(".json")
        await pilot.click("#fmt-toml")
        await until(pilot, lambda: path_input.value.endswith(".toml"))
        target = tmp_path / "out.toml"
        path_input.value = str(target)
        path_input.focus()
        await pilot.press("enter")
        await until(pilot, lambda: target.exists())
        imported = import_session_text(target.read_bytes())
        assert [m.content for m in imported.messages] == [m.content for m in session.messages]
        assert imported.messages[1].steps == session.messages[1].steps
        await until(pilot, lambda: any(str(target) in n.message for n in app._notifications))
        # the extension typed says the format
        await pilot.press("ctrl+e")
        await until(pilot, lambda: isinstance(app.screen, ExportScreen) and app.screen.is_mounted)
        await pilot.pause()
        markdown = tmp_path / "out.md"
        app.screen.query_one("#export-path", Input).value = str(markdown)
        await pilot.press("enter")
        await until(pilot, lambda: markdown.exists())
        assert markdown.read_text().startswith("#")


async def test_import_bad_file_names_the_field_and_stores_nothing(
    backend: FakeEngine, recorder: StoreRecorder, tmp_path: Path
) -> None:
    store = stored(recorder)
    [sid, *_] = seed_sessions(store)
    good = json.loads(export_json(store.get(sid)))
    bad = json.loads(json.dumps(good))
    bad["messages"][1]["logprobs"]["content"][0]["token_id"] = "five"
    bad_file, good_file = tmp_path / "bad.json", tmp_path / "good.json"
    bad_file.write_text(json.dumps(bad))
    good_file.write_text(json.dumps(good))
    before = store.list()
    app = fake_app(backend, recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        screen.action_import_session()
        await until(pilot, lambda: isinstance(app.screen, ImportScreen) and app.screen.is_mounted)
        await pilot.pause()
        app.screen.query_one("#import-path", Input).value = str(bad_file)
        await pilot.press("enter")
        field = "messages[1].logprobs.content[0].token_id"
        dialog = app.screen
        error = dialog.query_one("#import-error", Static)
        await until(pilot, lambda: field in str(error.render()))
        assert "nothing was stored" in str(error.render())
        assert stored(recorder).list() == before
        # the dialog stays open with the refusal; a good file is stored and opened
        assert app.screen is dialog
        dialog.query_one("#import-path", Input).value = str(good_file)
        await pilot.press("enter")
        await until(pilot, lambda: len(stored(recorder).list()) == len(before) + 1)
        new_id = next(s.id for s in stored(recorder).list() if s.id not in {b.id for b in before})
        await until(pilot, lambda: screen.session_id == new_id)
        assert screen.query_one(ChatPane).reply_text == "Nine minutes."


async def test_help_and_palette_cover_the_browser_keys(
    backend: FakeEngine, recorder: StoreRecorder
) -> None:
    from textual.widgets import DataTable

    from tui.commands import BROWSER_COMMANDS
    from tui.screens.help import HelpScreen

    app = fake_app(backend, recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, SessionBrowserScreen))
        browser = app.screen
        actions = {c.action for c in BROWSER_COMMANDS}
        for binding in SessionBrowserScreen.BINDINGS:
            assert binding.action in actions and binding.id  # type: ignore[union-attr]
            assert hasattr(browser, f"action_{binding.action}")  # type: ignore[union-attr]
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        table = app.screen.query_one(DataTable)
        rows = {
            (str(table.get_row_at(i)[0]), str(table.get_row_at(i)[1]))
            for i in range(table.row_count)
        }
        assert {("sessions", "r"), ("sessions", "d"), ("workbench", "ctrl+o")} <= rows


async def test_newer_or_corrupt_database_is_reported(backend: FakeEngine, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(data / "sessions.db") as conn:
        conn.execute("PRAGMA user_version = 999")
    recorder = StoreRecorder.open_default()
    assert recorder.store is None and "newer logitlab" in recorder.problem
    app = fake_app(backend, recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        assert any("not saved" in n.message for n in app._notifications)
        assert screen.query_one(StatusBar).session == "not saving"
        await send(pilot, "still works")
        await until(pilot, lambda: finished(screen))
    recorder.close()
    (data / "sessions.db").write_bytes(b"this is not a database" * 100)
    recorder = StoreRecorder.open_default()
    assert recorder.store is not None and recorder.store.recovered_from is not None
    app = fake_app(backend, recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert any("moved to" in n.message for n in app._notifications)
    recorder.close()


def test_session_flag_with_unknown_id_fails_before_the_tui(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tui.cli.main import main

    SessionStore.open_default().close()
    assert main(["--session", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no session 'nope'" in err
    assert main(["chat", "--session", "nope"]) == 1


def test_restored_settings_keep_model_sources() -> None:
    from tui.settings import UISettings

    config = {"do_sample": True, "temperature": 0.2, "top_p": 0.9}
    sampling = SamplingParams(temperature=0.2, top_p=0.5, top_k=50, seed=3)
    settings = UISettings().restored("sys", sampling, config)
    params, sources = settings.resolve(config)
    assert params == sampling and settings.system_prompt == "sys"
    assert sources["temperature"] == "model" and sources["top_p"] == "user"
    assert replace(params, top_p=0.9) != params


async def test_export_dialog_refuses_in_place_and_sets_markdown_low_prob_count(
    backend: FakeEngine, recorder: StoreRecorder, tmp_path: Path
) -> None:
    app = fake_app(backend, recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        screen = await replied(pilot, "Export me")
        await pilot.press("ctrl+e")
        await until(pilot, lambda: isinstance(app.screen, ExportScreen) and app.screen.is_mounted)
        dialog = app.screen
        error = dialog.query_one("#export-error", Static)
        path, low = (
            dialog.query_one("#export-path", Input),
            dialog.query_one("#export-low-prob", Input),
        )
        markdown = tmp_path / "out.md"
        path.value, low.value = str(markdown), "99"
        dialog.action_export()
        await until(pilot, lambda: "0 to 50" in str(error.render()))
        assert app.screen is dialog and not markdown.exists()
        low.value = "2"
        dialog.action_export()
        await until(pilot, lambda: markdown.exists() and app.screen is screen)
        text = markdown.read_text()
        assert "Lowest-probability tokens (2):" in text
        await until(pilot, lambda: any(str(markdown) in n.message for n in app._notifications))
