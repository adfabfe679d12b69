"""`RemoteEngine` against a live `logitlab serve` on a loopback port (tiny model): the
same ids and logprobs as the local loop, step mode, forcing, branching, and every
error a user can meet (closed port, wrong key, unknown model, timeout, no logprobs).
llama.cpp's server is not installed here (compiling llama-cpp-python takes ~7 min):
its tests skip unless LOGITLAB_LLAMACPP_URL names a running one."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.decode import RemoteEngine, open_engine, run_reply
from engine.errors import (
    EngineAuthError,
    EngineModelNotFoundError,
    EngineServerError,
    EngineTimeoutError,
    EngineUnreachableError,
)
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from engine.serve import ServeOptions, ServerThread, create_app
from engine.tokens import ChatMessage
from tui.cli.main import main

pytestmark = pytest.mark.timeout(180)
MESSAGES = [ChatMessage("user", "Hello there")]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=8, top_logprobs=5)


@pytest.fixture(scope="module")
def server(tiny_engine: Any) -> Iterator[ServerThread]:
    engine, model = tiny_engine
    with ServerThread(create_app(engine, model, ServeOptions(record=False), None)) as running:
        yield running


def _remote(server: ServerThread, **kwargs: Any) -> RemoteEngine:
    remote = RemoteEngine(server.url + "/v1", **kwargs)
    remote.load(ModelSpec())
    return remote


def test_capabilities_are_probed(server: ServerThread) -> None:
    caps = _remote(server).capabilities
    assert caps.server == "logitlab"
    assert caps.token_id_prompts and caps.tokenize_chat
    assert caps.distribution == "raw+processed"
    assert caps.context_window == 256
    assert caps.step_unavailable() is None


def test_full_reply_matches_local(server: ServerThread, tiny_engine: Any) -> None:
    local = run_reply(tiny_engine[0].start(MESSAGES, GREEDY))
    remote_engine = _remote(server)
    remote = run_reply(remote_engine.start(MESSAGES, GREEDY))
    assert [s.token_id for s in remote.steps] == [s.token_id for s in local.steps]
    for r, lo in zip(remote.steps, local.steps, strict=True):
        assert r.logprob == pytest.approx(lo.logprob, abs=1e-4)
        assert r.processed_logprob == pytest.approx(lo.processed_logprob, abs=1e-4)
        assert [c.token_id for c in r.top] == [c.token_id for c in lo.top]
        assert r.text == lo.text
    assert remote.summary.finish_reason == local.summary.finish_reason
    assert remote.summary.text == local.summary.text
    assert remote.summary.prompt_tokens == local.summary.prompt_tokens
    # the Prompt tab's exact ids: the server's tokenizing of the chat
    assert remote_engine.render_prompt(MESSAGES).ids == tiny_engine[0].render_prompt(MESSAGES).ids


def _jsonl(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_generate_jsonl_matches_local(
    server: ServerThread, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["generate", "Hi", "--temperature", "0", "--max-new-tokens", "6", "--format", "jsonl"]
    local = _jsonl([*common, "--model", str(tiny_model_dir), "--device", "cpu"], capsys)
    remote = _jsonl([*common, "--engine", server.url + "/v1"], capsys)
    assert [o.get("token_id") for o in remote] == [o.get("token_id") for o in local]
    for r, lo in zip(remote[:-1], local[:-1], strict=True):
        assert r["logprob"] == pytest.approx(lo["logprob"], abs=1e-4)
        assert r["token"] == lo["token"]
    assert remote[-1]["text"] == local[-1]["text"]
    assert remote[-1]["finish_reason"] == local[-1]["finish_reason"]


def test_step_mode_force_and_branch(server: ServerThread, tiny_engine: Any) -> None:
    local_engine = tiny_engine[0]
    remote_reply = _remote(server).start(MESSAGES, GREEDY)
    local_reply = local_engine.start(MESSAGES, GREEDY)
    remote_reply.prefill()
    local_reply.prefill()
    first = remote_reply.propose()
    assert [c.token_id for c in first.top] == [c.token_id for c in local_reply.propose().top]
    forced = first.top[2].token_id  # not the pick: forcing = appending its id
    r_step, l_step = remote_reply.step(force=forced), local_reply.step(force=forced)
    assert r_step.forced and r_step.token_id == forced == l_step.token_id
    assert r_step.logprob == pytest.approx(l_step.logprob, abs=1e-4)
    for _ in range(3):  # accepting continues from the forced token
        r_next, l_next = remote_reply.propose(), local_reply.propose()
        assert r_next.sampled == l_next.sampled
        assert r_next.index == l_next.index
        remote_reply.step()
        local_reply.step()
    # branch: cut two tokens, force another candidate there, go on freely
    remote_reply.rewind(2)
    local_reply.rewind(2)
    alt = remote_reply.propose().top[1].token_id
    remote_reply.step(force=alt)
    local_reply.step(force=alt)
    rest_r = []
    while not remote_reply.done:
        rest_r.append(remote_reply.step().token_id)
    rest_l = []
    while not local_reply.done:
        rest_l.append(local_reply.step().token_id)
    assert rest_r == rest_l
    assert remote_reply.summary().token_ids == local_reply.summary().token_ids


def test_prefix_continues_a_stored_reply(server: ServerThread, tiny_engine: Any) -> None:
    whole = run_reply(tiny_engine[0].start(MESSAGES, GREEDY)).summary.token_ids
    reply = _remote(server).start(MESSAGES, GREEDY, prefix=whole[:3])
    result = run_reply(reply)
    assert result.summary.token_ids == whole
    assert result.steps[0].index == 3


def test_cancel_stops_the_stream(server: ServerThread) -> None:
    cancel = threading.Event()
    reply = _remote(server).start(MESSAGES, GREEDY.with_changes(max_new_tokens=200), cancel=cancel)
    reply.prefill()
    reply.step()
    reply.cancel()
    assert reply.done and reply.finish_reason == "cancelled"
    assert reply.summary().completion_tokens < 200


# --- errors ----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_names_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    with pytest.raises(EngineUnreachableError, match=url.replace(".", r"\.")):
        RemoteEngine(url).load(ModelSpec())
    assert main(["generate", "Hi", "--engine", url]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and url in err and "Traceback" not in err


def test_wrong_key_says_pass_api_key(tiny_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, model = tiny_engine
    app = create_app(engine, model, ServeOptions(record=False, api_key="sesame"), None)
    with ServerThread(app) as locked:
        with pytest.raises(EngineAuthError, match="--api-key"):
            _remote(locked)
        with pytest.raises(EngineAuthError, match="refused"):
            _remote(locked, api_key="wrong")
        assert _remote(locked, api_key="sesame").capabilities.model
        monkeypatch.setenv("LOGITLAB_API_KEY", "sesame")
        assert main(["info", "--engine", locked.url + "/v1"]) == 0


def test_unknown_model_lists_the_servers(server: ServerThread) -> None:
    name = server.app.state.server.name
    with pytest.raises(EngineModelNotFoundError, match=name):
        _remote(server, model="no-such-model")


def test_engine_with_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "Hi", "--engine", "http://127.0.0.1:1/v1", "--model", "x"]) == 2
    assert main(["info", "--api-key", "k"]) == 2


class _Stub(BaseHTTPRequestHandler):
    """A misbehaving server: no logprobs, a failure mid-stream, or no answer at all."""

    mode = "no-logprobs"

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._json({"data": [{"id": "stub", "owned_by": "someone"}]})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        if self.mode == "slow":
            threading.Event().wait(3)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        delta = {"choices": [{"delta": {"content": "Hi"}, "finish_reason": None}]}
        self.wfile.write(f"data: {json.dumps(delta)}\n\n".encode())
        if self.mode == "fail":
            self.wfile.write(b'data: {"error": {"message": "GPU fell over"}}\n\n')
            return
        end = {"choices": [{"delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())


@pytest.fixture
def stub() -> Iterator[tuple[str, type[_Stub]]]:
    handler = type("Handler", (_Stub,), {})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", handler
    httpd.shutdown()


def test_no_logprobs_still_chats(stub: tuple[str, type[_Stub]]) -> None:
    url, _handler = stub
    engine = RemoteEngine(url)
    engine.load(ModelSpec())
    assert engine.capabilities.step_unavailable() is not None  # step mode says so
    assert engine.render_prompt(MESSAGES).warnings  # the Prompt tab says it cannot
    reply = engine.start(MESSAGES, GREEDY)
    result = run_reply(reply)
    assert result.summary.text == "Hi"
    assert any("no logprobs" in n for n in reply.notices)
    assert math.isnan(result.steps[0].logprob)


def test_error_mid_stream_keeps_the_reply(stub: tuple[str, type[_Stub]]) -> None:
    url, handler = stub
    handler.mode = "fail"
    engine = RemoteEngine(url)
    engine.load(ModelSpec())
    reply = engine.start(MESSAGES, GREEDY)
    reply.prefill()
    first = reply.step()
    assert first.text == "Hi"
    with pytest.raises(EngineServerError, match="GPU fell over"):
        while not reply.done:
            reply.step()


def test_timeout_is_configurable(stub: tuple[str, type[_Stub]]) -> None:
    url, handler = stub
    handler.mode = "slow"
    engine = RemoteEngine(url, timeout=0.5)
    engine.load(ModelSpec())
    with pytest.raises(EngineTimeoutError, match="--engine-timeout"):
        run_reply(engine.start(MESSAGES, GREEDY))


# --- the import contract ----------------------------------------------------------------


def test_remote_path_imports_no_torch(server: ServerThread) -> None:
    code = (
        "import sys\n"
        "from tui.cli.main import main\n"
        f"rc = main(['generate', 'Hi', '--engine', {server.url + '/v1'!r},"
        " '--max-new-tokens', '3', '--temperature', '0'])\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print('HEAVY', heavy, rc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "HEAVY [] 0" in out


@pytest.mark.real_model
@pytest.mark.skipif(
    not os.environ.get("LOGITLAB_LLAMACPP_URL"),
    reason="no llama.cpp server here (set LOGITLAB_LLAMACPP_URL to one serving the bundled model)",
)
def test_llamacpp_server_gives_the_ids_of_a_local_run() -> None:
    """A llama.cpp server on the bundled GGUF, greedy: the same token ids and text as
    the bundled model run here (on llama.cpp too when its binding is installed)."""
    remote = RemoteEngine(os.environ["LOGITLAB_LLAMACPP_URL"])
    remote.load(ModelSpec())
    theirs = run_reply(remote.start(MESSAGES, GREEDY))
    local = open_engine(ModelSpec(device="cpu"))
    try:
        local.load(ModelSpec(device="cpu"))
        ours = run_reply(local.start(MESSAGES, GREEDY))
    finally:
        local.thread.close()
    assert len(ours.steps) > 0
    assert [s.token_id for s in theirs.steps] == [s.token_id for s in ours.steps]
    assert theirs.summary.text == ours.summary.text
