"""The app's side of unexpected errors: a dialog when it can go on, a loud exit when not.

`report_error` is where `tui.crash.CrashGuard` sends what it caught: the app is
intact (the pump that raised keeps its loop), so the traceback goes to a crash
log, an `ErrorScreen` says so, and the user carries on. Errors that come in a
burst mean something is failing over and over: that ends the app.

`_handle_exception` is Textual's own last resort, reached by what no guard saw:
a render that raised, a pump of Textual's own widgets, a compose. A failed
Textual worker (the command palette's search, say) has ended and harmed nothing,
so it is reported like the others; anything else means a part of the app has
stopped listening, so the app ends: the draft is handed to the recorder
(`salvage`), the crash log is written, the return code is 1 and nothing is
printed over the terminal; the CLI prints one line (`tui.crash.crash_line`).
"""

from __future__ import annotations

import time
from collections import deque

from textual import events
from textual.app import App
from textual.message import Message
from textual.widget import Widget
from textual.worker import WorkerFailed

from tui.crash import (
    CrashGuard,
    ErrorReport,
    InjectedFault,
    fault_from_env,
    summarize,
    write_crash_log,
)

BURST = 5  # this many errors within BURST_SECONDS: the app is stuck failing, end it
BURST_SECONDS = 10.0


class FaultInjected(Message):
    """Test-only: its handler raises (`ResilientApp.inject_fault`)."""


class _FailingRender(Widget):
    """Test-only: a widget whose render raises, the path no guard can catch."""

    DEFAULT_CSS = "_FailingRender { height: 1; dock: bottom; }"

    def render(self) -> str:
        raise InjectedFault("injected fatal fault (a render)")


class ResilientApp(CrashGuard, App[None]):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.error_reports: list[ErrorReport] = []  # every error this run, fatal or not
        self.crash: ErrorReport | None = None  # the error that ended the app
        self._recent: deque[float] = deque(maxlen=BURST)

    # --- for subclasses -----------------------------------------------------------------

    def salvage(self) -> None:
        """Hand over what the user would lose (the draft) before the app ends."""

    # --- errors the app survives ---------------------------------------------------------

    def report_error(self, error: Exception, where: str) -> None:
        if self.crash is not None:
            return  # already on the way out
        now = time.monotonic()
        self._recent.append(now)
        if len(self._recent) == BURST and now - self._recent[0] < BURST_SECONDS:
            self._crash(error, f"{where}, after {BURST} errors in {BURST_SECONDS:.0f} s")
            return
        report = ErrorReport(
            summarize(error), where, write_crash_log(error, where=where, fatal=False), False, error
        )
        self._record(report)
        if not self.is_running or self._exit:
            return  # quitting: the log has it, nobody is looking at dialogs
        from tui.screens.error import ErrorScreen

        self.bell()
        top = self.screen_stack[-1] if self.screen_stack else None
        if isinstance(top, ErrorScreen):
            top.add(report)
        else:
            self.push_screen(ErrorScreen(report))

    def _record(self, report: ErrorReport) -> None:
        self.error_reports.append(report)

    # --- errors it does not ---------------------------------------------------------------

    def _handle_exception(self, error: Exception) -> None:
        """Textual's last resort (private API: see the module doc)."""
        if isinstance(error, WorkerFailed) and self.crash is None and not self._exit:
            self.report_error(error.error, "a background task of Textual's")  # type: ignore[arg-type]
            return
        self._crash(error, "the event loop (a part of the app stopped responding)")

    def _crash(self, error: Exception, where: str) -> None:
        if self.crash is not None:
            return
        path = write_crash_log(error, where=where, fatal=True)
        self.crash = ErrorReport(summarize(error), where, path, True, error)
        self._record(self.crash)
        try:
            self.salvage()
        except Exception as salvage_error:  # the crash itself is what matters
            write_crash_log(salvage_error, where="saving the draft after a crash", fatal=True)
        # as Textual's own handler does, minus the traceback printed over the terminal
        self._return_code = 1
        if self._exception is None:
            self._exception = error  # run_test re-raises it: tests see the crash
            self._exception_event.set()
        self._close_messages_no_wait()

    # --- the test-only hook ----------------------------------------------------------------

    def _on_mount(self, event: events.Mount) -> None:
        fault = fault_from_env()
        if fault is not None:
            kind, delay = fault
            self.set_timer(delay, lambda: self.inject_fault(kind))

    def inject_fault(self, kind: str) -> None:
        """Raise on purpose (tests, bench/soak_tmux.py): ``handler``, ``worker`` or ``fatal``."""
        if kind == "handler":
            self.post_message(FaultInjected())
        elif kind == "worker":
            self.run_worker(_raise_injected, thread=True, exit_on_error=False, name="fault")
        elif kind == "fatal":
            self.screen.mount(_FailingRender())

    def on_fault_injected(self, event: FaultInjected) -> None:
        raise InjectedFault("injected fault (a message handler)")


def _raise_injected() -> None:
    raise InjectedFault("injected fault (a worker)")
