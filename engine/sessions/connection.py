"""The session database's file: opening it, migrating its schema forward, and moving
an unreadable one aside; and the one write transaction every change goes through.

Why SQLite: one file, transactional, readable by other tools, no pickle. WAL
mode lets the TUI write while a CLI reads; ``synchronous=FULL`` makes each
commit survive a crash, so a killed process loses at most the reply in
progress. The schema is versioned with ``PRAGMA user_version`` and migrated
forward at open; a database from a newer logitlab is refused, never rewritten.
A file SQLite cannot read as a database is moved aside (never deleted) and a
fresh one started.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from engine.errors import StoreError
from engine.sessions.schema import MIGRATIONS, SCHEMA_VERSION

_CORRUPT_CODES = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}


def open_database(path: Path) -> tuple[sqlite3.Connection, Path | None]:
    """A connection to the database at `path`, migrated to this version's schema, and
    where an unreadable file found there was moved (None: it was readable, or new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _open(path), None
    except sqlite3.DatabaseError as exc:
        if not _is_corrupt(path, exc):
            raise StoreError(f"cannot open the session database {path}: {exc}") from exc
    moved = _move_aside(path)
    try:
        return _open(path), moved
    except sqlite3.DatabaseError as exc2:
        raise StoreError(f"cannot create a new session database {path}: {exc2}") from exc2


@contextmanager
def transaction(conn: sqlite3.Connection, lock: threading.RLock) -> Iterator[sqlite3.Connection]:
    """One write transaction: all of it is committed, or none of it."""
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.create_function("casefold", 1, _casefold, deterministic=True)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the session database {path} was written by a newer logitlab "
                f"(schema {version}; this version reads up to {SCHEMA_VERSION}); it was "
                "left untouched: upgrade logitlab or set LOGITLAB_DATA_DIR to another dir"
            )
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn, version)
    except BaseException:
        conn.close()
        raise
    return conn


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


def _is_corrupt(path: Path, exc: sqlite3.DatabaseError) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    if name in _CORRUPT_CODES:
        return True
    unreadable = path.exists() and not os.access(path, os.R_OK | os.W_OK)
    return unreadable or "not a database" in str(exc) or "malformed" in str(exc)


def _move_aside(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, target)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, target.with_name(target.name + suffix))
    except OSError as exc:
        raise StoreError(
            f"the session database {path} is unreadable and could not be moved aside: {exc}"
        ) from exc
    return target


def _casefold(text: str | None) -> str | None:
    return None if text is None else text.casefold()
