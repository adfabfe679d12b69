"""The `logitlab` command: parse, dispatch to one module per subcommand, map errors.

Exit codes: 0 ok, 2 usage error (bad option or value), 1 any other error with a
one-line message on stderr (a traceback only with ``--debug``), 130 on Ctrl+C.
Subcommand modules import torch/transformers lazily so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from engine.errors import InvalidParameterError, LogitlabError
from tui.cli.examples import add_examples

# each module defines register(subparsers) and sets a `run(args) -> int` default
COMMANDS = ("chat", "generate", "tokenize", "info", "sessions", "serve", "lens", "vocab", "score",
            "compare")  # fmt: skip
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logitlab",
        description="A terminal workbench for running a local language model and seeing how it generates.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"tui.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name == f"tui.cli.{name}_cmd":
                continue
            raise
        module.register(subparsers)
    add_examples(parser, subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. From the shell (`argv` None) a native crash leaves a crash log
    (`tui.fatal_log`); a caller passing `argv` (tests) keeps its own fault handler."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if argv is not None:
        return _main(args_list)
    from tui import fatal_log

    armed = fatal_log.arm(args_list)
    try:
        return _main(args_list, shell=True, crash_log=armed.path if armed is not None else None)
    finally:
        if armed is not None:
            armed.disarm()


def _main(args_list: list[str], *, shell: bool = False, crash_log: Path | None = None) -> int:
    """Parse and run one command. From the shell, a command that takes over the terminal
    runs supervised (`tui.terminal_guard`); `crash_log`: the armed crash log, if any."""
    parser = build_parser()
    if not any(a in COMMANDS for a in args_list if not a.startswith("-")) and not {
        "-h",
        "--help",
    } & set(args_list):
        args_list = ["chat", *args_list] if "chat" in _registered(parser) else args_list
    args = parser.parse_args(args_list)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return EXIT_USAGE
    if shell and getattr(args, "takes_terminal", False):
        from tui.terminal_guard import supervise

        return supervise(lambda: _dispatch(parser, args), crash_log)
    return _dispatch(parser, args)


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Run the parsed command, mapping its errors to one line and an exit code."""
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.run(args) or 0)
    except InvalidParameterError as exc:
        _fail(f"{parser.prog}: error: {exc}", exc, debug)
        return EXIT_USAGE
    except LogitlabError as exc:
        _fail(f"{parser.prog}: error: {exc}", exc, debug)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _fail(
            f"{parser.prog}: error: {type(exc).__name__}: {first} (run with --debug for details)",
            exc,
            debug,
        )
        return EXIT_ERROR


def _registered(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def _fail(line: str, exc: BaseException, debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exception(exc)
    print(line, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
