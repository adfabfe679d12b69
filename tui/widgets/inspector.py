"""The inspector: Step, Prompt, Model and Lens tabs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import TabbedContent, TabPane

from tui.widgets.lens_view import LensView
from tui.widgets.model_view import ModelView
from tui.widgets.prompt_tokens import PromptTokens
from tui.widgets.step_view import StepView


class Inspector(Vertical):
    DEFAULT_CSS = "Inspector { height: 1fr; }"

    def compose(self) -> ComposeResult:
        with TabbedContent(id="inspector-tabs", initial="tab-step"):
            with TabPane("Step", id="tab-step"):
                yield StepView(id="step-view")
            with TabPane("Prompt", id="tab-prompt"), VerticalScroll():
                yield PromptTokens(id="prompt-tokens")
            with TabPane("Model", id="tab-model"), VerticalScroll():
                yield ModelView(id="model-view")
            with TabPane("Lens", id="tab-lens"):
                yield LensView(id="lens-view")

    def show_tab(self, tab_id: str) -> None:
        self.query_one(TabbedContent).active = tab_id

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active
