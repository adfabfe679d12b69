"""The README's pictures come from the real app: tools/screenshots.py runs every scene
over the bundled model and each picture shows what its name says.

The committed pictures are not compared byte for byte: greedy replies and the
numbers beside them can move in the last digit from one CPU to another (llama.cpp's
kernels most of all), and a picture is a picture. `make screenshots` refreshes them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import screenshots  # noqa: E402

pytestmark = [pytest.mark.anyio, pytest.mark.real_model, pytest.mark.timeout(900)]

# what each picture must show (words of the UI, not of the model's reply)
SHOWS = {
    "workbench": ["Step", "Prompt", "processed", "tok/s"],
    "step-mode": ["your pick", "Space accept"],
    "lens": ["Lens", "layer"],
    "compare": ["A · the shared path", "B · running free", "candidates", "KL"],
    "branches": ["branches of reply", "took", "instead of"],
}


def svg_text(path: Path) -> str:
    """The text an SVG screenshot shows (Textual writes each run of cells as <text>)."""
    raw = path.read_text(encoding="utf-8")
    runs = re.findall(r"<text[^>]*>(.*?)</text>", raw, flags=re.S)
    return (
        "".join(runs)
        .replace("&#160;", " ")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x27;", "'")
        .replace("&quot;", '"')
    )


async def test_every_scene_is_taken_and_shows_its_subject(tmp_path: Path) -> None:
    written = await screenshots.take(tmp_path)
    assert [p.stem for p in written] == [name for name, _ in screenshots.SCENES]
    for path in written:
        assert path.stat().st_size < 400_000  # text, not megabytes
        shown = svg_text(path)
        for words in SHOWS[path.stem]:
            assert words in shown, f"{path.name} does not show {words!r}"


def test_the_committed_pictures_are_the_scenes() -> None:
    committed = sorted(p.stem for p in (ROOT / "docs" / "images").glob("*.svg"))
    assert committed == sorted(name for name, _ in screenshots.SCENES)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/images/workbench.svg" in readme
