"""The README's pictures, taken from the real workbench (not drawn by hand).

Drives the app headless with Pilot over the bundled SmolLM2-135M-Instruct on
transformers (greedy, so the replies are the model's own and repeatable), at a
fixed size and theme, and writes one SVG per scene with Textual's own screenshot
support:

- ``workbench.svg``: a reply, its tokens coloured by probability, the inspector on
  a step with its candidates;
- ``step-mode.svg``: step-through mode waiting for a pick;
- ``lens.svg``: the Lens tab on a step, layer by layer;
- ``compare.svg``: the Compare view, the reply against the same model quantized
  (llama.cpp Q4_1, where ``make llamacpp`` installed it) or, without llama.cpp,
  against the same prompt in a right-padded batch without its mask;
- ``branches.svg``: the Branches view after a forced token and a greedy fan-out
  (its three samples fold into one row).

    .venv/bin/python tools/screenshots.py [--out docs/images] [--only compare]
    make screenshots

The numbers a run measures (tokens per second, time to first token) are set to
fixed values before each picture so that re-running changes a picture only when
the UI or the model's numbers change. Runs in about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from textual.pilot import Pilot

SIZE = (120, 36)
THEME = "logitlab-dark"
OUT = Path(__file__).resolve().parent.parent / "docs" / "images"
PROMPT = "Name three primary colours."
WAIT = 300.0  # seconds any one state may take to arrive (a slow, loaded machine)


async def until(pilot: Pilot[None], condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"screenshots: timed out waiting for {what}")
        await pilot.pause(0.05)


def llama_cpp_installed() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


class Scenes:
    """One scene per method; each leaves the app as the picture shows it."""

    def __init__(self, pilot: Pilot[None]) -> None:
        from tui.screens.main import MainScreen

        self.pilot = pilot
        self.app = pilot.app
        self.main: MainScreen = next(s for s in self.app.screen_stack if isinstance(s, MainScreen))

    def fixed_numbers(self) -> None:
        from tui.widgets.status_bar import StatusBar

        status = self.main.query_one(StatusBar)
        status.tokens_per_second, status.ttft_ms = 42.0, 120.0

    async def reply(self, text: str) -> None:
        main = self.main
        main.query_one("#prompt").focus()
        main.query_one("#prompt").insert(text)  # type: ignore[attr-defined]
        await self.pilot.press("enter")
        await self.finished("the reply")

    async def finished(self, what: str) -> None:
        """Wait until the last reply has ended (`what` names it in a timeout)."""
        main = self.main
        await until(
            self.pilot,
            lambda: (
                main.conversation.last_reply is not None
                and main.conversation.last_reply.finish_reason is not None
            ),
            what,
        )

    async def select(self, step: int) -> None:
        from tui.widgets.token_stream import TokenStream

        stream = self.main.query_one(TokenStream)
        stream.focus()
        await self.pilot.press("home", *["right"] * step)
        await until(self.pilot, lambda: stream.cursor == step, f"step {step} selected")

    async def workbench(self) -> None:
        await self.reply(PROMPT)
        await self.select(3)
        await self.pilot.pause(0.3)

    async def step_mode(self) -> None:
        main = self.main
        await self.pilot.press("ctrl+t")
        main.query_one("#prompt").focus()
        main.query_one("#prompt").insert("And three secondary ones?")  # type: ignore[attr-defined]
        await self.pilot.press("enter")
        await until(self.pilot, lambda: main.proposal is not None, "a proposal")
        for n in range(4):
            await self.pilot.press("space")
            await until(
                self.pilot,
                lambda n=n: main.proposal is not None and main.proposal.index == n + 1,
                "the next proposal",
            )
        await self.pilot.pause(0.3)

    async def lens(self) -> None:
        main = self.main
        await self.pilot.press("c")  # let the step-mode reply finish
        await self.finished("the reply")
        await self.pilot.press("ctrl+t")
        await self.select(5)
        from tui.widgets.lens_view import LensView

        await self.pilot.press("f6")
        view = main.query_one(LensView)
        await until(self.pilot, lambda: view.result is not None, "the lens")
        await self.pilot.pause(0.3)

    async def branches(self) -> None:
        from tui.screens.branches import BranchesScreen

        main = self.main
        if self.app.screen is not main:  # the Compare view of the scene before
            await self.pilot.press("escape")
            await until(self.pilot, lambda: self.app.screen is main, "the workbench")
        await self.select(4)
        await self.pilot.press("b")
        await until(self.pilot, lambda: main.proposal is not None, "a branch point")
        await self.pilot.press("2")
        await until(
            self.pilot,
            lambda: main.proposal is not None and main.proposal.index == 5,
            "the forced token",
        )
        await self.pilot.press("c")
        await self.finished("the branch")
        # a fan-out at the model's greedy settings: three samples that all keep the
        # branch, folded into its row (×4) rather than listed as copies
        from tui.screens.fan_out import FanOutScreen
        from tui.widgets.status_bar import StatusBar

        await self.select(7)
        await self.pilot.press("f")
        await until(self.pilot, lambda: isinstance(self.app.screen, FanOutScreen), "fan out")
        await self.pilot.press("enter")
        status = main.query_one(StatusBar)
        await until(self.pilot, lambda: "fanned out" in str(status.state), "the fan-out")
        await self.pilot.press("f5")
        await until(self.pilot, lambda: isinstance(self.app.screen, BranchesScreen), "Branches")
        await self.pilot.pause(0.3)

    async def compare(self) -> None:
        from textual.widgets import TextArea

        from tui.screens.compare import CompareScreen
        from tui.screens.compare_dialog import CompareDialog

        await self.select(4)
        await self.pilot.press("f9")
        await until(self.pilot, lambda: isinstance(self.app.screen, CompareDialog), "the dialog")
        lines = (
            "backend=llama.cpp"
            if llama_cpp_installed()
            else "batch=A, B, C, D, E|Hello there\npadding=right\nmask=off"
        )
        self.app.screen.query_one(TextArea).text = lines
        await self.pilot.press("ctrl+r")
        await until(self.pilot, lambda: isinstance(self.app.screen, CompareScreen), "Compare")
        view = self.app.screen
        assert isinstance(view, CompareScreen)
        await until(
            self.pilot, lambda: view.comparison is not None or not view.is_attached, "Compare"
        )
        if view.comparison is None:
            raise RuntimeError(f"screenshots: the comparison failed: {view.failure}")
        await self.pilot.pause(0.3)


SCENES: tuple[tuple[str, str], ...] = (
    ("workbench", "workbench"),
    ("step-mode", "step_mode"),
    ("lens", "lens"),
    ("compare", "compare"),
    ("branches", "branches"),
)


async def take(out: Path, only: set[str] | None = None) -> list[Path]:
    """Run every scene in order (each builds on the one before) and save the pictures
    asked for; the paths written."""
    from engine.decode import open_engine
    from engine.model import ModelSpec
    from tui.app import make_app
    from tui.settings import UISettings

    spec = ModelSpec(backend="transformers", device="cpu", dtype="float32")
    settings = UISettings(overrides={"temperature": 0.0, "max_new_tokens": 48})
    app = make_app(open_engine(spec), spec, settings=settings, theme=THEME, persist_theme=False)
    written: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    async with app.run_test(size=SIZE) as pilot:
        from tui.screens.main import MainScreen

        await until(
            pilot,
            lambda: isinstance(app.screen, MainScreen) and app.screen.facts is not None,
            "the model",
        )
        scenes = Scenes(pilot)
        for name, method in SCENES:
            run: Callable[[], Awaitable[Any]] = getattr(scenes, method)
            await run()
            if only is not None and name not in only:
                continue
            scenes.fixed_numbers()
            await pilot.pause(0.1)
            path = out / f"{name}.svg"
            path.write_text(app.export_screenshot(title=f"logitlab · {name}"), encoding="utf-8")
            written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the SVG files")
    parser.add_argument(
        "--only", action="append", choices=[n for n, _ in SCENES], help="only these pictures"
    )
    args = parser.parse_args()
    started = time.monotonic()
    written = asyncio.run(take(args.out, set(args.only) if args.only else None))
    for path in written:
        print(f"{path} ({path.stat().st_size // 1024} KiB)")
    print(f"{len(written)} pictures in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
