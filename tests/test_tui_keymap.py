"""`[keymap]` in config.toml: binding ids remapped with Textual's `set_keymap`, checked
against the bindings the workbench has, and the remapped key shown wherever keys show
(footer, palette, help), because all three read the `Binding` objects."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Footer

from engine.config import AppConfig, Keymap, config_path, load_config, save_config, set_theme
from engine.errors import ConfigError
from tests.fake_engine import FakeEngine
from tests.tui_helpers import driving, palette_entries, ready, screen_text, until
from tui.screens.bindings import checked_keymap, every_binding
from tui.screens.help import HelpScreen

pytestmark = pytest.mark.anyio
REMAP = {"gen.step_mode": "f9"}  # not a key the prompt (a TextArea) takes itself


def _write(text: str) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_keymap_is_read_typed_and_kept_by_saves() -> None:
    _write('[keymap]\n"gen.step_mode" = "ctrl+y"\n"app.help" = "f1, question_mark"\n')
    config = load_config()
    assert config.keymap.as_dict() == {"gen.step_mode": "ctrl+y", "app.help": "f1,question_mark"}
    set_theme("logitlab-light")  # rewriting the file keeps the user's keys
    assert load_config().keymap == config.keymap
    save_config(AppConfig())
    assert load_config().keymap == Keymap()


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('"gen.step_mode" = 3', r"keymap\.gen\.step_mode: must be keys"),
        ('"gen.step_mode" = ""', r"keymap\.gen\.step_mode: must be keys"),
        ('"gen.step_mode" = "ctrl+y,,f9"', r"keymap\.gen\.step_mode: keys are separated"),
    ],
)
def test_bad_keys_are_refused_naming_file_and_key(table: str, problem: str) -> None:
    path = _write(f"[keymap]\n{table}\n")
    with pytest.raises(ConfigError, match=problem) as caught:
        load_config()
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_an_unknown_binding_id_is_refused_naming_file_and_key() -> None:
    path = _write('[keymap]\n"gen.stpo" = "ctrl+y"\n')
    with pytest.raises(ConfigError, match=r"keymap\.gen\.stpo: unknown binding id") as caught:
        checked_keymap(load_config().keymap)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "gen.stop" in message and "\n" not in message


def test_every_binding_has_an_id_and_ids_are_unique() -> None:
    ids = [b.id for b in every_binding()]
    assert all(ids), [b for b in every_binding() if not b.id]
    assert len(ids) == len(set(ids))


async def test_a_remapped_key_works_and_shows_in_footer_palette_and_help() -> None:
    backend = FakeEngine()
    keymap = checked_keymap(Keymap(tuple(REMAP.items())))
    async with driving(backend, size=(200, 30), keymap=keymap) as pilot:  # the whole footer
        screen = await ready(pilot)
        app = pilot.app
        await pilot.press("ctrl+t")  # the old key no longer toggles step mode
        await pilot.pause(0.1)
        assert not screen.step_mode
        await pilot.press("f9")
        await until(pilot, lambda: screen.step_mode)
        footer = screen.query_one(Footer)
        await until(pilot, lambda: "f9 Step mode" in screen_text(app) and footer.is_mounted)
        assert "^t" not in screen_text(app)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: any("step-through mode  [" in e for e in palette_entries(app)))
        assert any(e.startswith("Toggle step-through mode  [f9]") for e in palette_entries(app))
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        table = app.screen.query_one(DataTable)
        rows = {tuple(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)}
        assert ("workbench", "f9", "Step mode") in rows
        assert not any(row[1] == "ctrl+t" for row in rows)
