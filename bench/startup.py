"""How long the front doors take, each a fresh process, warm (model converted) (run by hand).

Every command runs `--runs` times, the commands alternating round by round so a
busy machine slows them alike; the table shows the median and the range of the
wall-clock seconds, beside a bare ``import torch, transformers`` (the floor any
command that runs the model pays). The workbench is timed by a probe process
that opens it headless and reports two moments: its first screen mounted
("paints") and the model loaded with the prompt focused ("ready to type").
Targets (issue 16): tokenize <= 1.5 s; generate and the workbench's ready <=
the bare import + 1.5 s.

    .venv/bin/python bench/startup.py [--runs 5] [--only tokenize,generate]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
LOGITLAB = str(Path(PYTHON).parent / "logitlab")

COMMANDS: dict[str, list[str]] = {
    "bare import torch, transformers": [PYTHON, "-c", "import torch, transformers"],
    "bare import + AutoModelForCausalLM": [
        PYTHON,
        "-c",
        "import torch; from transformers import AutoModelForCausalLM, AutoTokenizer",
    ],
    "logitlab --help": [LOGITLAB, "--help"],
    "logitlab tokenize 'hello world'": [LOGITLAB, "tokenize", "hello world"],
    "logitlab generate hi --max-new-tokens 1": [
        LOGITLAB,
        "generate",
        "hi",
        "--max-new-tokens",
        "1",
    ],
    "logitlab generate hi --max-new-tokens 1 --backend transformers": [
        LOGITLAB,
        "generate",
        "hi",
        "--max-new-tokens",
        "1",
        "--backend",
        "transformers",
    ],
    "logitlab info": [LOGITLAB, "info"],
    "workbench": [PYTHON, str(Path(__file__).resolve()), "--probe"],
    "workbench --backend transformers": [
        PYTHON,
        str(Path(__file__).resolve()),
        "--probe",
        "--backend",
        "transformers",
    ],
}


def timed(argv: list[str], tree: Path = ROOT) -> tuple[float, dict[str, float]]:
    """Wall seconds of one run and, for the probe, its reported moments. `tree`: the
    source tree it imports (PYTHONPATH wins over the venv's editable install)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree)}
    started = time.time()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tree, env=env, timeout=300)
    wall = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode}): {done.stderr[-2000:]}")
    moments = {}
    for line in done.stderr.splitlines():
        if line.startswith("moment "):
            _, name, stamp = line.split()
            moments[name] = float(stamp) - started
    return wall, moments


def probe(extra: list[str]) -> None:
    """Run `logitlab chat` as the CLI does, its App headless, and report when it paints
    and when it is ready to type; then quit. Moments go to stderr as epoch seconds.

    `App.run` is wrapped as textual.app is first imported (an import hook), so the
    probe imports nothing ahead of the command and its import order is the real one.
    """
    import importlib.abc
    import importlib.util
    import threading

    sys.path.insert(0, os.environ.get("PYTHONPATH") or str(ROOT))

    def watch(app: Any) -> None:
        from tui.screens.main import MainScreen

        painted = False
        while True:
            time.sleep(0.005)
            stack = list(getattr(app, "_screen_stack", []))
            if not painted and len(stack) > 1:
                painted = True
                print(f"moment paints {time.time()}", file=sys.stderr, flush=True)
            main = next((s for s in stack if isinstance(s, MainScreen)), None)
            if main is not None and main.facts is not None and app.screen is main:
                print(f"moment ready {time.time()}", file=sys.stderr, flush=True)
                app.call_from_thread(app.exit)
                return

    def patch(module: Any) -> None:
        real_run = module.App.run

        def run(app: Any, *args: Any, **kwargs: Any) -> Any:
            threading.Thread(target=watch, args=(app,), daemon=True).start()
            return real_run(app, headless=True, size=(120, 36))

        module.App.run = run

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name != "textual.app":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            assert spec is not None and spec.loader is not None
            real_exec = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                real_exec(module)
                patch(module)

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Hook())
    from tui.cli.main import main

    main(["chat", *extra])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", help="comma-separated substrings of command names")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="also time the same commands on the source tree in DIR (e.g. a `git archive` "
        "of main), alternating with this one",
    )
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    if args.probe:
        probe(extra)  # `logitlab chat` options
        return
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    names = [n for n in COMMANDS if not args.only or any(o in n for o in args.only.split(","))]
    trees = {"": ROOT}
    if args.baseline:
        trees["(before) "] = args.baseline.resolve()
    walls: dict[str, list[float]] = {}
    timed(COMMANDS["logitlab --help"])  # page in the venv once
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    for _ in range(args.runs):
        for name in names:
            for label, tree in trees.items():
                if label and name.startswith("bare"):
                    continue  # the same command either way
                wall, seen = timed(COMMANDS[name], tree)
                walls.setdefault(label + name, []).append(wall)
                for moment, seconds in seen.items():
                    walls.setdefault(f"{label}{name} {moment}", []).append(seconds)
    # a probe's own wall time is not a row: its moments are
    rows = {
        n: v
        for n, v in walls.items()
        if not n.removeprefix("(before) ").startswith("workbench")
        or n.endswith(("paints", "ready"))
    }
    print(f"load average at end: {os.getloadavg()[0]:.2f}; {args.runs} runs, median [min-max] s")
    width = max(len(n) for n in rows)
    for name, values in rows.items():
        print(
            f"  {name:<{width}}  {statistics.median(values):6.2f}  "
            f"[{min(values):.2f}-{max(values):.2f}]"
        )
    bare = rows.get("bare import torch, transformers")
    if bare:
        floor = statistics.median(bare)
        for name, values in rows.items():
            if "generate" in name or "ready" in name:
                print(f"  {name}: bare import + {statistics.median(values) - floor:.2f} s")


if __name__ == "__main__":
    main()
