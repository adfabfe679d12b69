"""The README and docs/ stay true: every `logitlab ...` command they show parses with
the real command line (every option and value it names exists), every relative link
and anchor resolves, and the README's first screen holds the picture, the two
commands and the links to the reference."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tui.cli.examples import COMMAND_EXAMPLES, MAIN
from tui.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FRONT_LINES = 60


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)


def commands(text: str) -> list[str]:
    """Each `logitlab ...` command of the page's code blocks, continuation lines joined,
    comments and any environment assignments before it dropped."""
    found = []
    for block in code_blocks(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.split(r"\s#|\s{3,}", line.strip(), maxsplit=1)[0].strip()
            line = re.sub(r"^(\$ )?((\w+=\S*) )*", "", line)
            if line.startswith("logitlab ") or line == "logitlab":
                found.append(line)
    return found


EXAMPLES = [(page.name, c) for page in PAGES for c in commands(page.read_text(encoding="utf-8"))]
EXAMPLES += [("--help", line.split("  #")[0].strip()) for line in MAIN]
EXAMPLES += [(f"{name} --help", line) for name, lines in COMMAND_EXAMPLES.items() for line in lines]


def test_the_docs_show_commands() -> None:
    assert len(EXAMPLES) >= 20


@pytest.mark.parametrize(("page", "command"), EXAMPLES, ids=[f"{p}:{c[:60]}" for p, c in EXAMPLES])
def test_every_command_parses(page: str, command: str) -> None:
    if re.search(r"\[[-A-Z]", command):
        pytest.skip("a synopsis ([OPTIONS] in brackets), not a command to run")
    argv = shlex.split(command)[1:]
    if any(a in ("|", ">", "<", "&&", "||") for a in argv):  # a pipeline: its first command
        argv = argv[: next(i for i, a in enumerate(argv) if a in ("|", ">", "<", "&&", "||"))]
    # placeholders (ID, FILE, NAME, <path>) stand for a value: any value parses
    argv = ["x" if re.fullmatch(r"[A-Z_]+|<[^>]+>", a) else a for a in argv if a != "..."]
    parser = build_parser()
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--debug"):
        argv = ["chat", *argv]  # bare `logitlab --model X`: the workbench
    if not argv:
        return
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 0, f"{page}: `{command}` does not parse"


def _anchors(text: str) -> set[str]:
    out = set()
    for title in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_every_relative_link_resolves() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"https?:|mailto:", target):
                continue
            path, _, frag = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page.name}: link to {target} (no such file)"
            if frag and file.suffix == ".md":
                assert frag in _anchors(file.read_text(encoding="utf-8")), (
                    f"{page.name}: link to {target} (no such heading)"
                )


def test_the_front_page_fits_one_screen() -> None:
    first = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:FRONT_LINES])
    assert "docs/images/workbench.svg" in first
    assert "make run" in first and "make test" in first
    for page in ("workbench", "command-line", "serve", "models", "sessions"):
        assert f"docs/{page}.md" in first, page


def test_every_docs_page_has_contents() -> None:
    for page in PAGES[1:]:
        text = page.read_text(encoding="utf-8")
        assert "Contents:" in text.split("\n## ", 1)[0], page.name
