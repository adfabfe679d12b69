"""Comparisons kept with a session (issue 25): stored by the reply they compare, kept
while the reply is rewritten in place, gone with the session, carried by the exports."""

from __future__ import annotations

import json
import math
import sqlite3
import tomllib
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from session_factories import MODEL, SETTINGS, T0, make_step, reply, user

from engine.compare.records import (
    CompareCandidate,
    CompareStep,
    CompareSummary,
    Comparison,
    Tokenization,
)
from engine.errors import SessionError, SessionImportError, SessionNotFoundError
from engine.sessions import export_json, export_markdown, export_toml, import_session_text
from engine.sessions.records import Alternative, Session, StoredComparison, comparison_data
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
    assert (added.message_index, added.created_at) == (1, T0)
    # kept as given, but for the sides' null members (a file cannot say them)
    assert {**added.data, "a": data["a"], "b": data["b"]} == data
    assert added.data["a"] == {k: v for k, v in data["a"].items() if k != "engine"} | {
        "sampling": {"temperature": 0.0}
    }
    second = store.add_comparison(sid[:6], mid, comparison(first_divergence=1))
    assert second.created_at.tzinfo is not None and second.data["first_divergence"] == 1
    got = store.get(sid)
    assert got.comparisons == (added, second)
    assert got.comparisons[0].data["first_divergence"] is None
    assert got.comparisons[0].data["steps"][1]["logprob_b"] is None
    assert Comparison.from_json(got.comparisons[0].data).to_json(extended=True) == added.data
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
    c = StoredComparison(1, T0, comparison_data(comparison()))
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


# --- exports ------------------------------------------------------------------------


def compared() -> Session:
    """A session whose reply was compared twice (once diverging), the first reply too."""
    messages = (user("q"), reply(["The", " end", "."]), user("again", 2), reply(["Yes"], minutes=3))
    comparisons = (
        StoredComparison(1, T0, comparison_data(comparison())),
        StoredComparison(3, T0 + timedelta(seconds=1), comparison_data(comparison(1))),
    )
    return Session("s1", "t", T0, T0, MODEL, SETTINGS, messages, "", comparisons)


def test_json_and_toml_round_trips_are_exact() -> None:
    session = compared()
    exported = export_json(session)
    back = import_session_text(exported.encode())
    assert back == session  # the nulls a file leaves out come back as nulls...
    assert export_json(back) == exported
    toml = export_toml(session)
    assert tomllib.loads(toml) == json.loads(exported)  # ...and TOML is the same tree
    via_toml = import_session_text(toml.encode())
    assert via_toml == session and export_json(via_toml) == exported


def test_the_export_carries_comparisons_with_their_nulls_left_out() -> None:
    tree = json.loads(export_json(compared()))
    assert list(tree)[-2:] == ["messages", "comparisons"]
    first = tree["comparisons"][0]
    assert (first["message"], first["created_at"]) == (1, "2026-01-02T03:04:05.678901Z")
    c = first["comparison"]
    assert "first_divergence" not in c and "problem" not in c and "engine" not in c["a"]
    assert "logprob_b" not in c["steps"][1] and "kl" not in c["steps"][2]
    assert tree["comparisons"][1]["comparison"]["first_divergence"] == 1
    assert "null" not in export_json(compared()) and "None" not in export_toml(compared())


def test_through_the_store_the_export_is_the_same(tmp_path: Path) -> None:
    exported = export_json(compared())
    with SessionStore(tmp_path / "x.db") as store:
        stored = store.import_session(import_session_text(exported.encode()))
        assert export_json(replace(stored, id="s1", updated_at=T0)) == exported


def test_files_without_comparisons_import_and_export_without_them() -> None:
    plain = replace(compared(), comparisons=())
    tree = json.loads(export_json(plain))
    assert "comparisons" not in tree
    assert import_session_text(json.dumps(tree).encode()) == plain
    assert import_session_text(export_toml(plain).encode()) == plain


