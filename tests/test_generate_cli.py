"""`logitlab generate`: the JSONL contract, text streaming, stdin, errors and Ctrl+C."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tui.cli import generate_cmd
from tui.cli.main import main

STEP_KEYS = {
    "step",
    "token_id",
    "token",
    "text",
    "logprob",
    "prob",
    "rank",
    "entropy",
    "forced",
    "top",
    "elapsed_ms",
}
SUMMARY_KEYS = {
    "done",
    "finish_reason",
    "text",
    "usage",
    "tokens_per_second",
    "time_to_first_token_ms",
}


def _tiny_args(tiny_model_dir: Path, *extra: str) -> list[str]:
    return ["generate", *extra, "--model", str(tiny_model_dir), "--device", "cpu"]


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_jsonl_has_one_object_per_token_then_the_summary(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        _tiny_args(
            tiny_model_dir,
            "Hello",
            "--format",
            "jsonl",
            "--max-new-tokens",
            "5",
            "--top-logprobs",
            "3",
        )
    )
    assert code == 0
    *steps, summary = _lines(capsys.readouterr().out)
    assert len(steps) == 5
    assert all(set(s) == STEP_KEYS for s in steps)
    assert [s["step"] for s in steps] == list(range(5))
    assert all(
        len(s["top"]) == 3 and set(s["top"][0]) == {"token_id", "token", "logprob"} for s in steps
    )
    assert set(summary) == SUMMARY_KEYS and summary["done"] is True
    assert summary["finish_reason"] == "length"
    assert summary["usage"]["completion_tokens"] == 5
    assert summary["text"] == "".join(s["text"] for s in steps)
    assert all(0 < s["prob"] <= 1 and s["rank"] >= 1 for s in steps)


def test_text_streams_to_stdout_and_summarises_on_stderr(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        _tiny_args(
            tiny_model_dir,
            "Hi",
            "--raw",
            "--temperature",
            "0.9",
            "--seed",
            "4",
            "--max-new-tokens",
            "6",
        )
    )
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.endswith("\n")
    assert len(captured.err.strip().splitlines()) == 1
    assert "6 tokens" in captured.err and "tok/s" in captured.err


def test_prompt_from_stdin(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin"))
    code = main(
        _tiny_args(
            tiny_model_dir,
            "-",
            "--system",
            "Be brief.",
            "--format",
            "jsonl",
            "--max-new-tokens",
            "2",
        )
    )
    summary = _lines(capsys.readouterr().out)[-1]
    assert code == 0 and summary["usage"]["prompt_tokens"] > 5


@pytest.mark.parametrize(
    "bad",
    [
        ["--temperature", "-1"],
        ["--top-p", "0"],
        ["--top-logprobs", "99"],
        ["--max-new-tokens", "0"],
        ["--raw", "--system", "x"],
    ],
)
def test_bad_values_exit_2_with_one_line(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], bad: list[str]
) -> None:
    assert main(_tiny_args(tiny_model_dir, "Hi", *bad)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("logitlab: error:")


def test_ctrl_c_stops_cleanly_with_cancelled_and_130(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = generate_cmd.JsonlSink.step
    calls = {"n": 0}

    def step_then_interrupt(self: Any, step: Any) -> None:
        original(self, step)
        calls["n"] += 1
        if calls["n"] == 2:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(generate_cmd.JsonlSink, "step", step_then_interrupt)
    code = main(_tiny_args(tiny_model_dir, "Hello", "--format", "jsonl", "--max-new-tokens", "50"))
    *steps, summary = _lines(capsys.readouterr().out)
    assert code == 130
    assert len(steps) == 2
    assert summary["finish_reason"] == "cancelled"
    assert summary["usage"]["completion_tokens"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.real_model
def test_real_model_greedy_jsonl(real_model: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "generate",
            "What is 2+2?",
            "--backend",
            "transformers",
            "--device",
            "cpu",
            "--format",
            "jsonl",
            "--max-new-tokens",
            "8",
            "--temperature",
            "0",
        ]
    )
    *steps, summary = _lines(capsys.readouterr().out)
    assert code == 0 and len(steps) == summary["usage"]["completion_tokens"] <= 8
    assert all(s["rank"] == 1 for s in steps)  # greedy picks the top raw token
    assert steps[0]["top"][0]["token_id"] == steps[0]["token_id"]
