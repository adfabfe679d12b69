"""Shipped themes load, are strict, and are readable; user themes never stop the app."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.color import Color
from textual.theme import BUILTIN_THEMES, Theme
from textual.widgets import Static

from engine.errors import ConfigError, InvalidParameterError
from tui.theming import (
    DEFAULT_THEME,
    PROB_HIGH,
    PROB_MID,
    REQUIRED_FIELDS,
    THEME_VARIABLES,
    available_theme_names,
    contrast_ratio,
    initial_theme_name,
    load_themes,
    probability_band,
    resolve_theme_name,
    shipped_themes_dir,
    theme_from_dict,
    theme_variable_defaults,
    user_themes_dir,
)

AA = 4.5
AAA = 7.0
CHIP_COLOURS = ("prob-high", "prob-mid", "prob-low", "token-special", "token-forced")
SPAN_COLOURS = ("span-template", "span-system", "span-user", "span-assistant")

SHIPPED, SHIPPED_PROBLEMS = load_themes(user_dir=Path("/nonexistent"))


def shipped_theme_ids() -> list[str]:
    return sorted(SHIPPED)


# --- shipped themes -----------------------------------------------------------------


def test_shipped_themes_all_load_cleanly() -> None:
    assert SHIPPED_PROBLEMS == []
    assert {
        "logitlab-dark",
        "logitlab-light",
        "high-contrast",
        "logitlab-nord",
        "logitlab-gruvbox",
    } <= set(SHIPPED)
    assert DEFAULT_THEME in SHIPPED
    assert SHIPPED[DEFAULT_THEME].dark and not SHIPPED["logitlab-light"].dark


def test_shipped_file_names_match_theme_names() -> None:
    directory = shipped_themes_dir()
    assert directory is not None
    stems = {path.stem for path in directory.glob("*.toml")}
    assert stems == set(SHIPPED)


def test_shipped_names_do_not_shadow_textual_builtins() -> None:
    assert not set(SHIPPED) & set(BUILTIN_THEMES)


def _colour(theme: Theme, name: str) -> str:
    value = theme.variables.get(name) or getattr(theme, name)
    assert value is not None, f"{theme.name}: {name} unset"
    return str(value)


@pytest.mark.parametrize("name", shipped_theme_ids())
@pytest.mark.parametrize("surface", ["background", "surface", "panel"])
def test_foreground_text_meets_aa(name: str, surface: str) -> None:
    """Body text ($text = foreground at text_alpha) on every surface Textual paints."""
    theme = SHIPPED[name]
    ratio = contrast_ratio(_colour(theme, "foreground"), _colour(theme, surface), theme.text_alpha)
    minimum = AAA if name == "high-contrast" else AA
    assert ratio >= minimum, f"{name}: foreground on {surface} is {ratio:.2f}:1"


@pytest.mark.parametrize("name", shipped_theme_ids())
@pytest.mark.parametrize("variable", CHIP_COLOURS + SPAN_COLOURS)
def test_token_colours_meet_aa_on_token_stream(name: str, variable: str) -> None:
    """Chips and prompt tokens are coloured text on $token-stream-background."""
    theme = SHIPPED[name]
    ratio = contrast_ratio(_colour(theme, variable), _colour(theme, "token-stream-background"))
    minimum = AAA if name == "high-contrast" else AA
    assert ratio >= minimum, f"{name}: {variable} on token-stream-background is {ratio:.2f}:1"


# Other text/background pairs the UI's stylesheet (tui/styles/app.tcss) draws.
UI_PAIRS = [
    ("foreground", "token-stream-background"),  # plain-text prompt tokens
    ("warning", "token-stream-background"),  # injection warnings in the Prompt tab
    ("prob-high", "surface"),  # Step tab: processed-probability bars
    ("prob-mid", "surface"),  # Step tab: raw-probability bars
    ("token-forced", "surface"),  # Step tab: the sampled candidate
    ("warning", "surface"),  # a cancelled reply's note
    ("error", "surface"),  # an error in the chat pane
    ("background", "token-forced"),  # the STEP badge in the status bar
]


@pytest.mark.parametrize("name", shipped_theme_ids())
@pytest.mark.parametrize(("fg", "bg"), UI_PAIRS, ids=[f"{f}-on-{b}" for f, b in UI_PAIRS])
def test_ui_text_pairs_meet_aa(name: str, fg: str, bg: str) -> None:
    theme = SHIPPED[name]
    ratio = contrast_ratio(_colour(theme, fg), _colour(theme, bg))
    assert ratio >= AA, f"{name}: {fg} on {bg} is {ratio:.2f}:1"


@pytest.mark.parametrize("name", shipped_theme_ids())
def test_chip_colours_are_distinct(name: str) -> None:
    """Each chip meaning gets its own colour, or the stream cannot be read."""
    theme = SHIPPED[name]
    colours = [Color.parse(theme.variables[v]) for v in CHIP_COLOURS]
    assert len(set(colours)) == len(CHIP_COLOURS)
    spans = [Color.parse(theme.variables[v]) for v in SPAN_COLOURS]
    assert len(set(spans)) == len(SPAN_COLOURS)


# --- contrast formula ---------------------------------------------------------------


def test_contrast_ratio_matches_wcag_reference_values() -> None:
    assert contrast_ratio("#ffffff", "#000000") == pytest.approx(21.0)
    assert contrast_ratio("#000000", "#000000") == pytest.approx(1.0)
    # #777 on white is the textbook "just fails AA" grey: 4.48:1
    assert contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast_ratio("#ffffff", "#777777") == pytest.approx(4.48, abs=0.01)
    assert contrast_ratio("#0000ff", "#ffffff") == pytest.approx(8.59, abs=0.01)


def test_contrast_ratio_blends_translucent_text_over_background() -> None:
    assert contrast_ratio("#ffffff00", "#000000") == pytest.approx(1.0)
    assert contrast_ratio("#ffffff", "#000000", fg_alpha=0.0) == pytest.approx(1.0)
    half = contrast_ratio("#ffffff", "#000000", fg_alpha=0.5)
    assert 1.0 < half < 21.0


def test_probability_bands() -> None:
    assert probability_band(0.97) == "prob-high"
    assert probability_band(PROB_HIGH) == "prob-high"
    assert probability_band(0.4) == "prob-mid"
    assert probability_band(PROB_MID) == "prob-mid"
    assert probability_band(0.01) == "prob-low"
    assert {probability_band(p) for p in (0.9, 0.3, 0.0)} <= set(THEME_VARIABLES)


# --- user themes --------------------------------------------------------------------

GOOD = dict(tomllib.loads((shipped_themes_dir() / "logitlab-dark.toml").read_text()))  # type: ignore[operator]


def _write_theme(directory: Path, filename: str, **changes: object) -> Path:
    import tomli_w

    data = {**GOOD, "name": Path(filename).stem, "variables": dict(GOOD["variables"])}
    for key, value in changes.items():
        if key.startswith("variables."):
            var = key.split(".", 1)[1]
            if value is None:
                del data["variables"][var]
            else:
                data["variables"][var] = value
        elif value is None:
            del data[key]
        else:
            data[key] = value
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(tomli_w.dumps(data))
    return path


def test_user_theme_loads_from_config_dir() -> None:
    _write_theme(user_themes_dir(), "my-theme.toml", primary="#ff00ff")
    themes, problems = load_themes()
    assert problems == []
    assert themes["my-theme"].primary == "#ff00ff"
    assert set(SHIPPED) < set(themes)


BROKEN = [
    ("unknown key", {"primery": "#ff0000"}, "primery"),
    ("bad colour", {"primary": "#ggg000"}, "primary"),
    ("colour not a string", {"background": 123}, "background"),
    ("missing field", {"background": None}, "background"),
    ("missing variable", {"variables.prob-low": None}, "variables.prob-low"),
    ("unknown variable", {"variables.prob-medium": "#ffffff"}, "variables.prob-medium"),
    ("bad variable colour", {"variables.token-special": "purplish"}, "variables.token-special"),
    ("dark not a bool", {"dark": "yes"}, "dark"),
    ("name clash with shipped", {"name": "logitlab-dark"}, "name"),
    ("name clash with textual", {"name": "nord"}, "name"),
]


@pytest.mark.parametrize(("case", "changes", "key"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_user_theme_is_skipped_with_file_and_key(
    case: str, changes: dict[str, object], key: str
) -> None:
    directory = user_themes_dir()
    bad = _write_theme(directory, "broken.toml", **changes)
    _write_theme(directory, "fine.toml")
    themes, problems = load_themes()
    assert len(problems) == 1, problems
    assert str(bad) in problems[0]
    assert f": {key}:" in problems[0]
    assert "fine" in themes  # the other user theme still loads
    assert "broken" not in themes
    assert set(SHIPPED) <= set(themes)


def test_user_theme_with_bad_toml_is_skipped(tmp_path: Path) -> None:
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "oops.toml").write_text('name = "oops\nprimary = ')
    (directory / "binary.toml").write_bytes(b"\xff\xfe\x00")
    themes, problems = load_themes(user_dir=directory)
    assert len(problems) == 2
    assert any(str(directory / "oops.toml") in p and "invalid TOML" in p for p in problems)
    assert any(str(directory / "binary.toml") in p for p in problems)
    assert set(themes) == set(SHIPPED)


def test_theme_from_dict_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"^here: variables: missing"):
        theme_from_dict({k: GOOD[k] for k in REQUIRED_FIELDS}, source="here")


# --- names, --theme, startup --------------------------------------------------------


def test_resolve_theme_name_lists_available_on_unknown() -> None:
    assert resolve_theme_name("high-contrast", SHIPPED) == "high-contrast"
    with pytest.raises(ConfigError) as info:
        resolve_theme_name("solarised", SHIPPED)
    assert isinstance(info.value, InvalidParameterError)  # the CLI's usage-error route
    message = str(info.value)
    assert message.startswith("--theme: unknown theme 'solarised'; available themes: ")
    for name in available_theme_names(SHIPPED):
        assert name in message


def test_unknown_theme_on_the_command_line_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tui.cli.main import main

    assert main(["chat", "--theme", "solarised"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown theme 'solarised'" in err and "logitlab-dark" in err


def test_initial_theme_precedence() -> None:
    assert initial_theme_name(None, None, SHIPPED) == (DEFAULT_THEME, [])
    assert initial_theme_name(None, "logitlab-nord", SHIPPED) == ("logitlab-nord", [])
    assert initial_theme_name("high-contrast", "logitlab-nord", SHIPPED) == ("high-contrast", [])
    name, warnings = initial_theme_name(None, "deleted-theme", SHIPPED)
    assert name == DEFAULT_THEME and "deleted-theme" in warnings[0]
    with pytest.raises(ConfigError):
        initial_theme_name("deleted-theme", None, SHIPPED)


# --- the themes in a real Textual app -----------------------------------------------


class VariablesApp(App[None]):
    """Every logitlab variable used in CSS, as the UI's .tcss will."""

    CSS = "\n".join(
        f"#v-{name} {{ color: ${name}; background: $token-stream-background; }}"
        for name in THEME_VARIABLES
    )

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return theme_variable_defaults(SHIPPED, dark=self.current_theme.dark)

    def compose(self) -> ComposeResult:
        for name in THEME_VARIABLES:
            yield Static(name, id=f"v-{name}")

    def on_mount(self) -> None:
        for theme in SHIPPED.values():
            self.register_theme(theme)


