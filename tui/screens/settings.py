"""Settings: system prompt, sampling values with their sources, special-token injection.

A value is refused inline, next to its field, with the engine's own reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, Switch, TextArea

from engine.errors import InvalidParameterError
from engine.params import SamplingParams
from tui.screens.guard import ScreenGuard
from tui.settings import FIELDS, UISettings, parse_value


def shown(value: Any) -> str:
    return "" if value is None else str(value)


class SettingsScreen(ScreenGuard, ModalScreen[UISettings | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="settings.cancel"),
        Binding("ctrl+s", "save", "Save", id="settings.save"),
    ]

    def __init__(self, settings: UISettings, generation_config: Mapping[str, Any]) -> None:
        super().__init__()
        self.settings = settings
        self.generation_config = generation_config
        self.params, self.sources = settings.resolve(generation_config)

    def compose(self) -> ComposeResult:
        with Vertical(id="settings-box", classes="dialog"):
            yield Static("Settings  (Ctrl+S save · Esc cancel)", classes="dialog-title")
            with VerticalScroll():
                yield Label("system prompt")
                yield TextArea(self.settings.system_prompt, id="system_prompt", soft_wrap=True)
                for name, label, _kind in FIELDS:
                    with Horizontal(classes="setting-row"):
                        yield Label(label, classes="setting-label", markup=False)
                        yield Input(
                            shown(getattr(self.params, name)), id=name, classes="setting-input"
                        )
                        yield Static(
                            self.sources.get(name, ""),
                            id=f"{name}-source",
                            classes="setting-source",
                            markup=False,
                        )
                    yield Static("", id=f"{name}-error", classes="field-error", markup=False)
                with Horizontal(classes="setting-row"):
                    yield Label("inject special tokens typed in messages", classes="setting-label")
                    yield Switch(self.settings.allow_special, id="allow_special")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Model defaults", id="reset")
                yield Button("Cancel", id="cancel")

    @on(Input.Changed, ".setting-input")
    def validate_one(self, event: Input.Changed) -> None:
        name = event.input.id or ""
        kind = dict((n, k) for n, _l, k in FIELDS)[name]
        error = self.query_one(f"#{name}-error", Static)
        try:
            SamplingParams().with_changes(**{name: parse_value(name, kind, event.value)})
        except (ValueError, InvalidParameterError) as exc:
            message = str(exc) if isinstance(exc, InvalidParameterError) else f"{name}: {exc}"
            error.update(message)
            event.input.add_class("-invalid")
            return
        error.update("")
        event.input.remove_class("-invalid")
        current = shown(getattr(self.params, name))
        self.query_one(f"#{name}-source", Static).update(
            "user" if event.value.strip() != current else self.sources.get(name, "")
        )

    def collect(self) -> UISettings | None:
        """The settings the form describes, or None after showing why a value is refused."""
        overrides = dict(self.settings.overrides)
        ok = True
        for name, _label, kind in FIELDS:
            field = self.query_one(f"#{name}", Input)
            try:
                value = parse_value(name, kind, field.value)
            except ValueError as exc:
                self.query_one(f"#{name}-error", Static).update(f"{name}: {exc}")
                ok = False
                continue
            if field.value.strip() != shown(getattr(self.params, name)):
                overrides[name] = value
        if not ok:
            return None
        candidate = self.settings.with_changes(
            system_prompt=self.query_one("#system_prompt", TextArea).text,
            overrides=overrides,
            allow_special=self.query_one("#allow_special", Switch).value,
        )
        try:
            candidate.resolve(self.generation_config)
        except InvalidParameterError as exc:
            target = f"#{exc.field}-error"
            if self.query(target):
                self.query_one(target, Static).update(str(exc))
            else:
                self.notify(str(exc), severity="error", markup=False)
            return None
        return candidate

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        settings = self.collect()
        if settings is not None:
            self.dismiss(settings)

    @on(Button.Pressed, "#reset")
    def reset(self) -> None:
        params, sources = UISettings().resolve(self.generation_config)
        self.settings = self.settings.with_changes(overrides={})
        self.params, self.sources = params, sources
        for name, _label, _kind in FIELDS:
            self.query_one(f"#{name}", Input).value = shown(getattr(params, name))
            self.query_one(f"#{name}-source", Static).update(sources.get(name, ""))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
