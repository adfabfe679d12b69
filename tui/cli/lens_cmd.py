"""`logitlab lens PROMPT`: the layer lens (logit lens) at one position of a prompt.

For the embedding output and every decoder layer's output at position N, the
model's final norm and ``lm_head`` give a distribution over the next token; the
table shows each layer's top-K and where the final layer's top-1 (the target)
stands, and marks the layer from which the target stays top-1. JSON is the
DESIGN.md shape. torch is imported inside ``run`` so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.errors import InvalidParameterError
from engine.tokens import ChatMessage
from tui.cli.options import add_model_options, internals_spec, model_spec_from

if TYPE_CHECKING:
    from engine.model import LensResult

MAX_TOP = 50


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lens",
        help="layer by layer: what the model would predict after a prompt position",
        description="The logit lens: each layer's hidden state at one prompt position through "
        "the final norm and lm_head, top-K per layer, and the layer from which the model's "
        "prediction stays top-1.",
    )
    parser.add_argument("prompt", metavar="PROMPT", help="the user message; - reads stdin")
    add_model_options(parser)
    parser.add_argument("--raw", action="store_true", help="skip the chat template")
    parser.add_argument("--system", metavar="S", help="system message (chat template)")
    parser.add_argument(
        "--position",
        type=int,
        metavar="N",
        help="explain the token after prompt position N (negative counts from the end; "
        "default: the last position, i.e. the first generated token)",
    )
    parser.add_argument("--top", type=int, default=5, metavar="K", help="tokens per layer (1-50)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.decode import open_engine

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise InvalidParameterError("PROMPT", "is empty")
    if args.raw and args.system is not None:
        raise InvalidParameterError("--system", "cannot be combined with --raw")
    if not 1 <= args.top <= MAX_TOP:
        raise InvalidParameterError("--top", f"must be between 1 and {MAX_TOP}, not {args.top}")
    spec = internals_spec(model_spec_from(args), "the layer lens")
    engine = open_engine(spec)  # on transformers: internals_spec says so
    engine.load(spec)
    if args.raw:
        ids = engine.encode(prompt)
    else:
        system = [ChatMessage("system", args.system)] if args.system is not None else []
        ids = engine.chat_ids([*system, ChatMessage("user", prompt)])
    position = -1 if args.position is None else args.position
    if not -len(ids) <= position < len(ids):
        raise InvalidParameterError(
            "--position",
            f"{position} is outside the prompt: it has {len(ids)} tokens "
            f"(0..{len(ids) - 1}, or -1..-{len(ids)} from the end)",
        )
    result = engine.lens(ids, position, top=args.top)
    if args.format == "json":
        json.dump(lens_object(result, engine.token_display), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(result, engine.token_display))
    return 0


def lens_object(result: LensResult, display: Callable[[int], str]) -> dict[str, Any]:
    """The DESIGN.md `lens --format json` object (plus `settles_at`)."""
    return {
        "position": result.position,
        "input_token": {"id": result.input_id, "token": display(result.input_id)},
        "layers": [
            {
                "layer": row.layer,
                "name": row.name,
                "top": [
                    {
                        "token_id": t.token_id,
                        "token": display(t.token_id),
                        "logprob": _finite(t.logprob),
                    }
                    for t in row.top
                ],
                "target": {
                    "token_id": row.target.token_id,
                    "token": display(row.target.token_id),
                    "logprob": _finite(row.target.logprob),
                    "rank": row.target.rank,
                },
            }
            for row in result.rows
        ],
        "settles_at": result.settles_at,
    }


def format_table(result: LensResult, display: Callable[[int], str]) -> str:
    """One line per layer: the target's probability and rank, then the top-K."""
    target = display(result.target_id)
    lines = [
        f"position {result.position}  input {display(result.input_id)!r}  "
        f"target {target!r} (id {result.target_id}, the final layer's top-1)",
        f"{'layer':<10}  {'target':>7}  {'rank':>6}  top",
    ]
    for row in result.rows:
        top = "  ".join(f"{_short(display(t.token_id))} {_pct(t.logprob)}" for t in row.top)
        mark = "  ◀ top-1 from here on" if row.layer == result.settles_at else ""
        lines.append(
            f"{row.name:<10}  {_pct(row.target.logprob):>7}  {row.target.rank:>6}  {top}{mark}"
        )
    return "\n".join(lines) + "\n"


def _short(token: str, width: int = 12) -> str:
    text = repr(token)[1:-1]
    return text if len(text) <= width else text[: width - 1] + "…"


def _pct(logprob: float) -> str:
    p = math.exp(logprob) if math.isfinite(logprob) else 0.0
    return f"{p:.1%}" if p >= 0.001 else f"{p:.0e}"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
