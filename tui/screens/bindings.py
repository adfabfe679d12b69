"""Every binding the workbench has, for checking a user's `[keymap]`: the binding ids
are checked here (the engine reads config.toml but does not know the UI's ids), and
an unknown id is refused with the file and key named, not ignored."""

from __future__ import annotations

from collections.abc import Iterable

from textual.binding import Binding, BindingType

from engine.config import Keymap
from tui.keymap import APP_BINDINGS


def every_binding() -> list[Binding]:
    """Every binding of the app, its screens and widgets (imported here, on demand:
    the screens the workbench opens later are not imported at start)."""
    from tui.screens import (
        branches,
        compare,
        compare_dialog,
        confirm,
        error,
        export,
        help,
        loading,
        model_picker,
        playground,
        sessions,
        settings,
        workbench_keys,
    )
    from tui.widgets import prompt_tokens, token_lookup, token_stream

    groups: Iterable[Iterable[BindingType]] = (
        APP_BINDINGS,
        workbench_keys.WORKBENCH_BINDINGS,
        token_stream.TokenStream.BINDINGS,
        prompt_tokens.PromptTokens.BINDINGS,
        token_lookup.TokenLookupInput.BINDINGS,
        branches.BranchesScreen.BINDINGS,
        compare.CompareScreen.BINDINGS,
        compare_dialog.CompareDialog.BINDINGS,
        confirm.ConfirmScreen.BINDINGS,
        error.ErrorScreen.BINDINGS,
        export.ExportScreen.BINDINGS,
        help.HelpScreen.BINDINGS,
        loading.LoadingScreen.BINDINGS,
        model_picker.ModelPickerScreen.BINDINGS,
        playground.PlaygroundScreen.BINDINGS,
        sessions.SessionBrowserScreen.BINDINGS,
        settings.SettingsScreen.BINDINGS,
    )
    return [b for group in groups for b in group if isinstance(b, Binding)]


def checked_keymap(keymap: Keymap) -> dict[str, str]:
    """The user's keymap for `App.set_keymap`; `ConfigError` naming the file and key
    for a binding id no binding has."""
    if not keymap.keys:
        return {}
    return keymap.checked({b.id for b in every_binding() if b.id})
