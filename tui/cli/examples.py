"""The examples `logitlab --help` and each command's help end with, as the docs show them.

One table, so the help and docs/ say the same; tests/test_docs.py parses every
example with the real parser."""

from __future__ import annotations

import argparse

# the top-level help: the first things to try
MAIN = (
    "logitlab                                   # the workbench on the bundled model",
    'logitlab generate "What is 2+2?" --format jsonl',
    'logitlab compare "Hi" --a backend=transformers --b backend=llama.cpp',
)

COMMAND_EXAMPLES: dict[str, tuple[str, ...]] = {
    "chat": (
        "logitlab chat --model HuggingFaceTB/SmolLM2-360M-Instruct --device cpu",
        "logitlab chat --engine http://127.0.0.1:8000/v1",
    ),
    "generate": (
        'logitlab generate "Name three colours." --temperature 0 --format jsonl',
        'logitlab generate "Hello" --backend llama.cpp --max-new-tokens 32 --save',
    ),
    "tokenize": (
        'logitlab tokenize "Hello, world!"',
        'logitlab tokenize "Hi there" --chat --format json',
    ),
    "info": (
        "logitlab info",
        "logitlab info --engine http://127.0.0.1:8000/v1",
    ),
    "sessions": (
        "logitlab sessions list",
        "logitlab sessions export ID --format markdown",
    ),
    "serve": (
        "logitlab serve --port 8000",
        "logitlab serve --backend transformers --host 127.0.0.1 --port 8000",
    ),
    "lens": ('logitlab lens "The capital of France is" --top 3',),
    "vocab": ("logitlab vocab Paris", "logitlab vocab 7042 --near 10"),
    "score": (
        'logitlab score "The capital of France is Paris."',
        "logitlab score --file notes.txt --window 512 --stride 256 --format json",
    ),
    "compare": (
        'logitlab compare "What is 2+2?" --a backend=transformers --b backend=llama.cpp',
        'logitlab compare "1, 2, 3" --a backend=transformers --b "batch=A, B, C, D, E" '
        "--b padding=right --b mask=off",
    ),
}


def epilog(lines: tuple[str, ...]) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_examples(parser: argparse.ArgumentParser, subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Give the top-level help and each registered command's help their examples."""
    parser.epilog = epilog(MAIN)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for name, sub in subparsers.choices.items():
        examples = COMMAND_EXAMPLES.get(name)
        if examples:
            sub.epilog = epilog(examples)
            if sub.formatter_class is argparse.HelpFormatter:
                sub.formatter_class = argparse.RawDescriptionHelpFormatter
