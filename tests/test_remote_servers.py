"""Step-through on llama.cpp's server and SGLang through their own endpoints (chosen by
the probe: native.py), against stubs that speak their documented shapes over real HTTP
(tests/native_stubs.py) and answer with the tiny model: step, force a candidate,
continue, branch, with the ids, text, bytes and special flags of a local run. A real
llama-server on the bundled GGUF is checked the same way against our llama.cpp backend
where one is given: LOGITLAB_LLAMACPP_URL (running) or LOGITLAB_LLAMA_SERVER (the binary,
started here on a free loopback port)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.decode import RemoteEngine
from engine.errors import FeatureUnavailableError
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from engine.records import Step
from engine.tokens import ChatMessage
from tests.native_stubs import LlamaCppStub, NativeStub, SglangStub

pytestmark = pytest.mark.timeout(240)
QUESTION = [ChatMessage("user", "What is 2+2?")]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=10, top_logprobs=5)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def llama(tiny_engine: Any, tokenizer: Any) -> Iterator[NativeStub]:
    with LlamaCppStub(tiny_engine[0], tokenizer) as stub:
        yield stub


@pytest.fixture(scope="module")
def sglang(tiny_engine: Any, tokenizer: Any) -> Iterator[NativeStub]:
    with SglangStub(tiny_engine[0], tokenizer) as stub:
        yield stub


def _connect(stub: NativeStub, **kwargs: Any) -> RemoteEngine:
    engine = RemoteEngine(stub.url, **kwargs)
    engine.load(ModelSpec())
    return engine


def _drive(engine: Any, prompt_ids: list[int] | None = None) -> tuple[list[Step], list[Step]]:
    """The issue's step-through (step, step, force candidate 2, continue), then a branch
    (rewind 3, force candidate 1, continue): both runs' steps. Nothing here opens a chat
    stream (the stubs have no OpenAI chat endpoint)."""
    reply = (
        engine.start(QUESTION, GREEDY)
        if prompt_ids is None
        else engine.start_ids(prompt_ids, GREEDY)
    )
    reply.prefill()
    steps = []
    for _ in range(2):  # step mode: each token proposed, then accepted
        reply.propose()
        steps.append(reply.step())
    steps.append(reply.step(force=reply.propose().top[2].token_id))
    while not reply.done:  # continue: free decoding from the ids
        steps.append(reply.step())
    reply.rewind(3)
    branch = [*steps[: len(steps) - 3], reply.step(force=reply.propose().top[1].token_id)]
    while not reply.done:
        branch.append(reply.step())
    return steps, branch


def _whole(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _same(remote: list[Step], local: list[Step], tokenizer: Any, bytes_sent: bool = True) -> None:
    """`bytes_sent`: the server sends each token's bytes (llama.cpp); SGLang sends text,
    so part of a character has unknown bytes (b"") and its text comes from /detokenize."""
    assert [s.token_id for s in remote] == [s.token_id for s in local]
    for r, lo in zip(remote, local, strict=True):
        assert (r.text, r.special, r.forced) == (lo.text, lo.special, lo.forced)
        known = bytes_sent or _whole(lo.token_bytes)
        assert r.token_bytes == (lo.token_bytes if known else b"")
        assert r.logprob == pytest.approx(lo.logprob, abs=1e-4)
        assert [c.token_id for c in r.top] == [c.token_id for c in lo.top]
    ids = [s.token_id for s in remote]
    assert "".join(s.text for s in remote) == tokenizer.decode(ids, skip_special_tokens=True)


def test_llamacpp_probe_picks_completion(llama: NativeStub) -> None:
    caps = _connect(llama).capabilities
    assert caps.server == "llama.cpp"
    assert caps.step_api == "llama.cpp" and caps.token_id_prompts
    assert caps.tokenize_chat and caps.tokenize_text
    assert caps.ids_in_logprobs == "id field" and caps.distribution == "raw"
    assert caps.step_unavailable() is None
    assert ("step endpoint", "/completion") in caps.lines()


def test_llamacpp_step_force_branch_match_local(
    llama: NativeStub, tiny_engine: Any, tokenizer: Any
) -> None:
    remote = _connect(llama)
    assert remote.chat_ids(QUESTION) == tiny_engine[0].chat_ids(QUESTION)  # /apply-template
    r_steps, r_branch = _drive(remote)
    l_steps, l_branch = _drive(tiny_engine[0])
    assert r_steps[2].forced and r_branch[-1].finish_reason is not None
    _same(r_steps, l_steps, tokenizer)
    _same(r_branch, l_branch, tokenizer)
    assert "/completion" in llama.calls and "/v1/completions" in llama.calls  # probe only


def test_llamacpp_with_named_tokenizer_has_local_pieces(
    llama: NativeStub, tiny_engine: Any, tiny_model_dir: Path
) -> None:
    remote = _connect(llama, tokenizer=str(tiny_model_dir))
    r_steps, _ = _drive(remote)
    l_steps, _ = _drive(tiny_engine[0])
    assert [s.piece for s in r_steps] == [s.piece for s in l_steps]
    assert [[c.piece for c in s.top] for s in r_steps] == [
        [c.piece for c in s.top] for s in l_steps
    ]


def test_sglang_probe_picks_generate(sglang: NativeStub) -> None:
    caps = _connect(sglang).capabilities
    assert caps.server == "sglang"
    assert caps.step_api == "sglang" and caps.token_id_prompts
    assert caps.tokenize_text and not caps.tokenize_chat
    assert ("step endpoint", "/generate") in caps.lines()


def test_sglang_chat_ids_need_a_tokenizer(sglang: NativeStub) -> None:
    remote = _connect(sglang)
    with pytest.raises(FeatureUnavailableError, match="--engine-tokenizer"):
        remote.chat_ids(QUESTION)
    assert remote.render_prompt(QUESTION).warnings


def test_sglang_step_force_branch_match_local(
    sglang: NativeStub, tiny_engine: Any, tiny_model_dir: Path, tokenizer: Any
) -> None:
    prompt = tiny_engine[0].chat_ids(QUESTION)
    r_steps, r_branch = _drive(_connect(sglang), prompt)  # ids given: no chat tokenizing
    l_steps, l_branch = _drive(tiny_engine[0], prompt)
    _same(r_steps, l_steps, tokenizer, bytes_sent=False)
    _same(r_branch, l_branch, tokenizer, bytes_sent=False)
    # from chat messages, with the tokenizer named for the prompt ids
    named = _connect(sglang, tokenizer=str(tiny_model_dir))
    assert named.render_prompt(QUESTION).ids == prompt
    n_steps, _ = _drive(named)
    assert [s.token_id for s in n_steps] == [s.token_id for s in l_steps]
    assert [s.piece for s in n_steps] == [s.piece for s in l_steps]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """A real llama-server on the bundled GGUF: the one named, or one started here."""
    if os.environ.get("LOGITLAB_LLAMACPP_URL"):
        yield os.environ["LOGITLAB_LLAMACPP_URL"]
        return
    import httpx

    from engine.model.default_model import default_gguf_path

    port = _free_port()
    cmd = [os.environ["LOGITLAB_LLAMA_SERVER"], "-m", str(default_gguf_path()), "--host",
           "127.0.0.1", "--port", str(port), "-c", "2048", "-np", "1"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        for _ in range(600):  # up to ~60 s
            assert proc.poll() is None, f"llama-server exited ({proc.returncode})"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.real_model
@pytest.mark.skipif(
    not (os.environ.get("LOGITLAB_LLAMACPP_URL") or os.environ.get("LOGITLAB_LLAMA_SERVER")),
    reason="no llama-server here (LOGITLAB_LLAMA_SERVER=path/to/llama-server runs this)",
)
def test_real_llama_server_steps_like_our_llamacpp_backend(llama_server: str) -> None:
    pytest.importorskip("llama_cpp")
    from engine.decode import open_engine

    remote = RemoteEngine(llama_server)
    remote.load(ModelSpec())
    assert remote.capabilities.step_api == "llama.cpp"
    local = open_engine(ModelSpec(backend="llama.cpp", device="cpu"))
    local.load(ModelSpec(backend="llama.cpp", device="cpu"))
    assert remote.chat_ids(QUESTION) == local.chat_ids(QUESTION)
    for r_run, l_run in zip(_drive(remote), _drive(local), strict=True):
        assert [s.token_id for s in r_run] == [s.token_id for s in l_run]
        assert [s.text for s in r_run] == [s.text for s in l_run]
        assert [s.token_bytes for s in r_run] == [s.token_bytes for s in l_run]
        # the same Q4_1 weights through two builds' kernel choices (repacked weights, the
        # KV cache type): up to 0.12 nats apart here on the 135M model, the ids all equal
        for r, lo in zip(r_run, l_run, strict=True):
            assert r.logprob == pytest.approx(lo.logprob, abs=0.25)
    remote.close()