def test_every_theme_applies_in_an_app() -> None:
    asyncio.run(_apply_every_theme())


async def _apply_every_theme() -> None:
    app = VariablesApp()
    async with app.run_test() as pilot:
        for name in [*SHIPPED, "textual-dark", "textual-light"]:
            app.theme = name
            await pilot.pause()
            source = (
                SHIPPED.get(name)
                or SHIPPED["logitlab-light" if name.endswith("light") else DEFAULT_THEME]
            )
            chip = app.query_one("#v-prob-high", Static)
            assert chip.styles.color == Color.parse(source.variables["prob-high"])
            assert chip.styles.background == Color.parse(
                source.variables["token-stream-background"]
            )


def test_switching_theme_in_the_app_persists_it() -> None:
    """The palette sets `app.theme`; the app saves it via engine.config.set_theme."""
    asyncio.run(_switch_and_persist())


async def _switch_and_persist() -> None:
    from fake_engine import FakeEngine

    from engine.config import config_path, load_config
    from tui.app import make_app

    backend = FakeEngine()
    app = make_app(backend=backend, theme="high-contrast")
    try:
        async with app.run_test() as pilot:
            await pilot.pause()
            assert not config_path().exists()  # starting with --theme saves nothing
            app.theme = "logitlab-nord"
            await pilot.pause()
            assert load_config().theme == "logitlab-nord"
    finally:
        backend.close()


