"""The engine is a headless library: importing all of it pulls in no UI code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import engine

ROOT = Path(__file__).resolve().parent.parent


def test_engine_never_imports_textual_or_rich() -> None:
    base = Path(engine.__path__[0])
    modules = sorted(
        ".".join(("engine", *p.relative_to(base).with_suffix("").parts)).removesuffix(".__init__")
        for p in base.rglob("*.py")
    )
    assert "engine.model.loading" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'textual', 'rich', 'tui'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_import_linter_contract_holds() -> None:
    linter = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(linter)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _modules_after(code: str) -> set[str]:
    """Top-level packages imported by `code` in a fresh interpreter."""
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_workbench_paints_before_torch_is_imported() -> None:
    """Building the app, its engine and every screen module imports neither torch nor
    transformers: the first paint waits only for Textual; the model load imports them
    on the engine thread behind the loading screen."""
    modules = _modules_after(
        "import engine.decode, engine.model, engine.sessions, engine.tokens\n"
        "from engine.decode import LocalEngine\n"
        "from tui.app import make_app\n"
        "from tui.cli.main import build_parser\n"
        "import tui.screens.loading, tui.screens.settings, tui.screens.model_picker\n"
        "build_parser()\n"
        "make_app(LocalEngine(), persist_theme=False)\n"
        "make_app(persist_theme=False)\n"  # the CLI's engine: chosen, not yet made
    )
    assert "textual" in modules
    assert not {"torch", "transformers", "accelerate", "bitsandbytes"} & modules


def test_help_and_sessions_commands_import_no_torch(tmp_path: Path) -> None:
    modules = _modules_after(
        "import os\n"
        f"os.environ['LOGITLAB_DATA_DIR'] = {str(tmp_path)!r}\n"
        "from tui.cli.main import main\n"
        "main(['sessions', 'list'])\n"
    )
    assert not {"torch", "transformers", "textual"} & modules
