"""Run a reply to its end: the loop the CLI and the server share.

`run_reply` prefills, steps until a stop and hands each `Step` to `on_step` as
it comes; the caller cancels through the reply (or the event it was started
with), and a cancelled run still returns its summary (finish reason
``cancelled``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.decode.protocol import Reply, steps
from engine.records import GenerationSummary, Step


@dataclass(frozen=True)
class ReplyResult:
    """A finished reply: its steps and summary (what printing and saving need)."""

    steps: tuple[Step, ...]
    summary: GenerationSummary


def run_reply(reply: Reply, on_step: Callable[[Step], None] | None = None) -> ReplyResult:
    """Prefill, iterate to a stop, and report each step to `on_step` as it comes."""
    reply.prefill()
    taken: list[Step] = []
    for step in steps(reply):
        taken.append(step)
        if on_step is not None:
            on_step(step)
    return ReplyResult(steps=tuple(taken), summary=reply.summary())
