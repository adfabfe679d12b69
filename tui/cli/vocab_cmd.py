"""`logitlab vocab QUERY`: look tokens up in the vocabulary; with ``--near N``, the N
tokens nearest the first match by input-embedding cosine.

QUERY is a token id (digits), or text matched against pieces (``Ġhello``), display
forms (``·hello``) and decoded text: exact matches first, then prefix, then
substring (``--by`` narrows it). Without ``--near`` only the tokenizer is loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidParameterError, LogitlabError
from tui.cli.options import add_model_options, internals_spec, model_spec_from

if TYPE_CHECKING:
    from engine.model import Neighbour
    from engine.tokens import VocabEntry, VocabIndex

BY = ("auto", "id", "exact", "prefix", "substring")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "vocab",
        help="look up tokens by id or text; nearest tokens by embedding (--near)",
        description="Search the vocabulary by id, exact piece, prefix or substring.",
    )
    parser.add_argument("query", metavar="QUERY", help="a token id, a piece, or text to find")
    add_model_options(parser)
    parser.add_argument(
        "--by",
        choices=BY,
        default="auto",
        help="auto (default): digits are an id, other text is searched exact, prefix, substring",
    )
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="matches shown (1-500)")
    parser.add_argument(
        "--near",
        type=int,
        metavar="N",
        help="the N nearest tokens to the first match by input-embedding cosine (loads the model)",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.model import load_tokenizer
    from engine.tokens import vocab_index

    query = args.query
    if not query:
        raise InvalidParameterError("QUERY", "is empty")
    if not 1 <= args.limit <= 500:
        raise InvalidParameterError("--limit", f"must be between 1 and 500, not {args.limit}")
    if args.near is not None and not 1 <= args.near <= 500:
        raise InvalidParameterError("--near", f"must be between 1 and 500, not {args.near}")
    if args.by == "id" and not query.strip().isdigit():
        raise InvalidParameterError("QUERY", f"{query!r} is not a token id (--by id)")
    spec = model_spec_from(args)
    near: tuple[Neighbour, ...] = ()
    tied: bool | None = None
    if args.near is None:
        index = vocab_index(load_tokenizer(spec).tokenizer)  # no weights needed
        matches = search(index, query, args.by, args.limit)
    else:
        from engine.decode import open_engine

        internals = internals_spec(spec, "--near")
        engine = open_engine(internals)
        engine.load(internals)
        index = engine.vocabulary()
        matches = search(index, query, args.by, args.limit)
        near = engine.nearest(matches[0].id, args.near)
        tied = engine.ties_embeddings()
    if args.format == "json":
        json.dump(vocab_object(index, matches, near, tied), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(index, matches, near, tied))
    return 0


def search(index: VocabIndex, query: str, by: str, limit: int) -> list[VocabEntry]:
    """The matches, first one first; a LogitlabError (one line) when there are none."""
    if by == "id" or (by == "auto" and query.strip().isdigit()):
        return [index.lookup_id(int(query.strip()))]
    mode = "substring" if by == "auto" else by
    found = index.search(query, mode, limit)  # type: ignore[arg-type]
    if not found:
        raise LogitlabError(f"no token matches {query!r} ({mode} search)")
    return found


def vocab_object(
    index: VocabIndex,
    matches: list[VocabEntry],
    near: tuple[Neighbour, ...],
    tied: bool | None,
) -> dict[str, Any]:
    """The DESIGN.md `vocab --format json` object (plus `tied_embeddings` with --near)."""
    out: dict[str, Any] = {
        "matches": [
            {
                "id": e.id,
                "piece": e.piece,
                "token": e.display,
                "bytes": list(e.bytes),
                "special": e.special,
            }
            for e in matches
        ],
        "near": [
            {"id": n.token_id, "token": _display(index, n.token_id), "cosine": round(n.cosine, 6)}
            for n in near
        ],
    }
    if tied is not None:
        out["tied_embeddings"] = tied
    return out


def format_table(
    index: VocabIndex,
    matches: list[VocabEntry],
    near: tuple[Neighbour, ...],
    tied: bool | None,
) -> str:
    lines = [f"{'id':>7}  {'piece':<20}  {'token':<20}  {'bytes':<24}  special"]
    for e in matches:
        lines.append(
            f"{e.id:>7}  {_cell(e.piece):<20}  {_cell(e.display):<20}  "
            f"{_cell(e.bytes.hex(' '), 24):<24}  {'yes' if e.special else '-'}"
        )
    lines.append(f"{len(matches)} match{'es' if len(matches) != 1 else ''}")
    if near:
        first = matches[0]
        lines.append("")
        lines.append(f"nearest to {first.display!r} (id {first.id}) by input-embedding cosine")
        for n in near:
            lines.append(f"{n.token_id:>7}  {n.cosine:7.4f}  {_cell(_display(index, n.token_id))}")
        lines.append(
            "input and output embeddings are tied (one matrix)"
            if tied
            else "input and output embeddings are separate matrices"
        )
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _display(index: VocabIndex, token_id: int) -> str:
    try:
        return index.lookup_id(token_id).display
    except InvalidParameterError:  # an embedding row past the tokenizer (padding)
        return f"<row {token_id}>"


def _cell(text: str, width: int = 20) -> str:
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= width else text[: width - 1] + "…"
