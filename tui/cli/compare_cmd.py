"""`logitlab compare PROMPT --a SPEC --b SPEC`: two runs compared token by token.

Each side is ``--a`` / ``--b`` ``KEY=VALUE`` items (engine/compare/spec.py: the keys of
DESIGN.md; an unset key takes what `generate` would use). The shared path is A's reply
to PROMPT (A's settings, ``--max-new-tokens``), or ``--text TEXT`` after PROMPT; both
sides are teacher-forced on it, then B runs free (engine/compare/run.py).

``--file PATH`` compares on a corpus instead, as ``llama-perplexity --kl-divergence``
does but streaming (no logits file): the file is tokenized by A as `score` does
(A's BOS in front where its tokenizer adds one; a PROMPT, if given, goes before the
file instead, rendered by each side), scored in `score`'s sliding windows
(``--window`` / ``--stride``), with a progress bar on stderr.

Output is written once the comparison is complete (``--format text`` or ``json``):
nothing half-written. Bad input (an unknown key, a side that cannot load, sides with
different vocabularies, a batch condition on a backend that cannot batch) is one line
on stderr and exit 2; with different vocabularies the tokenization-only report is
printed first. Ctrl+C cancels between steps: exit 130, nothing on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from engine.errors import InvalidParameterError
from tui.cli.interrupts import sigint_sets

if TYPE_CHECKING:
    from engine.compare import CompareProgress, Side

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare two runs token by token (KL, top-1, first divergence)",
        description="Compare two runs (models, backends, settings, batch conditions) "
        "token by token on one shared path. SPEC: KEY=VALUE (repeatable; a value may hold "
        "commas) or KEY=VALUE,KEY=VALUE; keys: model, backend, device, dtype, quantize, "
        "gguf-file, engine, engine-model, temperature, top-k, top-p, min-p, "
        "repetition-penalty, seed, template (on|off), batch (prompts separated by |), "
        "padding (left|right), mask (on|off).",
    )
    parser.add_argument(
        "prompt", metavar="PROMPT", nargs="?", help="the user message; - reads stdin"
    )
    parser.add_argument("--a", action="append", required=True, metavar="SPEC", help="side A")
    parser.add_argument("--b", action="append", required=True, metavar="SPEC", help="side B")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text", metavar="TEXT", help="compare on this text after PROMPT")
    source.add_argument("--file", metavar="PATH", help="corpus report over a UTF-8 file")
    parser.add_argument(
        "--max-new-tokens", type=int, metavar="N", help="length of A's reply (default: generate's)"
    )
    parser.add_argument("--window", type=int, metavar="W", help="--file: tokens per window")
    parser.add_argument("--stride", type=int, metavar="S", help="--file: tokens between windows")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from engine.compare import parse_side

    a_spec, b_spec = parse_side(args.a, flag="--a"), parse_side(args.b, flag="--b")
    _check_args(args)
    prompt = _read_prompt(args.prompt) if args.prompt is not None else None
    corpus = _read_file(args.file) if args.file is not None else None
    from engine.compare import close_side, open_side
    from tui.cli.notices import print_notices

    side_a = open_side(a_spec, "A")
    try:
        print_notices(side_a.model)
        side_b = open_side(b_spec, "B")
        try:
            print_notices(side_b.model)
            if corpus is not None:
                return _run_corpus(args, side_a, side_b, prompt, corpus)
            assert prompt is not None
            return _run_path(args, side_a, side_b, prompt)
        finally:
            close_side(side_b)
    finally:
        close_side(side_a)


def _check_args(args: argparse.Namespace) -> None:
    if args.prompt is None and args.file is None:
        raise InvalidParameterError("PROMPT", "give a prompt (or --file PATH for a corpus)")
    if args.max_new_tokens is not None:
        if args.text is not None or args.file is not None:
            raise InvalidParameterError(
                "--max-new-tokens", "applies to A's reply only, not to --text or --file"
            )
        if args.max_new_tokens < 1:
            raise InvalidParameterError("--max-new-tokens", "must be at least 1")
    if args.file is None:
        for flag, value in (("--window", args.window), ("--stride", args.stride)):
            if value is not None:
                raise InvalidParameterError(flag, "only applies with --file")
    if args.text is not None and not args.text.strip():
        raise InvalidParameterError("--text", "is empty")


def _run_path(args: argparse.Namespace, a: Side, b: Side, prompt: str) -> int:
    from engine.compare import compare_sides

    comparison = _cancellable(
        lambda bar, cancel: compare_sides(
            a,
            b,
            prompt,
            text=args.text,
            max_new_tokens=args.max_new_tokens,
            top=0 if args.format == "json" else 1,
            progress=bar,
            cancel=cancel,
        )
    )
    if comparison is None:
        return EXIT_INTERRUPTED
    if args.format == "json":
        sys.stdout.write(json.dumps(comparison.to_json(), ensure_ascii=False) + "\n")
    else:
        from tui.cli.compare_text import write_comparison

        write_comparison(sys.stdout, comparison)
    sys.stdout.flush()
    if comparison.problem is not None:
        raise InvalidParameterError("--b", comparison.problem)
    return EXIT_OK


def _run_corpus(args: argparse.Namespace, a: Side, b: Side, prompt: str | None, corpus: str) -> int:
    from engine.compare.corpus import compare_corpus
    from engine.compare.run import vocabulary_problem
    from tui.cli.score_cmd import bos_id, plan_sizes, windows

    path = a.engine.encode(corpus)
    if prompt is not None:
        prefix_a, prefix_b = a.prompt_ids(prompt), b.prompt_ids(prompt)
    else:
        bos_a, bos_b = bos_id(a.engine), bos_id(b.engine)
        prefix_a = [bos_a] if bos_a is not None else []
        prefix_b = [bos_b] if bos_b is not None else []
    problem = vocabulary_problem(a, b, [*prefix_a, *prefix_b, *path[:256]])
    if problem is not None:
        raise InvalidParameterError("--b", problem)
    context = min(a.model.context_window, b.model.context_window)
    window, stride = plan_sizes(
        args.window, args.stride, context - max(len(prefix_a), len(prefix_b))
    )
    plan = windows(len(path), window, stride)
    if prefix_a and prefix_b:  # both sides see a context before the first token: score it
        begin, end, _start = plan[0]
        plan[0] = (begin, end, 0)
    report = _cancellable(
        lambda bar, cancel: compare_corpus(
            a, b, path, plan, prefix_a=prefix_a, prefix_b=prefix_b, progress=bar, cancel=cancel
        )
    )
    if report is None:
        return EXIT_INTERRUPTED
    if args.format == "json":
        obj = {
            "a": a.describe(),
            "b": b.describe(),
            "window": window,
            "stride": stride,
            "corpus": report.to_json(),
        }
        sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    else:
        from tui.cli.compare_text import write_corpus

        write_corpus(sys.stdout, a.describe(), b.describe(), report, window, stride)
    sys.stdout.flush()
    return EXIT_OK


# --- input ----------------------------------------------------------------------------------


def _read_prompt(prompt: str) -> str:
    text = sys.stdin.read() if prompt == "-" else prompt
    if not text.strip():
        raise InvalidParameterError("PROMPT", "is empty")
    return text


def _read_file(file: str) -> str:
    from tui.cli.score_cmd import read_text

    return read_text(None, file, sys.stdin)


# --- progress and signals ----------------------------------------------------------------------


class _Bar:
    """A one-line progress bar on stderr (a terminal only), cleared at the end."""

    WIDTH = 30
    STAGES: ClassVar[dict[str, str]] = {
        "reply": "A's reply",
        "score": "scoring both",
        "free": "B running free",
    }

    def __init__(self, label: str) -> None:
        self._label = label
        self.shown = False

    def __call__(self, p: CompareProgress) -> None:
        stage = self.STAGES.get(p.stage, p.stage)
        if p.total > 0:
            filled = int(self.WIDTH * min(p.done, p.total) / p.total)
            bar = "█" * filled + "░" * (self.WIDTH - filled)
            sys.stderr.write(f"\r{self._label}: {stage:<15} {bar} {p.done}/{p.total}\033[K")
        else:
            sys.stderr.write(f"\r{self._label}: {stage}\033[K")
        sys.stderr.flush()
        self.shown = True


T = TypeVar("T")


def _cancellable(
    work: Callable[[Callable[[CompareProgress], None] | None, threading.Event], T],
) -> T | None:
    """`work(progress, cancel)` under a progress bar, Ctrl+C setting `cancel`: its result,
    or None once it was cancelled (said in one line on stderr)."""
    from engine.compare import CompareCancelled

    cancel = threading.Event()
    bar = _bar("comparing")
    try:
        with sigint_sets(cancel):
            result = work(bar, cancel)
    except CompareCancelled:
        _clear(bar)
        print("logitlab: compare cancelled", file=sys.stderr)
        return None
    _clear(bar)
    return result


def _bar(label: str) -> Callable[[CompareProgress], None] | None:
    """A progress bar where stderr is a terminal (never into a pipe or a log)."""
    return _Bar(label) if sys.stderr.isatty() else None


def _clear(bar: Callable[[CompareProgress], None] | None) -> None:
    if isinstance(bar, _Bar) and bar.shown:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
