"""Sessions: records, the SQLite store and its schema, export/import, session files,
and the chat a front end holds while it goes on (turns, branches) with its mapping."""

from engine.sessions.export import (
    EXPORT_FORMATS,
    export_json,
    export_markdown,
    export_text,
    export_toml,
    session_to_dict,
)
from engine.sessions.files import FORMAT, MAX_IMPORT_BYTES, VERSION, read_import, write_export
from engine.sessions.importer import import_session_text, session_from_dict
from engine.sessions.records import (
    Alternative,
    ModelRecord,
    Session,
    SessionMessage,
    SessionSettings,
    SessionSummary,
    StoredComparison,
    branched,
    default_title,
    reply_from_steps,
    rfc3339,
    utc_now,
)
from engine.sessions.store import SessionStore, save_generation, save_reply
from engine.sessions.turns import (
    Conversation,
    Turn,
    message_from_turn,
    set_tree,
    tree_of,
    turns_from_session,
)

__all__ = [
    "EXPORT_FORMATS",
    "FORMAT",
    "MAX_IMPORT_BYTES",
    "VERSION",
    "Alternative",
    "Conversation",
    "ModelRecord",
    "Session",
    "SessionMessage",
    "SessionSettings",
    "SessionStore",
    "SessionSummary",
    "StoredComparison",
    "Turn",
    "branched",
    "default_title",
    "export_json",
    "export_markdown",
    "export_text",
    "export_toml",
    "import_session_text",
    "message_from_turn",
    "read_import",
    "reply_from_steps",
    "rfc3339",
    "save_generation",
    "save_reply",
    "session_from_dict",
    "session_to_dict",
    "set_tree",
    "tree_of",
    "turns_from_session",
    "utc_now",
    "write_export",
]
