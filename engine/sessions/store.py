"""The session database's queries: sessions, messages, their steps and branches, each
change committed as it completes (one SQLite file: engine/sessions/connection.py opens,
migrates and recovers it; engine/sessions/rows.py encodes records as rows).

The store is safe to share between threads (the TUI's workers): one
connection, one lock. `SessionStore.recovered_from` says where an unreadable
database found at open was moved.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.decode.run import ReplyResult
from engine.errors import SessionError, SessionNotFoundError
from engine.model.description import ModelDescription
from engine.params import SamplingParams
from engine.paths import data_dir
from engine.sessions import rows
from engine.sessions.connection import open_database, transaction
from engine.sessions.records import (
    Alternative,
    ModelRecord,
    Session,
    SessionMessage,
    SessionSettings,
    SessionSummary,
    StoredComparison,
    branched,
    comparison_data,
    default_title,
    parse_rfc3339,
    reply_from_steps,
    rfc3339,
    utc_now,
)
from engine.sessions.schema import settings_from_json, settings_to_json
from engine.tokens.chat import ChatMessage

DB_NAME = "sessions.db"


class SessionStore:
    """Sessions, messages and per-token steps in one SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.recovered_from: Path | None = None  # where a corrupt db was moved
        self._lock = threading.RLock()
        self._conn, self.recovered_from = open_database(self.path)

    @property
    def recovery_note(self) -> str | None:
        """One line for the user when a corrupt database was moved aside at open."""
        if self.recovered_from is None:
            return None
        return (
            f"the session database was unreadable; it was moved to {self.recovered_from}"
            " and a new one was started"
        )

    @classmethod
    def open_default(cls) -> SessionStore:
        """The user's store: ``<data dir>/sessions.db`` (LOGITLAB_DATA_DIR overrides)."""
        return cls(data_dir() / DB_NAME)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._conn, self._lock)

    # --- writing ------------------------------------------------------------------

    def create(self, model: ModelRecord, settings: SessionSettings, title: str = "") -> Session:
        """A new empty session; its title comes from the first user message if empty."""
        now = utc_now()
        session = Session(uuid.uuid4().hex, title, now, now, model, settings, ())
        with self._tx() as conn:
            rows.insert_session(conn, session)
        return session

    def append_message(self, session_id: str, message: SessionMessage) -> SessionMessage:
        """Store one completed message with its steps, committed before returning."""
        with self._tx() as conn:
            sid = self._resolve(conn, session_id)
            position = conn.execute(
                "SELECT coalesce(max(position) + 1, 0) FROM messages WHERE session_id = ?",
                (sid,),
            ).fetchone()[0]
            message_id = rows.insert_message(conn, sid, position, message)
            if message.role == "user":
                conn.execute(
                    "UPDATE sessions SET title = ? WHERE id = ? AND title = ''",
                    (default_title(message.content), sid),
                )
            rows.touch(conn, sid)
        return replace(message, id=message_id)

    def replace_last_assistant(self, session_id: str, message: SessionMessage) -> SessionMessage:
        """Replace the last reply with a branch of it; the old tail becomes an alternative."""
        return self._replace_last_assistant(session_id, lambda old: branched(old, message))

    def rewrite_last_assistant(self, session_id: str, message: SessionMessage) -> SessionMessage:
        """Replace the last reply with `message` as given, its branches included
        (the workbench owns the reply tree and saves it whole)."""
        return self._replace_last_assistant(session_id, lambda _old: message)

    def _replace_last_assistant(
        self, session_id: str, make: Callable[[SessionMessage], SessionMessage]
    ) -> SessionMessage:
        """The last reply replaced by `make(old reply)`, in place (same message id)."""
        with self._lock:
            session = self.get(session_id)
            if not session.messages or session.messages[-1].role != "assistant":
                raise SessionError(f"session {session.id} does not end with an assistant reply")
            old = session.messages[-1]
            new = replace(make(old), id=old.id)
            self._rewrite_message(session.id, old, new)
        return new

    def _rewrite_message(self, session_id: str, old: SessionMessage, new: SessionMessage) -> None:
        message_id = old.id if old.id is not None else -1
        with self._tx() as conn:
            conn.execute("DELETE FROM steps WHERE message_id = ?", (message_id,))
            conn.execute("DELETE FROM alternatives WHERE message_id = ?", (message_id,))
            conn.execute(
                "UPDATE messages SET role = ?, content = ?, created_at = ?, finish_reason = ?"
                " WHERE id = ?",
                (new.role, new.content, rfc3339(new.created_at), new.finish_reason, message_id),
            )
            rows.insert_steps(conn, message_id, None, new.steps)
            for position, alt in enumerate(new.alternatives):
                rows.insert_alternative(conn, message_id, position, alt)
            rows.touch(conn, session_id)

    def add_alternative(self, session_id: str, message_id: int, alternative: Alternative) -> None:
        """Keep another cut-off tail on a stored message."""
        with self._tx() as conn:
            sid = self._resolve(conn, session_id)
            row = conn.execute(
                "SELECT 1 FROM messages WHERE id = ? AND session_id = ?", (message_id, sid)
            ).fetchone()
            if row is None:
                raise SessionNotFoundError(f"session {sid} has no message {message_id}")
            position = conn.execute(
                "SELECT coalesce(max(position) + 1, 0) FROM alternatives WHERE message_id = ?",
                (message_id,),
            ).fetchone()[0]
            rows.insert_alternative(conn, message_id, position, alternative)
            rows.touch(conn, sid)

    def add_comparison(
        self,
        session_id: str,
        message_id: int,
        data: Mapping[str, Any],
        created_at: datetime | None = None,
    ) -> StoredComparison:
        """Keep a comparison of the stored message `message_id` (`SessionMessage.id`):
        `data` is `Comparison.to_json(extended=True)`. It stays with the message while
        the reply is rewritten in place, and goes with the session."""
        data = _checked(data)
        when = rfc3339(created_at or utc_now())
        with self._tx() as conn:
            sid = self._resolve(conn, session_id)
            row = conn.execute(
                "SELECT position FROM messages WHERE id = ? AND session_id = ?", (message_id, sid)
            ).fetchone()
            if row is None:
                raise SessionNotFoundError(f"session {sid} has no message {message_id}")
            index = conn.execute(
                "SELECT count(*) FROM messages WHERE session_id = ? AND position < ?",
                (sid, row[0]),
            ).fetchone()[0]
            rows.insert_comparison(conn, message_id, when, data)
            rows.touch(conn, sid)
        return StoredComparison(index, parse_rfc3339(when), data)

    def update_settings(self, session_id: str, settings: SessionSettings) -> None:
        with self._tx() as conn:
            sid = self._resolve(conn, session_id)
            conn.execute(
                "UPDATE sessions SET settings = ? WHERE id = ?", (settings_to_json(settings), sid)
            )
            rows.touch(conn, sid)

    def update_model(self, session_id: str, model: ModelRecord) -> None:
        with self._tx() as conn:
            sid = self._resolve(conn, session_id)
            conn.execute(
                "UPDATE sessions SET model_id = ?, model_source = ?, model_device = ?,"
                " model_dtype = ?, model_quantize = ? WHERE id = ?",
                (model.id, model.source, model.device, model.dtype, model.quantize, sid),
            )
            rows.touch(conn, sid)

    def set_draft(self, session_id: str, draft: str) -> None:
        """Keep the unsent message text; not activity, so the session does not move up."""
        with self._tx() as conn:
            sid = self._resolve(conn, session_id)
            conn.execute("UPDATE sessions SET draft = ? WHERE id = ?", (draft, sid))

    def rename(self, session_id: str, title: str) -> None:
        with self._tx() as conn:
            sid = self._resolve(conn, session_id)
            conn.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, sid))

    def delete(self, session_id: str) -> None:
        with self._tx() as conn:
            sid = self._resolve(conn, session_id)
            conn.execute("DELETE FROM sessions WHERE id = ?", (sid,))

    def import_session(self, session: Session) -> Session:
        """Store a whole session (from an import) in one transaction; new id if taken."""
        with self._tx() as conn:
            taken = conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session.id,)).fetchone()
            if taken or not session.id:
                session = replace(session, id=uuid.uuid4().hex)
            rows.insert_session(conn, session)
            ids = [
                rows.insert_message(conn, session.id, position, message)
                for position, message in enumerate(session.messages)
            ]
            for c in session.comparisons:
                if not 0 <= c.message_index < len(ids):
                    raise SessionError(
                        f"a comparison is of message {c.message_index}, but the session has"
                        f" {len(ids)}"
                    )
                when = rfc3339(c.created_at)
                rows.insert_comparison(conn, ids[c.message_index], when, _checked(c.data))
        return self.get(session.id)

    # --- reading ------------------------------------------------------------------

    def get(self, session_id: str) -> Session:
        """The full session; `session_id` may be a unique prefix of an id."""
        with self._lock:
            conn = self._conn
            sid = self._resolve(conn, session_id)
            row = conn.execute(
                "SELECT id, title, created_at, updated_at, model_id, model_source, model_device,"
                " model_dtype, model_quantize, settings, draft FROM sessions WHERE id = ?",
                (sid,),
            ).fetchone()
            model = ModelRecord(row[4], row[5], row[6], row[7], row[8])
            messages = tuple(rows.load_messages(conn, sid))
            comparisons = rows.load_comparisons(conn, sid, messages)
        return Session(
            id=row[0],
            title=row[1],
            created_at=parse_rfc3339(row[2]),
            updated_at=parse_rfc3339(row[3]),
            model=model,
            settings=settings_from_json(row[9]),
            messages=messages,
            draft=row[10],
            comparisons=comparisons,
        )

    def list(self, search: str = "") -> list[SessionSummary]:
        """Sessions by last activity; `search` matches titles and message text."""
        sql = (
            "SELECT s.id, s.title, s.model_id, s.created_at, s.updated_at,"
            " (SELECT count(*) FROM messages m WHERE m.session_id = s.id) FROM sessions s"
        )
        params: tuple[str, ...] = ()
        if search:  # casefold in Python: SQLite's LIKE folds ASCII only
            sql += (
                " WHERE instr(casefold(s.title), ?) OR EXISTS (SELECT 1 FROM messages m"
                " WHERE m.session_id = s.id AND instr(casefold(m.content), ?))"
            )
            params = (search.casefold(), search.casefold())
        sql += " ORDER BY s.updated_at DESC, s.rowid DESC"
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [
            SessionSummary(r[0], r[1], r[2], r[5], parse_rfc3339(r[3]), parse_rfc3339(r[4]))
            for r in rows
        ]

    def _resolve(self, conn: sqlite3.Connection, session_id: str) -> str:
        """The full id for an id or a unique prefix of one."""
        if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone():
            return session_id
        if session_id:
            escaped = session_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = conn.execute(
                "SELECT id FROM sessions WHERE id LIKE ? ESCAPE '\\' LIMIT 2", (escaped + "%",)
            ).fetchall()
            if len(rows) == 1:
                return str(rows[0][0])
            if len(rows) > 1:
                raise SessionError(
                    f"session id prefix {session_id!r} is ambiguous: give more characters"
                )
        raise SessionNotFoundError(f"no session {session_id!r} (see `logitlab sessions list`)")


