"""Text from data is never Textual/Rich markup (issue 17).

The command palette over the session browser listed ``Search sessions  [/]``,
which the palette parsed as a closing tag: MarkupError, and the app was gone.
These tests put square brackets everywhere data reaches the screen (session
titles, tokens, model names, messages, search text) and check that the app
keeps running and shows them as written. `test_no_markup_from_data` keeps
new code to the rule.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.command import CommandPalette

from engine.errors import ConfigError
from engine.model.spec import ModelSpec
from engine.sessions.store import SessionStore
from tests.fake_engine import FakeEngine
from tests.session_factories import MODEL, SETTINGS, reply, user
from tests.tui_helpers import (
    SIZE,
    fake_app,
    palette_entries,
    ready,
    replied,
    screen_text,
    until,
)
from tui.app import LogitlabApp
from tui.screens.sessions import SessionBrowserScreen
from tui.store_recorder import StoreRecorder
from tui.theming import theme_from_dict
from tui.widgets.session_table import SessionTable
from tui.widgets.token_stream import TokenStream

pytestmark = pytest.mark.anyio
TUI = Path(__file__).parent.parent / "tui"
TRICKY = ("[bold]x[/]", "[/]")


def has_entry(app: LogitlabApp, title: str) -> bool:
    return any(entry.splitlines()[0] == title for entry in palette_entries(app))


def seed(store: SessionStore) -> list[str]:
    ids = []
    for title in TRICKY:
        session = store.create(MODEL, SETTINGS, title)
        store.append_message(session.id, user(f"what is {title}?"))
        store.append_message(session.id, reply(["It", " is", f" {title}"]))
        ids.append(session.id)
    return ids


async def test_palette_over_session_browser(recorder: StoreRecorder) -> None:
    """The reproduction from the issue: Ctrl+O, then Ctrl+P."""
    app = fake_app(FakeEngine(), recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, SessionBrowserScreen))
        await pilot.press("ctrl+p")
        await until(pilot, lambda: has_entry(app, "Search sessions  [/]"))
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"search")  # the highlighted hit is built without markup too
        await until(pilot, lambda: has_entry(app, "Search sessions  [/]"))
        assert "Search sessions  [/]" in screen_text(app)
        await pilot.press("enter")  # runs the browser's search action
        await until(pilot, lambda: isinstance(app.screen, SessionBrowserScreen))
        assert app.screen.query_one("#browser-search").has_focus
    assert app.crash is None and not app.error_reports


async def test_palette_on_the_workbench_shows_every_key(recorder: StoreRecorder) -> None:
    app = fake_app(FakeEngine(), recorder=recorder)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: has_entry(app, "Stop generation  [esc]"))
        assert has_entry(app, "Toggle step-through mode  [ctrl+t]")
        assert has_entry(app, "Copy selected token  [y]")


async def test_session_titles_show_literally(recorder: StoreRecorder) -> None:
    assert recorder.store is not None
    ids = seed(recorder.store)
    app = fake_app(FakeEngine(), recorder=recorder)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await ready(pilot)
        await pilot.press("ctrl+o")
        await until(pilot, lambda: isinstance(app.screen, SessionBrowserScreen))
        table = app.screen.query_one(SessionTable)
        await until(pilot, lambda: table.row_count == 2)
        text = screen_text(app)
        assert "[bold]x[/]" in text and "[/]" in text
        # search text is echoed back when nothing matches
        await pilot.press(*"[/]nothing")
        await until(pilot, lambda: "No session matches '[/]nothing'." in screen_text(app))
        await pilot.press("escape", "escape", "escape")
        await until(pilot, lambda: not isinstance(app.screen, SessionBrowserScreen))
        for session_id, title in zip(ids, TRICKY, strict=True):
            screen.sessions.open(session_id)
            await until(pilot, lambda sid=session_id: screen.session_id == sid)  # type: ignore[misc]
            await until(pilot, lambda t=title: f"Opened “{t}”." in screen_text(app))  # type: ignore[misc]
    assert not app.error_reports


async def test_tokens_and_messages_show_literally(recorder: StoreRecorder) -> None:
    backend = FakeEngine(replies=["Look: [bold]x[/] and [/] here [link=x]y[/link]."])
    app = fake_app(backend, recorder=recorder)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await replied(pilot, "Is [/] a [bold]tag[/bold]?")
        # the reply's Markdown lands a frame after the finish: wait for it, do not guess
        await until(pilot, lambda: "Look: [bold]x[/] and [/] here" in screen_text(app))
        text = screen_text(app)
        assert "Is [/] a [bold]tag[/bold]?" in text  # the user's message
        assert "Look: [bold]x[/] and [/] here" in text  # the reply (Markdown)
        assert "·[bold]x[/]" in text and "·[/]" in text  # token chips
        stream = screen.query_one(TokenStream)
        stream.focus()
        await pilot.press("home", "right")  # the step view of token " [bold]x[/]"
        await until(pilot, lambda: "'Ġ[bold]x[/]'" in screen_text(app))
        await pilot.press("f4", *"[/]")  # brackets typed into the prompt
        await pilot.press("ctrl+p", *"prompt tab", "enter")
        await until(pilot, lambda: "·[bold]tag[/bold]?" in screen_text(app))
    assert not app.error_reports


async def test_model_name_with_brackets() -> None:
    spec = ModelSpec(model="/models/[/]odd[bold]")
    app = fake_app(FakeEngine(), spec=spec)
    async with app.run_test(size=(120, 30)) as pilot:
        await ready(pilot)
        assert "/models/[/]odd[bold] │ cpu float32" in screen_text(app)  # the status bar
        await pilot.press("f3")
        await until(pilot, lambda: "/models/[/]odd[bold]" in screen_text(app))  # the picker


def test_theme_names_with_brackets_are_refused() -> None:
    shipped = Path(__file__).parent.parent / "themes" / "logitlab-dark.toml"
    raw = {**tomllib.loads(shipped.read_text(encoding="utf-8")), "name": "[/]"}
    with pytest.raises(ConfigError, match="square brackets"):
        theme_from_dict(raw, source="mine.toml")


def _markup_risks(path: Path) -> Iterator[str]:
    """Calls that would read data as markup: `notify(...)` and `Static`/`Label`/`Button`
    built from anything but a literal string, without ``markup=False``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        keywords = {k.arg: k.value for k in node.keywords}
        literal_off = isinstance(keywords.get("markup"), ast.Constant) and (
            keywords["markup"].value is False  # type: ignore[attr-defined]
        )
        if name == "notify":
            first = node.args[0] if node.args else keywords.get("message")
        elif name in ("Static", "Label", "Button"):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Call) and getattr(first.func, "id", "") in ("literal", "cell"):
                continue
        else:
            continue
        if first is None or isinstance(first, ast.Constant) or literal_off:
            continue
        yield f"{path.relative_to(TUI.parent)}:{node.lineno}: {name}({ast.unparse(first)})"


def test_no_markup_from_data() -> None:
    risks = [risk for path in sorted(TUI.rglob("*.py")) for risk in _markup_risks(path)]
    assert not risks, "pass markup=False or build Content (tui/markup.py):\n" + "\n".join(risks)
