"""Loading a model: progress bar and stage text; on failure, the reason and a way out."""

from __future__ import annotations

from typing import ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, ProgressBar, Static

from engine.decode import Engine
from engine.errors import LogitlabError
from engine.model import ModelDescription, ModelSpec
from tui.crash import logged
from tui.messages import LoadProgressed, ModelLoaded, ModelLoadFailed
from tui.screens.guard import ScreenGuard


class LoadingScreen(ScreenGuard, Screen[ModelDescription]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f3", "pick_model", "Pick model", id="load.pick"),
        Binding("ctrl+r", "retry", "Retry", id="load.retry"),
    ]

    def __init__(self, backend: Engine, spec: ModelSpec) -> None:
        super().__init__()
        self.backend = backend
        self.spec = spec
        self._loaded: ModelDescription | None = None  # arrived while a dialog was on top
        # what was typed while the model loads: the message box gets it, and Enter
        # sends it once the model is ready (type-ahead, as a shell keeps it)
        self.typed = ""
        self.send_typed = False

    def compose(self) -> ComposeResult:
        with Vertical(id="loading-box"):
            yield Static("logitlab", id="loading-title")
            yield Static(self._title(self.spec), id="loading-model", markup=False)
            yield ProgressBar(total=100, show_eta=False, id="loading-bar")
            yield Static("starting", id="loading-stage", markup=False)
            yield Static("", id="loading-error", markup=False)
            yield Static("", id="loading-typed", markup=False)
            with Horizontal(id="loading-actions"):
                yield Button("Pick another model", id="pick", variant="primary")
                yield Button("Retry", id="retry")
                yield Button("Quit", id="quit", variant="error")
        yield Footer()

    def on_mount(self) -> None:
        self._begin()

    def _begin(self) -> None:
        self._loaded = None
        self.query_one("#loading-model", Static).update(self._title(self.spec))
        self.query_one("#loading-bar", ProgressBar).update(progress=0)
        self.query_one("#loading-stage", Static).update("starting")
        self.remove_class("failed")
        self._load(self.spec)

    def on_key(self, event: events.Key) -> None:
        if self.has_class("failed") or self.send_typed:
            return  # the buttons have the keys; or the message is already on its way
        if event.key == "enter":
            self.send_typed = bool(self.typed.strip())
        elif event.key == "backspace":
            self.typed = self.typed[:-1]
        elif event.is_printable and event.character:
            self.typed += event.character
        else:
            return
        event.stop()
        when = "sent" if self.send_typed else "kept in the message box"
        shown = f"typed ahead: {self.typed} ({when} once the model is ready)" if self.typed else ""
        self.query_one("#loading-typed", Static).update(shown)
        self.set_class(bool(self.typed), "typing")

    def _title(self, spec: ModelSpec) -> str:
        """ "Loading NAME on BACKEND", with a tip when a GGUF file misses its fast backend
        (engines that choose a backend per spec say which: `BackendEngine.backend_for`)."""
        title = f"Loading {spec.display_name}"
        backend_for = getattr(self.backend, "backend_for", None)
        if callable(backend_for):
            backend, tip = backend_for(spec)
            title += f" on {backend}" if backend else ""
            title += f"\n{tip}" if tip else ""
        return title

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self, spec: ModelSpec) -> None:
        def progress(stage: str, fraction: float, detail: str) -> None:
            self.post_message(LoadProgressed(stage, fraction, detail))

        try:
            self.post_message(ModelLoaded(self.backend.load(spec, progress)))
        except LogitlabError as exc:
            self.post_message(ModelLoadFailed(str(exc)))
        except Exception as exc:  # shown in one line; the traceback goes to a crash log
            self.post_message(ModelLoadFailed(logged(exc, "loading a model")))

    def on_load_progressed(self, event: LoadProgressed) -> None:
        self.query_one("#loading-bar", ProgressBar).update(progress=round(event.fraction * 100))
        detail = f" — {event.detail}" if event.detail else ""
        self.query_one("#loading-stage", Static).update(f"{event.stage}{detail}")

    def on_model_loaded(self, event: ModelLoaded) -> None:
        for notice in event.facts.notices:  # a backend fallen back from, and why
            self.app.notify(notice, severity="warning", timeout=15, markup=False)
        if self.app.screen is not self:  # the palette or the picker: close once it is gone
            self._loaded = event.facts
            return
        self.dismiss(event.facts)

    def on_screen_resume(self) -> None:
        # after the dialog's own result callback: a model picked there starts a new load
        self.call_after_refresh(self._close_if_loaded)

    def _close_if_loaded(self) -> None:
        if self._loaded is not None and self.app.screen is self:
            self.dismiss(self._loaded)

    def on_model_load_failed(self, event: ModelLoadFailed) -> None:
        self.add_class("failed")
        self.query_one("#loading-stage", Static).update("could not load the model")
        self.query_one("#loading-error", Static).update(event.error)
        self.query_one("#pick", Button).focus()

    @on(Button.Pressed, "#pick")
    def action_pick_model(self) -> None:
        from tui.screens.model_picker import ModelPickerScreen

        self.app.push_screen(ModelPickerScreen(self.spec), self._picked)

    def _picked(self, spec: ModelSpec | None) -> None:
        if spec is not None:
            self.spec = spec
            self._begin()

    @on(Button.Pressed, "#retry")
    def action_retry(self) -> None:
        if self.has_class("failed"):
            self._begin()

    @on(Button.Pressed, "#quit")
    def quit(self) -> None:
        self.app.exit()
