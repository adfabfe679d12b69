"""The session database's schema, one list of statements per version.

`MIGRATIONS[n]` takes a database at version ``n - 1`` to version ``n``; the
store runs the missing ones in order at open, each in its own transaction, and
sets ``PRAGMA user_version``. Never edit a released migration: add the next.

Settings are stored as a small JSON object (the export's ``settings`` keys plus
``stop``/``top_logprobs``) so a new sampling field needs no table migration.
"""

from __future__ import annotations

import json

from engine.errors import InvalidParameterError, StoreError
from engine.sessions.records import SessionSettings, settings_from_dict, settings_to_dict

SCHEMA_VERSION = 5

MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            model_id TEXT NOT NULL,
            model_source TEXT NOT NULL,
            model_device TEXT NOT NULL,
            model_dtype TEXT NOT NULL,
            model_quantize TEXT NOT NULL,
            settings TEXT NOT NULL
        )""",
        "CREATE INDEX sessions_updated ON sessions (updated_at)",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            created_at TEXT NOT NULL,
            finish_reason TEXT,
            UNIQUE (session_id, position)
        )""",
        """CREATE TABLE alternatives (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            content TEXT NOT NULL,
            finish_reason TEXT,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX alternatives_message ON alternatives (message_id, position)",
        # a step belongs to a message or to one of its alternatives;
        # NULL logprobs mean -inf (a token a sampling filter removed)
        """CREATE TABLE steps (
            id INTEGER PRIMARY KEY,
            message_id INTEGER REFERENCES messages (id) ON DELETE CASCADE,
            alternative_id INTEGER REFERENCES alternatives (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            step_index INTEGER NOT NULL,
            token_id INTEGER NOT NULL,
            piece TEXT NOT NULL,
            text TEXT NOT NULL,
            token_bytes BLOB NOT NULL,
            forced INTEGER NOT NULL,
            special INTEGER NOT NULL,
            logprob REAL,
            rank INTEGER NOT NULL,
            entropy REAL NOT NULL,
            processed_logprob REAL,
            processed_rank INTEGER NOT NULL,
            processed_entropy REAL NOT NULL,
            elapsed_ms REAL NOT NULL,
            finish_reason TEXT,
            CHECK ((message_id IS NULL) != (alternative_id IS NULL))
        )""",
        "CREATE INDEX steps_message ON steps (message_id, position)",
        "CREATE INDEX steps_alternative ON steps (alternative_id, position)",
        """CREATE TABLE candidates (
            step_id INTEGER NOT NULL REFERENCES steps (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            token_id INTEGER NOT NULL,
            piece TEXT NOT NULL,
            text TEXT NOT NULL,
            logprob REAL,
            processed_logprob REAL,
            PRIMARY KEY (step_id, position)
        ) WITHOUT ROWID""",
    ],
    # reply trees: an alternative is a branch of the reply that leaves the current
    # path at `parent_step` (NULL in older rows: its first step's index, the old
    # meaning) and may carry the seed it was sampled with (fan-out)
    2: [
        "ALTER TABLE alternatives ADD COLUMN parent_step INTEGER",
        "ALTER TABLE alternatives ADD COLUMN seed INTEGER",
    ],
    # the unsent text of the message box: a crash or a quit never loses what was typed
    3: ["ALTER TABLE sessions ADD COLUMN draft TEXT NOT NULL DEFAULT ''"],
    # why the sampler could not pick a candidate ("top-p", "greedy"; NULL: it could,
    # or the row is older than this column)
    4: ["ALTER TABLE candidates ADD COLUMN dropped_by TEXT"],
    # comparisons of a reply against another run (engine/compare), in the order they
    # were made; `data` is the comparison's JSON (`Comparison.to_json(extended=True)`)
    5: [
        """CREATE TABLE comparisons (
            id INTEGER PRIMARY KEY,
            message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX comparisons_message ON comparisons (message_id)",
    ],
}


def settings_to_json(settings: SessionSettings) -> str:
    return json.dumps(settings_to_dict(settings), ensure_ascii=False, sort_keys=True)


def settings_from_json(text: str) -> SessionSettings:
    try:
        return settings_from_dict(json.loads(text))
    except (ValueError, TypeError, InvalidParameterError) as exc:
        raise StoreError(f"a stored session has unreadable settings: {exc}") from exc
