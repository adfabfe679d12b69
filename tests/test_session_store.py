"""The SQLite session store: what goes in comes back, exactly, and safely."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from session_factories import MODEL, SETTINGS, T0, make_step, reply, user

from engine.errors import SessionError, SessionNotFoundError, StoreError
from engine.params import SamplingParams
from engine.sessions.records import (
    Alternative,
    ModelRecord,
    SessionSettings,
    branched,
    reply_from_steps,
)
from engine.sessions.schema import SCHEMA_VERSION
from engine.sessions.store import SessionStore, save_generation


@pytest.fixture
def store() -> SessionStore:
    with SessionStore.open_default() as s:
        yield s


def without_ids(messages):
    return tuple(replace(m, id=None) for m in messages)


def test_open_default_lives_in_the_data_dir(store: SessionStore, isolated_user_dirs: Path) -> None:
    assert store.path == isolated_user_dirs / "data" / "sessions.db"
    assert store.recovered_from is None
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_messages_and_steps_come_back_exactly(store: SessionStore) -> None:
    session = store.create(MODEL, SETTINGS)
    q = store.append_message(session.id, user("What is the capital of France?\nThanks"))
    a = store.append_message(session.id, reply(["The", " capital", " is", " Paris"]))
    assert q.id is not None and a.id is not None
    loaded = store.get(session.id)
    assert loaded.model == MODEL
    assert loaded.settings == SETTINGS
    assert without_ids(loaded.messages) == (
        user("What is the capital of France?\nThanks"),
        reply(["The", " capital", " is", " Paris"]),
    )
    assert loaded.title == "What is the capital of France?"
    step = loaded.messages[1].steps[0]
    assert step.top[1].processed_logprob == -math.inf  # NULL restored as -inf
    assert loaded.messages[1].steps[-1].finish_reason == "stop"


def test_cancelled_reply_and_special_forced_tokens_are_kept(store: SessionStore) -> None:
    session = store.create(MODEL, SETTINGS, title="mine")
    steps = (
        make_step(0, forced=True, processed_logprob=-math.inf, processed_rank=0),
        make_step(1, 2, "", special=True, token_bytes=b"\xe2\x82", logprob=-math.inf),
    )
    msg = replace(reply([], "cancelled"), steps=steps, content="The")
    store.append_message(session.id, msg)
    got = store.get(session.id).messages[0]
    assert replace(got, id=None) == msg
    assert got.finish_reason == "cancelled"
    assert store.get(session.id).title == "mine"  # an explicit title is kept


def test_list_sorts_by_activity_and_searches_titles_and_text(store: SessionStore) -> None:
    a = store.create(MODEL, SETTINGS, title="Alpha 100%")
    b = store.create(MODEL, SETTINGS, title="Beta")
    store.append_message(b.id, user("tell me about Paris"))
    assert [s.id for s in store.list()] == [b.id, a.id]
    store.append_message(a.id, user("hello"))
    summaries = store.list()
    assert [s.id for s in summaries] == [a.id, b.id]
    assert (summaries[0].title, summaries[0].model_id, summaries[0].message_count) == (
        "Alpha 100%",
        MODEL.id,
        1,
    )
    assert [s.id for s in store.list("paris")] == [b.id]
    assert [s.id for s in store.list("alpha")] == [a.id]
    assert [s.id for s in store.list("0%")] == [a.id]  # LIKE wildcards are literal
    assert store.list("_") == []
    c = store.create(MODEL, SETTINGS, title="ÉTÉ à Paris")
    assert [s.id for s in store.list("été")] == [c.id]


def test_get_by_unique_prefix_and_errors(store: SessionStore) -> None:
    s = store.create(MODEL, SETTINGS)
    assert store.get(s.id[:6]).id == s.id
    with pytest.raises(SessionNotFoundError, match="no session 'nope'"):
        store.get("nope")
    store.import_session(replace(s, id="abc1"))
    store.import_session(replace(s, id="abc2"))
    with pytest.raises(SessionError, match="ambiguous"):
        store.get("abc")


def test_rename_delete_update(store: SessionStore) -> None:
    s = store.create(MODEL, SETTINGS)
    store.append_message(s.id, user("hi"))
    store.rename(s.id, "Renamed")
    new_settings = SessionSettings("", SamplingParams(stop=("\n\n",), top_logprobs=5))
    store.update_settings(s.id, new_settings)
    new_model = ModelRecord("gpt2", "hub", "cuda:0", "bfloat16", "4bit")
    store.update_model(s.id, new_model)
    got = store.get(s.id)
    assert (got.title, got.settings, got.model) == ("Renamed", new_settings, new_model)
    store.delete(s.id)
    assert store.list() == []
    with pytest.raises(SessionNotFoundError):
        store.delete(s.id)
    with sqlite3.connect(store.path) as conn:  # cascades removed the children
        for table in ("messages", "steps", "candidates"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


def test_branching_keeps_the_cut_tail(store: SessionStore) -> None:
    s = store.create(MODEL, SETTINGS)
    store.append_message(s.id, user("hi"))
    old = reply(["A", "B", "C", "D"])
    store.append_message(s.id, old)
    forced = make_step(2, 900, "X", forced=True)
    new = replace(old, content="ABX", steps=(*old.steps[:2], forced), finish_reason="length")
    stored = store.replace_last_assistant(s.id, new)
    got = store.get(s.id).messages[-1]
    assert got == stored
    assert got.content == "ABX" and got.steps[2].forced
    (alt,) = got.alternatives
    assert alt.content == "ABCD" and alt.branch_index == 2
    assert [st.text for st in alt.steps] == ["C", "D"]
    # branching earlier re-bases the first alternative onto the new prefix
    again = replace(old, content="Z", steps=(make_step(0, 901, "Z"),))
    got2 = store.replace_last_assistant(s.id, again)
    first, second = got2.alternatives
    assert [st.text for st in first.steps] == ["A", "B", "C", "D"]
    assert [st.text for st in second.steps] == ["A", "B", "X"]
    assert store.get(s.id).messages[-1] == got2


def test_branched_is_pure() -> None:
    old = reply(["A", "B"])
    new = replace(old, steps=(old.steps[0], make_step(1, 777, "C")))
    out = branched(old, new)
    assert out.steps == new.steps
    assert out.alternatives[0].steps == old.steps[1:]


def test_add_alternative_and_branch_needs_a_reply(store: SessionStore) -> None:
    s = store.create(MODEL, SETTINGS)
    q = store.append_message(s.id, user("hi"))
    with pytest.raises(SessionError, match="does not end with an assistant reply"):
        store.replace_last_assistant(s.id, reply(["x"]))
    alt = Alternative("tail", "cancelled", (make_step(3),), T0)
    assert q.id is not None
    store.add_alternative(s.id, q.id, alt)
    assert store.get(s.id).messages[0].alternatives == (alt,)
    with pytest.raises(SessionNotFoundError):
        store.add_alternative(s.id, 10_000, alt)


def test_import_session_gets_a_new_id_when_taken(store: SessionStore) -> None:
    s = store.create(MODEL, SETTINGS)
    store.append_message(s.id, user("hi"))
    original = store.get(s.id)
    copy = store.import_session(original)
    assert copy.id != s.id
    assert without_ids(copy.messages) == without_ids(original.messages)
    assert len(store.list()) == 2


def test_save_generation_stores_one_session(store: SessionStore) -> None:
    saved = save_generation(store, MODEL, SETTINGS, [user("Say hi"), reply(["Hi"])])
    assert saved.title == "Say hi"
    assert len(store.get(saved.id).messages) == 2
    titled = save_generation(store, MODEL, SETTINGS, [user("x")], title="T")
    assert titled.title == "T"


def test_a_failed_write_leaves_nothing_behind(store: SessionStore) -> None:
    s = store.create(MODEL, SETTINGS)
    bad = replace(reply(["A"]), steps=(make_step(0, token_id=2**64),))  # too big for SQLite
    with pytest.raises(OverflowError):
        store.append_message(s.id, bad)
    assert store.get(s.id).messages == ()


def test_corrupt_database_is_moved_aside_not_deleted(isolated_user_dirs: Path) -> None:
    path = isolated_user_dirs / "data" / "sessions.db"
    path.parent.mkdir(parents=True)
    garbage = b"this is not a database" * 100
    path.write_bytes(garbage)
    store = SessionStore(path)
    assert store.recovered_from is not None
    assert store.recovered_from.name.startswith("sessions.db.corrupt-")
    assert store.recovered_from.read_bytes() == garbage
    assert store.list() == []
    store.create(MODEL, SETTINGS)
    store.close()
    assert SessionStore(path).recovered_from is None


def test_truncated_database_is_moved_aside(isolated_user_dirs: Path) -> None:
    path = isolated_user_dirs / "db" / "sessions.db"
    with SessionStore(path) as store:
        for _ in range(3):
            s = store.create(MODEL, SETTINGS)
            store.append_message(s.id, reply(["word"] * 50))
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\xff" * 50 + data[150:])  # broken header
    with SessionStore(path) as recovered:
        assert recovered.recovered_from is not None
        assert recovered.list() == []


def test_newer_schema_is_refused_and_left_untouched(isolated_user_dirs: Path) -> None:
    path = isolated_user_dirs / "sessions.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer logitlab"):
        SessionStore(path)
    assert path.read_bytes() == before
    assert list(isolated_user_dirs.glob("*.corrupt-*")) == []


def test_forward_migration_keeps_data(
    isolated_user_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.sessions import connection as store_module  # where migrations run
    from engine.sessions import schema as store_schema

    path = isolated_user_dirs / "sessions.db"
    with SessionStore(path) as s1:
        sid = s1.create(MODEL, SETTINGS).id
    nxt = store_schema.SCHEMA_VERSION + 1
    migrations = {
        **store_schema.MIGRATIONS,
        nxt: ["ALTER TABLE sessions ADD COLUMN pinned INTEGER"],
    }
    monkeypatch.setattr(store_module, "MIGRATIONS", migrations)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", nxt)
    with SessionStore(path) as s2:
        assert s2.get(sid).id == sid
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == nxt
        assert "pinned" in [r[1] for r in conn.execute("PRAGMA table_info(sessions)")]


def test_reply_from_steps_joins_the_text_deltas() -> None:
    steps = (make_step(0, 1, "Hel"), make_step(1, 2, ""), make_step(2, 3, "lo"))
    msg = reply_from_steps(steps, "cancelled", T0)
    assert (msg.role, msg.content, msg.finish_reason, msg.steps) == (
        "assistant",
        "Hello",
        "cancelled",
        steps,
    )
    assert reply_from_steps((), "stop").created_at.tzinfo is not None


def test_a_database_from_before_reply_trees_is_upgraded_in_place(tmp_path: Path) -> None:
    """A version-1 database (made with version 1's statements and rows, as the code
    before reply trees wrote them) opens: its alternatives become branches that
    leave the reply where their first step is, and new branches store their own."""
    from engine.sessions.schema import MIGRATIONS

    path = tmp_path / "v1.db"
    with SessionStore(path) as fresh:  # the rows, written by today's code...
        s = fresh.create(MODEL, SETTINGS)
        old = reply(["The", " end", "."])
        alt = Alternative("The cat", "stop", (make_step(1),), T0)
        fresh.append_message(s.id, user("q"))
        fresh.append_message(s.id, replace(old, alternatives=(alt,)))
    with sqlite3.connect(path) as conn:  # ...moved into a database at version 1
        rows = {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in TABLES}
    v1 = tmp_path / "v1-only.db"
    with sqlite3.connect(v1) as conn:
        for statement in MIGRATIONS[1]:
            conn.execute(statement)
        for table, data in rows.items():
            for row in data:
                row = row[: V1_COLUMNS.get(table, len(row))]  # later columns come last
                conn.execute(f"INSERT INTO {table} VALUES ({','.join('?' * len(row))})", row)
        conn.execute("PRAGMA user_version = 1")
    with SessionStore(v1) as store:
        got = store.get(s.id).messages[1]
        (kept,) = got.alternatives
        # version 1 did not store why a candidate was dropped: it reads back as unknown
        unknown = tuple(
            replace(st, top=tuple(replace(c, dropped_by=None) for c in st.top)) for st in alt.steps
        )
        assert kept.branch_index == 1 and kept.steps == unknown and kept.seed is None
        tree = replace(
            got, alternatives=(kept, Alternative("", None, (), T0, parent_step=3, seed=9))
        )
        store.rewrite_last_assistant(s.id, tree)
        assert store.get(s.id).messages[1].alternatives[1].branch_index == 3
        assert store.get(s.id).messages[1].alternatives[1].seed == 9
    with sqlite3.connect(v1) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


TABLES = ("sessions", "messages", "alternatives", "steps", "candidates")
V1_COLUMNS = {"sessions": 10, "alternatives": 6, "candidates": 7}  # version 1 had these many
