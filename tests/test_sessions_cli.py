"""`logitlab sessions ...` as a user and a script run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from session_factories import MODEL, SETTINGS, reply, user

from engine.sessions import export_json, export_toml
from engine.sessions.store import SessionStore, save_generation
from tui.cli.main import main


@pytest.fixture
def sid() -> str:
    with SessionStore.open_default() as store:
        saved = save_generation(
            store, MODEL, SETTINGS, [user("What is the capital of France?"), reply(["Paris"])]
        )
        return saved.id


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_table_and_json(capsys: pytest.CaptureFixture[str], sid: str) -> None:
    code, out, _ = cli(capsys, "sessions", "list")
    assert code == 0
    assert sid[:12] in out and "What is the capital of France?" in out and MODEL.id in out
    code, out, _ = cli(capsys, "sessions", "list", "--format", "json")
    (row,) = json.loads(out)
    assert row["id"] == sid and row["messages"] == 2 and row["model"] == MODEL.id
    code, out, _ = cli(capsys, "sessions", "list", "--format", "json", "--search", "nothing")
    assert json.loads(out) == []


def test_show_prints_a_transcript(capsys: pytest.CaptureFixture[str], sid: str) -> None:
    code, out, _ = cli(capsys, "sessions", "show", sid[:8], "--low-prob", "1")
    assert code == 0
    assert out.startswith("# What is the capital of France?")
    assert "## Assistant" in out and "Paris" in out and "Lowest-probability" in out


def test_export_to_stdout_and_file_and_import_back(
    capsys: pytest.CaptureFixture[str], sid: str, tmp_path: Path
) -> None:
    with SessionStore.open_default() as store:
        session = store.get(sid)
    code, out, _ = cli(capsys, "sessions", "export", sid)
    assert code == 0 and out == export_json(session)
    code, out, _ = cli(capsys, "sessions", "export", sid, "--format", "toml")
    assert out == export_toml(session) and tomllib.loads(out)["id"] == sid
    target = tmp_path / "s.txt"  # the extension does not matter on import
    code, out, err = cli(capsys, "sessions", "export", sid, "--format", "toml", "-o", str(target))
    assert code == 0 and out == "" and str(target) in err
    assert target.read_text(encoding="utf-8") == export_toml(session)
    code, out, _ = cli(capsys, "sessions", "import", str(target))
    new_id = out.strip()
    assert code == 0 and new_id != sid
    with SessionStore.open_default() as store:
        copy = store.get(new_id)
    assert json.loads(export_json(copy)) | {"id": sid} == json.loads(export_json(session))
    code, out, _ = cli(capsys, "sessions", "export", sid, "--format", "markdown")
    assert out.startswith("# What is the capital")


def test_rename_and_delete_with_yes(capsys: pytest.CaptureFixture[str], sid: str) -> None:
    assert cli(capsys, "sessions", "rename", sid, "Capitals")[0] == 0
    with SessionStore.open_default() as store:
        assert store.get(sid).title == "Capitals"
    assert cli(capsys, "sessions", "delete", sid, "--yes")[0] == 0
    with SessionStore.open_default() as store:
        assert store.list() == []


def test_delete_without_a_terminal_needs_yes(
    capsys: pytest.CaptureFixture[str], sid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    code, _, err = cli(capsys, "sessions", "delete", sid)
    assert code == 1 and "pass --yes" in err and len(err.strip().splitlines()) == 1
    with SessionStore.open_default() as store:
        assert len(store.list()) == 1


@pytest.mark.parametrize(("answer", "deleted"), [("y\n", True), ("\n", False), ("no\n", False)])
def test_delete_on_a_terminal_asks(
    capsys: pytest.CaptureFixture[str],
    sid: str,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    deleted: bool,
) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt: answer)
    code, _, _ = cli(capsys, "sessions", "delete", sid)
    assert code == (0 if deleted else 1)
    with SessionStore.open_default() as store:
        assert len(store.list()) == (0 if deleted else 1)


def test_errors_are_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], sid: str, tmp_path: Path
) -> None:
    code, _, err = cli(capsys, "sessions", "show", "nope")
    assert (
        code == 1 and err == "logitlab: error: no session 'nope' (see `logitlab sessions list`)\n"
    )
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "logitlab.session", "version": 7}')
    code, out, err = cli(capsys, "sessions", "import", str(bad))
    assert code == 1 and out == ""
    assert (
        err == "logitlab: error: version: unsupported version 7 (this logitlab reads version 1)\n"
    )
    code, _, err = cli(capsys, "sessions", "import", str(tmp_path / "missing.json"))
    assert code == 1 and "cannot read" in err and "No such file" in err
    code, _, err = cli(capsys, "sessions", "export", sid, "-o", str(tmp_path / "no" / "dir.json"))
    assert code == 1 and "cannot write" in err
    with SessionStore.open_default() as store:
        assert [s.id for s in store.list()] == [sid]


def test_a_corrupt_database_is_reported(
    capsys: pytest.CaptureFixture[str], isolated_user_dirs: Path
) -> None:
    db = isolated_user_dirs / "data" / "sessions.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"garbage" * 1000)
    code, out, err = cli(capsys, "sessions", "list")
    assert code == 0 and out == "no sessions yet\n"
    assert "moved to" in err and ".corrupt-" in err
    assert len(list(db.parent.glob("sessions.db.corrupt-*"))) == 1


def test_real_command_line_import_from_stdin(sid: str) -> None:
    with SessionStore.open_default() as store:
        data = export_json(store.get(sid))
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli.main", "sessions", "import", "-"],
        input=data,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) == 32
