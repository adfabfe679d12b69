"""The session database's schema, one list of statements per version.

`MIGRATIONS[n]` takes a database at version ``n - 1`` to version ``n``; the
store runs the missing ones in order at open, each in its own transaction, and
sets ``PRAGMA user_version``. Never edit a released migration: add the next.

Settings are stored as a small JSON object (the export's ``settings`` keys plus
``stop``/``top_logprobs``) so a new sampling field needs no table migration.
"""

from __future__ import annotations

import json
from typing import Any

from engine.errors import InvalidParameterError, StoreError
from engine.params import SamplingParams
from engine.sessions.records import SessionSettings

SCHEMA_VERSION = 2

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
    # the unsent text of the message box: a crash or a quit never loses what was typed
    2: ["ALTER TABLE sessions ADD COLUMN draft TEXT NOT NULL DEFAULT ''"],
}


def settings_to_dict(settings: SessionSettings) -> dict[str, Any]:
    """The flat settings object shared by the store and the export schema.

    ``seed`` is omitted when None and ``stop`` when empty (TOML has no null).
    """
    p = settings.sampling
    out: dict[str, Any] = {
        "system_prompt": settings.system_prompt,
        "temperature": float(p.temperature),
        "top_k": p.top_k,
        "top_p": float(p.top_p),
        "min_p": float(p.min_p),
        "repetition_penalty": float(p.repetition_penalty),
        "max_new_tokens": p.max_new_tokens,
    }
    if p.seed is not None:
        out["seed"] = p.seed
    if p.stop:
        out["stop"] = list(p.stop)
    out["top_logprobs"] = p.top_logprobs
    return out


def settings_from_dict(data: dict[str, Any]) -> SessionSettings:
    """Inverse of `settings_to_dict`; raises InvalidParameterError on a bad value."""
    sampling = {k: v for k, v in data.items() if k != "system_prompt"}
    if "stop" in sampling:
        sampling["stop"] = tuple(sampling["stop"])
    return SessionSettings(
        system_prompt=data.get("system_prompt", ""), sampling=SamplingParams(**sampling)
    )


def settings_to_json(settings: SessionSettings) -> str:
    return json.dumps(settings_to_dict(settings), ensure_ascii=False, sort_keys=True)


def settings_from_json(text: str) -> SessionSettings:
    try:
        return settings_from_dict(json.loads(text))
    except (ValueError, TypeError, InvalidParameterError) as exc:
        raise StoreError(f"a stored session has unreadable settings: {exc}") from exc
