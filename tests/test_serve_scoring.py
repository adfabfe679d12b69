"""`logitlab serve` scores prompts: OpenAI's legacy ``echo`` + ``logprobs``, ``max_tokens:
0``, vLLM's ``prompt_logprobs`` on both endpoints, token-id prompts and batches of them
(what lm-eval sends); the numbers equal the in-process `PromptScoring.score`. The remote
engine scores through such a server as in-process, and a server that cannot score says
so in one line. Real clients (openai, httpx) against a live server on a loopback port;
the tiny random model."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pytest

from engine.decode import RemoteEngine, prompt_scoring
from engine.errors import FeatureUnavailableError, InvalidParameterError
from engine.model.spec import ModelSpec
from engine.serve import SERVED_PREFIX, ServeOptions, ServerThread, create_app
from engine.sessions import SessionStore

pytestmark = pytest.mark.timeout(180)
TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def server(tiny_engine: Any) -> Iterator[ServerThread]:
    engine, model = tiny_engine
    with ServerThread(create_app(engine, model, ServeOptions(record=False), None)) as running:
        yield running


def _client(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=60)


def _name(server: ServerThread) -> str:
    return str(server.app.state.server.name)


def _post(server: ServerThread, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, json={"model": _name(server), **body}, timeout=60)


def _local(tiny_engine: Any, ids: list[int], top: int = 0) -> Any:
    engine, _model = tiny_engine
    return prompt_scoring(engine).score(ids, top=top)


def test_echo_with_logprobs_puts_the_prompt_first(server: ServerThread, tiny_engine: Any) -> None:
    engine, _model = tiny_engine
    ids = engine.encode(TEXT)
    reply = _client(server).completions.create(
        model=_name(server), prompt=TEXT, echo=True, logprobs=3, max_tokens=2, temperature=0
    )
    choice = reply.choices[0]
    lp = choice.logprobs
    n, generated = len(ids), reply.usage.completion_tokens
    assert choice.text.startswith(TEXT) and reply.usage.prompt_tokens == n
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.text_offset) == n + generated
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert lp.model_extra["token_ids"][:n] == ids
    # the offsets walk the echoed text: each prompt token's text starts where it says
    assert lp.text_offset[0] == 0
    for i in range(n):
        assert TEXT[lp.text_offset[i] :].startswith(lp.tokens[i])
    assert lp.text_offset[n] == len(TEXT)  # the first generated token follows the prompt
    local = _local(tiny_engine, ids, top=3)
    for score in local:
        assert lp.token_logprobs[score.position] == pytest.approx(score.logprob, abs=1e-4)
        top = lp.top_logprobs[score.position]
        assert len(top) == 3
        assert max(top.values()) == pytest.approx(score.top[0].logprob, abs=1e-4)
        cands = lp.model_extra["top_candidates"][score.position]
        assert [c["token_id"] for c in cands] == [c.token_id for c in score.top]


def test_max_tokens_zero_scores_only(server: ServerThread, tiny_engine: Any) -> None:
    engine, _model = tiny_engine
    ids = engine.encode(TEXT)
    reply = _client(server).completions.create(
        model=_name(server), prompt=ids, echo=True, logprobs=1, max_tokens=0
    )
    choice = reply.choices[0]
    assert choice.text == TEXT and choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 0
    assert len(choice.logprobs.token_logprobs) == len(ids)
    nll = -sum(choice.logprobs.token_logprobs[1:])
    assert nll == pytest.approx(-sum(s.logprob for s in _local(tiny_engine, ids)), abs=1e-3)


def test_prompt_logprobs_on_completions(server: ServerThread, tiny_engine: Any) -> None:
    engine, _model = tiny_engine
    ids = engine.encode(TEXT)
    body = _post(server, "/v1/completions", {"prompt": ids, "max_tokens": 1, "prompt_logprobs": 2})
    assert body.status_code == 200, body.text
    choice = body.json()["choices"][0]
    entries = choice["prompt_logprobs"]
    assert len(entries) == len(ids) and entries[0] is None
    assert choice["prompt_token_ids"] == ids
    for score in _local(tiny_engine, ids, top=2):
        entry = entries[score.position]
        mine = entry[str(score.token_id)]
        assert mine["logprob"] == pytest.approx(score.logprob, abs=1e-4)
        assert mine["rank"] == score.rank
        assert mine["decoded_token"] == engine.token_bytes(score.token_id).decode(errors="replace")
        # the top 2 and the actual token (3 entries where it is not among them)
        assert len(entry) == (2 if score.rank <= 2 else 3)
        for rank, cand in enumerate(score.top, start=1):
            assert entry[str(cand.token_id)]["rank"] == (
                score.rank if cand.token_id == score.token_id else rank
            )


def test_prompt_logprobs_on_chat(server: ServerThread, tiny_engine: Any) -> None:
    engine, _model = tiny_engine
    messages = [{"role": "user", "content": "Hello there"}]
    reply = _client(server).chat.completions.create(
        model=_name(server), messages=messages, max_tokens=1, extra_body={"prompt_logprobs": 0}
    )
    extra = reply.model_extra
    ids = extra["prompt_token_ids"]
    from engine.tokens.chat import ChatMessage

    assert ids == engine.render_prompt([ChatMessage("user", "Hello there")]).ids
    entries = extra["prompt_logprobs"]
    assert entries[0] is None and all(len(e) == 1 for e in entries[1:])
    for score in _local(tiny_engine, ids):
        got = entries[score.position][str(score.token_id)]["logprob"]
        assert got == pytest.approx(score.logprob, abs=1e-4)


def test_a_batch_of_token_id_prompts(server: ServerThread, tiny_engine: Any) -> None:
    """lm-eval's request: lists of ids, echo, logprobs 1, one token generated."""
    engine, _model = tiny_engine
    batch = [engine.encode("The fox"), engine.encode("A lazy dog sleeps all day")]
    body = _post(
        server, "/v1/completions",
        {"prompt": batch, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0},
    )  # fmt: skip
    assert body.status_code == 200, body.text
    choices = body.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1]
    for choice, ids in zip(choices, batch, strict=True):
        values = choice["logprobs"]["token_logprobs"]
        assert len(values) == len(ids) + 1 and values[0] is None
        for score in _local(tiny_engine, ids):
            assert values[score.position] == pytest.approx(score.logprob, abs=1e-4)


