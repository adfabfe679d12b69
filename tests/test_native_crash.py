"""A native crash (SIGSEGV) of a running `logitlab` command leaves a crash log with the
Python stack and a non-zero status, and the next start reports it once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui.fatal_log import unreported_crashes

pytestmark = [pytest.mark.real_model, pytest.mark.timeout(300)]


def test_sigsegv_mid_generate_leaves_a_crash_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "LOGITLAB_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "tui.cli.main",
        "generate",
        "Count from 1 to 200.",
        "--max-new-tokens",
        "400",
        "--temperature",
        "0",
        "--backend",
        "transformers",
    ]
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None
        first = child.stdout.read(1)  # a token arrived: the reply is mid-way
        assert first
        child.send_signal(signal.SIGSEGV)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGSEGV
    logs = list(data.glob("crash-*-pid*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert "Fatal Python error: Segmentation fault" in text and "File " in text
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the pid is gone once waited for
        found = unreported_crashes(data)
        if found:
            break
    assert [p for p, _ in found] == logs and "Segmentation fault" in found[0][1]
    assert unreported_crashes(data) == []  # reported once


def test_a_normal_run_leaves_no_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "LOGITLAB_DATA_DIR": str(data)}
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli.main", "--help"], env=env, capture_output=True, check=False
    )
    assert done.returncode == 0
    assert not list(data.glob("crash-*.log"))
