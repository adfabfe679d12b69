"""Comparisons kept with a session (issue 25): stored by the reply they compare, kept
while the reply is rewritten in place, gone with the session, carried by the exports."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from session_factories import MODEL, SETTINGS, T0, make_step, reply, user

from engine.compare.records import (
    CompareCandidate,
    CompareStep,
    CompareSummary,
    Comparison,
    Tokenization,
)
from engine.errors import SessionError, SessionNotFoundError
from engine.sessions.records import Alternative, Session, StoredComparison
from engine.sessions.schema import MIGRATIONS, SCHEMA_VERSION
from engine.sessions.store import SessionStore


def comparison(first_divergence: int | None = None) -> dict[str, Any]:
    """What the workbench stores: a real `Comparison`'s extended JSON, with the nulls a
    comparison has (a -inf logprob, an unknown KL, no divergence, a side without a seed)."""
    side = {
        "spec": {"model": "SmolLM2"},
        "model": "SmolLM2-135M-Instruct",
        "backend": "transformers",
        "engine": None,
        "dtype": "float32",
        "quantize": "none",
        "sampling": {"temperature": 0.0, "seed": None},
    }
    steps = (
        CompareStep(0, 504, "The", -0.03, -0.05, 0.0123, True, 1, 504, 504, True,
                    (CompareCandidate(504, "The", -0.03), CompareCandidate(9, "A", -4.25)),
                    (CompareCandidate(504, "The", -0.05),)),
        CompareStep(1, 7, " end", -1.5, -math.inf, math.inf, True, 0, 7, 8, False,
                    (CompareCandidate(7, " end", -1.5),), (CompareCandidate(8, "x", -math.inf),)),
        CompareStep(2, 13, ".", -0.25, -0.5, math.nan, False, 2, 13, 13, True),
    )  # fmt: skip
    return Comparison(
        a=side,
        b={**side, "backend": "llama.cpp", "quantize": "Q4_1"},
        tokenization=Tokenization((1, 2, 3), (1, 2, 3), ("<s>", "Hi", "!"), ("<s>", "Hi", "!")),
        steps=steps,
        first_divergence=first_divergence,
        summary=CompareSummary(3, 0.0123, 0.0123, 0.0123, 0.0123, 2 / 3, 0.1, 1.9, None),
        b_path=(504, 8),
        b_tokens=("The", "x"),
    ).to_json(extended=True)


@pytest.fixture
def store() -> SessionStore:
    with SessionStore.open_default() as s:
        yield s


def chat(store: SessionStore) -> tuple[str, int]:
    """A stored session with a question and a reply; the reply's message id."""
    sid = store.create(MODEL, SETTINGS).id
    store.append_message(sid, user("q"))
    return sid, store.append_message(sid, reply(["The", " end", "."])).id or -1


def test_a_comparison_comes_back_with_its_session_by_message_index(store: SessionStore) -> None:
    sid, mid = chat(store)
    data = comparison()
    added = store.add_comparison(sid, mid, data, created_at=T0)
    assert added == StoredComparison(1, T0, data)
    second = store.add_comparison(sid[:6], mid, comparison(first_divergence=1))
    assert second.created_at.tzinfo is not None and second.data["first_divergence"] == 1
    got = store.get(sid)
    assert got.comparisons == (added, second)
    assert got.comparisons[0].data["first_divergence"] is None
    assert got.comparisons[0].data["steps"][1]["logprob_b"] is None
    assert Comparison.from_json(got.comparisons[0].data).to_json(extended=True) == data
    assert store.get(store.create(MODEL, SETTINGS).id).comparisons == ()


def test_bad_comparisons_are_refused_in_one_line(store: SessionStore) -> None:
    sid, mid = chat(store)
    with pytest.raises(SessionNotFoundError, match=f"has no message {mid + 99}"):
        store.add_comparison(sid, mid + 99, comparison())
    other, other_mid = chat(store)
    with pytest.raises(SessionNotFoundError, match="has no message"):
        store.add_comparison(sid, other_mid, comparison())
    with pytest.raises(SessionError, match=r"^cannot store the comparison: .*steps.*\n?$"):
        store.add_comparison(sid, mid, {**comparison(), "steps": "none"})
    with pytest.raises(SessionError, match="cannot store the comparison"):
        store.add_comparison(sid, mid, {**comparison(), "a": {"x": math.nan}})
    assert store.get(sid).comparisons == () and store.get(other).comparisons == ()


def test_rewriting_the_reply_keeps_its_comparisons_and_deleting_drops_them(
    store: SessionStore,
) -> None:
    sid, mid = chat(store)
    kept = store.add_comparison(sid, mid, comparison())
    old = store.get(sid).messages[1]
    tree = replace(old, alternatives=(Alternative("The cat", "stop", (make_step(1),), T0),))
    store.rewrite_last_assistant(sid, tree)
    store.replace_last_assistant(sid, reply(["The", " cat"]))
    assert store.get(sid).comparisons == (kept,)
    store.delete(sid)
    count = store._conn.execute("SELECT count(*) FROM comparisons").fetchone()[0]
    assert count == 0


def test_import_session_stores_comparisons_by_index(store: SessionStore) -> None:
    c = StoredComparison(1, T0, comparison())
    session = Session("s1", "t", T0, T0, MODEL, SETTINGS, (user("q"), reply(["A"])), "", (c,))
    assert store.import_session(session).comparisons == (c,)
    bad = replace(session, id="s2", comparisons=(replace(c, message_index=2),))
    with pytest.raises(SessionError, match="of message 2, but the session has 2"):
        store.import_session(bad)
    assert [s.id for s in store.list()] == ["s1"]


def test_a_version_4_database_gains_the_table_and_keeps_its_sessions(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    with sqlite3.connect(path) as conn:  # what logitlab wrote before comparisons
        for version in range(1, 5):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO sessions VALUES ('old', 't', ?, ?, 'm', 'hub', 'cpu', 'float32', 'none',"
            " ?, '')",
            ("2026-01-02T03:04:05.000000Z", "2026-01-02T03:04:05.000000Z", json.dumps({})),
        )
        conn.execute(
            "INSERT INTO messages VALUES (7, 'old', 0, 'assistant', 'hi', ?, 'stop')",
            ("2026-01-02T03:04:05.000000Z",),
        )
        conn.execute("PRAGMA user_version = 4")
    assert SCHEMA_VERSION == 5
    with SessionStore(path) as s:
        assert s.get("old").comparisons == ()
        added = s.add_comparison("old", 7, comparison())
        assert s.get("old").comparisons == (added,) and added.message_index == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
