"""Pieces and text, never ``token_id:N``: a server that answers in vLLM's token-id shapes
(tests/vllm_stub.py, over `logitlab serve` on the tiny model) records the same ids,
pieces, bytes, special flags and text as the same ids run locally, in every mode: a full
reply, step-through with a forced token, a branch, a fan-out, `generate --format jsonl`
and a saved session. Pieces come from the server's /detokenize + /tokenize, each id
looked up once per connection, or from a tokenizer the user names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.decode import RemoteEngine, run_reply
from engine.decode.driver import BranchFinished, ReplyDriver, StepDecoded
from engine.decode.textstream import TokenTable
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from engine.records import Step
from engine.tokens import ChatMessage
from tests.vllm_stub import VllmStub
from tui.cli.main import main

pytestmark = pytest.mark.timeout(240)
QUESTION = [ChatMessage("user", "What is 2+2?")]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=10, top_logprobs=5)


def _remote(stub: VllmStub, **kwargs: Any) -> RemoteEngine:
    remote = RemoteEngine(stub.url, **kwargs)
    remote.load(ModelSpec())
    return remote


def _whole(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _piece(table: TokenTable, token_id: int, exact: bool) -> str:
    """The local piece; from the server alone, a token holding part of a UTF-8 character
    cannot be looked up exactly (its text does not spell it): its decoded text instead."""
    data = table.token_bytes(token_id)
    if exact or _whole(data):
        return table.piece(token_id)
    return data.decode("utf-8", errors="replace")


def _like_local(steps: list[Step], tokenizer: Any, exact: bool = False) -> None:
    """Every recorded field a token's id decides is the local engine's for that id."""
    table = TokenTable(tokenizer)
    for step in steps:
        assert step.piece == _piece(table, step.token_id, exact)
        if exact or _whole(table.token_bytes(step.token_id)):
            assert step.token_bytes == table.token_bytes(step.token_id)
        else:
            assert step.token_bytes == b""  # part of a character: unknown, not U+FFFD
        assert step.special == table.is_special(step.token_id)
        for cand in step.top:
            assert cand.piece == _piece(table, cand.token_id, exact)
            assert "token_id:" not in cand.piece + cand.text
    ids = [s.token_id for s in steps]
    assert "".join(s.text for s in steps) == tokenizer.decode(ids, skip_special_tokens=True)


def _same_as(remote: list[Step], local: list[Step], tokenizer: Any, exact: bool = False) -> None:
    table = TokenTable(tokenizer)
    assert [s.token_id for s in remote] == [s.token_id for s in local]
    held = False  # the local text holds part of a character: its candidates' text differs
    for r, lo in zip(remote, local, strict=True):
        assert (r.text, r.special) == (lo.text, lo.special)
        whole = exact or _whole(lo.token_bytes)
        assert r.token_bytes == (lo.token_bytes if whole else b"")  # b"": unknown
        assert r.piece == _piece(table, lo.token_id, exact)
        assert r.forced == lo.forced
        assert r.logprob == pytest.approx(lo.logprob, abs=1e-4)
        assert [(c.token_id, c.piece) for c in r.top] == [
            (c.token_id, _piece(table, c.token_id, exact)) for c in lo.top
        ]
        if not held:  # a candidate's text on its own equals the local one in context
            assert [c.text for c in r.top] == [c.text for c in lo.top]
        held = not lo.special and lo.text == "" and not _whole(lo.token_bytes)
    _like_local(remote, tokenizer, exact)


def test_probe_sees_token_id_strings(vllm_stub: VllmStub) -> None:
    caps = _remote(vllm_stub).capabilities
    assert caps.server == "vllm"
    assert caps.ids_in_logprobs == "token_id:N strings"
    assert caps.token_id_prompts


def test_full_reply_matches_local(
    vllm_stub: VllmStub, tiny_engine: Any, tiny_tokenizer: Any
) -> None:
    local = run_reply(tiny_engine[0].start(QUESTION, GREEDY))
    remote_engine = _remote(vllm_stub)
    remote = run_reply(remote_engine.start(QUESTION, GREEDY))
    _same_as(list(remote.steps), list(local.steps), tiny_tokenizer)
    assert remote.summary.text == local.summary.text
    # each id was looked up once on this connection, however often it came back
    assert max(vllm_stub.detokenized.values()) == 1
    again = run_reply(remote_engine.start(QUESTION, GREEDY))
    assert [s.piece for s in again.steps] == [s.piece for s in remote.steps]
    assert max(vllm_stub.detokenized.values()) == 1


def test_step_force_continue_keeps_the_text(
    vllm_stub: VllmStub, tiny_engine: Any, tiny_tokenizer: Any
) -> None:
    """The issue's example: step, step, force candidate 2, continue."""
    runs = []
    for engine in (_remote(vllm_stub), tiny_engine[0]):
        reply = engine.start(QUESTION, GREEDY)
        reply.prefill()
        steps = [reply.step(), reply.step()]
        steps.append(reply.step(force=reply.propose().top[2].token_id))
        while not reply.done:
            steps.append(reply.step())
        runs.append((steps, reply.summary()))
    (remote, r_summary), (local, l_summary) = runs
    assert remote[2].forced
    _same_as(remote, local, tiny_tokenizer)
    assert r_summary.text == l_summary.text
    assert r_summary.text == tiny_tokenizer.decode(r_summary.token_ids, skip_special_tokens=True)


