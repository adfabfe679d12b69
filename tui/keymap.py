"""Keys as data: every binding has an id, a user's `[keymap]` (config.toml) remaps it
with Textual's `App.set_keymap`, and the help and the palette read the keys from the
`Binding` objects through `keys_of`, so a remapped key shows everywhere the footer does.

The ids a keymap may name are those of `tui.screens.bindings.every_binding`.
"""

from __future__ import annotations

from collections.abc import Mapping

from textual.binding import Binding, BindingType

APP_BINDINGS: list[BindingType] = [
    Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
    Binding("f1", "help", "Help", id="app.help"),
]

# how a key name shows in the palette ("[esc]", "[/]"): Textual's names for the rest
_SHOWN = {
    "escape": "esc",
    "slash": "/",
    "question_mark": "?",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
}


def keys_of(binding: Binding, keymap: Mapping[str, str]) -> str:
    """The keys `binding` answers to now, comma-separated: the keymap's, else its own."""
    return keymap.get(binding.id or "", "") or binding.key


def key_label(keys: str) -> str:
    """The first of `keys` as the palette shows it ("escape,f5" -> "esc")."""
    first = keys.split(",")[0].strip()
    return _SHOWN.get(first, first)