def test_variable_defaults_without_shipped_themes() -> None:
    defaults = theme_variable_defaults({})
    assert set(defaults) == set(THEME_VARIABLES)
    for value in defaults.values():
        Color.parse(value)


# --- documentation stays in step ----------------------------------------------------


def test_readme_example_is_a_valid_theme_and_lists_every_variable() -> None:
    readme = (shipped_themes_dir() / "README.md").read_text()  # type: ignore[operator]
    block = re.search(r"```toml\n(.*?)```", readme, re.S)
    assert block is not None
    theme = theme_from_dict(tomllib.loads(block.group(1)), source="README.md")
    assert set(THEME_VARIABLES) <= set(theme.variables)
    default_file = (shipped_themes_dir() / f"{DEFAULT_THEME}.toml").read_text()  # type: ignore[operator]
    for key in (*REQUIRED_FIELDS, *THEME_VARIABLES, "boost", "text_alpha"):
        assert key in default_file


def test_start_up_notices_are_shown_in_the_app(tmp_path: Path) -> None:
    """A configured theme that no longer exists falls back with a visible warning."""
    asyncio.run(_notices_shown(tmp_path))


async def _notices_shown(tmp_path: Path) -> None:
    from tests.tui_helpers import SIZE, fake_app, ready
    from tui import theming

    themes = theming.load_themes(tmp_path / "none")
    name, warnings = theming.initial_theme_name(None, "gone-theme", themes[0])
    assert name == theming.DEFAULT_THEME and warnings
    app = fake_app(theme=name, themes=themes, notices=warnings)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        assert any("gone-theme" in n.message for n in app._notifications)
        assert app.theme == theming.DEFAULT_THEME
