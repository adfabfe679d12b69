"""Native crashes leave a crash log too, and the next workbench start says so.

A segmentation fault in C code (llama.cpp, a torch kernel) kills the process
before any Python handler runs: `tui.crash` never sees it. `faulthandler` does:
armed for every `logitlab` command, it writes the Python stack of every thread
into ``<data dir>/crash-YYYYmmdd-HHMMSS-pidN.log`` (beside the crash logs of
Python errors) and lets the signal end the process, so the shell sees a non-zero
status (139 for SIGSEGV). The file is made when the command starts and removed
when it ends normally, so only a crash leaves one. `unreported_crashes` finds
those logs on the next start; each is reported once.
"""

from __future__ import annotations

import faulthandler
import os
import platform
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from engine.paths import data_dir

FATAL_MARK = "Fatal Python error"  # the line faulthandler starts its report with
REPORTED_FILE = "crash-reported.txt"  # names of crash logs already reported, one a line


@dataclass
class FatalLog:
    """The armed crash log of this process."""

    path: Path
    handle: TextIO

    def disarm(self) -> None:
        """The command ended: stop the handler and remove the log, unless a crash was
        written into it (by a child that inherited it: `tui.terminal_guard`)."""
        faulthandler.disable()
        try:
            self.handle.close()
            if _what(self.path.read_text(encoding="utf-8", errors="replace")) is None:
                self.path.unlink(missing_ok=True)
        except OSError:
            pass


def arm(argv: list[str]) -> FatalLog | None:
    """Arm faulthandler into a fresh crash log for this process; None when the data
    directory cannot be written (the command still runs, unguarded)."""
    now = datetime.now()
    folder = data_dir()
    path = folder / f"crash-{now.strftime('%Y%m%d-%H%M%S')}-pid{os.getpid()}.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = path.open("w", encoding="utf-8")
        handle.write(
            f"logitlab native crash log, process {os.getpid()} started at "
            f"{now.isoformat(timespec='seconds')}\n"
            f"command: logitlab {' '.join(argv)}\n"
            f"python {platform.python_version()} · {platform.platform()}\n\n"
        )
        handle.flush()
    except OSError:
        return None
    faulthandler.enable(file=handle, all_threads=True)
    return FatalLog(path, handle)


def unreported_crashes(folder: Path | None = None) -> list[tuple[Path, str]]:
    """(log, what killed it) for each native crash log not reported yet, oldest first;
    marks them reported. Logs of processes still running (another logitlab) are left
    alone; a leftover without a report (a process killed with SIGKILL) is removed."""
    folder = folder or data_dir()
    reported_path = folder / REPORTED_FILE
    try:
        reported = set(reported_path.read_text(encoding="utf-8").split("\n"))
    except OSError:
        reported = set()
    found: list[tuple[Path, str]] = []
    for path in sorted(folder.glob("crash-*-pid*.log")):
        pid = _pid_of(path)
        if path.name in reported or pid is None or pid == os.getpid() or _alive(pid):
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        what = _what(text)
        if what is None:
            path.unlink(missing_ok=True)  # killed, not crashed: nothing to report
            continue
        found.append((path, what))
    if found:
        try:
            with reported_path.open("a", encoding="utf-8") as handle:
                handle.writelines(f"{path.name}\n" for path, _ in found)
        except OSError:
            pass
    return found


def crash_notice(path: Path, what: str) -> str:
    """The one line the next start shows about a crashed run."""
    return f"The last run crashed ({what}); its log: {path}"


def _what(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(FATAL_MARK):
            return line.partition(":")[2].strip() or "a fatal error"
    return None


def _pid_of(path: Path) -> int | None:
    stem = path.stem
    _, _, pid = stem.rpartition("-pid")
    return int(pid) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    if sys.platform == "win32":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
