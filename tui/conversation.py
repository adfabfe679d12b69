"""The chat as the workbench holds it: the session-domain model lives in the engine
(`engine.sessions.turns`: turns, branches, the mapping to and from stored sessions);
these are its names for the UI's modules."""

from engine.sessions import (
    Conversation,
    Turn,
    message_from_turn,
    set_tree,
    tree_of,
    turns_from_session,
)

__all__ = [
    "Conversation",
    "Turn",
    "message_from_turn",
    "set_tree",
    "tree_of",
    "turns_from_session",
]
