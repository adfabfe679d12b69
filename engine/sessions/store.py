"""The session database: one SQLite file, every message committed as it completes.

Why SQLite: one file, transactional, readable by other tools, no pickle. WAL
mode lets the TUI write while a CLI reads; ``synchronous=FULL`` makes each
commit survive a crash, so a killed process loses at most the reply in
progress. The schema is versioned with ``PRAGMA user_version`` and migrated
forward at open; a database from a newer logitlab is refused, never rewritten.
A file SQLite cannot read as a database is moved aside (never deleted) and a
fresh one started; `SessionStore.recovered_from` says where it went.

The store is safe to share between threads (the TUI's workers): one
connection, one lock.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from engine.decode.run import ReplyResult
from engine.errors import SessionError, SessionNotFoundError, StoreError
from engine.model.description import ModelDescription
from engine.params import SamplingParams
from engine.paths import data_dir
from engine.records import Candidate, Step
from engine.sessions.records import (
    Alternative,
    ModelRecord,
    Session,
    SessionMessage,
    SessionSettings,
    SessionSummary,
    branched,
    default_title,
    parse_rfc3339,
    reply_from_steps,
    rfc3339,
    utc_now,
)
from engine.sessions.schema import MIGRATIONS, SCHEMA_VERSION, settings_from_json, settings_to_json
from engine.tokens.chat import ChatMessage

DB_NAME = "sessions.db"
_CORRUPT_CODES = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}


class SessionStore:
    """Sessions, messages and per-token steps in one SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.recovered_from: Path | None = None  # where a corrupt db was moved
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            if not self._is_corrupt(exc):
                raise StoreError(f"cannot open the session database {self.path}: {exc}") from exc
            self.recovered_from = self._move_aside()
            try:
                self._conn = self._open()
            except sqlite3.DatabaseError as exc2:
                raise StoreError(
                    f"cannot create a new session database {self.path}: {exc2}"
                ) from exc2

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

    # --- opening, migrating, recovering -------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.create_function("casefold", 1, _casefold, deterministic=True)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the session database {self.path} was written by a newer logitlab "
                    f"(schema {version}; this version reads up to {SCHEMA_VERSION}); it was "
                    "left untouched: upgrade logitlab or set LOGITLAB_DATA_DIR to another dir"
                )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(conn, version)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection, version: int) -> None:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                # another process may have migrated since `version` was read (two opened
                # the file at once): the version under the write lock is the one that counts
                if conn.execute("PRAGMA user_version").fetchone()[0] >= target:
                    conn.execute("COMMIT")
                    continue
                for statement in MIGRATIONS[target]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _is_corrupt(self, exc: sqlite3.DatabaseError) -> bool:
        name = getattr(exc, "sqlite_errorname", "")
        if name in _CORRUPT_CODES:
            return True
        unreadable = self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK)
        return unreadable or "not a database" in str(exc) or "malformed" in str(exc)

    def _move_aside(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, target)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, target.with_name(target.name + suffix))
        except OSError as exc:
            raise StoreError(
                f"the session database {self.path} is unreadable and could not be moved "
                f"aside: {exc}"
            ) from exc
        return target

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is committed, or none of it."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- writing ------------------------------------------------------------------

    def create(self, model: ModelRecord, settings: SessionSettings, title: str = "") -> Session:
        """A new empty session; its title comes from the first user message if empty."""
        now = utc_now()
        session = Session(uuid.uuid4().hex, title, now, now, model, settings, ())
        with self._tx() as conn:
            _insert_session(conn, session)
        return session

    def append_message(self, session_id: str, message: SessionMessage) -> SessionMessage:
        """Store one completed message with its steps, committed before returning."""
        with self._tx() as conn:
            sid = self._resolve(conn, session_id)
            position = conn.execute(
                "SELECT coalesce(max(position) + 1, 0) FROM messages WHERE session_id = ?",
                (sid,),
            ).fetchone()[0]
            message_id = _insert_message(conn, sid, position, message)
            if message.role == "user":
                conn.execute(
                    "UPDATE sessions SET title = ? WHERE id = ? AND title = ''",
                    (default_title(message.content), sid),
                )
            _touch(conn, sid)
        return replace(message, id=message_id)

    def replace_last_assistant(self, session_id: str, message: SessionMessage) -> SessionMessage:
        """Replace the last reply with a branch of it; the old tail becomes an alternative."""
        with self._lock:
            session = self.get(session_id)
            if not session.messages or session.messages[-1].role != "assistant":
                raise SessionError(f"session {session.id} does not end with an assistant reply")
            old = session.messages[-1]
            new = branched(old, message)
            self._rewrite_message(session.id, old, new)
        return new

    def rewrite_last_assistant(self, session_id: str, message: SessionMessage) -> SessionMessage:
        """Replace the last reply with `message` as given, its branches included
        (the workbench owns the reply tree and saves it whole)."""
        with self._lock:
            session = self.get(session_id)
            if not session.messages or session.messages[-1].role != "assistant":
                raise SessionError(f"session {session.id} does not end with an assistant reply")
            old = session.messages[-1]
            self._rewrite_message(session.id, old, message)
        return replace(message, id=old.id)

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
            _insert_steps(conn, message_id, None, new.steps)
            for position, alt in enumerate(new.alternatives):
                _insert_alternative(conn, message_id, position, alt)
            _touch(conn, session_id)

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
            _insert_alternative(conn, message_id, position, alternative)
            _touch(conn, sid)

    def update_settings(self, session_id: str, settings: SessionSettings) -> None:
        with self._tx() as conn:
            sid = self._resolve(conn, session_id)
            conn.execute(
                "UPDATE sessions SET settings = ? WHERE id = ?", (settings_to_json(settings), sid)
            )
            _touch(conn, sid)

    def update_model(self, session_id: str, model: ModelRecord) -> None:
        with self._tx() as conn:
            sid = self._resolve(conn, session_id)
            conn.execute(
                "UPDATE sessions SET model_id = ?, model_source = ?, model_device = ?,"
                " model_dtype = ?, model_quantize = ? WHERE id = ?",
                (model.id, model.source, model.device, model.dtype, model.quantize, sid),
            )
            _touch(conn, sid)

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
            _insert_session(conn, session)
            for position, message in enumerate(session.messages):
                _insert_message(conn, session.id, position, message)
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
            messages = tuple(_load_messages(conn, sid))
        return Session(
            id=row[0],
            title=row[1],
            created_at=parse_rfc3339(row[2]),
            updated_at=parse_rfc3339(row[3]),
            model=model,
            settings=settings_from_json(row[9]),
            messages=messages,
            draft=row[10],
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


# --- row helpers ------------------------------------------------------------------


def _casefold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


def _touch(conn: sqlite3.Connection, session_id: str) -> None:
    conn.execute(
        "UPDATE sessions SET updated_at = max(updated_at, ?) WHERE id = ?",
        (rfc3339(utc_now()), session_id),
    )


def _insert_session(conn: sqlite3.Connection, s: Session) -> None:
    conn.execute(
        "INSERT INTO sessions (id, title, created_at, updated_at, model_id, model_source,"
        " model_device, model_dtype, model_quantize, settings, draft)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            s.id,
            s.title,
            rfc3339(s.created_at),
            rfc3339(s.updated_at),
            s.model.id,
            s.model.source,
            s.model.device,
            s.model.dtype,
            s.model.quantize,
            settings_to_json(s.settings),
            s.draft,
        ),
    )


