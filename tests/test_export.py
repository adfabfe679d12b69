"""Export/import: the DESIGN.md schema exactly, lossless round trips, total validation."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from session_factories import MODEL, SETTINGS, T0, make_step, reply, user

from engine.errors import SessionImportError
from engine.params import SamplingParams
from engine.records import FINISH_REASONS, Candidate, Step
from engine.sessions import (
    export_json,
    export_markdown,
    export_toml,
    import_session_text,
    session_to_dict,
)
from engine.sessions import importer as session_import
from engine.sessions.records import (
    SOURCES,
    Alternative,
    ModelRecord,
    Session,
    SessionMessage,
    SessionSettings,
)
from engine.sessions.store import SessionStore

# --- strategies ---------------------------------------------------------------------

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
logprob = st.floats(-60.0, 0.0, allow_nan=False)
positive = st.floats(0.0, 1e4, allow_nan=False)
count = st.integers(0, 2**31)
finish = st.sampled_from(FINISH_REASONS)
when = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
candidate = st.builds(
    Candidate,
    token_id=count,
    piece=text,
    logprob=logprob,
    processed_logprob=st.one_of(st.just(-math.inf), logprob),
    text=text,
)


@st.composite
def steps(draw: Any, first_index: int = 0) -> tuple[Step, ...]:
    n = draw(st.integers(0, 4))
    return tuple(
        Step(
            index=first_index + i,
            token_id=draw(count),
            piece=draw(text),
            text=draw(text),
            forced=draw(st.booleans()),
            logprob=draw(logprob),
            rank=draw(count),
            entropy=draw(positive),
            processed_logprob=draw(st.one_of(st.just(-math.inf), logprob)),
            processed_rank=draw(count),
            processed_entropy=draw(positive),
            top=tuple(draw(st.lists(candidate, max_size=3))),
            elapsed_ms=draw(positive),
            special=draw(st.booleans()),
            token_bytes=draw(st.binary(max_size=6)),
            finish_reason=draw(st.none() | finish) if i == n - 1 else None,
        )
        for i in range(n)
    )


@st.composite
def alternatives(draw: Any, limit: int = 5) -> Alternative:
    at = draw(st.integers(0, limit))
    return Alternative(
        content=draw(text),
        finish_reason=draw(st.none() | finish),
        steps=draw(steps(first_index=at)),
        created_at=draw(when),
        parent_step=at,
        seed=draw(st.none() | st.integers(0, 2**32)),
    )


@st.composite
def messages(draw: Any) -> SessionMessage:
    path = draw(steps())
    return SessionMessage(
        role=draw(st.sampled_from(("system", "user", "assistant"))),
        content=draw(text),
        created_at=draw(when),
        finish_reason=draw(st.none() | finish),
        steps=path,
        alternatives=tuple(draw(st.lists(alternatives(len(path)), max_size=2))),
    )


sampling = st.builds(
    SamplingParams,
    temperature=st.floats(0.0, 5.0),
    top_k=st.integers(0, 200),
    top_p=st.floats(0.0, 1.0, exclude_min=True),
    min_p=st.floats(0.0, 1.0, exclude_max=True),
    repetition_penalty=st.floats(0.1, 3.0),
    max_new_tokens=st.integers(1, 4096),
    seed=st.none() | st.integers(0, 2**63 - 1),
    stop=st.lists(text.filter(bool), max_size=2).map(tuple),
    top_logprobs=st.integers(0, 50),
)
sessions = st.builds(
    Session,
    id=text,
    title=text,
    created_at=when,
    updated_at=when,
    model=st.builds(
        ModelRecord,
        id=text,
        source=st.sampled_from(SOURCES),
        device=text,
        dtype=text,
        quantize=text,
    ),
    settings=st.builds(SessionSettings, system_prompt=text, sampling=sampling),
    messages=st.lists(messages(), max_size=3).map(tuple),
)
few = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- round trips --------------------------------------------------------------------


@few
@given(sessions)
def test_json_round_trip_is_lossless(session: Session) -> None:
    exported = export_json(session)
    assert import_session_text(exported.encode()) == session
    assert export_json(import_session_text(exported.encode())) == exported


@few
@given(sessions)
def test_toml_round_trip_is_lossless_and_the_same_tree(session: Session) -> None:
    exported = export_toml(session)
    assert tomllib.loads(exported) == json.loads(export_json(session))
    assert import_session_text(exported.encode()) == session
    # JSON -> TOML -> JSON
    via_toml = import_session_text(
        export_toml(import_session_text(export_json(session).encode())).encode()
    )
    assert export_json(via_toml) == export_json(session)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(session=sessions)
def test_round_trip_through_the_store(session: Session, tmp_path: Path) -> None:
    with SessionStore(tmp_path / "rt.db") as store:
        stored = store.import_session(import_session_text(export_json(session).encode()))
        again = session_to_dict(store.get(stored.id))
    expected = session_to_dict(session)
    assert {**again, "id": None} == {**expected, "id": None}


def test_the_export_follows_the_design_schema() -> None:
    s = Session("id1", "t", T0, T0, MODEL, SETTINGS, (user("Hi"), reply(["The"])))
    d = json.loads(export_json(s))
    assert list(d) == [
        "format", "version", "id", "title", "created_at", "updated_at", "model", "settings", "messages",
    ]  # fmt: skip
    assert (d["format"], d["version"], d["created_at"]) == (
        "logitlab.session",
        1,
        "2026-01-02T03:04:05.678901Z",
    )
    assert d["model"] == {
        "id": MODEL.id, "source": "gguf", "device": "cpu", "dtype": "float32", "quantize": "none",
    }  # fmt: skip
    assert d["settings"] == {
        "system_prompt": "Be brief.", "temperature": 0.7, "top_k": 50, "top_p": 0.9,
        "min_p": 0.0, "repetition_penalty": 1.0, "max_new_tokens": 256, "seed": 1234,
        "top_logprobs": 10,
    }  # fmt: skip
    assert d["messages"][0] == {
        "role": "user",
        "content": "Hi",
        "created_at": "2026-01-02T03:04:05.678901Z",
    }
    a = d["messages"][1]
    assert a["finish_reason"] == "stop"
    tok = a["logprobs"]["content"][0]
    assert {k: tok[k] for k in ("token", "token_id", "logprob", "bytes", "forced")} == {
        "token": "The", "token_id": 500, "logprob": -0.03, "bytes": [84, 104, 101], "forced": False,
    }  # fmt: skip
    assert tok["top_logprobs"][0] == {
        "token": "The", "token_id": 500, "logprob": -0.03, "bytes": [84, 104, 101],
        "piece": "ĠThe", "processed_logprob": -0.01,
    }  # fmt: skip
    assert "processed_logprob" not in tok["top_logprobs"][1]  # -inf is omitted
    assert "alternatives" not in a and "index" not in tok


def test_toml_has_no_nulls_or_none_strings() -> None:
    settings_ = SessionSettings(sampling=SamplingParams(seed=None))
    msg = SessionMessage("assistant", "", T0, None, (make_step(0, processed_logprob=-math.inf),))
    out = export_toml(Session("x", "", T0, T0, MODEL, settings_, (msg,)))
    assert "None" not in out and "null" not in out and "inf" not in out
    data = tomllib.loads(out)
    assert "seed" not in data["settings"] and "finish_reason" not in data["messages"][0]


def test_raw_minus_inf_is_written_as_openai_floor() -> None:
    msg = SessionMessage("assistant", "", T0, "stop", (make_step(0, logprob=-math.inf),))
    d = json.loads(export_json(Session("x", "", T0, T0, MODEL, SETTINGS, (msg,))))
    assert d["messages"][0]["logprobs"]["content"][0]["logprob"] == -9999.0


def test_a_minimal_openai_shaped_file_imports() -> None:
    d = json.loads(export_json(Session("x", "", T0, T0, MODEL, SETTINGS, (reply(["A"]),))))
    tok = d["messages"][0]["logprobs"]["content"][0]
    for key in (
        "piece",
        "rank",
        "entropy",
        "processed_logprob",
        "processed_rank",
        "processed_entropy",
        "elapsed_ms",
        "finish_reason",
    ):
        tok.pop(key)
    for cand in tok["top_logprobs"]:
        cand.pop("piece"), cand.pop("processed_logprob", None)
    d["settings"].pop("top_logprobs")
    d["unknown_key"] = {"ignored": True}
    step = import_session_text(json.dumps(d).encode()).messages[0].steps[0]
    assert (step.piece, step.rank, step.processed_logprob, step.index) == ("A", 0, -math.inf, 0)


def test_markdown_is_a_readable_transcript() -> None:
    low = make_step(1, 7, " Paris|", logprob=-3.0, rank=4, forced=True)
    msg = SessionMessage("assistant", "The Paris", T0, "cancelled", (make_step(0), low))
    s = Session("sid", "Capitals", T0, T0, MODEL, SETTINGS, (user("Capital of France?"), msg))
    md = export_markdown(s, low_prob_tokens=1)
    assert md.startswith("# Capitals\n")
    assert "`SmolLM2-135M-Instruct` (gguf) · cpu · float32" in md
    assert "temperature 0.7" in md and "seed 1234" in md
    assert "> Be brief." in md
    assert "## User · 2026-01-02 03:04:05 UTC\n\nCapital of France?" in md
    assert "## Assistant · 2026-01-02 03:04:05 UTC · cancelled" in md
    assert "| 1 | ` Paris\\|` | 0.0498 | 4 | yes |" in md
    assert "Lowest-probability" not in export_markdown(s)


# --- refusals: message names the problem, the store is untouched -----------------------


def good() -> dict[str, Any]:
    alt = Alternative("old", "length", (make_step(1),), T0)
    answer = replace(reply(["The", " end"]), alternatives=(alt,))
    return session_to_dict(Session("orig", "t", T0, T0, MODEL, SETTINGS, (user("q"), answer)))


def changed(path: str, value: Any) -> dict[str, Any]:
    """`good()` with the value at a dotted path (list indices as numbers) set or deleted."""
    data = good()
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    key_: Any = int(last) if last.isdigit() else last
    if value is DELETE:
        del node[key_]
    else:
        node[key_] = value
    return data


DELETE = object()
BAD_TREES = [
    (changed("format", "other.session"), "format: not a logitlab session export"),
    (changed("version", 2), "version: unsupported version 2"),
    (changed("version", "1"), "version: expected an integer, got string"),
    (changed("version", DELETE), "version: missing required field"),
    (changed("id", 5), "id: expected a string, got integer"),
    (changed("created_at", "yesterday"), "created_at: not an RFC 3339 timestamp"),
    (changed("updated_at", "2026-01-02T03:04:05"), "updated_at: timestamp has no time zone"),
    (changed("model.source", "ftp"), "model.source: must be one of hub, local, gguf"),
    (changed("model.dtype", DELETE), "model.dtype: missing required field"),
    (changed("settings", []), "settings: expected an object, got array"),
    (changed("settings.temperature", "hot"), "settings.temperature: expected a number"),
    (changed("settings.temperature", DELETE), "settings.temperature: missing required field"),
    (changed("settings.top_p", 2.0), r"settings.top_p: must be in \(0, 1\]"),
    (changed("settings.top_k", True), "settings.top_k: expected an integer, got boolean"),
    (changed("settings.seed", -1), r"settings.seed: must be an integer in \[0, 2\^63\)"),
    (changed("settings.stop", ["ok", 3]), r"settings.stop\[1\]: expected a string"),
    (changed("messages", {}), "messages: expected an array, got object"),
    (changed("messages.0", "hi"), r"messages\[0\]: expected an object, got string"),
    (changed("messages.0.role", "robot"), r"messages\[0\].role: must be one of"),
    (changed("messages.1.content", DELETE), r"messages\[1\].content: missing required field"),
    (changed("messages.1.content", None), r"messages\[1\].content: expected a string, got null"),
    (changed("messages.1.finish_reason", "done"), r"messages\[1\].finish_reason: must be one of"),
    (changed("messages.1.logprobs", []), r"messages\[1\].logprobs: expected an object"),
    (
        changed("messages.1.logprobs.content.1.logprob", "-0.1"),
        r"messages\[1\].logprobs.content\[1\].logprob: expected a number, got string",
    ),
    (
        changed("messages.1.logprobs.content.1.token_id", DELETE),
        r"messages\[1\].logprobs.content\[1\].token_id: missing required field",
    ),
    (
        changed("messages.1.logprobs.content.0.forced", 0),
        r"messages\[1\].logprobs.content\[0\].forced: expected true or false, got integer",
    ),
    (
        changed("messages.1.logprobs.content.0.bytes", [84, 300]),
        r"messages\[1\].logprobs.content\[0\].bytes\[1\]: expected a byte",
    ),
    (
        changed("messages.1.logprobs.content.0.top_logprobs.1.dropped_by", "top-q"),
        r"messages\[1\].logprobs.content\[0\].top_logprobs\[1\].dropped_by: must be one of",
    ),
    (
        changed("messages.1.logprobs.content.0.top_logprobs.1.logprob", None),
        r"messages\[1\].logprobs.content\[0\].top_logprobs\[1\].logprob: expected a number, got null",
    ),
    (
        changed("messages.1.logprobs.content.0.token_id", 2**64),
        r"messages\[1\].logprobs.content\[0\].token_id: must be an integer in \[0, 2\^63\)",
    ),
    (
        changed("messages.1.branches.0.tokens.0.entropy", "x"),
        r"messages\[1\].branches\[0\].tokens\[0\].entropy: expected a number",
    ),
    (
        changed("messages.1.branches.0.created_at", DELETE),
        r"branches\[0\].created_at: missing",
    ),
    (
        changed("messages.1.branches.0.parent_step", 7),
        r"messages\[1\].branches\[0\].parent_step: leaves the reply at step 7, but it has 2",
    ),
    (
        changed("messages.1.branches.0.tokens", {}),
        r"messages\[1\].branches\[0\].tokens: expected an array",
    ),
    (
        changed("messages.0.content", "\ud800"),
        r"messages\[0\].content: contains an invalid unicode surrogate",
    ),
    ([1, 2], "not a logitlab session"),
]


def json_bytes(tree: Any) -> bytes:
    return json.dumps(tree).encode()


BAD_FILES = [
    (b"", "the file is empty"),
    (b"  \n", "the file is empty"),
    (json_bytes(good())[:400], r"not valid JSON \(truncated\?\)"),
    (tomli_w.dumps(good()).encode()[:300], "neither JSON nor valid TOML"),
    (json_bytes(good()).replace(b'"q"', b'"\xff\xfe"'), "not UTF-8 text"),
    (json_bytes(good()).replace(b"-0.03", b"NaN", 1), "NaN is not a number"),
    (json_bytes(good()).replace(b"-0.03", b"1e999", 1), "must be a finite number"),
    (b"[[1]] x = ", "neither JSON nor valid TOML"),
    (b"{" * 100_000, "not a session|not valid JSON"),
]


@pytest.fixture
def store() -> SessionStore:
    with SessionStore.open_default() as s:
        s.import_session(Session("keep", "kept", T0, T0, MODEL, SETTINGS, (user("q"),)))
        yield s


def refused(store: SessionStore, data: bytes, pattern: str) -> None:
    before = [export_json(store.get(s.id)) for s in store.list()]
    with pytest.raises(SessionImportError, match=pattern):
        store.import_session(import_session_text(data))
    assert [export_json(store.get(s.id)) for s in store.list()] == before


@pytest.mark.parametrize(("tree", "pattern"), BAD_TREES)
def test_bad_json_is_refused_naming_the_field(store: SessionStore, tree: Any, pattern: str) -> None:
    refused(store, json_bytes(tree), pattern)


def toml_can_say(tree: Any) -> bool:
    """TOML has no null and cannot encode a lone surrogate: skip those cases for TOML."""
    try:
        tomli_w.dumps(tree).encode()
    except (TypeError, UnicodeEncodeError):
        return False
    return True


BAD_TOML = [(t, p) for t, p in BAD_TREES if isinstance(t, dict) and toml_can_say(t)]


@pytest.mark.parametrize(("tree", "pattern"), BAD_TOML)
def test_bad_toml_is_refused_naming_the_field(store: SessionStore, tree: Any, pattern: str) -> None:
    refused(store, tomli_w.dumps(tree).encode(), pattern)


@pytest.mark.parametrize(("data", "pattern"), BAD_FILES)
def test_bad_files_are_refused(store: SessionStore, data: bytes, pattern: str) -> None:
    refused(store, data, pattern)


def test_files_over_the_size_limit_are_refused(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_import, "MAX_IMPORT_BYTES", 1000)
    refused(store, json_bytes(good()), "too large: session files over 1000 bytes are refused")
    assert session_import._size(64 * 2**20) == "64 MiB"


def test_toml_and_json_are_told_apart_by_content(store: SessionStore) -> None:
    as_toml = tomli_w.dumps(good()).encode()
    assert import_session_text(as_toml) == import_session_text(json_bytes(good()))
    assert import_session_text(b"\xef\xbb\xbf" + json_bytes(good())).id == "orig"  # BOM


# --- reply trees --------------------------------------------------------------------


def tree_session() -> Session:
    answer = reply(["The", " end", "."])
    forced = replace(make_step(1), forced=True)
    first = Alternative(" a", "stop", (forced, make_step(2)), T0, parent_step=1, seed=7)
    second = Alternative("", "cancelled", (), T0, parent_step=3)
    answer = replace(answer, alternatives=(first, second))
    return Session("tree", "t", T0, T0, MODEL, SETTINGS, (user("q"), answer))


def test_a_tree_exports_as_branches_and_round_trips_identically() -> None:
    session = tree_session()
    for export in (export_json, export_toml):
        text = export(session)
        back = import_session_text(text.encode())
        assert back == session and export(back) == text
    a = json.loads(export_json(session))["messages"][1]
    assert [t["token"] for t in a["logprobs"]["content"]] == ["The", " end", "."]
    one, two = a["branches"]
    assert {k: one[k] for k in ("parent_step", "forced", "finish_reason", "seed")} == {
        "parent_step": 1, "forced": True, "finish_reason": "stop", "seed": 7,
    }  # fmt: skip
    assert len(one["tokens"]) == 2 and "index" not in one["tokens"][0]
    assert two["parent_step"] == 3 and two["tokens"] == []
    assert "alternatives" not in a


def test_a_file_with_the_older_alternatives_imports_as_branches() -> None:
    d = session_to_dict(tree_session())
    answer = d["messages"][1]
    del answer["branches"]
    tail = [session_to_dict(tree_session())["messages"][1]["branches"][0]["tokens"][0]]
    tail[0]["index"] = 1  # older files indexed an alternative's tokens from its branch point
    answer["alternatives"] = [
        {"content": "old", "created_at": d["created_at"], "logprobs": {"content": tail}}
    ]
    (alt,) = import_session_text(json.dumps(d).encode()).messages[1].alternatives
    assert alt.branch_index == 1 and alt.content == "old" and alt.steps[0].index == 1


def test_markdown_lists_each_branch_under_its_branch_point() -> None:
    md = export_markdown(tree_session())
    assert "**2 other branches**" in md
    assert "- at step 1, the reply took" in md and "- at step 3, the reply took the end" in md
    assert "branch 1:" in md and "seed 7" in md and "cancelled" in md
