"""The workbench runs in a child process, so a native crash cannot leave the terminal broken.

A segmentation fault in C code (llama.cpp, a torch kernel) ends the process at
once: Textual never leaves the alternate screen, never turns mouse reporting off,
never restores the terminal's cooked mode, and the shell the user returns to
echoes nothing and prints mouse escapes. `supervise` forks before any model
loads: the child runs the workbench; the parent only waits. When the child dies
of a signal, the parent puts the terminal back as it found it (its saved termios
modes, and the escape sequences that undo what Textual's driver turned on) and
prints one line: what killed it, where its crash log is (`tui.fatal_log`: the
child inherited the armed handler) and that the chat is saved up to its last
second (the workbench's checkpoint). Its exit status is the shell's for a signal,
128 + N.

Only where it can work: POSIX `fork`, a terminal on stdin and stdout, and not
turned off with ``LOGITLAB_NO_SUPERVISOR=1``; otherwise the body runs in this
process as before. Fork happens before torch is imported or any thread starts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# what Textual's Linux driver turns on, undone (textual/drivers/linux_driver.py)
RESTORE = (
    "\x1b[<u"  # pop the kitty keyboard protocol flags
    "\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?1016l"  # mouse reporting off
    "\x1b[?2004l"  # bracketed paste off
    "\x1b[?2048l"  # in-band resize reports off
    "\x1b[?1004l"  # focus reports off
    "\x1b[?7h"  # line wrap back on
    "\x1b[?1049l"  # leave the alternate screen
    "\x1b[?25h"  # show the cursor
)
OFF_ENV = "LOGITLAB_NO_SUPERVISOR"


def can_supervise() -> bool:
    """Whether `supervise` will fork (a POSIX terminal on stdin and stdout, not turned off)."""
    if os.environ.get(OFF_ENV, "") not in ("", "0") or not hasattr(os, "fork"):
        return False
    try:
        return os.isatty(sys.stdin.fileno()) and os.isatty(sys.stdout.fileno())
    except (OSError, ValueError):
        return False


def supervise(body: Callable[[], int], crash_log: Path | None = None) -> int:
    """Run `body` in a child process where it can (see the module doc); its exit status."""
    if not can_supervise():
        return body()
    import termios

    fd = sys.stdin.fileno()
    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        return body()
    sys.stdout.flush()
    sys.stderr.flush()
    started = datetime.now(UTC)
    pid = os.fork()
    if pid == 0:  # the child: the workbench
        code = 1
        try:
            code = body()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)  # the parent's cleanup (its crash log, its stack) is not ours
    return _wait(pid, fd, saved, crash_log, started)


def _wait(pid: int, fd: int, saved: list[Any], crash_log: Path | None, started: datetime) -> int:
    """The parent: wait for the child, passing on a request to stop; after a signal,
    restore the terminal and say what happened."""
    import termios

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    # Ctrl+C before the TUI takes the keyboard reaches both: the child handles it
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
        signal.SIGHUP: signal.signal(signal.SIGHUP, forward),
    }
    try:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                return 1
            except InterruptedError:
                continue
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    killed_by = os.WTERMSIG(status)
    with contextlib.suppress(termios.error):
        termios.tcsetattr(fd, termios.TCSANOW, saved)
    sys.stdout.write(RESTORE)
    sys.stdout.flush()
    print(crash_line(killed_by, crash_log, _session_since(started)), file=sys.stderr)
    return 128 + killed_by


def crash_line(signum: int, crash_log: Path | None, session: str | None) -> str:
    """The one line after the workbench died of signal `signum`."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    where = f"; its log: {crash_log}" if crash_log is not None else ""
    reopen = (
        f"the chat is saved up to its last second: logitlab --session {session[:12]}"
        if session is not None
        else "nothing of a chat was saved"
    )
    return (
        f"logitlab: the workbench was killed by {name} (a crash in native code){where}; "
        f"the terminal is restored; {reopen}"
    )


def _session_since(started: datetime) -> str | None:
    """The id of the session the crashed workbench last wrote to, if it wrote one."""
    try:
        from engine.sessions import SessionStore

        store = SessionStore.open_default()
        try:
            recent = store.list()
        finally:
            store.close()
    except Exception:  # the store's own trouble is the next start's to report
        return None
    return recent[0].id if recent and recent[0].updated_at >= started else None
