"""The workbench's model and settings: loading a model (the loading screen), the
model picker, the settings dialog and the tokenizer playground that needs the model.

A collaborator of the workbench screen: the state is the `Workbench`'s; the screen
routes the keys here and clears what belongs to the old model once a new one loads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.screen import Screen

from engine.decode import logprob_distribution
from engine.model import ModelDescription, ModelSpec
from tui.screens.views import show_model
from tui.settings import UISettings
from tui.widgets.prompt_input import PromptInput
from tui.widgets.status_bar import StatusBar
from tui.widgets.step_view import StepView
from tui.workbench import Workbench

Loaded = Callable[[ModelDescription | None], None]


class ModelActions:
    def __init__(self, workbench: Workbench, screen: Screen[Any]) -> None:
        self.workbench, self.screen = workbench, screen

    def load(self, spec: ModelSpec, loaded: Loaded) -> None:
        """Show the loading screen (a reply in progress stops); the conversation stays."""
        from tui.screens.loading import LoadingScreen

        self.workbench.stop()
        loading = LoadingScreen(self.workbench.backend, spec)

        def ready(facts: ModelDescription | None) -> None:
            loaded(facts)
            if facts is not None and loading.typed.strip():  # typed while it loaded
                prompt = self.screen.query_one(PromptInput)
                prompt.insert(loading.typed)
                if loading.send_typed:
                    prompt.post_message(PromptInput.Submitted(prompt.text.strip()))

        self.screen.app.push_screen(loading, ready)

    def loaded(self, facts: ModelDescription) -> None:
        """The model is ready: the workbench and the status bar say which it is."""
        self.workbench.model_loaded(facts)
        status = self.screen.query_one(StatusBar)
        status.model, status.device, status.dtype = facts.model_id, facts.device, facts.dtype
        status.quantize, status.context_window = facts.quantize, facts.context_window
        status.backend = facts.backend
        label = logprob_distribution(self.workbench.backend)
        self.screen.query_one(StepView).logprob_label = label
        show_model(self.workbench, self.screen)

    def pick(self, loaded: Loaded) -> None:
        from tui.screens.model_picker import ModelPickerScreen

        def picked(spec: ModelSpec | None) -> None:
            if spec is not None:
                self.load(spec, loaded)

        self.screen.app.push_screen(ModelPickerScreen(self.workbench.spec), picked)

    def open_settings(self) -> None:
        from tui.screens.settings import SettingsScreen

        facts, settings = self.workbench.facts, self.workbench.settings
        config = facts.generation_config if facts else {}
        self.screen.app.push_screen(SettingsScreen(settings, config), self.settings_saved)

    def settings_saved(self, settings: UISettings | None) -> None:
        if settings is not None:
            self.workbench.settings_saved(settings)
            show_model(self.workbench, self.screen)
            self.screen.notify("Settings saved; they apply to the next reply.")

    def playground(self) -> None:
        from tui.screens.playground import PlaygroundScreen

        if self.workbench.facts is None:
            self.screen.notify("The model is still loading.", severity="warning")
            return
        self.screen.app.push_screen(PlaygroundScreen(self.workbench.backend))
