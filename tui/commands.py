"""Command palette: every action by name, one Provider per area.

A command names an action; the key shown beside it is read from the `Binding`
objects over the palette's screen (its own, its widgets', the app's) with the
user's keymap applied (tui/keymap.py), so a remapped key shows here as in the footer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from textual.binding import Binding
from textual.command import CommandPalette, DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from tui.keymap import key_label, keys_of
from tui.markup import escaped, highlighted, literal
from tui.screens.guard import ScreenGuard


@dataclass(frozen=True)
class PaletteCommand:
    area: str
    title: str
    help: str
    action: str  # a screen action; "app." prefix for the app's


COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand(
        "generation",
        "Stop generation",
        "Stop the reply in progress; it is kept, marked cancelled",
        "stop",
    ),
    PaletteCommand(
        "generation",
        "Toggle step-through mode",
        "Each token waits for you to accept or choose it",
        "toggle_step_mode",
    ),
    PaletteCommand(
        "generation",
        "Accept sampled token",
        "Step mode: take the token the sampler picked",
        "accept",
    ),
    *(
        PaletteCommand(
            "generation",
            f"Choose candidate {n}",
            f"Step mode: force candidate {n} of the list",
            f"choose({n})",
        )
        for n in range(1, 10)
    ),
    PaletteCommand(
        "generation",
        "Continue free-running",
        "Step mode: let the rest of this reply run",
        "continue_free",
    ),
    PaletteCommand(
        "generation",
        "Branch at selected token",
        "Cut the last reply back to the selected step and pick another token",
        "branch",
    ),
    PaletteCommand(
        "model",
        "Load another model…",
        "Model id/path, GGUF file, device, dtype, quantization",
        "pick_model",
    ),
    PaletteCommand(
        "model", "Show model info", "The Model tab of the inspector", "show_tab('tab-model')"
    ),
    PaletteCommand(
        "settings",
        "Settings…",
        "System prompt, sampling, candidates, special tokens",
        "settings",
    ),
    PaletteCommand(
        "view",
        "Inspector: Step tab",
        "The selected token and its candidates",
        "show_tab('tab-step')",
    ),
    PaletteCommand(
        "view",
        "Inspector: Prompt tab",
        "The rendered chat template as tokens",
        "show_tab('tab-prompt')",
    ),
    PaletteCommand(
        "view",
        "Inspector: Lens tab",
        "Layer by layer: what the model predicted for the selected step or prompt token",
        "show_tab('tab-lens')",
    ),
    PaletteCommand(
        "view",
        "Tokenizer playground…",
        "Type text, see its tokens live; chat template, guard, vocabulary, nearest tokens",
        "playground",
    ),
    PaletteCommand(
        "view",
        "Inspector: Model tab",
        "The model's anatomy, parameters and generation config",
        "show_tab('tab-model')",
    ),
    PaletteCommand(
        "view",
        "Toggle focus: token stream / prompt",
        "Move between typing and inspecting",
        "toggle_focus",
    ),
    PaletteCommand(
        "view", "Focus token stream", "Then ←/→ or h/l move over the tokens", "focus('#tokens')"
    ),
    PaletteCommand("view", "Focus prompt", "Type a message", "focus('#prompt')"),
    PaletteCommand("view", "Previous token", "Move the token cursor left", "token_move(-1)"),
    PaletteCommand("view", "Next token", "Move the token cursor right", "token_move(1)"),
    PaletteCommand("view", "First token", "Move the token cursor to the start", "token_jump(0)"),
    PaletteCommand("view", "Last token", "Move the token cursor to the end", "token_jump(-1)"),
    PaletteCommand(
        "view",
        "Next unsure step",
        "The next step with entropy ≥ 2 nats (bright in the entropy line): where it could fork",
        "next_fork(1)",
    ),
    PaletteCommand(
        "view",
        "Previous unsure step",
        "The previous step with entropy ≥ 2 nats",
        "next_fork(-1)",
    ),
    PaletteCommand(
        "view",
        "Look up any token at this step…",
        "Type an id, 'piece' or text: its raw and processed p and rank at the selected step",
        "lookup_token",
    ),
    PaletteCommand(
        "view",
        "Prompt tab: colour by surprisal",
        "How likely the model found each prompt token in context (one forward, on demand)",
        "toggle_surprisal",
    ),
    PaletteCommand(
        "copy", "Copy last reply", "To the clipboard (terminals with OSC 52)", "copy_reply"
    ),
    PaletteCommand("copy", "Copy selected token", "The selected token's text", "copy_token"),
    PaletteCommand(
        "session",
        "Browse sessions…",
        "Saved sessions: search, open, rename, delete",
        "browse_sessions",
    ),
    PaletteCommand(
        "session",
        "New session",
        "Clear the chat; the model and settings are kept",
        "new_session",
    ),
    PaletteCommand(
        "session",
        "Export session…",
        "Write this session as JSON, TOML or Markdown",
        "export_session",
    ),
    PaletteCommand(
        "session",
        "Import session…",
        "Add a session from a JSON or TOML export and open it",
        "import_session",
    ),
    PaletteCommand("app", "Help: keys", "Every key binding", "app.help"),
    PaletteCommand("app", "Quit", "Leave logitlab", "app.quit"),
)

# the reply tree (the Branches view and the token stream's branch keys)
BRANCH_COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand(
        "branch",
        "Branches view",
        "The reply's tree: every branch with its numbers",
        "branches",
    ),
    PaletteCommand(
        "branch",
        "Fan out from here…",
        "Sample K continuations from the selected token, a seed each, as branches",
        "fan_out",
    ),
    PaletteCommand("branch", "Previous reply", "Show an earlier reply's tokens", "reply_move(-1)"),
    PaletteCommand(
        "branch",
        "Compare this reply…",
        "Against another backend, dtype, settings or a padded batch: KL per token, "
        "where the runs part",
        "compare",
    ),
    PaletteCommand("branch", "Next reply", "Show a later reply's tokens", "reply_move(1)"),
)

COMMANDS = (*COMMANDS, *BRANCH_COMMANDS)

# the Branches view's own actions
BRANCHES_VIEW_COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand("branches", "Branches: open branch", "Show the selected branch", "open"),
    PaletteCommand("branches", "Branches: previous sibling", "Same branch point", "sibling(-1)"),
    PaletteCommand("branches", "Branches: next sibling", "Same branch point", "sibling(1)"),
    PaletteCommand(
        "branches",
        "Branches: delete branch",
        "Delete the selected branch (asks first)",
        "delete",
    ),
    PaletteCommand("branches", "Close Branches view", "Back to the workbench", "close"),
)

COMPARE_VIEW_COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand(
        "compare",
        "Compare: next disagreement",
        "The next step whose top-1 differ",
        "disagreement(1)",
    ),
    PaletteCommand(
        "compare",
        "Compare: previous disagreement",
        "The previous step whose top-1 differ",
        "disagreement(-1)",
    ),
    PaletteCommand(
        "compare", "Compare: first divergence", "Where B running free left A's path", "divergence"
    ),
    PaletteCommand("compare", "Close Compare view", "Back to the workbench (Esc)", "close"),
)

# the tokenizer playground's own actions
PLAYGROUND_COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand(
        "playground",
        "Playground: plain text / chat template",
        "Tokenize the text as typed, or as a user message through the chat template",
        "toggle_chat",
    ),
    PaletteCommand(
        "playground",
        "Playground: toggle special-token guard",
        "Special-token text as plain text (guard on) or as control tokens",
        "toggle_guard",
    ),
    PaletteCommand("playground", "Playground: search vocabulary", "By id, piece or text", "search"),
    PaletteCommand("playground", "Playground: edit text", "Back to the text", "focus_text"),
    PaletteCommand("playground", "Close playground", "Back to the workbench", "close"),
)

# the session browser's own actions (its screen runs them, not the workbench)
BROWSER_COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand("browser", "Open session", "Session browser: open the selected session", "open"),
    PaletteCommand(
        "browser", "Rename session", "Session browser: retitle the selected session", "rename"
    ),
    PaletteCommand(
        "browser",
        "Delete session",
        "Session browser: delete the selected session (asks first)",
        "delete",
    ),
    PaletteCommand(
        "browser", "Search sessions", "Session browser: titles and message text", "search"
    ),
    PaletteCommand("browser", "Close session browser", "Back to the workbench", "close"),
)


class AreaCommands(Provider):
    AREA = ""
    SCOPE = "main"  # the screen whose actions these are ("any": the app's)

    def _commands(self) -> list[PaletteCommand]:
        scope = getattr(self.screen, "palette_scope", "main")
        if self.SCOPE not in ("any", scope):
            return []
        every = (
            *COMMANDS,
            *BROWSER_COMMANDS,
            *PLAYGROUND_COMMANDS,
            *BRANCHES_VIEW_COMMANDS,
            *COMPARE_VIEW_COMMANDS,
        )
        return [c for c in every if c.area == self.AREA]

    def _runner(self, action: str) -> Callable[[], object]:
        return partial(self.app.run_action, action, self.screen)

    def _title(self, command: PaletteCommand, keys: dict[str, str]) -> str:
        key = keys.get(command.action.removeprefix("app."))
        return f"{command.title}  [{key_label(key)}]" if key else command.title

    def _keys(self) -> dict[str, str]:
        """Action -> the keys bound to it over the palette's screen (first binding wins:
        the screen's own, then its widgets', then the app's), the keymap applied."""
        keymap: dict[str, str] = getattr(self.app, "keymap", {})
        nodes = [self.screen, *self.screen.walk_children(), self.app]
        keys: dict[str, str] = {}
        for node in nodes:
            for binding in type(node).BINDINGS:
                if isinstance(binding, Binding) and binding.id:
                    action = binding.action.removeprefix("screen.").removeprefix("app.")
                    keys.setdefault(action, keys_of(binding, keymap))
        return keys

    # titles and help are built as Content / escaped: "Search sessions  [/]" is a
    # closing tag to the palette's markup parser, and it ended the app (issue 17)
    async def discover(self) -> Hits:
        keys = self._keys()
        for command in self._commands():
            title = self._title(command, keys)
            yield DiscoveryHit(
                literal(title), self._runner(command.action), text=title, help=escaped(command.help)
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        keys = self._keys()
        for command in self._commands():
            title = self._title(command, keys)
            score = matcher.match(title)
            if score > 0:
                shown: Content = highlighted(matcher, title)
                yield Hit(
                    score,
                    shown,
                    self._runner(command.action),
                    text=title,
                    help=escaped(command.help),
                )


class Palette(ScreenGuard, CommandPalette):
    """Textual's palette, minus two failures the random-key soak found (issue 17): a
    crash on PageUp/PageDown, and Enter then Esc closing the screen below it too
    (`ScreenGuard`)."""

    def _action_command_list(self, action: str) -> None:
        # Textual 8.2: PageUp/PageDown before the hit list is laid out index a line map
        # that is still empty (OptionList._move_page): the key does nothing instead
        with contextlib.suppress(KeyError):
            super()._action_command_list(action)


class GenerationCommands(AreaCommands):
    AREA = "generation"


class ModelCommands(AreaCommands):
    AREA = "model"


class SettingsCommands(AreaCommands):
    AREA = "settings"


class ViewCommands(AreaCommands):
    AREA = "view"


class CopyCommands(AreaCommands):
    AREA = "copy"


class SessionCommands(AreaCommands):
    AREA = "session"


class BrowserCommands(AreaCommands):
    AREA = "browser"
    SCOPE = "browser"


class PlaygroundCommands(AreaCommands):
    AREA = "playground"
    SCOPE = "playground"


class BranchCommands(AreaCommands):
    AREA = "branch"


class BranchesViewCommands(AreaCommands):
    AREA = "branches"
    SCOPE = "branches"


class CompareViewCommands(AreaCommands):
    AREA = "compare"
    SCOPE = "compare"


class AppCommands(AreaCommands):
    AREA = "app"
    SCOPE = "any"


PROVIDERS = (
    GenerationCommands,
    ModelCommands,
    SettingsCommands,
    ViewCommands,
    CopyCommands,
    SessionCommands,
    BrowserCommands,
    PlaygroundCommands,
    BranchCommands,
    BranchesViewCommands,
    CompareViewCommands,
    AppCommands,
)
