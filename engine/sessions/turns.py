"""A chat as a front end holds it while it goes on: turns, the steps behind each reply,
and the reply's branches; and the mapping to and from stored sessions.

Plain data, no UI: the workbench mutates it, its recorder persists it through
`message_from_turn`, and a reopened session comes back through `turns_from_session`.
The store keeps a branch as the part it does not share with the current path; a
turn keeps whole paths (a `ReplyTree` via `tree_of` / `set_tree`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.decode import Branch, ReplyTree, shared_prefix
from engine.records import Step
from engine.sessions.records import Alternative as StoredAlternative
from engine.sessions.records import Session, SessionMessage
from engine.tokens import ChatMessage


@dataclass
class Turn:
    role: str  # user | assistant
    content: str = ""
    steps: list[Step] = field(default_factory=list)
    finish_reason: str | None = None
    # the reply's other branches (whole token paths); `slot` is where the current
    # one sits among them in the reply tree's order
    alternatives: list[Branch] = field(default_factory=list)
    slot: int = 0
    seed: int | None = None  # the seed of the current branch, if it was fanned out
    created_at: float = field(default_factory=time.time)
    # comparisons of this reply against other runs (`Comparison.to_json(extended=True)`)
    comparisons: list[Mapping[str, Any]] = field(default_factory=list)

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

    def branch(self, at: int) -> int:
        """Start a new branch of the last reply at step `at` (its first `at` steps,
        then whatever is decoded next) and show it; returns its index in the tree."""
        reply = self.last_reply
        if reply is None or not 0 <= at < len(reply.steps):
            raise ValueError(f"no step {at} in the last reply")
        tree = tree_of(reply)
        tree, index = tree.branch_at(tree.current, at)
        set_tree(reply, tree.switch(index))
        return index

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


def tree_of(turn: Turn) -> ReplyTree:
    """The reply tree of `turn`: its branches, the current one at `turn.slot`."""
    current = Branch(tuple(turn.steps), turn.finish_reason, _stamp(turn.created_at), _seed_of(turn))
    branches = list(turn.alternatives)
    slot = min(turn.slot, len(branches))
    branches.insert(slot, current)
    return ReplyTree(tuple(branches), slot)


def set_tree(turn: Turn, tree: ReplyTree) -> None:
    """Make `turn` show `tree`'s current branch, keeping the others."""
    current = tree.branch
    turn.steps = list(current.steps)
    turn.content = current.text
    turn.finish_reason = current.finish_reason
    turn.alternatives = [b for i, b in enumerate(tree.branches) if i != tree.current]
    turn.slot = tree.current
    turn.seed = current.seed
    if current.created_at is not None:
        turn.created_at = current.created_at.timestamp()


def _seed_of(turn: Turn) -> int | None:
    return turn.seed


def message_from_turn(turn: Turn) -> SessionMessage:
    """What the store keeps of a completed turn (a snapshot: the turn may change later):
    the current path, and every other branch as the part it does not share with it."""
    ids = [s.token_id for s in turn.steps]
    alternatives = []
    for b in turn.alternatives:
        at = shared_prefix(ids, b.ids)
        created = b.created_at or _stamp(turn.created_at)
        alternatives.append(
            StoredAlternative(b.text, b.finish_reason, b.steps[at:], created, at, b.seed)
        )
    return SessionMessage(
        role=turn.role,
        content=turn.content,
        created_at=_stamp(turn.created_at),
        finish_reason=turn.finish_reason if turn.role == "assistant" else None,
        steps=tuple(turn.steps),
        alternatives=tuple(alternatives),
    )


def _branch_of(message: SessionMessage, alt: StoredAlternative) -> Branch:
    # the store keeps only the unshared part; the UI keeps whole paths
    at = alt.branch_index
    return Branch((*message.steps[:at], *alt.steps), alt.finish_reason, alt.created_at, alt.seed)


def turns_from_session(session: Session) -> tuple[list[Turn], str | None]:
    """The turns a stored session shows as, and the text of a system message if it has one."""
    turns: list[Turn] = []
    system: str | None = None
    compared: dict[int, list[Mapping[str, Any]]] = {}
    for stored in session.comparisons:
        compared.setdefault(stored.message_index, []).append(stored.data)
    for index, message in enumerate(session.messages):
        if message.role == "system":
            system = message.content if system is None else system
            continue
        turns.append(
            Turn(
                role=message.role,
                content=message.content,
                steps=list(message.steps),
                finish_reason=message.finish_reason if message.role == "assistant" else None,
                alternatives=[_branch_of(message, a) for a in message.alternatives],
                created_at=message.created_at.timestamp(),
                comparisons=compared.get(index, []),
            )
        )
        if message.role == "assistant" and turns[-1].finish_reason is None:
            turns[-1].finish_reason = "stop"  # an imported reply without one: shown as complete
    return turns, system
