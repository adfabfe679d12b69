"""The workbench's comparisons: the shown reply (side A, the current run) against a
side B chosen in a dialog, in the Compare view; finished comparisons go to the session.

B starts as A (the model as loaded, its backend, the reply's sampling settings) and
the dialog's ``KEY=VALUE`` lines change what they name: ``backend=llama.cpp`` is the
same model on llama.cpp, ``temperature=0.7`` the same run hotter, ``batch=...`` the
same prompt inside a padded batch; ``model=`` or ``engine=`` start from a new model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from engine.compare import Comparison, Side, SideSpec, parse_side
from engine.decode import RemoteSpec
from engine.errors import InvalidParameterError
from engine.model import ModelSpec
from engine.params import SamplingParams
from engine.sessions import Turn

if TYPE_CHECKING:
    from tui.workbench import Workbench

_MODEL_KEYS = ("backend", "device", "dtype", "quantize", "gguf-file")
_NEW_MODEL_KEYS = ("model", "engine")


def b_side(lines: list[str], a_spec: ModelSpec | RemoteSpec, a_params: SamplingParams) -> SideSpec:
    """Side B from the dialog's lines: A's engine and settings with the lines' changes."""
    parsed = parse_side(lines, flag="side B")
    given = dict(parsed.given)
    engine: ModelSpec | RemoteSpec = parsed.engine
    if not any(k in given for k in _NEW_MODEL_KEYS):
        if isinstance(a_spec, RemoteSpec):
            if any(k in given for k in _MODEL_KEYS):
                raise InvalidParameterError(
                    "side B", "A runs on a server: give model= for a local side B"
                )
            engine = a_spec
        else:
            changes = {
                k.replace("-", "_"): getattr(parsed.engine, k.replace("-", "_"))
                for k in _MODEL_KEYS
                if k in given
            }
            if changes.get("backend") == "llama.cpp":  # its own types: A's dtype is moot
                changes.setdefault("dtype", "auto")
                changes.setdefault("quantize", "none")
            try:
                engine = replace(a_spec, **changes)
            except InvalidParameterError as exc:
                raise InvalidParameterError("side B", str(exc)) from exc
    sampling = a_params.with_changes(**parsed.overrides) if parsed.overrides else a_params
    try:
        return replace(parsed, engine=engine, sampling=sampling)
    except InvalidParameterError as exc:
        raise InvalidParameterError("side B", str(exc)) from exc


def saved_label(data: Mapping[str, Any]) -> str:
    """A kept comparison in a few words: what B was and how far apart the runs were."""
    from tui.screens.compare import side_label

    summary = data.get("summary")
    mean = summary.get("mean_kl") if isinstance(summary, dict) else None
    kl = f" · mean KL {mean:.4f}" if isinstance(mean, int | float) else ""
    return f"B = {side_label(data.get('b'))}{kl}"


class CompareActions:
    def __init__(
        self, workbench: Workbench, screen: Screen[Any], shown_turn: Callable[[], Turn | None]
    ) -> None:
        """`shown_turn`: the reply the token stream shows (the Branches collaborator's)."""
        self.workbench, self.screen, self.shown_turn = workbench, screen, shown_turn

    def open(self) -> None:
        from tui.screens.compare_dialog import CompareDialog

        wb, screen = self.workbench, self.screen
        found = self._reply()
        if found is None:
            return
        turn, _index = found
        facts = wb.facts
        params = wb.reply_params()
        if facts is None or params is None:
            return
        a_spec = self._a_spec()
        other = "transformers" if facts.backend == "llama.cpp" else "llama.cpp"
        label = f"{facts.model_id} on {facts.backend} ({facts.dtype})"

        def check(lines: list[str]) -> None:
            b_side(lines, a_spec, params)

        def chosen(result: list[str] | int | None) -> None:
            if isinstance(result, int):
                self.show_saved(Comparison.from_json(turn.comparisons[result]))
            elif result is not None:
                self._start(turn, b_side(result, a_spec, params), params)

        saved = [saved_label(data) for data in turn.comparisons]
        screen.app.push_screen(CompareDialog(label, other, check, saved), chosen)

    def show_saved(self, comparison: Comparison) -> None:
        """Open a stored comparison in the Compare view (nothing runs)."""
        from tui.screens.compare import CompareScreen

        facts = self.workbench.facts
        if facts is None:
            return
        a = Side.of(self.workbench.backend, facts, SideSpec(engine=self._a_spec()))
        self.screen.app.push_screen(CompareScreen(a, SideSpec(), "", [], comparison=comparison))

    # --- helpers -----------------------------------------------------------------------

    def _reply(self) -> tuple[Turn, int] | None:
        wb, screen = self.workbench, self.screen
        if wb.replying:
            screen.notify("Still generating — Esc stops it first.", severity="warning")
            return None
        turn = self.shown_turn()
        if turn is None or not turn.steps:
            screen.notify("There is no reply to compare yet.", severity="warning")
            return None
        return turn, wb.conversation.turns.index(turn)

    def _a_spec(self) -> ModelSpec | RemoteSpec:
        """A's engine spec: the run as loaded, its backend resolved."""
        wb = self.workbench
        facts = wb.facts
        url = getattr(wb.backend, "url", None)
        if facts is not None and facts.backend == "remote" and isinstance(url, str):
            wanted = getattr(wb.backend, "wanted", None)
            key = os.environ.get("LOGITLAB_API_KEY") or None
            return RemoteSpec(url, api_key=key, model=wanted if isinstance(wanted, str) else None)
        spec = wb.spec
        if facts is not None and facts.backend in ("transformers", "llama.cpp"):
            spec = replace(spec, backend=facts.backend)
        return spec

    def _start(self, turn: Turn, b: SideSpec, params: SamplingParams) -> None:
        from tui.screens.compare import CompareScreen

        wb = self.workbench
        facts = wb.facts
        if facts is None:
            return
        index = wb.conversation.turns.index(turn)
        given: tuple[tuple[str, str], ...] = (("model", facts.model_id), ("backend", facts.backend))
        a = Side.of(
            wb.backend, facts, SideSpec(engine=self._a_spec(), sampling=params, given=given)
        )
        prompt = wb.conversation.chat_messages(wb.settings.system_prompt, upto=index)
        path = [s.token_id for s in turn.steps]

        def done(comparison: Comparison) -> None:
            self._save(turn, comparison)

        self.screen.app.push_screen(CompareScreen(a, b, prompt, path, on_done=done))

    def _save(self, turn: Turn, comparison: Comparison) -> None:
        data = comparison.to_json(extended=True)
        turn.comparisons.append(data)
        self.workbench.recorder.comparison_made(turn, data)
