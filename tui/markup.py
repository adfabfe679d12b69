"""Text that reaches the screen as itself, never as Textual/Rich markup.

Textual parses plain strings as markup in many places (the command palette,
`notify`, `Static`, DataTable cells, button labels): ``Search sessions  [/]``
is a closing tag there, and an unbalanced one raises `MarkupError` and ends the
app. Anything built from data (command names and keys, help, session titles,
model names, file paths, token pieces, error messages) goes through these
helpers, which build `Content`/`Text` objects, or escape it where an API takes
only a markup string. Markup is written on purpose, never inherited from data.
"""

from __future__ import annotations

from rich.text import Text
from textual.content import Content
from textual.fuzzy import Matcher
from textual.markup import escape


def literal(text: str) -> Content:
    """`text` exactly as written: square brackets and backslashes included."""
    return Content(text)


def cell(text: str) -> Text:
    """A DataTable cell shown literally (a plain `str` cell is parsed as Rich markup)."""
    return Text(text, end="")


def escaped(text: str) -> str:
    """`text` escaped for an API that accepts only a markup string (palette help)."""
    return escape(text)


def highlighted(matcher: Matcher, text: str) -> Content:
    """`text` with the palette's fuzzy match highlighted, without parsing it as markup.

    (`Matcher.highlight` parses its candidate as markup first.)
    """
    content = Content(text)
    score, offsets = matcher.fuzzy_search.match(matcher.query, text)
    if not score:
        return content
    for offset in offsets:
        if not text[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content