def _checked(data: Mapping[str, Any]) -> dict[str, Any]:
    """A comparison's JSON as the store keeps it (and `get` gives back: lists, no
    tuples); a malformed one, or one JSON cannot hold, is one line."""
    try:
        text = json.dumps(comparison_data(data), ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")  # a lone surrogate cannot be stored
        return dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise SessionError(f"cannot store the comparison: {exc}") from exc


def save_generation(
    store: SessionStore,
    model: ModelRecord,
    settings: SessionSettings,
    messages: Iterable[SessionMessage],
    title: str | None = None,
) -> Session:
    """Store a finished run (`logitlab generate --save`, a served request) as one new
    session, atomically."""
    messages = tuple(messages)
    if not title:
        first_user = next((m.content for m in messages if m.role == "user"), "")
        title = default_title(first_user)
    now = utc_now()
    session = Session(uuid.uuid4().hex, title, now, now, model, settings, messages)
    return store.import_session(session)


def save_reply(
    store: SessionStore,
    model: ModelDescription,
    params: SamplingParams,
    messages: Sequence[ChatMessage],
    result: ReplyResult,
    title: str | None = None,
) -> Session:
    """Store one reply and the messages it answered as a new session (a cancelled
    reply is stored as cancelled); a system message becomes the session's setting."""
    system = next((m.content for m in messages if m.role == "system"), "")
    stored = [SessionMessage(m.role, m.content, utc_now()) for m in messages if m.role != "system"]
    reply = reply_from_steps(result.steps, result.summary.finish_reason)
    settings = SessionSettings(system_prompt=system, sampling=params)
    return save_generation(
        store, ModelRecord.from_description(model), settings, [*stored, reply], title
    )