def test_branch_matches_local(vllm_stub: VllmStub, tiny_engine: Any, tiny_tokenizer: Any) -> None:
    runs = []
    for engine in (_remote(vllm_stub), tiny_engine[0]):
        reply = engine.start(QUESTION, GREEDY)
        reply.prefill()
        for _ in range(4):
            reply.step()
        reply.rewind(2)
        steps = [reply.step(force=reply.propose().top[1].token_id)]
        while not reply.done:
            steps.append(reply.step())
        runs.append((steps, reply.summary()))
    (remote, r_summary), (local, l_summary) = runs
    _same_as(remote, local, tiny_tokenizer)
    assert r_summary.text == l_summary.text


def test_fan_out_records_pieces(vllm_stub: VllmStub, tiny_tokenizer: Any) -> None:
    events: list[Any] = []
    sampled = SamplingParams(temperature=1.0, max_new_tokens=6, top_logprobs=3, seed=1)
    driver = ReplyDriver(_remote(vllm_stub), QUESTION, sampled, on_event=events.append)
    driver.run()
    kept = [e.step for e in events if isinstance(e, StepDecoded)][:2]
    driver.fan_out([s.token_id for s in kept], [7, 8])
    branches = [e for e in events if isinstance(e, BranchFinished)]
    assert [b.seed for b in branches] == [7, 8]
    for branch in branches:
        assert branch.steps and branch.steps[0].index == 2
        _like_local([*kept, *branch.steps], tiny_tokenizer)


def test_named_tokenizer_gives_the_same_pieces(
    vllm_stub: VllmStub, tiny_engine: Any, tiny_model_dir: Path, tiny_tokenizer: Any
) -> None:
    remote_engine = _remote(vllm_stub, tokenizer=str(tiny_model_dir))
    before = sum(vllm_stub.detokenized.values())
    remote = run_reply(remote_engine.start(QUESTION, GREEDY))
    local = run_reply(tiny_engine[0].start(QUESTION, GREEDY))
    _same_as(list(remote.steps), list(local.steps), tiny_tokenizer, exact=True)
    assert sum(vllm_stub.detokenized.values()) == before  # the server was not asked


