"""The keys a random-key soak presses: every binding the app declares, text, navigation.

Shared by the Pilot soak (tests/test_tui_soak.py) and the tmux soak over the
real model (bench/soak_tmux.py). Key names are Textual's ("ctrl+p", "f2",
"left_square_bracket" is written "["); the tmux script translates them.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import random
from collections.abc import Iterator

from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode

import tui.screens
import tui.widgets
from tui.app import LogitlabApp

# printable keys: letters that are bindings somewhere (r, d, y, b, c, h, l, q, n) and
# the characters markup is made of, a few beyond ASCII
TEXT = (*"abcdehlnqrtxyz AEZ0123456789.,?!-_'\"[]/\\=@#*", "é", "✓", "中", "🙂")
NAVIGATION = (
    "up",
    "down",
    "left",
    "right",
    "home",
    "end",
    "pageup",
    "pagedown",
    "tab",
    "shift+tab",
    "enter",
    "escape",
    "space",
    "backspace",
    "delete",
    "ctrl+j",
    "shift+enter",
    "ctrl+a",
    "ctrl+k",
    "ctrl+u",
    "ctrl+w",
    "ctrl+z",
    "ctrl+y",
    "ctrl+c",
    "ctrl+x",
    "ctrl+v",
)
WEIGHTS = {"binding": 0.40, "text": 0.35, "navigation": 0.25}


def _classes() -> Iterator[type[DOMNode]]:
    yield LogitlabApp
    for package in (tui.screens, tui.widgets):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ == module.__name__ and issubclass(cls, DOMNode):
                    yield cls


def declared_keys() -> tuple[str, ...]:
    """Every key of every binding our app, screens and widgets declare, plus Textual's
    app-wide ones (the palette, quit, Ctrl+C)."""
    keys = {App.COMMAND_PALETTE_BINDING}
    for cls in _classes():
        for binding in (*cls.__dict__.get("BINDINGS", ()), *App.BINDINGS):
            if isinstance(binding, Binding):
                keys.update(k.strip() for k in binding.key.split(","))
            elif isinstance(binding, tuple):
                keys.update(k.strip() for k in binding[0].split(","))
    return tuple(sorted(keys))


class KeyPicker:
    """Seeded: the same seed gives the same keys, so a failure can be replayed."""

    def __init__(self, seed: int, exclude: tuple[str, ...] = ()) -> None:
        self.rng = random.Random(seed)
        self.pools = {
            "binding": [k for k in declared_keys() if k not in exclude],
            "text": [k for k in TEXT if k not in exclude],
            "navigation": [k for k in NAVIGATION if k not in exclude],
        }

    def __call__(self) -> str:
        kind = self.rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        return self.rng.choice(self.pools[kind])
