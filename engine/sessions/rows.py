"""Session records as database rows and back: sessions, messages, alternatives, steps
and their candidates (the schema is engine/sessions/schema.py). SQLite has no -inf or
NaN: a filtered token's processed logprob is NULL, an unknown entropy -1."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any

from engine.records import Candidate, Step
from engine.sessions.records import (
    Alternative,
    Session,
    SessionMessage,
    StoredComparison,
    parse_rfc3339,
    rfc3339,
    utc_now,
)
from engine.sessions.schema import settings_to_json


def touch(conn: sqlite3.Connection, session_id: str) -> None:
    conn.execute(
        "UPDATE sessions SET updated_at = max(updated_at, ?) WHERE id = ?",
        (rfc3339(utc_now()), session_id),
    )


def insert_session(conn: sqlite3.Connection, s: Session) -> None:
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


def insert_message(
    conn: sqlite3.Connection, session_id: str, position: int, m: SessionMessage
) -> int:
    cur = conn.execute(
        "INSERT INTO messages (session_id, position, role, content, created_at, finish_reason)"
        " VALUES (?,?,?,?,?,?)",
        (session_id, position, m.role, m.content, rfc3339(m.created_at), m.finish_reason),
    )
    message_id = int(cur.lastrowid or 0)
    insert_steps(conn, message_id, None, m.steps)
    for alt_position, alt in enumerate(m.alternatives):
        insert_alternative(conn, message_id, alt_position, alt)
    return message_id


def insert_alternative(
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
    insert_steps(conn, None, int(cur.lastrowid or 0), alt.steps)


def insert_comparison(
    conn: sqlite3.Connection, message_id: int, created_at: str, data: Mapping[str, Any]
) -> None:
    conn.execute(
        "INSERT INTO comparisons (message_id, created_at, data) VALUES (?,?,?)",
        (message_id, created_at, json.dumps(data, ensure_ascii=False, allow_nan=False)),
    )


def load_comparisons(
    conn: sqlite3.Connection, session_id: str, messages: tuple[SessionMessage, ...]
) -> tuple[StoredComparison, ...]:
    """The session's comparisons in the order they were made, each pointing at its
    message by index in `messages` (the session's, as loaded)."""
    index = {m.id: i for i, m in enumerate(messages)}
    rows = conn.execute(
        "SELECT c.message_id, c.created_at, c.data FROM comparisons c"
        " JOIN messages m ON m.id = c.message_id WHERE m.session_id = ? ORDER BY c.id",
        (session_id,),
    ).fetchall()
    return tuple(
        StoredComparison(index[mid], parse_rfc3339(created_at), json.loads(data))
        for mid, created_at, data in rows
    )


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


def insert_steps(
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


def load_messages(conn: sqlite3.Connection, session_id: str) -> Iterator[SessionMessage]:
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
            steps=load_steps(conn, "message_id", mid),
            alternatives=tuple(
                Alternative(
                    a[1],
                    a[2],
                    load_steps(conn, "alternative_id", a[0]),
                    parse_rfc3339(a[3]),
                    parent_step=a[4],
                    seed=a[5],
                )
                for a in alts
            ),
            id=mid,
        )


def load_steps(conn: sqlite3.Connection, owner: str, owner_id: int) -> tuple[Step, ...]:
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