def _insert_message(
    conn: sqlite3.Connection, session_id: str, position: int, m: SessionMessage
) -> int:
    cur = conn.execute(
        "INSERT INTO messages (session_id, position, role, content, created_at, finish_reason)"
        " VALUES (?,?,?,?,?,?)",
        (session_id, position, m.role, m.content, rfc3339(m.created_at), m.finish_reason),
    )
    message_id = int(cur.lastrowid or 0)
    _insert_steps(conn, message_id, None, m.steps)
    for alt_position, alt in enumerate(m.alternatives):
        _insert_alternative(conn, message_id, alt_position, alt)
    return message_id


def _insert_alternative(
    conn: sqlite3.Connection, message_id: int, position: int, alt: Alternative
) -> None:
    cur = conn.execute(
        "INSERT INTO alternatives (message_id, position, content, finish_reason, created_at,"
        " parent_step, seed) VALUES (?,?,?,?,?,?,?)",
        (
            message_id,
            position,
            alt.content,
            alt.finish_reason,
            rfc3339(alt.created_at),
            alt.branch_index,
            alt.seed,
        ),
    )
    _insert_steps(conn, None, int(cur.lastrowid or 0), alt.steps)


def _neg_inf_to_null(value: float) -> float | None:
    """SQLite has no portable -inf: a filtered token's processed logprob is NULL."""
    return None if value == -math.inf or math.isnan(value) else value


def _entropy_in(value: float) -> float:
    """An unknown entropy (NaN: a remote server sends only the top-N) is stored as -1."""
    return -1.0 if math.isnan(value) else value


def _entropy_out(value: float) -> float:
    return math.nan if value < 0 else float(value)