def test_echo_with_logprobs_streams_the_prompt_first(server: ServerThread) -> None:
    client = _client(server)
    args: dict[str, Any] = {"model": _name(server), "prompt": TEXT, "echo": True, "logprobs": 2}
    whole = client.completions.create(**args, max_tokens=3, temperature=0)
    chunks = list(client.completions.create(**args, max_tokens=3, temperature=0, stream=True))
    first = chunks[0].choices[0]
    assert first.text == TEXT and first.logprobs.token_logprobs[0] is None
    values = [
        v
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for v in c.choices[0].logprobs.token_logprobs
    ]
    assert values == whole.choices[0].logprobs.token_logprobs
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text


def test_bad_scoring_requests_get_one_line(server: ServerThread) -> None:
    cases = [
        ({"prompt": TEXT, "prompt_logprobs": 1, "stream": True}, "prompt_logprobs", "stream"),
        ({"prompt": TEXT, "prompt_logprobs": 21}, "prompt_logprobs", "[0, 20]"),
        ({"prompt": [[1, 2], [3, 4]], "stream": True}, "prompt", "one prompt"),
        ({"prompt": [[]], "echo": True, "logprobs": 1}, "prompt", "empty"),
        ({"prompt": [[1, 10**7]], "max_tokens": 0}, "prompt", "not in"),
    ]
    for body, param, words in cases:
        answer = _post(server, "/v1/completions", body)
        assert answer.status_code == 400, (body, answer.text)
        error = answer.json()["error"]
        assert error["param"] == param and words in error["message"], error
        assert "\n" not in error["message"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"  # still serving


def test_a_scored_request_is_recorded_with_its_surprisal(tiny_engine: Any) -> None:
    engine, model = tiny_engine
    store = SessionStore.open_default()
    app = create_app(engine, model, ServeOptions(record=True), store)
    ids = engine.encode(TEXT)
    with ServerThread(app) as running:
        body = _post(
            running,
            "/v1/completions",
            {"prompt": ids, "echo": True, "logprobs": 2, "max_tokens": 0},
        )
        assert body.status_code == 200, body.text
    reopened = SessionStore.open_default()
    try:
        summaries = reopened.list()
        assert [s.title.startswith(SERVED_PREFIX) for s in summaries] == [True]
        session = reopened.get(summaries[0].id)
    finally:
        reopened.close()
    (user,) = session.messages  # scored only: no reply
    assert user.role == "user" and user.content == TEXT
    local = _local(tiny_engine, ids, top=2)
    assert [s.index for s in user.steps] == [s.position for s in local]
    assert all(s.forced for s in user.steps)
    for step, score in zip(user.steps, local, strict=True):
        assert step.token_id == score.token_id
        assert step.logprob == pytest.approx(score.logprob, abs=1e-6)
        assert [c.token_id for c in step.top] == [c.token_id for c in score.top]


# --- the remote engine scores through a server ------------------------------------------


def _remote(url: str) -> RemoteEngine:
    remote = RemoteEngine(url)
    remote.load(ModelSpec())
    return remote


def test_remote_score_equals_in_process(server: ServerThread, tiny_engine: Any) -> None:
    engine, _model = tiny_engine
    remote = _remote(server.url + "/v1")
    assert remote.capabilities.prompt_scoring == "prompt_logprobs"
    ids = engine.encode(TEXT)
    local = _local(tiny_engine, ids, top=3)
    scored = prompt_scoring(remote).score(ids, top=3)
    assert [s.position for s in scored] == [s.position for s in local]
    for got, want in zip(scored, local, strict=True):
        assert got.token_id == want.token_id and got.rank == want.rank
        assert got.logprob == pytest.approx(want.logprob, abs=1e-3)
        assert [c.token_id for c in got.top] == [c.token_id for c in want.top]
        assert math.isnan(got.entropy)  # the server does not send it: unknown, not made up
    later = remote.score(ids, start=5)  # a sliding window reports its new tokens only
    assert [s.position for s in later] == list(range(5, len(ids)))
    assert [s.logprob for s in later] == pytest.approx([s.logprob for s in scored[4:]], abs=1e-6)
    with pytest.raises(InvalidParameterError, match="top"):
        remote.score(ids, top=21)


def test_remote_score_through_echo(server: ServerThread, tiny_engine: Any) -> None:
    """A server with echo + logprobs only (the probe's second choice) scores the same."""
    from dataclasses import replace

    engine, _model = tiny_engine
    remote = _remote(server.url + "/v1")
    remote._caps = replace(remote.capabilities, prompt_scoring="echo")
    ids = engine.encode(TEXT)
    for got, want in zip(remote.score(ids, top=2), _local(tiny_engine, ids, top=2), strict=True):
        assert got.logprob == pytest.approx(want.logprob, abs=1e-3)
        assert got.rank == (want.rank if want.rank <= 2 else 0)  # known among the candidates
        assert [c.token_id for c in got.top] == [c.token_id for c in want.top]


class _NoScoring(BaseHTTPRequestHandler):
    """A server with token-id prompts and logprobs, but no prompt scoring (it echoes
    nothing, as llama.cpp's server)."""

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
        self._json({"data": [{"id": "stub", "owned_by": "someone", "max_model_len": 64}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/tokenize":
            self._json({"tokens": [5, 6, 7]})
            return
        logprobs = {"tokens": ["a"], "token_logprobs": [-0.5], "top_logprobs": [{"a": -0.5}]}
        self._json({"choices": [{"index": 0, "text": "a", "logprobs": logprobs}]})


@pytest.fixture
def no_scoring() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _NoScoring)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_a_server_without_scoring_says_so_in_one_line(no_scoring: str) -> None:
    remote = _remote(no_scoring)
    assert remote.capabilities.token_id_prompts
    assert remote.capabilities.prompt_scoring == "none"
    with pytest.raises(FeatureUnavailableError) as caught:
        prompt_scoring(remote)
    assert "neither prompt_logprobs" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(FeatureUnavailableError):
        remote.score([5, 6, 7])


def _cli_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    from tui.cli.main import main

    assert main(argv) == 0, capsys.readouterr().err
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_score_cli_through_the_engine_equals_in_process(
    server: ServerThread, tiny_model_dir: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`logitlab score --engine` (windows of 16 advancing by 8) = the same in-process."""
    text = " ".join([TEXT] * 3)
    options = ["--window", "16", "--stride", "8", "--top-logprobs", "2", "--format", "jsonl"]
    remote = _cli_json(["score", text, "--engine", server.url + "/v1", *options], capsys)
    local_model = ["--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32"]
    local = _cli_json(["score", text, *local_model, *options], capsys)
    *remote_tokens, remote_summary = remote
    *local_tokens, local_summary = local
    assert remote_summary["tokens"] == local_summary["tokens"] == len(local_tokens) > 16
    assert remote_summary["nll"] == pytest.approx(local_summary["nll"], abs=1e-3)
    for got, want in zip(remote_tokens, local_tokens, strict=True):
        assert (got["position"], got["token_id"]) == (want["position"], want["token_id"])
        assert got["logprob"] == pytest.approx(want["logprob"], abs=1e-3)
        assert [c["token_id"] for c in got["top"]] == [c["token_id"] for c in want["top"]]


def test_an_engine_that_cannot_score_refuses_in_one_line() -> None:
    from tests.fake_engine import FakeEngine

    engine = FakeEngine()
    model = engine.load(ModelSpec())
    with ServerThread(create_app(engine, model, ServeOptions(record=False), None)) as running:
        for body, param in (
            ({"prompt": "Hi", "echo": True, "logprobs": 1}, "echo"),
            ({"prompt": "Hi", "prompt_logprobs": 1}, "prompt_logprobs"),
        ):
            answer = _post(running, "/v1/completions", body)
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert error["param"] == param and "cannot score the prompt" in error["message"]
            assert "\n" not in error["message"]
        # plain generation still works
        assert (
            _post(running, "/v1/completions", {"prompt": "Hi", "max_tokens": 2}).status_code == 200
        )
    engine.close()


def test_a_batch_that_fills_the_queue_runs_none_of_it() -> None:
    """One prompt holds the engine; a batch of three with room for one waiting gets 503,
    and the prompt of it that was queued is dropped, not run."""
    from tests.fake_engine import FakeEngine

    engine = FakeEngine(pause_at=0)
    model = engine.load(ModelSpec())
    app = create_app(engine, model, ServeOptions(record=False, max_queue=1), None)
    with ServerThread(app) as running:
        held = threading.Thread(
            target=_post, args=(running, "/v1/completions", {"prompt": "A", "max_tokens": 2})
        )
        held.start()
        for _ in range(500):  # bounded: until the held request runs
            if engine.started:
                break
            threading.Event().wait(0.01)
        assert len(engine.started) == 1
        batch = _post(running, "/v1/completions", {"prompt": ["B", "C", "D"], "max_tokens": 2})
        assert batch.status_code == 503, batch.text
        engine.release.set()
        held.join(60)
        for _ in range(500):  # the dropped job leaves the queue
            if httpx.get(running.url + "/health").json()["waiting"] == 0:
                break
            threading.Event().wait(0.01)
        assert (
            _post(running, "/v1/completions", {"prompt": "E", "max_tokens": 2}).status_code == 200
        )
        assert len(engine.started) == 2  # A and E: nothing of the refused batch ran
    engine.close()