def _jsonl(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_generate_jsonl_and_saved_session_match_local(
    vllm_stub: VllmStub, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["generate", "What is 2+2?", "--temperature", "0", "--max-new-tokens", "8"]
    common += ["--format", "jsonl", "--top-logprobs", "4", "--save"]
    local = _jsonl([*common, "--model", str(tiny_model_dir), "--device", "cpu"], capsys)
    remote = _jsonl([*common, "--engine", vllm_stub.url], capsys)
    assert [o.get("token_id") for o in remote] == [o.get("token_id") for o in local]
    for r, lo in zip(remote[:-1], local[:-1], strict=True):
        assert r["text"] == lo["text"]
        # a token holding part of a character shows its bytes locally ("\\xf0\\x9f"); the
        # server alone can only say U+FFFD: those are left out here (exact with a tokenizer)
        pairs = [(r, lo), *zip(r["top"], lo["top"], strict=True)]
        assert all(a["token"] == b["token"] for a, b in pairs if "\\x" not in b["token"])
    assert remote[-1]["text"] == local[-1]["text"]
    assert "token_id:" not in json.dumps(remote)
    named = [*common[:-1], "--engine", vllm_stub.url, "--engine-tokenizer", str(tiny_model_dir)]
    exact = _jsonl(named, capsys)  # with the tokenizer named: every token as local
    assert [(o.get("token"), [c["token"] for c in o.get("top", [])]) for o in exact[:-1]] == [
        (o.get("token"), [c["token"] for c in o.get("top", [])]) for o in local[:-1]
    ]
    # the two saved sessions record the same assistant message, pieces and bytes
    exported = []
    assert main(["sessions", "list", "--format", "json"]) == 0
    sessions = json.loads(capsys.readouterr().out)
    for entry in sessions[:2]:
        assert main(["sessions", "export", str(entry["id"]), "--format", "json"]) == 0
        exported.append(json.loads(capsys.readouterr().out))
    messages = [next(m for m in e["messages"] if m["role"] == "assistant") for e in exported]
    assert messages[0]["content"] == messages[1]["content"]
    tokens = [m["logprobs"]["content"] for m in messages]
    assert [(t["token"], t["piece"], t["bytes"]) for t in tokens[0]] == [
        (t["token"], t["piece"], t["bytes"]) for t in tokens[1]
    ]


def test_engine_tokenizer_errors(vllm_stub: VllmStub, tmp_path: Path, capsys: Any) -> None:
    assert main(["generate", "Hi", "--engine-tokenizer", str(tmp_path)]) == 2
    assert "--engine" in capsys.readouterr().err
    missing = str(tmp_path / "no-such-tokenizer")
    assert main(["generate", "Hi", "--engine", vllm_stub.url, "--engine-tokenizer", missing]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--engine-tokenizer" in err


def _force_end(engine: Any, eos: int) -> tuple[list[Step], Any]:
    reply = engine.start(QUESTION, GREEDY)
    reply.prefill()
    steps = [reply.step(), reply.step(force=eos)]
    return steps, reply


def test_a_forced_end_of_sequence_ends_the_reply_as_locally(
    vllm_stub: VllmStub, tiny_engine: Any, tiny_model_dir: Path, tiny_tokenizer: Any
) -> None:
    """With a named tokenizer the remote reply knows its EOS ids: forcing one ends the
    reply (`stop`), as the local loop does."""
    eos = tiny_tokenizer.eos_token_id
    runs = [_force_end(engine, eos) for engine in (_remote(vllm_stub, tokenizer=str(tiny_model_dir)),
                                                   tiny_engine[0])]  # fmt: skip
    (remote, r_reply), (local, l_reply) = runs
    assert [s.token_id for s in remote] == [s.token_id for s in local]
    assert remote[-1].finish_reason == local[-1].finish_reason == "stop"
    assert remote[-1].special and remote[-1].text == "" and r_reply.done
    assert r_reply.summary().text == l_reply.summary().text
    assert r_reply.summary().finish_reason == l_reply.summary().finish_reason == "stop"


def test_an_end_the_server_stopped_on_is_learnt(vllm_stub: VllmStub, tiny_tokenizer: Any) -> None:
    """Without a tokenizer, the server says which ids end a reply by stopping on one:
    after that, forcing it ends a reply; before, it does not (nothing says so)."""
    remote = _remote(vllm_stub)
    eos = tiny_tokenizer.eos_token_id
    before, _ = _force_end(remote, eos)
    assert before[-1].finish_reason is None  # not known yet: the reply goes on
    ended = None
    for seed in range(40):  # bounded: the tiny model samples its EOS now and then (seed 3)
        params = SamplingParams(temperature=1.5, max_new_tokens=40, seed=seed)
        result = run_reply(remote.start([ChatMessage("user", "hi")], params))
        if result.summary.finish_reason == "stop":
            ended = result.steps[-1]
            break
    assert ended is not None and ended.token_id == eos and ended.special
    after, reply = _force_end(remote, eos)
    assert after[-1].finish_reason == "stop" and reply.summary().finish_reason == "stop"


def test_samplers_left_off_are_off_on_the_server(vllm_stub: VllmStub, tiny_engine: Any) -> None:
    """top-k, min-p and the repetition penalty left off locally are sent as off: the
    server's own defaults (here the generation config's top-k 50) do not apply, so a
    seeded sampled reply is the local one, id for id."""
    params = SamplingParams(temperature=1.5, max_new_tokens=24, seed=3, top_logprobs=2)
    assert params.top_k == 0 and params.min_p == 0.0 and params.repetition_penalty == 1.0
    remote = run_reply(_remote(vllm_stub).start([ChatMessage("user", "hi")], params))
    local = run_reply(tiny_engine[0].start([ChatMessage("user", "hi")], params))
    assert [s.token_id for s in remote.steps] == [s.token_id for s in local.steps]
    assert remote.summary.finish_reason == local.summary.finish_reason == "stop"  # seed 3
