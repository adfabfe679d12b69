"""A native crash of the workbench leaves the terminal usable and the chat saved.

The workbench runs in a child of the `logitlab` process (tui/terminal_guard.py).
These tests run it on a real pseudo-terminal and kill the child with a real
SIGSEGV: the parent must restore the terminal's modes and escape state, say what
happened in one line, keep the crash log, and the session must hold the reply as
far as the once-a-second checkpoint got.
"""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import sys
import termios
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.sessions import SessionStore
from tests.timeouts import scaled
from tui.fatal_log import unreported_crashes
from tui.terminal_guard import RESTORE

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals only")


class PtyRun:
    """A command on a new pseudo-terminal (120x40), its output collected as it comes."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        import fcntl
        import struct

        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.initial = termios.tcgetattr(self.slave)
        self.output = bytearray()
        self.process = subprocess.Popen(
            argv,
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            env={**env, "TERM": "xterm-256color"},
            start_new_session=True,  # its own controlling terminal: this pty
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the last writer closed the terminal
                return
            if not data:
                return
            self.output += data

    def write(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_for(self, check: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + scaled(seconds)
        while not check():
            if self.process.poll() is not None:
                raise AssertionError(f"exited ({self.process.returncode}) before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {bytes(self.output[-400:])!r}")
            time.sleep(0.1)

    def wait(self, seconds: float) -> int:
        return self.process.wait(timeout=scaled(seconds))

    def drained(self) -> bytes:
        """The output once the exited command's last bytes have been read."""
        before, deadline = -1, time.monotonic() + scaled(5)
        while len(self.output) != before and time.monotonic() < deadline:
            before = len(self.output)
            time.sleep(0.2)
        return bytes(self.output)

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def restored(self) -> bool:
        """Whether the terminal is back in the modes it had (echo, canonical input)."""
        now = termios.tcgetattr(self.slave)
        return bool(now[3] & termios.ECHO) and bool(now[3] & termios.ICANON) and now == self.initial


def child_of(pid: int) -> int | None:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(found[0]) if found else None


CRASHING_BODY = textwrap.dedent(
    """
    import ctypes, sys, tty
    from tui.terminal_guard import supervise

    def body():
        tty.setraw(0)  # what Textual does: raw keys, the alternate screen, mouse reports
        sys.stdout.write("\\x1b[?1049h\\x1b[?1000h\\x1b[?25l")
        sys.stdout.flush()
        if sys.argv[1] == "crash":
            ctypes.string_at(0)  # a real SIGSEGV
        return 3

    sys.exit(supervise(body))
    """
)


@pytest.mark.parametrize("how", ["crash", "normal"])
def test_the_parent_restores_the_terminal_after_a_native_crash(how: str) -> None:
    run = PtyRun([sys.executable, "-c", CRASHING_BODY, how], dict(os.environ))
    try:
        code = run.wait(60)
        output = run.drained()
    finally:
        run.close()
    if how == "crash":
        assert code == 128 + signal.SIGSEGV
        assert RESTORE.encode() in output
        assert b"killed by SIGSEGV (a crash in native code)" in output
        assert b"the terminal is restored" in output
    else:  # a normal end is the body's own: nothing restored on its behalf, no line
        assert code == 3
        assert RESTORE.encode() not in output and b"killed by" not in output


def test_the_parent_restores_termios_modes(tmp_path: Path) -> None:
    run = PtyRun([sys.executable, "-c", CRASHING_BODY, "crash"], dict(os.environ))
    try:
        assert run.wait(60) == 128 + signal.SIGSEGV
        assert run.restored()
    finally:
        run.close()


@pytest.mark.real_model
@pytest.mark.timeout(400)
def test_sigsegv_mid_reply_keeps_the_chat_and_the_terminal(tmp_path: Path) -> None:
    data = Path(os.environ["LOGITLAB_DATA_DIR"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-m", "tui.cli.main", "--backend", "transformers"]
    run = PtyRun(argv, env)
    try:
        run.wait_for(lambda: b"ctx 0/" in run.output, 240, "the model to load")
        run.write("Count from 1 to 200.\r")
        sessions = data / "sessions.db"

        def saved_steps() -> int:
            if not sessions.exists():
                return 0
            store = SessionStore(sessions)
            try:
                listed = store.list()
                if not listed:
                    return 0
                messages = store.get(listed[0].id).messages
            finally:
                store.close()
            if not messages:  # the draft's session, before the message is sent
                return 0
            return len(messages[-1].steps) if messages[-1].role == "assistant" else 0

        run.wait_for(lambda: saved_steps() >= 3, 180, "a checkpoint of the reply")
        workbench = child_of(run.process.pid)
        assert workbench is not None, "the workbench runs in a child process"
        os.kill(workbench, signal.SIGSEGV)
        assert run.wait(60) == 128 + signal.SIGSEGV
        output = run.drained().decode(errors="replace")
        assert run.restored()
    finally:
        run.close()
    assert RESTORE in output
    store = SessionStore(data / "sessions.db")
    try:
        session = store.get(store.list()[0].id)
    finally:
        store.close()
    assert f"logitlab --session {session.id[:12]}" in output
    user, reply = session.messages[-2:]
    assert user.content == "Count from 1 to 200."
    assert reply.role == "assistant" and reply.finish_reason == "cancelled"
    assert len(reply.steps) >= 3
    assert reply.content == "".join(s.text for s in reply.steps)
    logs = list(data.glob("crash-*-pid*.log"))
    assert len(logs) == 1 and str(logs[0]) in output.replace("\r\n", "")
    found = unreported_crashes(data)
    assert [p for p, _ in found] == logs and "Segmentation fault" in found[0][1]
