"""`engine.serve` through the official `openai` client against a live uvicorn server
on a free loopback port (no mocked transport); the tiny random model for speed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from engine.serve import SERVED_PREFIX, ServeOptions, ServerThread, create_app
from engine.sessions import SessionStore
from tests.engine_hold import codes_while_held
from tests.timeouts import scaled

pytestmark = pytest.mark.timeout(120)


def _server(tiny_engine: Any, **options: Any) -> ServerThread:
    engine, model = tiny_engine
    store = SessionStore.open_default() if options.get("record", False) else None
    options.setdefault("record", False)
    return ServerThread(create_app(engine, model, ServeOptions(**options), store))


@pytest.fixture
def server(tiny_engine: Any) -> Iterator[ServerThread]:
    with _server(tiny_engine) as running:
        yield running


def _client(server: ServerThread, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=60)


def _model(server: ServerThread) -> str:
    return server.app.state.server.name


def test_models_and_health(server: ServerThread) -> None:
    models = _client(server).models.list().data
    assert [m.id for m in models] == [_model(server)]
    assert models[0].model_extra["context_window"] == 256
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_chat_with_logprobs(server: ServerThread) -> None:
    reply = _client(server).chat.completions.create(
        model=_model(server),
        messages=[{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length")
    content = choice.logprobs.content
    assert len(content) == reply.usage.completion_tokens
    for entry in content:
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        assert entry.logprob <= 0
        assert isinstance(entry.model_extra["token_id"], int)
        assert "processed_logprob" in entry.model_extra
    # greedy: the chosen token is the raw argmax
    assert content[0].model_extra["token_id"] == content[0].top_logprobs[0].model_extra["token_id"]


def test_chat_stream_matches_non_stream(server: ServerThread) -> None:
    client = _client(server)
    args: dict[str, Any] = {
        "model": _model(server),
        "messages": [{"role": "user", "content": "Count"}],
        "max_tokens": 8,
        "temperature": 0.9,
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 2,
    }
    whole = client.chat.completions.create(**args)
    text, ids, usage = "", [], None
    stream = client.chat.completions.create(
        **args, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.logprobs is not None:
                ids += [e.model_extra["token_id"] for e in choice.logprobs.content]
    assert text == whole.choices[0].message.content  # seeded sampling reproduces
    assert ids == [e.model_extra["token_id"] for e in whole.choices[0].logprobs.content]
    assert usage is not None and usage.completion_tokens == len(ids)


def test_legacy_completion_with_token_ids(server: ServerThread) -> None:
    client = _client(server)
    reply = client.completions.create(
        model=_model(server), prompt=[1, 382, 611], max_tokens=5, temperature=0, logprobs=2
    )
    lp = reply.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert all(len(top) <= 2 for top in lp.top_logprobs)
    assert lp.text_offset[0] == 0
    # the tokens spell the text, byte for byte (a partial UTF-8 piece is "bytes:\\xNN")
    assert b"".join(_token_bytes(t) for t in lp.tokens) == reply.choices[0].text.encode()
    assert reply.choices[0].text
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=_model(server), prompt=[1, 382, 611], max_tokens=5, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == reply.choices[0].text


def _token_bytes(token: str) -> bytes:
    """A legacy-completions token string back to its bytes."""
    if token.startswith("bytes:"):
        return bytes(int(h, 16) for h in token.removeprefix("bytes:").split("\\x")[1:])
    return token.encode()


def test_refused_parameters(server: ServerThread) -> None:
    client = _client(server)
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.BadRequestError) as n:
        client.chat.completions.create(model=_model(server), messages=messages, n=2)
    assert n.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as temp:
        client.chat.completions.create(model=_model(server), messages=messages, temperature=-1)
    assert temp.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as top:
        client.chat.completions.create(
            model=_model(server), messages=messages, logprobs=True, top_logprobs=21
        )
    assert top.value.body["param"] == "top_logprobs"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=messages)
    with pytest.raises(openai.BadRequestError) as long:
        client.completions.create(model=_model(server), prompt=[5] * 300, max_tokens=1)
    assert long.value.body["code"] == "context_length_exceeded"
    # the server keeps serving
    assert client.models.list().data


def test_raw_http_errors_have_the_error_shape(server: ServerThread) -> None:
    url = server.url
    bad = httpx.post(url + "/v1/chat/completions", json={"messages": "nope"})
    assert bad.status_code == 400 and set(bad.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert bad.json()["error"]["param"] == "messages"
    assert "traceback" not in bad.text.lower() and "loc" not in bad.text
    broken = httpx.post(
        url + "/v1/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    missing = httpx.get(url + "/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    huge = httpx.post(url + "/v1/completions", content=b"x" * (2 << 20))
    assert huge.status_code == 413 and "error" in huge.json()
    assert httpx.get(url + "/health").status_code == 200


def test_tokenize_detokenize(server: ServerThread, tiny_model_dir: Path) -> None:
    tok = httpx.post(server.url + "/tokenize", json={"prompt": "Hello world"}).json()
    assert tok["count"] == len(tok["tokens"]) and tok["max_model_len"] == 256
    back = httpx.post(server.url + "/detokenize", json={"tokens": tok["tokens"]}).json()
    assert back["prompt"] == "Hello world"
    chat = httpx.post(
        server.url + "/tokenize", json={"messages": [{"role": "user", "content": "Hi"}]}
    ).json()
    # the model's own template around "Hi", generation prompt included (vLLM's default)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    expected = tokenizer.encode(rendered, add_special_tokens=False)
    assert chat["tokens"] == expected and chat["count"] == len(expected)
    hi = tokenizer.encode("user\nHi", add_special_tokens=False)
    turn = [1, *hi, 2]  # <|im_start|>user\nHi<|im_end|>
    ids = chat["tokens"]
    assert any(ids[i : i + len(turn)] == turn for i in range(len(ids)))


def test_api_key(tiny_engine: Any) -> None:
    with _server(tiny_engine, api_key="s3cret") as server:
        with pytest.raises(openai.AuthenticationError) as denied:
            _client(server, "wrong").models.list()
        assert denied.value.body["code"] == "invalid_api_key"
        assert _client(server, "s3cret").models.list().data
        assert httpx.get(server.url + "/health").status_code == 200


class _HeldReply:
    """A reply whose steps past the `free`-th wait until it is cancelled (bounded): the
    reply cannot run to its end before the server has noticed the client leave."""

    def __init__(self, reply: Any, cancel: threading.Event, free: int) -> None:
        self._reply, self._cancel, self._free, self.taken = reply, cancel, free, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reply, name)

    def step(self, force: int | None = None) -> Any:
        if self.taken >= self._free:
            self._cancel.wait(60)
        self.taken += 1
        return self._reply.step(force)


class _HoldingEngine:
    """`engine` with every reply held after `free` steps (see `_HeldReply`)."""

    def __init__(self, engine: Any, free: int) -> None:
        self._engine, self._free = engine, free
        self.cancels: list[threading.Event] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def start_ids(self, ids: Any, params: Any, cancel: threading.Event | None = None) -> Any:
        cancel = cancel or threading.Event()
        self.cancels.append(cancel)
        reply = self._engine.start_ids(ids, params, cancel=cancel)
        return _HeldReply(reply, cancel, self._free)


FREE_STEPS = 20  # decoded at once; the next one waits for the cancel


def test_client_disconnect_cancels_the_reply(tiny_engine: Any) -> None:
    engine, model = tiny_engine
    holding = _HoldingEngine(engine, FREE_STEPS)
    options = ServeOptions(record=True)
    with ServerThread(create_app(holding, model, options, SessionStore.open_default())) as server:
        stream = _client(server).chat.completions.create(
            model=_model(server),
            messages=[{"role": "user", "content": "go on"}],
            max_tokens=200,
            temperature=1.0,
            seed=1,
            stream=True,
            extra_body={"top_k": -1, "min_p": 0.0},
        )
        # the first token to arrive (a loaded server may send several in one chunk)
        for chunk in stream:
            if any(choice.delta.content for choice in chunk.choices):
                break
        stream.close()
        # the server notices the client leave and cancels the reply (before shutdown would)
        assert len(holding.cancels) == 1 and holding.cancels[0].wait(scaled(60))
        assert _client(server).models.list().data
    with SessionStore.open_default() as store:
        reply = store.get(store.list()[0].id).messages[-1]
    assert reply.finish_reason == "cancelled"
    assert len(reply.steps) <= FREE_STEPS + 1  # the free ones, and the one held at the cancel


def test_queue_full_is_503(tiny_engine: Any) -> None:
    engine, _model = tiny_engine
    with _server(tiny_engine, max_queue=1) as server:
        # the engine held, requests pile up: the worker holds one job, the queue one
        # more; whatever the order they arrive in, a third is refused first
        results = codes_while_held(server.url, engine, 3)
    assert results[0] == 503 and len(results) == 3 and results.count(200) >= 1


def test_concurrent_streams_all_complete(server: ServerThread) -> None:
    def one(i: int, out: dict[int, str]) -> None:
        client = _client(server)
        text = ""
        for chunk in client.chat.completions.create(
            model=_model(server),
            messages=[{"role": "user", "content": f"hi {i}"}],
            max_tokens=6,
            temperature=0,
            stream=True,
        ):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
        out[i] = text

    results: dict[int, str] = {}
    threads = [threading.Thread(target=one, args=(i, results)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert sorted(results) == list(range(16))
    solo = _client(server).chat.completions.create(
        model=_model(server),
        messages=[{"role": "user", "content": "hi 3"}],
        max_tokens=6,
        temperature=0,
    )
    assert results[3] == solo.choices[0].message.content


def test_requests_are_recorded(tiny_engine: Any) -> None:
    with _server(tiny_engine, record=True) as server:
        _client(server).chat.completions.create(
            model=_model(server),
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is 2+2?"},
            ],
            max_tokens=4,
            temperature=0.5,
            seed=3,
        )
    with SessionStore.open_default() as store:
        sessions = store.list()
        assert [s.title for s in sessions] == [SERVED_PREFIX + "What is 2+2?"]
        session = store.get(sessions[0].id)
    assert session.settings.system_prompt == "Be brief."
    assert session.settings.sampling.temperature == 0.5 and session.settings.sampling.seed == 3
    reply = session.messages[-1]
    assert reply.role == "assistant" and reply.steps and all(s.top for s in reply.steps)
    json.dumps(reply.content)