def _null_to_neg_inf(value: float | None) -> float:
    return -math.inf if value is None else float(value)


def _insert_steps(
    conn: sqlite3.Connection,
    message_id: int | None,
    alternative_id: int | None,
    steps: tuple[Step, ...],
) -> None:
    for position, st in enumerate(steps):
        cur = conn.execute(
            "INSERT INTO steps (message_id, alternative_id, position, step_index, token_id,"
            " piece, text, token_bytes, forced, special, logprob, rank, entropy,"
            " processed_logprob, processed_rank, processed_entropy, elapsed_ms, finish_reason)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                message_id,
                alternative_id,
                position,
                st.index,
                st.token_id,
                st.piece,
                st.text,
                st.token_bytes,
                int(st.forced),
                int(st.special),
                _neg_inf_to_null(st.logprob),
                st.rank,
                _entropy_in(st.entropy),
                _neg_inf_to_null(st.processed_logprob),
                st.processed_rank,
                _entropy_in(st.processed_entropy),
                st.elapsed_ms,
                st.finish_reason,
            ),
        )
        step_id = cur.lastrowid
        conn.executemany(
            "INSERT INTO candidates (step_id, position, token_id, piece, text, logprob,"
            " processed_logprob, dropped_by) VALUES (?,?,?,?,?,?,?,?)",
            [
                (
                    step_id,
                    i,
                    c.token_id,
                    c.piece,
                    c.text,
                    _neg_inf_to_null(c.logprob),
                    _neg_inf_to_null(c.processed_logprob),
                    c.dropped_by,
                )
                for i, c in enumerate(st.top)
            ],
        )


def _load_messages(conn: sqlite3.Connection, session_id: str) -> Iterator[SessionMessage]:
    rows = conn.execute(
        "SELECT id, role, content, created_at, finish_reason FROM messages"
        " WHERE session_id = ? ORDER BY position",
        (session_id,),
    ).fetchall()
    for mid, role, content, created_at, finish_reason in rows:
        alts = conn.execute(
            "SELECT id, content, finish_reason, created_at, parent_step, seed FROM alternatives"
            " WHERE message_id = ? ORDER BY position",
            (mid,),
        ).fetchall()
        yield SessionMessage(
            role=role,
            content=content,
            created_at=parse_rfc3339(created_at),
            finish_reason=finish_reason,
            steps=_load_steps(conn, "message_id", mid),
            alternatives=tuple(
                Alternative(
                    a[1],
                    a[2],
                    _load_steps(conn, "alternative_id", a[0]),
                    parse_rfc3339(a[3]),
                    parent_step=a[4],
                    seed=a[5],
                )
                for a in alts
            ),
            id=mid,
        )


def _load_steps(conn: sqlite3.Connection, owner: str, owner_id: int) -> tuple[Step, ...]:
    rows = conn.execute(
        "SELECT id, step_index, token_id, piece, text, token_bytes, forced, special, logprob,"
        " rank, entropy, processed_logprob, processed_rank, processed_entropy, elapsed_ms,"
        f" finish_reason FROM steps WHERE {owner} = ? ORDER BY position",
        (owner_id,),
    ).fetchall()
    if not rows:
        return ()
    candidates: dict[int, list[Candidate]] = {r[0]: [] for r in rows}
    cand_rows = conn.execute(
        "SELECT c.step_id, c.token_id, c.piece, c.text, c.logprob, c.processed_logprob,"
        " c.dropped_by"
        f" FROM candidates c JOIN steps s ON s.id = c.step_id WHERE s.{owner} = ?"
        " ORDER BY c.step_id, c.position",
        (owner_id,),
    ).fetchall()
    for step_id, token_id, piece, text, logprob, processed, dropped in cand_rows:
        candidates[step_id].append(
            Candidate(
                token_id=token_id,
                piece=piece,
                logprob=_null_to_neg_inf(logprob),
                processed_logprob=_null_to_neg_inf(processed),
                text=text,
                dropped_by=dropped,
            )
        )
    return tuple(
        Step(
            index=r[1],
            token_id=r[2],
            piece=r[3],
            text=r[4],
            forced=bool(r[6]),
            logprob=_null_to_neg_inf(r[8]),
            rank=r[9],
            entropy=_entropy_out(r[10]),
            processed_logprob=_null_to_neg_inf(r[11]),
            processed_rank=r[12],
            processed_entropy=_entropy_out(r[13]),
            top=tuple(candidates[r[0]]),
            elapsed_ms=r[14],
            special=bool(r[7]),
            token_bytes=bytes(r[5]),
            finish_reason=r[15],
        )
        for r in rows
    )
