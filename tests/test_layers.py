"""Front ends use each engine concern through its package's public names.

`tui/` (the workbench and the CLI) imports `engine.decode`, `engine.model`,
`engine.tokens`, `engine.sessions` — never a module inside one — so the engine
can reshape its insides without touching a front end. The import-linter
contracts in pyproject.toml hold the other rules (layers, no cycles, widgets
never import screens, only the entry point imports the app).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"engine.model", "engine.decode", "engine.tokens", "engine.sessions"}


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def test_front_ends_import_engine_packages_not_their_modules() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in sorted((ROOT / "tui").rglob("*.py"))
        for line, module in _imports(path)
        if any(module.startswith(pkg + ".") for pkg in PACKAGES)
    ]
    assert bad == [], "import the package's public name instead:\n" + "\n".join(bad)


def test_every_public_name_of_a_package_resolves() -> None:
    """Each name in a package's ``__all__`` is what its name says: a class or function
    of that name from the engine (a submodule of the same name can shadow a lazy
    export: then the package hands out the module), and every name a front end
    imports from a package is one of its public names."""
    import importlib
    import inspect
    import types

    wrong = []
    for name in sorted(PACKAGES):
        package = importlib.import_module(name)
        assert len(set(package.__all__)) == len(package.__all__), name
        for public in package.__all__:
            value = getattr(package, public)
            if isinstance(value, types.ModuleType):
                wrong.append(f"{name}.{public} is the module {value.__name__}")
            elif (inspect.isclass(value) or inspect.isfunction(value)) and (
                value.__name__ != public or not value.__module__.startswith("engine.")
            ):
                wrong.append(f"{name}.{public} is {value.__module__}.{value.__name__}")
    for path in sorted((ROOT / "tui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module in PACKAGES:
                public_names = importlib.import_module(node.module).__all__
                wrong += [
                    f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{alias.name} is not public"
                    for alias in node.names
                    if alias.name not in public_names
                ]
    assert wrong == []