def bad(path: str, value: Any) -> bytes:
    tree = json.loads(export_json(compared()))
    *parents, last = path.split(".")
    node = tree
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return json.dumps(tree).encode()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (bad("comparisons", {}), "^comparisons: expected an array, got object$"),
        (bad("comparisons.0", 3), r"^comparisons\[0\]: expected an object, got integer$"),
        (bad("comparisons.0.message", 4), r"^comparisons\[0\]\.message: no message 4: the"),
        (bad("comparisons.0.message", "1"), r"^comparisons\[0\]\.message: expected an integer"),
        (bad("comparisons.1.created_at", "today"), r"^comparisons\[1\]\.created_at: not an RFC"),
        (bad("comparisons.0.comparison", []), r"^comparisons\[0\]\.comparison: expected an obj"),
        (
            bad("comparisons.0.comparison.steps.1.kl", "big"),
            r"^comparisons\[0\]\.comparison\.steps\[1\]\.kl: must be a number$",
        ),
        (
            bad("comparisons.0.comparison.steps", {}),
            r"^comparisons\[0\]\.comparison\.steps: must be a list$",
        ),
        (
            bad("comparisons.1.comparison.tokenization.a_ids", ["1"]),
            r"^comparisons\[1\]\.comparison\.tokenization\.a_ids: must be a list of integers$",
        ),
        (
            bad("comparisons.0.comparison.version", 2),
            r"^comparisons\[0\]\.comparison\.version: 2 is not 1$",
        ),
        (
            bad("comparisons.0.comparison.a", {"x": "\ud800"}),
            r"^comparisons\[0\]\.comparison: cannot be stored: .*surrogate",
        ),
    ],
)
def test_a_malformed_comparison_is_refused_in_one_line_naming_the_field(
    data: bytes, error: str
) -> None:
    with pytest.raises(SessionImportError, match=error) as caught:
        import_session_text(data)
    assert "\n" not in str(caught.value)


def test_markdown_shows_each_comparison_after_its_reply() -> None:
    text = export_markdown(compared())
    first_reply, second_reply = text.index("## Assistant"), text.rindex("## Assistant")
    first, second = text.index("**Comparison**"), text.rindex("**Comparison**")
    assert first_reply < first < text.index("## User", first_reply) < second_reply < second
    block = text[first : text.index("## User", first_reply)]
    assert "- **A:** `SmolLM2-135M-Instruct` · backend transformers · quantize none\n" in block
    assert "- **B:** `SmolLM2-135M-Instruct` · backend llama.cpp · quantize Q4_1\n" in block
    assert "- **Tokenization:** same (3 tokens)" in block
    assert (
        "- **Summary:** 3 steps · mean KL 0.0123 (top-N estimate) · max KL 0.0123"
        " · same top-1 66.7% · first divergence none · PPL A 1.9 / B ?"
    ) in block
    assert "first divergence step 1" in text[second:]
    # an unknown KL (null: JSON has no infinity) is not ranked
    table = block[block.index("Steps with the largest KL (1 of 3; KL unknown at 2):") :]
    assert table.splitlines()[2:5] == [
        "| step | token | KL | p A | p B | same top-1 |",
        "|---:|---|---:|---:|---:|---|",
        "| 0 | `The` | 0.0123 | 0.9704 | 0.9512 | yes |",
    ]


def test_markdown_names_the_first_tokenization_difference() -> None:
    data = {**comparison(), "tokenization": {"a_ids": [1, 2, 3], "b_ids": [1, 5],
            "a_tokens": ["<s>", "Hi", "!"], "b_tokens": ["<s>", "Hello"]}}  # fmt: skip
    session = replace(compared(), comparisons=(StoredComparison(1, T0, data),))
    text = export_markdown(session)
    assert "- **Tokenization:** differs at token 1: A 2 `Hi`, B 5 `Hello` (3 and 2 tokens)" in text


def test_markdown_lists_the_five_largest_kl_steps_largest_first() -> None:
    kls = [0.5, 0.01, 2.0, 0.0, 0.7, 0.3, 1.25, 0.02]
    steps = [
        {**comparison()["steps"][0], "step": i, "kl": kl, "agree": kl < 1}
        for i, kl in enumerate(kls)
    ]
    side_b = {**comparison()["b"], "batch": {"prompts": ["A, B, C"], "padding": "right",
              "mask": False}, "sampling": {"temperature": 0.7, "seed": 3}}  # fmt: skip
    data = {**comparison(), "steps": steps, "b": side_b}
    text = export_markdown(replace(compared(), comparisons=(StoredComparison(1, T0, data),)))
    assert (
        "- **A:** `SmolLM2-135M-Instruct` · backend transformers · quantize none · batch —"
        " · temperature 0.0 · seed —\n"
    ) in text
    assert (
        "- **B:** `SmolLM2-135M-Instruct` · backend llama.cpp · quantize Q4_1 · batch with 1"
        " other prompt, right padding, mask off · temperature 0.7 · seed 3\n"
    ) in text
    table = text[text.index("Steps with the largest KL (5 of 8):") :].splitlines()[4:10]
    assert [row.split(" | ")[0] for row in table] == ["| 2", "| 6", "| 4", "| 0", "| 5", ""]
    assert table[0] == "| 2 | `The` | 2 | 0.9704 | 0.9512 | no |"


def test_toml_names_the_field_too() -> None:
    tree = tomllib.loads(export_toml(compared()))
    tree["comparisons"][1]["comparison"]["summary"]["mean_kl"] = "low"
    with pytest.raises(SessionImportError, match=r"^comparisons\[1\]\.comparison\.summary\.mean"):
        import_session_text(tomli_w.dumps(tree).encode())
