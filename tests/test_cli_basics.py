"""The `logitlab` command as a user runs it: exit codes, one-line errors, `info`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tui.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def info_json(real_model: Any) -> dict[str, Any]:
    """`logitlab info --format json` on the bundled model (its conversion is cached by real_model)."""
    result = run_cli("info", "--backend", "transformers", "--device", "cpu", "--format", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@pytest.mark.real_model
def test_info_json_total_is_exact(info_json: dict[str, Any], real_model: Any) -> None:
    params = info_json["parameters"]
    assert params["total"] == 134_515_008
    assert params["total"] == sum(p.numel() for p in real_model.model.parameters())
    assert sum(params["by_kind"].values()) == params["total"]
    assert sum(params["by_module"].values()) == params["total"]
    assert params["lm_head_tied"] is True


@pytest.mark.real_model
def test_info_json_describes_the_model(info_json: dict[str, Any]) -> None:
    assert info_json["config"]["layers"] == 30
    assert info_json["config"]["kv_heads"] == 3
    assert info_json["config"]["context_length"] == 8192
    assert info_json["special_tokens"]["eos"] == {"token": "<|im_end|>", "id": 2}
    assert info_json["special_tokens"]["eos_ids"] == [2]
    assert info_json["generation"]["temperature"] == {"value": 0.0, "source": "transformers"}
    assert "LlamaDecoderLayer" in info_json["module_tree"]
    assert info_json["dtype"] == "float32" and info_json["device"] == "cpu"


@pytest.mark.real_model
def test_info_text_lists_parameters_and_config(real_model: Any) -> None:
    result = run_cli("info", "--backend", "transformers", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "134,515,008 total" in result.stdout
    assert "kv_heads" in result.stdout and "lm_head tied" in result.stdout


def test_absent_device_is_one_line_exit_1() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run_cli("info", "--backend", "transformers", "--device", "cuda")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cuda" in lines[0] and "available" in lines[0]
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback() -> None:
    result = run_cli("--debug", "info", "--model", "/no/such/dir")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "does not exist" in result.stderr


def test_bad_option_value_is_usage_error() -> None:
    result = run_cli("info", "--dtype", "int3")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_bad_device_name_is_usage_error() -> None:
    result = run_cli("info", "--device", "tpu")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "device" in result.stderr


def test_offline_hub_id_is_one_line(tmp_path: Path) -> None:
    result = run_cli("info", "--model", "no-such-org/no-such-model-xyz", timeout=60)
    assert result.returncode == 1
    assert "HF_HUB_OFFLINE" in result.stderr and "Traceback" not in result.stderr


def test_help_is_fast_and_lists_commands() -> None:
    result = run_cli("--help", timeout=30)
    assert result.returncode == 0
    assert "info" in result.stdout
