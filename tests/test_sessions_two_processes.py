"""Two real processes on one sessions.db at once (the workbench open while `logitlab
serve` records requests, two workbenches): both open a fresh file together, then write
sessions and read the list as fast as they can. Nothing is lost, and no "database is
locked" reaches either of them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.sessions import SessionStore
from tests.timeouts import scaled

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parent.parent
SESSIONS, REPLIES = 15, 3

WRITER = f"""
import sys, time
from pathlib import Path
from engine.sessions import SessionStore
from tests.session_factories import MODEL, SETTINGS, reply, user

path, name, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
deadline = time.monotonic() + 120  # a bound on the wait for the start, not a test of speed
while not go.exists():  # both processes open the (new) file at the same moment
    if time.monotonic() > deadline:
        sys.exit("no start signal")
    time.sleep(0.001)
with SessionStore(path) as store:
    for i in range({SESSIONS}):
        session = store.create(MODEL, SETTINGS, title=f"{{name}} {{i}}")
        for j in range({REPLIES}):
            store.append_message(session.id, user(f"{{name}} {{i}} question {{j}}"))
            store.append_message(session.id, reply([name, str(i), str(j)]))
        store.list()  # the session browser reads while the other process writes
print("done", name)
"""


def test_two_processes_write_one_store_and_lose_nothing(tmp_path: Path) -> None:
    path, go = tmp_path / "data" / "sessions.db", tmp_path / "go"
    path.parent.mkdir(parents=True)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(go)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for name in ("serve", "workbench")
    ]
    go.touch()
    results = []
    for writer in writers:
        try:
            out, err = writer.communicate(timeout=scaled(240))
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
        results.append((writer.returncode, out, err))
    for code, out, err in results:
        assert "locked" not in err.lower(), err
        assert code == 0 and out.startswith("done"), err
    with SessionStore(path) as store:
        summaries = store.list()
        titles = sorted(s.title for s in summaries)
        assert titles == sorted(f"{n} {i}" for n in ("serve", "workbench") for i in range(SESSIONS))
        for summary in summaries:
            messages = store.get(summary.id).messages
            assert len(messages) == 2 * REPLIES
            name, i = summary.title.split()
            assert [m.content for m in messages[::2]] == [
                f"{name} {i} question {j}" for j in range(REPLIES)
            ]
