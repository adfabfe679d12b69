"""The workbench's probes beyond the recorded top-N: any token at the selected step
(the Step tab's look-up, `/`) and the prompt's surprisal (the Prompt tab, `s`: the
engine's `PromptScoring.score`, so on every backend that can score a prompt).

Both run on a worker (the engine does the forward on its own thread) and post
their result; both are cached, so moving back to a step or prompt shows it at
once. A look-up follows the cursor: once a token is asked for, every step shown
shows its numbers too, until an empty Enter clears it. A newer request
supersedes an older one, like the lens (tui/screens/lens_actions.py).
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen

from engine.decode import prompt_scoring, token_lookup, tokenizer_access
from engine.errors import FeatureUnavailableError, one_line
from engine.params import SamplingParams
from engine.records import PromptScores, Proposal, Step, TokenProbe
from tui.messages import ProbeFailed, PromptScored, TokenProbed
from tui.widgets.inspector import Inspector
from tui.widgets.prompt_tokens import PromptTokens
from tui.widgets.step_view import StepView
from tui.widgets.token_stream import TokenStream
from tui.workbench import Workbench

Key = tuple[object, ...]


class ProbeActions:
    def __init__(self, workbench: Workbench, screen: Screen[Any]) -> None:
        self.workbench, self.screen = workbench, screen
        self.query: str | None = None  # the token asked for; it follows the cursor
        self.probes: dict[Key, tuple[str, TokenProbe]] = {}
        self.wanted: Key | None = None
        self.surprisal = False  # the Prompt tab colours by surprisal
        self.scores: dict[tuple[int, ...], PromptScores] = {}
        self.wanted_scores: tuple[int, ...] | None = None

    def clear(self) -> None:
        """A new model: what was computed belongs to the old one."""
        self.probes.clear()
        self.scores.clear()
        self.wanted = self.wanted_scores = None
        self.refresh_lookup()
        self.refresh_surprisal()

    # --- any token at a step ------------------------------------------------------------

    def open_lookup(self) -> None:
        self.screen.query_one(Inspector).show_tab("tab-step")
        self.screen.query_one(StepView).open_lookup()

    def close_lookup(self) -> None:
        self.screen.query_one(StepView).close_lookup()
        self.screen.query_one(TokenStream).focus()

    def submit(self, query: str) -> None:
        """Look `query` up at the shown step (and every step shown after); "" clears."""
        self.query = query if query.strip() else None
        self.refresh_lookup()

    def refresh_lookup(self) -> None:
        """Show the asked-for token's numbers at the step the Step tab shows."""
        view = self.screen.query_one(StepView)
        if self.query is None:
            self.wanted = None
            view.show_lookup_message(None)
            return
        request = self._lookup_request(view)
        if isinstance(request, str):
            self.wanted = None
            view.show_lookup_message(request)
            return
        ids, index, params = request
        key: Key = (tuple(ids), self.query, params)
        self.wanted = key
        if (cached := self.probes.get(key)) is not None:
            view.show_probe(cached[0], index, cached[1])
            return
        view.show_lookup_message(f"look-up {self.query!r} at step {index}: computing…")
        query = self.query
        self.screen.run_worker(
            lambda: self._probe(key, query, ids, params),
            thread=True,
            exclusive=True,
            exit_on_error=False,
            group="probe",
        )

    def _lookup_request(self, view: StepView) -> tuple[list[int], int, SamplingParams] | str:
        screen = self.screen
        try:
            token_lookup(self.workbench.backend)
            tokenizer_access(self.workbench.backend)
        except FeatureUnavailableError as exc:
            return f"Token look-up unavailable: {exc}."
        if self.workbench.facts is None:
            return "The model is still loading."
        if self.workbench.replying and self.workbench.proposal is None:
            return "The look-up runs once the reply stops (or waits for you in step mode)."
        prompt = screen.query_one(PromptTokens).view
        stream = screen.query_one(TokenStream)
        shown = view.shown
        if prompt is None or shown is None:
            return "Select a step in the token stream (←/→) to look a token up there."
        if isinstance(shown, Proposal):
            position = len(stream.steps)
        elif isinstance(shown, Step) and stream.cursor is not None:
            position = stream.cursor
        else:
            return "Select a step in the token stream (←/→) to look a token up there."
        if (params := self.workbench.reply_params()) is None:
            return "The sampling settings are not valid; fix them in Settings (F2)."
        ids = [*prompt.ids, *(s.token_id for s in stream.steps[:position])]
        return ids, shown.index, params

    def _probe(self, key: Key, query: str, ids: list[int], params: SamplingParams) -> None:
        """On a worker: resolve the query to a token, then its numbers after `ids`."""
        backend = self.workbench.backend
        post = self.screen.post_message
        try:
            entry, note = tokenizer_access(backend).vocabulary().resolve(query, backend.encode)
            (probe,) = token_lookup(backend).token_probabilities(ids, params, [entry.id])
        except Exception as exc:  # a bad query or a backend error: one line, not a crash
            post(ProbeFailed("lookup", key, one_line(exc)))
            return
        label = f"{backend.token_display(entry.id)!r} id {entry.id}"
        post(TokenProbed(key, f"{label} ({note})" if note else label, probe))

    def probed(self, event: TokenProbed) -> None:
        self.probes[event.key] = (event.label, event.probe)
        if event.key == self.wanted:
            self.refresh_lookup()

    # --- prompt surprisal ----------------------------------------------------------------

    def toggle_surprisal(self) -> None:
        self.surprisal = not self.surprisal
        self.screen.query_one(Inspector).show_tab("tab-prompt")
        self.refresh_surprisal()

    def refresh_surprisal(self) -> None:
        """Colour the Prompt tab by surprisal when it is on (computing it once per prompt)."""
        prompt = self.screen.query_one(PromptTokens)
        if not self.surprisal:
            self.wanted_scores = None
            prompt.show_scores(None)
            return
        try:
            scoring = prompt_scoring(self.workbench.backend)
        except FeatureUnavailableError as exc:
            self.surprisal = False
            prompt.show_scores(None)
            self.screen.notify(
                f"Prompt surprisal unavailable: {exc}.", severity="warning", markup=False
            )
            return
        if prompt.view is None:
            return  # shown once a prompt is rendered
        ids = tuple(prompt.view.ids)
        if (cached := self.scores.get(ids)) is not None:
            prompt.show_scores(cached)
            return
        self.wanted_scores = ids
        prompt.show_scores(None, "surprisal: computing…")
        self.screen.run_worker(
            lambda: self._score(scoring, ids),
            thread=True,
            exclusive=True,
            exit_on_error=False,
            group="surprisal",
        )

    def _score(self, scoring: object, ids: tuple[int, ...]) -> None:
        post = self.screen.post_message
        try:
            scores = PromptScores.from_scores(ids, prompt_scoring(scoring).score(ids))
        except Exception as exc:  # a backend error: one line, not a crash
            post(ProbeFailed("surprisal", ids, one_line(exc)))
            return
        post(PromptScored(scores))

    def scored(self, event: PromptScored) -> None:
        self.scores[event.scores.ids] = event.scores
        if event.scores.ids == self.wanted_scores:
            self.refresh_surprisal()

    def failed(self, event: ProbeFailed) -> None:
        if event.what == "lookup" and event.key == self.wanted:
            self.screen.query_one(StepView).show_lookup_message(f"look-up: {event.error}")
        elif event.what == "surprisal" and event.key == self.wanted_scores:
            self.surprisal = False
            self.screen.query_one(PromptTokens).show_scores(None, f"surprisal: {event.error}")
