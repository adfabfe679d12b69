"""The workbench's layer lens: what to explain (the selected step or prompt token),
computing it on a worker (the engine runs it on its own thread), and a cache per
(ids, position, target) so moving back to a step shows it at once.

A newer request supersedes an older one: the worker group is exclusive, and a
result that arrives for a request no longer wanted is cached but not shown.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen

from engine.decode import ModelInternals, model_internals
from engine.errors import FeatureUnavailableError, one_line
from engine.model import LensResult
from tui.messages import LensComputed, LensFailed
from tui.widgets.inspector import Inspector
from tui.widgets.lens_view import PROMPT, LensView
from tui.widgets.prompt_tokens import PromptTokens
from tui.widgets.token_stream import TokenStream
from tui.workbench import Workbench

LENS_TOP = 5
Key = tuple[object, ...]


class LensActions:
    def __init__(self, workbench: Workbench, screen: Screen[Any]) -> None:
        self.workbench, self.screen = workbench, screen
        self.source = "stream"  # or "prompt": what the user selected last
        self.cache: dict[Key, LensResult] = {}
        self.wanted: Key | None = None

    def clear(self) -> None:
        """A new model: cached lenses belong to the old one."""
        self.cache.clear()
        self.wanted = None

    def refresh(self) -> None:
        """Show the lens of the current selection if the Lens tab is showing."""
        screen = self.screen
        if screen.query_one(Inspector).active_tab != "tab-lens":
            return
        view = screen.query_one(LensView)
        try:
            internals = model_internals(self.workbench.backend)
        except FeatureUnavailableError as exc:
            view.show_message(f"Layer lens unavailable: {exc}.")
            return
        request = self._request()
        if isinstance(request, str):
            self.wanted = None
            view.show_message(request)
            return
        key, label, ids, position, target = request
        self.wanted = key
        if (cached := self.cache.get(key)) is not None:
            view.show_result(label, cached, self.workbench.backend.token_display)
            return
        view.show_pending(label)
        screen.run_worker(
            lambda: self._compute(internals, key, label, ids, position, target),
            thread=True,
            exclusive=True,
            exit_on_error=False,
            group="lens",
        )

    def _request(self) -> tuple[Key, str, list[int], int, int | None] | str:
        screen = self.screen
        if self.workbench.facts is None:
            return "The model is still loading."
        if self.workbench.replying and self.workbench.proposal is None:
            return "The lens runs once the reply stops (or waits for you in step mode)."
        prompt = screen.query_one(PromptTokens)
        if prompt.view is None:
            return "Send a message first: the lens explains a step of a reply."
        stream = screen.query_one(TokenStream)
        display = self.workbench.backend.token_display
        if self.source == "prompt" and prompt.cursor is not None:
            ids, position = prompt.view.ids, prompt.cursor
            after = ids[position + 1] if position + 1 < len(ids) else None
            if after is None and stream.steps:
                after = stream.steps[0].token_id
            label = f"prompt token {position} {display(ids[position])!r}: what came next"
            return (tuple(ids[: position + 1]), position, after), label, ids, position, after
        step, index = stream.selected, stream.cursor
        if step is None or index is None:
            return PROMPT
        ids = [*prompt.view.ids, *(s.token_id for s in stream.steps[:index])]
        label = f"step {step.index} {display(step.token_id)!r}"
        return (tuple(ids), len(ids) - 1, step.token_id), label, ids, len(ids) - 1, step.token_id

    def _compute(
        self,
        internals: ModelInternals,
        key: Key,
        label: str,
        ids: list[int],
        position: int,
        target: int | None,
    ) -> None:
        post = self.screen.post_message
        try:
            result = internals.lens(ids, position, top=LENS_TOP, target=target)
        except Exception as exc:  # ours or a backend's error: one line, not a crash
            post(LensFailed(key, label, one_line(exc)))
        else:
            post(LensComputed(key, label, result))

    def computed(self, event: LensComputed) -> None:
        self.cache[event.key] = event.result
        if event.key == self.wanted:
            view = self.screen.query_one(LensView)
            view.show_result(event.label, event.result, self.workbench.backend.token_display)

    def failed(self, event: LensFailed) -> None:
        if event.key == self.wanted:
            self.screen.query_one(LensView).show_message(f"{event.label}: {event.error}")
