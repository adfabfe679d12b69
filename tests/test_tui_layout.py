"""The workbench's shape (issue 23): the screen composes and routes, the state is the
`Workbench`'s, and nothing but the app reaches for `MainScreen` (not even for types),
so the screen's collaborators cannot grow back into it."""

from __future__ import annotations

import ast
from pathlib import Path

TUI = Path(__file__).resolve().parent.parent / "tui"
MAIN = TUI / "screens" / "main.py"


def _imports_main_screen(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "tui.screens.main":
            return True
        if isinstance(node, ast.Import) and any(a.name == "tui.screens.main" for a in node.names):
            return True
    return False


def test_only_the_app_imports_the_main_screen() -> None:
    importers = sorted(
        str(p.relative_to(TUI)) for p in TUI.rglob("*.py") if p != MAIN and _imports_main_screen(p)
    )
    assert importers == ["app.py"]


def test_the_main_screen_stays_small() -> None:
    assert len(MAIN.read_text(encoding="utf-8").splitlines()) < 350
