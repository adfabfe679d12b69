"""The logitlab app: wires themes, the main screen, commands and app-wide bindings."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from rich.console import RenderableType
from textual.app import App
from textual.binding import BindingType
from textual.command import CommandPalette
from textual.theme import Theme, ThemeProvider

from engine.decode import Engine
from engine.errors import ConfigError
from engine.model import ModelSpec
from engine.sessions import Session
from tui import theming
from tui.commands import PROVIDERS, Palette
from tui.keymap import APP_BINDINGS
from tui.recorder import Recorder
from tui.resilience import ResilientApp
from tui.screens.help import HelpScreen
from tui.screens.main import MainScreen
from tui.settings import UISettings

STYLES = Path(__file__).parent / "styles"


class LogitlabApp(ResilientApp):
    TITLE = "logitlab"
    CSS_PATH = [STYLES / "app.tcss", STYLES / "dialogs.tcss"]  # noqa: RUF012
    COMMANDS = App.COMMANDS | set(PROVIDERS)
    BINDINGS: ClassVar[list[BindingType]] = APP_BINDINGS

    def __init__(
        self,
        backend: Engine,
        spec: ModelSpec,
        *,
        settings: UISettings | None = None,
        recorder: Recorder | None = None,
        session: Session | None = None,
        theme: str | None = None,
        persist_theme: bool = True,
        themes: tuple[dict[str, Theme], list[str]] | None = None,
        notices: Sequence[str] = (),
        keymap: Mapping[str, str] | None = None,
    ) -> None:
        self._themes, problems = themes if themes is not None else theming.load_themes()
        self._theme_problems = [*problems, *notices]
        super().__init__()
        self.backend, self.spec = backend, spec
        self.ui_settings, self.recorder = settings, recorder
        self.initial_session = session
        self._persist_theme = persist_theme
        self.keymap = dict(keymap or {})  # binding id -> keys ([keymap]; tui/keymap.py)
        self.set_keymap(self.keymap)
        for item in self._themes.values():
            self.register_theme(item)
        self.theme = theme or (
            theming.DEFAULT_THEME if theming.DEFAULT_THEME in self._themes else "textual-dark"
        )

    def get_theme_variable_defaults(self) -> dict[str, str]:
        themes = getattr(self, "_themes", {})
        dark = True
        with contextlib.suppress(Exception):  # before the first theme is set
            dark = self.current_theme.dark
        return theming.theme_variable_defaults(themes, dark=dark)

    def on_mount(self) -> None:
        for problem in self._theme_problems:
            self.notify(problem, severity="warning", timeout=8, markup=False)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.push_screen(
            MainScreen(
                self.backend,
                self.spec,
                settings=self.ui_settings,
                recorder=self.recorder,
                session=self.initial_session,
            )
        )

    def _theme_changed(self, theme: Theme) -> None:
        if not self._persist_theme:
            return
        from engine.config import set_theme

        try:
            set_theme(theme.name)
        except ConfigError as exc:
            self.notify(f"Theme not saved: {exc}", severity="warning", markup=False)

    def action_command_palette(self) -> None:
        # one palette: a dialog a worker opened may be on top of it (the soak, seed 7)
        if self.use_command_palette and not any(
            isinstance(s, CommandPalette) for s in self.screen_stack
        ):
            self.push_screen(Palette(id="--command-palette"))

    def search_themes(self) -> None:
        # the palette's "Change theme" opens a second palette: ours, so it has the same
        # fixes (a bare CommandPalette crashed on PageUp: the soak, seed 20250117)
        self.push_screen(Palette(providers=[ThemeProvider], placeholder="Search for themes…"))

    def salvage(self) -> None:
        """The message box's text goes to the session before the app ends."""
        main = next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)
        if main is not None:
            main.keep_draft()

    def exit(
        self, result: None = None, return_code: int = 0, message: RenderableType | None = None
    ) -> None:
        self.salvage()  # every way out (Ctrl+Q, the palette, the loading screen) comes here
        super().exit(result, return_code, message)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        main = next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)
        sections = main.binding_sections() if main else [("app", list(self.BINDINGS))]
        own = getattr(self.screen, "binding_sections", None)  # e.g. the session browser
        if own is not None and self.screen is not main:
            sections = [*own(), *[s for s in sections if s[0] != "app"]]
        self.push_screen(HelpScreen(sections, self.keymap))


def make_app(
    backend: Engine | None = None,
    spec: ModelSpec | None = None,
    *,
    settings: UISettings | None = None,
    recorder: Recorder | None = None,
    session: Session | None = None,
    theme: str | None = None,
    persist_theme: bool = True,
    themes: tuple[dict[str, Theme], list[str]] | None = None,
    notices: Sequence[str] = (),
    keymap: Mapping[str, str] | None = None,
) -> LogitlabApp:
    """The app the CLI runs and the tests drive; `backend` defaults to the local engine.

    `recorder` saves the chat (None: nothing is saved); `session` is reopened at start;
    `themes` are the already loaded (themes, problems); `notices` are shown at start;
    `keymap` remaps binding ids to keys (checked: `tui.screens.bindings.checked_keymap`).
    """
    if backend is None:
        from engine.decode import open_engine

        backend = open_engine(spec or ModelSpec())
    return LogitlabApp(
        backend,
        spec or ModelSpec(),
        settings=settings,
        recorder=recorder,
        session=session,
        theme=theme,
        persist_theme=persist_theme,
        themes=themes,
        notices=notices,
        keymap=keymap,
    )
