"""The chat as the UI holds it: turns, the steps behind each reply, and branches.

Plain data, no widgets: the screen mutates it and the recorder persists it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from engine.records import Step
from engine.sessions import Alternative as StoredAlternative
from engine.sessions import Session, SessionMessage
from engine.tokens import ChatMessage


@dataclass
class Alternative:
    """A tail cut off by branching: kept, never destroyed."""

    content: str
    finish_reason: str | None
    steps: list[Step]
    cut_at: int
    created_at: float = field(default_factory=time.time)


@dataclass
class Turn:
    role: str  # user | assistant
    content: str = ""
    steps: list[Step] = field(default_factory=list)
    finish_reason: str | None = None
    alternatives: list[Alternative] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)

    @property
    def complete(self) -> bool:
        return self.role == "user" or self.finish_reason is not None


class Conversation:
    def __init__(self) -> None:
        self.turns: list[Turn] = []

    def add_user(self, text: str) -> Turn:
        turn = Turn("user", text)
        self.turns.append(turn)
        return turn

    def begin_reply(self) -> Turn:
        turn = Turn("assistant")
        self.turns.append(turn)
        return turn

    @property
    def last_reply(self) -> Turn | None:
        if self.turns and self.turns[-1].role == "assistant":
            return self.turns[-1]
        return None

    def add_steps(self, steps: Iterable[Step]) -> str:
        """Append steps to the reply in progress; returns the text they add."""
        reply = self.last_reply
        if reply is None:
            return ""
        delta = "".join(s.text for s in steps if not s.special)
        reply.steps.extend(steps)
        reply.content += delta
        return delta

    def finish(self, reason: str) -> Turn | None:
        reply = self.last_reply
        if reply is not None:
            reply.finish_reason = reason
        return reply

    def branch(self, at: int) -> Alternative:
        """Cut the last reply back to its first `at` steps; the tail becomes an alternative."""
        reply = self.last_reply
        if reply is None or not 0 <= at < len(reply.steps):
            raise ValueError(f"no step {at} in the last reply")
        alternative = Alternative(
            content=reply.content,
            finish_reason=reply.finish_reason,
            steps=list(reply.steps),
            cut_at=at,
        )
        reply.alternatives.append(alternative)
        reply.steps = reply.steps[:at]
        reply.content = "".join(s.text for s in reply.steps if not s.special)
        reply.finish_reason = None
        return alternative

    def chat_messages(self, system_prompt: str, *, upto: int | None = None) -> list[ChatMessage]:
        """The messages a new reply is generated from (completed turns before `upto`)."""
        messages = [ChatMessage("system", system_prompt)] if system_prompt.strip() else []
        for turn in self.turns[:upto]:
            if turn.complete:
                if turn.role == "user":
                    messages.append(ChatMessage("user", turn.content))
                else:
                    messages.append(ChatMessage("assistant", turn.content))
        return messages

    def clear(self) -> None:
        self.turns.clear()


# --- to and from stored sessions ------------------------------------------------------


def _stamp(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def message_from_turn(turn: Turn) -> SessionMessage:
    """What the store keeps of a completed turn (a snapshot: the turn may change later)."""
    return SessionMessage(
        role=turn.role,
        content=turn.content,
        created_at=_stamp(turn.created_at),
        finish_reason=turn.finish_reason if turn.role == "assistant" else None,
        steps=tuple(turn.steps),
    )


def _turn_alternative(message: SessionMessage, alt: StoredAlternative) -> Alternative:
    # the store keeps only the unshared tail; the UI keeps the whole replaced reply
    at = alt.branch_index
    return Alternative(
        content=alt.content,
        finish_reason=alt.finish_reason,
        steps=[*message.steps[:at], *alt.steps],
        cut_at=at,
        created_at=alt.created_at.timestamp(),
    )


def turns_from_session(session: Session) -> tuple[list[Turn], str | None]:
    """The turns a stored session shows as, and the text of a system message if it has one."""
    turns: list[Turn] = []
    system: str | None = None
    for message in session.messages:
        if message.role == "system":
            system = message.content if system is None else system
            continue
        turns.append(
            Turn(
                role=message.role,
                content=message.content,
                steps=list(message.steps),
                finish_reason=message.finish_reason if message.role == "assistant" else None,
                alternatives=[_turn_alternative(message, a) for a in message.alternatives],
                created_at=message.created_at.timestamp(),
            )
        )
        if message.role == "assistant" and turns[-1].finish_reason is None:
            turns[-1].finish_reason = "stop"  # an imported reply without one: shown as complete
    return turns, system
