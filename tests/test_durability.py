"""A process killed mid-generation loses at most the reply in progress.

The child appends messages with full step data in a tight loop and reports each
one only after `append_message` returned (committed). The parent SIGKILLs it at
an arbitrary moment, then opens the store: every reported message must be
there, intact, and the database must pass SQLite's integrity check.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.sessions.store import SessionStore

TESTS = Path(__file__).parent
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from session_factories import MODEL, SETTINGS, make_step, reply, user
    from engine.sessions.store import SessionStore

    store = SessionStore(Path(sys.argv[1]))
    session = store.create(MODEL, SETTINGS)
    print("session", session.id, flush=True)
    i = 0
    while True:
        store.append_message(session.id, user(f"question {i}"))
        print("committed", i, "user", flush=True)
        words = [f" w{i}.{k}" for k in range(40)]
        store.append_message(session.id, reply(words, "stop"))
        print("committed", i, "assistant", flush=True)
        i += 1
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
@pytest.mark.parametrize("kill_after", [7, 30])
def test_sigkill_loses_no_committed_message(tmp_path: Path, kill_after: int) -> None:
    db = tmp_path / "sessions.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    reported: list[tuple[int, str]] = []
    try:
        header = child.stdout.readline().split()
        assert header[:1] == ["session"], header
        session_id = header[1]
        while len(reported) < kill_after:
            line = child.stdout.readline()
            assert line, "the child died before it was killed"
            _, i, role = line.split()
            reported.append((int(i), role))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with SessionStore(db) as store:
        assert store.recovered_from is None
        messages = store.get(session_id).messages
    assert len(messages) >= len(reported)
    for position, (i, role) in enumerate(reported):
        message = messages[position]
        assert message.role == role
        if role == "user":
            assert message.content == f"question {i}"
        else:
            assert message.content == "".join(f" w{i}.{k}" for k in range(40))
            assert len(message.steps) == 40 and message.steps[-1].finish_reason == "stop"
            assert all(len(step.top) == 2 for step in message.steps)
