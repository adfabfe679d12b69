"""`logitlab generate --save`: the run becomes a session with the reply's steps."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.sessions.store import SessionStore
from tui.cli.main import main


def _args(tiny_model_dir: Path, *extra: str) -> list[str]:
    return ["generate", "Hi there", "--model", str(tiny_model_dir), "--device", "cpu", *extra]


def test_save_stores_the_run_and_prints_its_id(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        _args(
            tiny_model_dir,
            "--max-new-tokens",
            "4",
            "--seed",
            "7",
            "--temperature",
            "0.8",
            "--system",
            "Be brief.",
            "--save",
            "--title",
            "A test run",
        )
    )
    assert code == 0
    err = capsys.readouterr().err
    found = re.search(r"saved session ([0-9a-f]+)", err)
    assert found, err
    with SessionStore.open_default() as store:
        session = store.get(found.group(1))
    assert session.title == "A test run"
    assert session.settings.system_prompt == "Be brief."
    assert session.settings.sampling.seed == 7 and session.settings.sampling.temperature == 0.8
    user, reply = session.messages
    assert (user.role, user.content) == ("user", "Hi there")
    assert reply.role == "assistant" and reply.finish_reason == "length"
    assert len(reply.steps) == 4
    assert reply.content == "".join(step.text for step in reply.steps)
    assert session.model.source == "local" and session.model.device == "cpu"
    # text mode shows no candidates, but a saved run opens in the workbench's inspector
    assert all(len(step.top) == 10 for step in reply.steps)
    assert session.settings.sampling.top_logprobs == 10


def test_title_defaults_to_the_prompt(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(tiny_model_dir, "--max-new-tokens", "2", "--save")) == 0
    with SessionStore.open_default() as store:
        (summary,) = store.list()
    assert summary.title.startswith("Hi there")


def test_title_without_save_is_a_usage_error(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(tiny_model_dir, "--title", "x")) == 2
    assert "--title" in capsys.readouterr().err
