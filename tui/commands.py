"""Command palette: every action by name, one Provider per area."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from textual.command import CommandPalette, DiscoveryHit, Hit, Hits, Provider
from textual.content import Content

from tui.markup import escaped, highlighted, literal
from tui.screens.guard import ScreenGuard


@dataclass(frozen=True)
class PaletteCommand:
    area: str
    title: str
    help: str
    action: str  # a screen action; "app." prefix for the app's
    key: str = ""


COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand(
        "generation",
        "Stop generation",
        "Stop the reply in progress; it is kept, marked cancelled",
        "stop",
        "esc",
    ),
    PaletteCommand(
        "generation",
        "Toggle step-through mode",
        "Each token waits for you to accept or choose it",
        "toggle_step_mode",
        "ctrl+t",
    ),
    PaletteCommand(
        "generation",
        "Accept sampled token",
        "Step mode: take the token the sampler picked",
        "accept",
        "space",
    ),
    *(
        PaletteCommand(
            "generation",
            f"Choose candidate {n}",
            f"Step mode: force candidate {n} of the list",
            f"choose({n})",
            str(n),
        )
        for n in range(1, 10)
    ),
    PaletteCommand(
        "generation",
        "Continue free-running",
        "Step mode: let the rest of this reply run",
        "continue_free",
        "c",
    ),
    PaletteCommand(
        "generation",
        "Branch at selected token",
        "Cut the last reply back to the selected step and pick another token",
        "branch",
        "b",
    ),
    PaletteCommand(
        "model",
        "Load another model…",
        "Model id/path, GGUF file, device, dtype, quantization",
        "pick_model",
        "f3",
    ),
    PaletteCommand(
        "model", "Show model info", "The Model tab of the inspector", "show_tab('tab-model')"
    ),
    PaletteCommand(
        "settings",
        "Settings…",
        "System prompt, sampling, candidates, special tokens",
        "settings",
        "f2",
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
        "f6",
    ),
    PaletteCommand(
        "view",
        "Tokenizer playground…",
        "Type text, see its tokens live; chat template, guard, vocabulary, nearest tokens",
        "playground",
        "f7",
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
        "f4",
    ),
    PaletteCommand(
        "view", "Focus token stream", "Then ←/→ or h/l move over the tokens", "focus_tokens"
    ),
    PaletteCommand("view", "Focus prompt", "Type a message", "focus_prompt"),
    PaletteCommand(
        "view", "Previous token", "Move the token cursor left", "token_move(-1)", "left"
    ),
    PaletteCommand("view", "Next token", "Move the token cursor right", "token_move(1)", "right"),
    PaletteCommand(
        "view", "First token", "Move the token cursor to the start", "token_jump(0)", "home"
    ),
    PaletteCommand(
        "view", "Last token", "Move the token cursor to the end", "token_jump(-1)", "end"
    ),
    PaletteCommand(
        "view",
        "Next unsure step",
        "The next step with entropy ≥ 2 nats (bright in the entropy line): where it could fork",
        "next_fork(1)",
        "e",
    ),
    PaletteCommand(
        "view",
        "Previous unsure step",
        "The previous step with entropy ≥ 2 nats",
        "next_fork(-1)",
        "E",
    ),
    PaletteCommand(
        "view",
        "Look up any token at this step…",
        "Type an id, 'piece' or text: its raw and processed p and rank at the selected step",
        "lookup_token",
        "/",
    ),
    PaletteCommand(
        "view",
        "Prompt tab: colour by surprisal",
        "How likely the model found each prompt token in context (one forward, on demand)",
        "toggle_surprisal",
        "s",
    ),
    PaletteCommand(
        "copy", "Copy last reply", "To the clipboard (terminals with OSC 52)", "copy_reply", "f8"
    ),
    PaletteCommand("copy", "Copy selected token", "The selected token's text", "copy_token", "y"),
    PaletteCommand(
        "session",
        "Browse sessions…",
        "Saved sessions: search, open, rename, delete",
        "browse_sessions",
        "ctrl+o",
    ),
    PaletteCommand(
        "session",
        "New session",
        "Clear the chat; the model and settings are kept",
        "new_session",
        "ctrl+n",
    ),
    PaletteCommand(
        "session",
        "Export session…",
        "Write this session as JSON, TOML or Markdown",
        "export_session",
        "ctrl+e",
    ),
    PaletteCommand(
        "session",
        "Import session…",
        "Add a session from a JSON or TOML export and open it",
        "import_session",
    ),
    PaletteCommand("app", "Help: keys", "Every key binding", "app.help", "f1"),
    PaletteCommand("app", "Quit", "Leave logitlab", "app.quit", "ctrl+q"),
)

# the reply tree (the Branches view and the token stream's branch keys)
BRANCH_COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand(
        "branch",
        "Branches view",
        "The reply's tree: every branch with its numbers",
        "branches",
        "f5",
    ),
    PaletteCommand(
        "branch",
        "Fan out from here…",
        "Sample K continuations from the selected token, a seed each, as branches",
        "fan_out",
        "f",
    ),
    PaletteCommand(
        "branch", "Previous reply", "Show an earlier reply's tokens", "reply_move(-1)", "p"
    ),
    PaletteCommand("branch", "Next reply", "Show a later reply's tokens", "reply_move(1)", "n"),
)

COMMANDS = (*COMMANDS, *BRANCH_COMMANDS)

# the Branches view's own actions
BRANCHES_VIEW_COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand(
        "branches", "Branches: open branch", "Show the selected branch", "open", "enter"
    ),
    PaletteCommand(
        "branches", "Branches: previous sibling", "Same branch point", "sibling(-1)", "["
    ),
    PaletteCommand("branches", "Branches: next sibling", "Same branch point", "sibling(1)", "]"),
    PaletteCommand(
        "branches",
        "Branches: delete branch",
        "Delete the selected branch (asks first)",
        "delete",
        "d",
    ),
    PaletteCommand("branches", "Close Branches view", "Back to the workbench", "close", "esc"),
)

# the tokenizer playground's own actions
PLAYGROUND_COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand(
        "playground",
        "Playground: plain text / chat template",
        "Tokenize the text as typed, or as a user message through the chat template",
        "toggle_chat",
        "ctrl+r",
    ),
    PaletteCommand(
        "playground",
        "Playground: toggle special-token guard",
        "Special-token text as plain text (guard on) or as control tokens",
        "toggle_guard",
        "ctrl+g",
    ),
    PaletteCommand(
        "playground", "Playground: search vocabulary", "By id, piece or text", "search", "ctrl+f"
    ),
    PaletteCommand("playground", "Playground: edit text", "Back to the text", "focus_text", "f4"),
    PaletteCommand("playground", "Close playground", "Back to the workbench", "close", "esc"),
)

# the session browser's own actions (its screen runs them, not the workbench)
BROWSER_COMMANDS: tuple[PaletteCommand, ...] = (
    PaletteCommand(
        "browser", "Open session", "Session browser: open the selected session", "open", "enter"
    ),
    PaletteCommand(
        "browser", "Rename session", "Session browser: retitle the selected session", "rename", "r"
    ),
    PaletteCommand(
        "browser",
        "Delete session",
        "Session browser: delete the selected session (asks first)",
        "delete",
        "d",
    ),
    PaletteCommand(
        "browser", "Search sessions", "Session browser: titles and message text", "search", "/"
    ),
    PaletteCommand("browser", "Close session browser", "Back to the workbench", "close", "esc"),
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
        )
        return [c for c in every if c.area == self.AREA]

    def _runner(self, action: str) -> Callable[[], object]:
        return partial(self.app.run_action, action, self.screen)

    def _title(self, command: PaletteCommand) -> str:
        return f"{command.title}  [{command.key}]" if command.key else command.title

    # titles and help are built as Content / escaped: "Search sessions  [/]" is a
    # closing tag to the palette's markup parser, and it ended the app (issue 17)
    async def discover(self) -> Hits:
        for command in self._commands():
            title = self._title(command)
            yield DiscoveryHit(
                literal(title), self._runner(command.action), text=title, help=escaped(command.help)
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            title = self._title(command)
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
    AppCommands,
)
