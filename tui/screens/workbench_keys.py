"""The workbench screen's key bindings, as data: each has an id a user's `[keymap]`
can remap (tui/keymap.py), and the footer, palette and help read them from here."""

from __future__ import annotations

from collections.abc import Sequence

from textual.binding import Binding, BindingType

from tui.widgets.prompt_tokens import PROMPT_SURPRISAL
from tui.widgets.token_stream import TokenStream

STEP_KEYS = [
    Binding(str(n), f"choose({n})", f"Candidate {n}", show=False, id=f"step.choose{n}")
    for n in range(1, 10)
]

WORKBENCH_BINDINGS: list[BindingType] = [
    Binding("escape", "stop", "Stop", id="gen.stop"),
    Binding("ctrl+t", "toggle_step_mode", "Step mode", id="gen.step_mode"),
    Binding("space,enter", "accept", "Accept", id="step.accept"),
    *STEP_KEYS,
    Binding("c", "continue_free", "Continue", id="step.continue"),
    Binding("f2", "settings", "Settings", id="settings.open"),
    Binding("f3", "pick_model", "Model", id="model.pick"),
    Binding("f4", "toggle_focus", "Tokens/prompt", id="view.focus"),
    Binding("f5", "branches", "Branches", id="view.branches"),
    Binding("f6", "show_tab('tab-lens')", "Lens", priority=True, id="view.lens"),
    Binding("f7", "playground", "Tokenizer", priority=True, id="view.playground"),
    Binding("f8", "copy_reply", "Copy reply", show=False, id="copy.reply"),
    Binding("f9", "compare", "Compare", id="view.compare"),
    Binding("ctrl+o", "browse_sessions", "Sessions", id="session.browse"),
    Binding("ctrl+n", "new_session", "New session", show=False, id="session.new"),
    # priority: the prompt (a TextArea) has its own ctrl+e (end of line; End does it too)
    Binding("ctrl+e", "export_session", "Export", show=False, priority=True, id="session.export"),
]


def workbench_sections(app_bindings: Sequence[BindingType]) -> list[tuple[str, list[BindingType]]]:
    """The help screen's sections over the workbench: where each binding works."""
    return [
        ("app", list(app_bindings)),
        ("workbench", list(WORKBENCH_BINDINGS)),
        ("token stream", list(TokenStream.BINDINGS)),
        ("prompt tab", [PROMPT_SURPRISAL]),
    ]
