"""The examples are documentation that runs: each script in examples/ runs to the end
in a subprocess on the tiny model (offline), as a library user would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
pytestmark = pytest.mark.timeout(300)


def _run(script: str, *args: str, tmp_path: Path) -> str:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "LOGITLAB_DATA_DIR": str(tmp_path / "data"),
        "LOGITLAB_CONFIG_DIR": str(tmp_path / "config"),
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=tmp_path,  # the examples use the installed engine, not the working directory
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_every_example_is_tested() -> None:
    tested = {"decode_by_hand.py", "step_and_force.py", "remote_engine.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_decode_by_hand(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = _run("decode_by_hand.py", str(tiny_model_dir), tmp_path=tmp_path)
    assert "prompt:" in out
    assert "length: 12 tokens" in out


def test_step_and_force(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = _run("step_and_force.py", str(tiny_model_dir), tmp_path=tmp_path)
    assert "<- pick" in out and "forced" in out
    assert "(the pick again: True)" in out


def test_remote_engine_with_its_own_server(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = _run("remote_engine.py", "--serve", str(tiny_model_dir), tmp_path=tmp_path)
    assert ": logitlab" in out  # the server it probed
    assert "length:" in out
