"""Themes: shipped and user theme files (TOML) -> `textual.theme.Theme`, strictly checked.

Colours in logitlab carry meaning — how likely a token was, whether it is a
special or a forced token, which message a prompt token came from — so a theme
must define logitlab's own variables (`THEME_VARIABLES`) besides Textual's
fields, and `.tcss` uses them as ``$prob-high`` etc. A theme file is checked
strictly (required keys, colours parsed with `textual.color.Color.parse`,
unknown keys refused) so a typo is reported rather than rendered as a silently
wrong colour. Shipped themes are additionally tested for WCAG AA contrast.

How the UI uses this module (tui/app.py)::

    themes, problems = load_themes()          # problems: one line per skipped file
    for theme in themes.values():
        app.register_theme(theme)
    # App.get_theme_variable_defaults() -> theme_variable_defaults(themes,
    #     dark=self.current_theme.dark): Textual's built-ins then resolve $prob-high.
    name, warnings = initial_theme_name(cli_theme, config.theme, themes)
    # on a theme switch from the palette: engine.config.set_theme(name)

The file format is documented in ``themes/README.md``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from textual.color import Color, ColorParseError
from textual.theme import BUILTIN_THEMES, Theme

from engine.errors import ConfigError, InvalidParameterError
from engine.paths import config_dir

DEFAULT_THEME = "logitlab-dark"
LIGHT_THEME = "logitlab-light"  # variable defaults for light Textual built-ins

# logitlab's own CSS variables; every theme file must set all of them.
THEME_VARIABLES: tuple[str, ...] = (
    "prob-high",  # token chip text: probability >= PROB_HIGH
    "prob-mid",  # token chip text: PROB_MID <= probability < PROB_HIGH
    "prob-low",  # token chip text: probability < PROB_MID
    "token-special",  # chip text of a special token (<|im_start|>, EOS)
    "token-forced",  # chip text of a token the user chose (step(force=id))
    "span-template",  # Prompt inspector: tokens the chat template added
    "span-system",  # Prompt inspector: tokens of the system message
    "span-user",  # Prompt inspector: tokens of user messages
    "span-assistant",  # Prompt inspector: tokens of assistant messages
    "token-stream-background",  # background behind chips and prompt tokens
)

# The probability bands the chip colours stand for (raw probability of the chosen
# token); the same thresholds as the token stream widget uses.
PROB_HIGH = 0.6
PROB_MID = 0.25

# Theme fields a file must set, and the ones it may set. `name` and `dark` aside,
# each is a colour; `boost` may carry alpha (Textual's default is a translucent
# overlay), so it is optional.
REQUIRED_FIELDS: tuple[str, ...] = (
    "name",
    "dark",
    "primary",
    "secondary",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "warning",
    "error",
    "success",
)
OPTIONAL_FIELDS: tuple[str, ...] = ("boost", "luminosity_spread", "text_alpha", "variables")
_COLOR_FIELDS = frozenset(REQUIRED_FIELDS) - {"name", "dark"} | {"boost"}

# Used where no loaded theme provides logitlab's variables (a Textual built-in
# theme is active, or the shipped files are missing): mid-tone colours that read
# on dark and light backgrounds alike.
_FALLBACK_VARIABLES: dict[str, str] = {
    "prob-high": "#2e9e5b",
    "prob-mid": "#b07d1a",
    "prob-low": "#d0453f",
    "token-special": "#9a6bd8",
    "token-forced": "#2f86c8",
    "span-template": "#8a8f98",
    "span-system": "#c0782a",
    "span-user": "#3a8ad0",
    "span-assistant": "#3a9e6a",
    "token-stream-background": "transparent",
}


class UnknownThemeError(InvalidParameterError, ConfigError):
    """`--theme NAME` names no loaded theme.

    Both a `ConfigError` (it is about theme configuration) and an
    `InvalidParameterError` on ``--theme``, so the CLI treats it as the usage
    error it is (exit 2) and prints the available names.
    """


# --- where theme files live ---------------------------------------------------------


def shipped_themes_dir() -> Path | None:
    """The directory of the themes that ship with logitlab.

    The files live in ``<repo>/themes`` (DESIGN.md's layout), outside the ``tui``
    package, so they are found in two ways, first hit wins:

    1. ``themes`` beside the ``tui`` package directory. True in a source
       checkout and in the editable install `make` does (``tui`` stays in the
       repo), and also in a wheel, because pyproject ships ``themes/`` as a
       data-only top-level (namespace) package that lands beside ``tui`` in
       site-packages.
    2. ``importlib.resources.files("themes")`` — the same package looked up
       through the import system, for installs where ``tui`` and ``themes`` end
       up in different sys.path entries (zipapps, split installs).

    A directory only counts if it holds the default theme, so an unrelated
    ``themes`` package elsewhere on sys.path is never mistaken for ours.
    """
    beside_package = Path(__file__).resolve().parent.parent / "themes"
    if (beside_package / f"{DEFAULT_THEME}.toml").is_file():
        return beside_package
    try:
        packaged = resources.files("themes")
    except (ModuleNotFoundError, TypeError):
        return None
    candidate = Path(str(packaged))
    if (candidate / f"{DEFAULT_THEME}.toml").is_file():
        return candidate
    return None


def user_themes_dir() -> Path:
    """``<config dir>/themes``: where users drop their own ``*.toml`` themes."""
    return config_dir() / "themes"


# --- parsing ------------------------------------------------------------------------


def parse_theme_file(path: Path) -> Theme:
    """Read one theme file; raises `ConfigError` naming the file and the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return theme_from_dict(raw, source=str(path))


def theme_from_dict(raw: Mapping[str, Any], source: str = "theme") -> Theme:
    """Validate a parsed theme table and build the `Theme`; errors name `source` and key."""

    def fail(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {problem}")

    allowed = REQUIRED_FIELDS + OPTIONAL_FIELDS
    for key in raw:
        if key not in allowed:
            raise fail(key, f"unknown key (known: {', '.join(allowed)})")
    for key in REQUIRED_FIELDS:
        if key not in raw:
            raise fail(key, "missing (required)")

    name = raw["name"]
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise fail("name", f"must be a non-empty string without surrounding spaces, got {name!r}")
    if "[" in name or "]" in name:  # Textual's theme picker reads the name as markup
        raise fail("name", f"must not contain square brackets, got {name!r}")
    if not isinstance(raw["dark"], bool):
        raise fail("dark", f"must be true or false, got {raw['dark']!r}")
    for key in _COLOR_FIELDS & raw.keys():
        _check_color(raw[key], key, fail)
    for key in ("luminosity_spread", "text_alpha"):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise fail(key, f"must be a number in [0, 1], got {value!r}")

    variables = _check_variables(raw.get("variables"), fail)
    fields = {k: v for k, v in raw.items() if k != "variables"}
    for key in ("luminosity_spread", "text_alpha"):
        if key in fields:
            fields[key] = float(fields[key])
    return Theme(**fields, variables=variables)


def _check_color(value: object, key: str, fail: Any) -> None:
    if not isinstance(value, str):
        raise fail(key, f'must be a colour string such as "#1e2128", got {value!r}')
    try:
        Color.parse(value)
    except ColorParseError as exc:
        raise fail(key, f"not a colour: {value!r} ({exc})") from None


def _check_variables(table: object, fail: Any) -> dict[str, str]:
    """logitlab's variables are required colours; Textual's own may be overridden."""
    if not isinstance(table, dict):
        raise fail("variables", "missing table [variables] with logitlab's colours")
    textual_names = _textual_variable_names()
    for key, value in table.items():
        dotted = f"variables.{key}"
        if key in THEME_VARIABLES or "style" not in key:
            if key not in THEME_VARIABLES and key not in textual_names:
                raise fail(dotted, "unknown variable (not logitlab's nor Textual's)")
            _check_color(value, dotted, fail)
        elif key not in textual_names:
            raise fail(dotted, "unknown variable (not logitlab's nor Textual's)")
        elif not isinstance(value, str):
            raise fail(dotted, f"must be a string, got {value!r}")
    for key in THEME_VARIABLES:
        if key not in table:
            raise fail(f"variables.{key}", "missing (required)")
    return dict(table)


_TEXTUAL_VARIABLES: frozenset[str] | None = None


def _textual_variable_names() -> frozenset[str]:
    """Every variable Textual's design system defines (a theme may override any)."""
    global _TEXTUAL_VARIABLES
    if _TEXTUAL_VARIABLES is None:
        system = BUILTIN_THEMES["textual-dark"].to_color_system()
        _TEXTUAL_VARIABLES = frozenset(system.generate())
    return _TEXTUAL_VARIABLES


# --- loading ------------------------------------------------------------------------


def load_themes(user_dir: Path | None = None) -> tuple[dict[str, Theme], list[str]]:
    """Shipped themes, then the user's; returns (themes by name, problem lines).

    A bad file is skipped with one line naming it and the problem; it never stops
    the app. A user theme may not reuse a shipped theme's name or a Textual
    built-in's (the palette would show two entries and the shipped one is what
    the contrast tests vouch for): such a file is skipped too.
    """
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    shipped = shipped_themes_dir()
    if shipped is None:
        problems.append("shipped themes not found; using Textual's built-in themes")
    else:
        _load_dir(shipped, themes, problems, reserved=set(BUILTIN_THEMES))
    user_dir = user_dir if user_dir is not None else user_themes_dir()
    if user_dir.is_dir():
        _load_dir(user_dir, themes, problems, reserved=set(BUILTIN_THEMES) | set(themes))
    return themes, problems


def _load_dir(
    directory: Path, themes: dict[str, Theme], problems: list[str], reserved: set[str]
) -> None:
    for path in sorted(directory.glob("*.toml")):
        try:
            theme = parse_theme_file(path)
        except ConfigError as exc:
            problems.append(f"theme skipped: {exc}")
            continue
        if theme.name in reserved or theme.name in themes:
            problems.append(
                f"theme skipped: {path}: name: {theme.name!r} is already taken; rename the theme"
            )
            continue
        themes[theme.name] = theme


def available_theme_names(themes: Mapping[str, Theme]) -> list[str]:
    """Theme names in the order the palette and error messages list them."""
    return sorted(themes)


def resolve_theme_name(name: str, themes: Mapping[str, Theme]) -> str:
    """`--theme NAME`: the name if known, else `UnknownThemeError` listing the choices."""
    if name in themes:
        return name
    choices = ", ".join(available_theme_names(themes)) or "(none)"
    raise UnknownThemeError("--theme", f"unknown theme {name!r}; available themes: {choices}")


def initial_theme_name(
    cli_name: str | None, configured: str | None, themes: Mapping[str, Theme]
) -> tuple[str, list[str]]:
    """The theme to start with: ``--theme`` beats config.toml beats the default.

    An unknown ``--theme`` is a usage error (`UnknownThemeError`); an unknown name in
    config.toml (a user theme since deleted or broken) only costs a warning line
    and falls back to the default, so the app still starts.
    """
    if cli_name is not None:
        return resolve_theme_name(cli_name, themes), []
    fallback = DEFAULT_THEME if DEFAULT_THEME in themes else "textual-dark"
    if configured is None or configured == fallback:
        return fallback, []
    if configured in themes or configured in BUILTIN_THEMES:
        return configured, []
    return fallback, [f"theme {configured!r} from config.toml is not available; using {fallback}"]


def theme_variable_defaults(
    themes: Mapping[str, Theme] | None = None, *, dark: bool = True
) -> dict[str, str]:
    """Values for `App.get_theme_variable_defaults`, so any theme resolves our variables.

    Textual's built-in themes know nothing of ``$prob-high``; without defaults a
    stylesheet using it fails to parse when one of them is picked. Pass
    ``dark=self.current_theme.dark`` so a light built-in theme borrows
    logitlab-light's colours rather than the dark default's.
    """
    source = LIGHT_THEME if not dark else DEFAULT_THEME
    theme = (themes or {}).get(source) or (themes or {}).get(DEFAULT_THEME)
    if theme is None:
        return dict(_FALLBACK_VARIABLES)
    return {name: theme.variables[name] for name in THEME_VARIABLES}


def probability_band(prob: float) -> str:
    """The variable (and CSS class) naming a token's probability band: prob-high/mid/low."""
    if prob >= PROB_HIGH:
        return "prob-high"
    if prob >= PROB_MID:
        return "prob-mid"
    return "prob-low"


# --- contrast -----------------------------------------------------------------------


def relative_luminance(color: str | Color) -> float:
    """WCAG 2.x relative luminance of an sRGB colour (alpha ignored), in [0, 1]."""
    c = Color.parse(color) if isinstance(color, str) else color

    def linear(channel: int) -> float:
        v = channel / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(c.r) + 0.7152 * linear(c.g) + 0.0722 * linear(c.b)


def contrast_ratio(fg: str, bg: str, fg_alpha: float | None = None) -> float:
    """WCAG 2.x contrast ratio (1..21) of text colour `fg` on background `bg`.

    A translucent `fg` (its own alpha, or `fg_alpha` — Textual draws ``$text``
    at the theme's ``text_alpha``) is first blended over `bg`, since that blend
    is what reaches the screen. AA for body text is 4.5.
    """
    back = Color.parse(bg)
    front = Color.parse(fg)
    alpha = front.a if fg_alpha is None else front.a * fg_alpha
    front = back.blend(front.with_alpha(1.0), alpha)
    lighter, darker = sorted((relative_luminance(front), relative_luminance(back)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)
