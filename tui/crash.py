"""Unexpected exceptions: written to a crash log, reported, never mistaken for success.

Textual's answer to any exception in a handler is to print a traceback over the
terminal and end the app with status 0 from our CLI (issue 17). Here every
message pump of ours is a `CrashGuard`: an exception in one of its handlers,
callbacks or workers is caught where it happens, before Textual's loop for that
pump gives up, and handed to the app's `report_error` (an error dialog; the app
goes on). What still reaches Textual's own handler (a render that fails, a pump
of Textual's own widgets) ends the app: see `tui.resilience.ResilientApp`.

Either way the full traceback goes to ``<data dir>/crash-YYYYmmdd-HHMMSS.log``.

`LOGITLAB_INJECT_FAULT` is a test-only hook (tests and bench/soak_tmux.py): see
`fault_from_env`.
"""

from __future__ import annotations

import os
import platform
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from inspect import isawaitable
from pathlib import Path
from typing import Any, Protocol

from textual.message import Message
from textual.message_pump import MessagePump
from textual.worker import Worker, WorkerState

from engine.paths import data_dir

FAULT_ENV = "LOGITLAB_INJECT_FAULT"
FAULT_KINDS = ("handler", "worker", "fatal")


class InjectedFault(RuntimeError):
    """Raised on purpose through the test-only hook; real code never raises it."""


@dataclass(frozen=True)
class ErrorReport:
    """One unexpected exception: what, where, and where its traceback was written."""

    summary: str  # "KeyError: 'x'"
    where: str  # "MainScreen handling Key"
    log_path: Path | None  # None: no crash log could be written anywhere
    fatal: bool
    error: BaseException = field(compare=False, repr=False)


class ErrorSink(Protocol):
    def report_error(self, error: Exception, where: str) -> None: ...


def summarize(error: BaseException) -> str:
    """The exception in one line: its type and the first line of its message."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def write_crash_log(
    error: BaseException, *, where: str, fatal: bool, directory: Path | None = None
) -> Path | None:
    """The full traceback in ``<directory>/crash-YYYYmmdd-HHMMSS.log`` (the data dir by
    default; the temp dir if that cannot be written). Never raises: None if no file
    could be written at all."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "?"

    now = datetime.now()
    header = [
        f"logitlab {'crash' if fatal else 'error'} at {now.isoformat(timespec='seconds')}",
        f"where: {where}",
        f"what: {summarize(error)}",
        f"logitlab {installed('logitlab')} · textual {installed('textual')} · "
        f"python {platform.python_version()} · {platform.platform()}",
        "",
    ]
    text = "\n".join(header) + "".join(traceback.format_exception(error))
    stamp = now.strftime("%Y%m%d-%H%M%S")
    for folder in (directory or data_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(100):
                path = folder / f"crash-{stamp}{f'-{n}' if n else ''}.log"
                try:
                    with path.open("x", encoding="utf-8") as f:
                        f.write(text)
                    return path
                except FileExistsError:
                    continue
        except OSError:
            continue
    return None


def logged(error: BaseException, where: str) -> str:
    """One line for an unexpected exception a worker turns into a message (a failed
    reply, load or save): its summary and where its traceback was written."""
    path = write_crash_log(error, where=where, fatal=False)
    return f"{summarize(error)} (traceback in {path})" if path else summarize(error)


def crash_line(report: ErrorReport, session_id: str | None = None) -> str:
    """The one line the CLI prints after a fatal error (no traceback on the terminal)."""
    where = f"full traceback in {report.log_path}" if report.log_path else "no crash log written"
    line = f"logitlab: crashed: {report.summary} ({where})"
    if session_id:
        line += f"; the session and your draft are saved: logitlab --session {session_id[:8]}"
    return line


def fault_from_env() -> tuple[str, float] | None:
    """`LOGITLAB_INJECT_FAULT=KIND[@SECONDS]` (test-only): raise on purpose after the
    delay, in a handler (``handler``), a worker (``worker``) or a render (``fatal``)."""
    value = os.environ.get(FAULT_ENV, "").strip()
    if not value:
        return None
    kind, _, delay = value.partition("@")
    if kind not in FAULT_KINDS:
        return None  # not a kind of fault: nothing is injected
    try:
        return kind, float(delay or 1.0)
    except ValueError:
        return kind, 1.0


def _sink(pump: MessagePump) -> ErrorSink | None:
    try:
        app = pump.app
    except Exception:  # no active app (shutting down): nobody to tell
        return None
    return app if hasattr(app, "report_error") else None


def _name(callback: Callable[..., Any]) -> str:
    inner = getattr(callback, "func", callback)
    return getattr(inner, "__qualname__", None) or type(inner).__name__


class CrashGuard(MessagePump):
    """Mixin for our message pumps (the app, screens, widgets): an exception in a
    handler, a scheduled callback or a worker goes to the app's `report_error`.

    Textual ends a pump's message loop at the first exception a handler raises,
    which leaves that screen or widget deaf; catching it here, inside the
    dispatch, keeps the loop going. Put it first among the bases.
    """

    async def _dispatch_message(self, message: Message) -> None:
        try:
            await super()._dispatch_message(message)
        except Exception as error:
            self._unexpected(error, f"{type(self).__name__} handling {type(message).__name__}")

    def call_next(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        # timers (set_timer) and screen results (push_screen callbacks) run through here
        super().call_next(self._guarded(partial(callback, *args, **kwargs), callback))

    def call_later(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        return super().call_later(self._guarded(partial(callback, *args, **kwargs), callback))

    def call_after_refresh(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        # runs in whichever screen is current then, which may not be one of ours
        guarded = self._guarded(partial(callback, *args, **kwargs), callback)
        return super().call_after_refresh(guarded)

    def _on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # a worker that may not end the app (exit_on_error=False) fails silently otherwise
        worker = event.worker
        if event.state is WorkerState.ERROR and not worker.exit_on_error:
            error = worker.error
            if isinstance(error, Exception):
                self._unexpected(error, f"{type(self).__name__} worker {worker.name or '?'}")

    def _guarded(self, bound: Callable[[], Any], original: Callable[..., Any]) -> Callable[[], Any]:
        async def guarded() -> None:
            try:
                result = bound()
                if isawaitable(result):
                    await result
            except Exception as error:
                self._unexpected(error, f"{type(self).__name__} callback {_name(original)}")

        return guarded

    def _unexpected(self, error: Exception, where: str) -> None:
        sink = _sink(self)
        if sink is None:
            raise error
        sink.report_error(error, where)
