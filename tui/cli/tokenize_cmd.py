"""`logitlab tokenize`: a text's tokens (or a rendered chat's) as a table or JSON.

The table shows what the tutorials print by hand — ids, pieces, the special
tokens — plus each token's exact bytes; JSON is the DESIGN.md shape
``{"count": n, "tokens": [...]}``. torch/transformers are imported inside
``run`` so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Literal, TextIO

from tui.cli.options import (
    add_engine_options,
    add_model_options,
    model_spec_from,
    remote_engine_from,
    remote_spec,
)

if TYPE_CHECKING:
    from engine.tokens import TokenView

_PIECE_WIDTH = 24


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "tokenize",
        help="show the tokens of a text: ids, pieces, bytes, special tokens",
        description="Tokenize TEXT (or a chat built from it) with the model's tokenizer.",
    )
    parser.add_argument("text", metavar="TEXT", help="the text to tokenize; - reads stdin")
    add_model_options(parser)
    add_engine_options(parser)
    parser.add_argument(
        "--chat",
        action="store_true",
        help="render TEXT as a user message through the chat template first",
    )
    parser.add_argument("--system", metavar="S", help="with --chat: a system message before TEXT")
    parser.add_argument(
        "--no-generation-prompt",
        action="store_true",
        help="with --chat: leave out the assistant header the template adds for generation",
    )
    parser.add_argument(
        "--allow-special",
        action="store_true",
        help="parse special-token text such as <|im_end|> in TEXT as control tokens "
        "(default: tokenize it as plain text)",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.errors import InvalidParameterError
    from engine.model import load_tokenizer

    if args.system is not None and not args.chat:
        raise InvalidParameterError("--system", "only applies with --chat")
    if args.no_generation_prompt and not args.chat:
        raise InvalidParameterError("--no-generation-prompt", "only applies with --chat")
    text = read_text(args.text, sys.stdin)
    remote = remote_engine_from(args)
    if remote is not None:
        view, warnings = remote_view(remote, text, args)
    else:
        spec = model_spec_from(args)
        tokenizer = load_tokenizer(spec).tokenizer  # no weights: answers in about a second
        view, warnings = build_view(tokenizer, text, args)
    for warning in warnings:
        print(f"logitlab: warning: {warning}", file=sys.stderr)
    if args.format == "json":
        json.dump(view.to_dict(), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(view))
    return 0


def read_text(value: str, stdin: TextIO) -> str:
    """TEXT as given, or all of stdin for ``-`` (kept byte-for-byte, trailing newline too)."""
    return stdin.read() if value == "-" else value


def build_view(tokenizer: Any, text: str, args: argparse.Namespace) -> tuple[TokenView, list[str]]:
    """The view to print and the warnings (special text found, duplicated BOS)."""
    from engine.tokens import ChatMessage, render_chat, token_view

    if not args.chat:
        view = token_view(tokenizer, text, allow_special=args.allow_special)
        warnings = []
        if _has_special_text(tokenizer, text):
            treated = (
                "parsed as control tokens" if args.allow_special else "tokenized as plain text"
            )
            warnings.append(f"TEXT contains special-token text: {treated}")
        return view, warnings
    messages = [ChatMessage("user", text)]
    if args.system is not None:
        messages.insert(0, ChatMessage("system", args.system))
    rendered = render_chat(
        tokenizer,
        messages,
        add_generation_prompt=not args.no_generation_prompt,
        allow_special=args.allow_special,
    )
    return rendered.tokens, list(rendered.warnings)


def remote_view(remote: Any, text: str, args: argparse.Namespace) -> tuple[TokenView, list[str]]:
    """The server's own tokenizing (its /tokenize); bytes from /detokenize per id."""
    from engine.errors import FeatureUnavailableError, InvalidParameterError
    from engine.tokens import ChatMessage, TokenInfo, TokenView

    remote.load(remote_spec(args))
    if args.no_generation_prompt:
        raise InvalidParameterError("--no-generation-prompt", "is not offered with --engine")
    if args.chat:
        messages = [ChatMessage("user", text)]
        if args.system is not None:
            messages.insert(0, ChatMessage("system", args.system))
        prompt = remote.render_prompt(messages)
        if not prompt.tokens:
            raise FeatureUnavailableError(prompt.warnings[0])
        ids, origin = prompt.ids, "template"
    else:
        ids = remote.encode(text, allow_special=args.allow_special)
        origin = "text"
    tokens = []
    origin_: Literal["template", "text"] = origin  # type: ignore[assignment]
    for position, token_id in enumerate(ids):
        data = remote.token_bytes(token_id)
        tokens.append(
            TokenInfo(
                position=position,
                id=token_id,
                piece=data.decode("utf-8", errors="backslashreplace"),
                display=remote.token_display(token_id),
                bytes=data,
                special=False,  # the server does not say
                partial=False,
                origin=origin_,
            )
        )
    return TokenView(tokens=tuple(tokens), text=text, byte_exact=False), []


def _has_special_text(tokenizer: Any, text: str) -> bool:
    from engine.tokens import control_tokens

    return any(token in text for token in control_tokens(tokenizer))


def format_table(view: TokenView) -> str:
    """One row per token: position, id, piece, display, bytes (hex), flags, origin."""
    rows = [("pos", "id", "piece", "display", "bytes", "flags", "origin")]
    for token in view.tokens:
        flags = ("S" if token.special else "-") + ("P" if token.partial else "-")
        origin = (
            token.origin
            if token.message_index is None
            else f"{token.origin}[{token.message_index}]"
        )
        rows.append(
            (
                str(token.position),
                str(token.id),
                _cell(_printable(token.piece)),
                _cell(token.display),
                token.bytes.hex(" "),
                flags,
                origin,
            )
        )
    from rich.cells import cell_len

    # columns by terminal cells, not characters: CJK and most emoji take two
    widths = [max(cell_len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(_pad(cell, width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    ]
    lines.append(f"{view.count} tokens  (flags: S special, P ends inside a UTF-8 character)")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _printable(piece: str) -> str:
    """Raw pieces are shown as stored; control characters (rare) are escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in piece)


def _cell(text: str) -> str:
    """`text` cut to `_PIECE_WIDTH` terminal cells (an ellipsis marks the cut)."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) <= _PIECE_WIDTH:
        return text
    return set_cell_size(text, _PIECE_WIDTH - 1).rstrip() + "…"


def _pad(text: str, width: int) -> str:
    from rich.cells import cell_len

    return text + " " * (width - cell_len(text))
