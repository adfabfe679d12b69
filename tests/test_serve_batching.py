"""Continuous batching in `logitlab serve` (engine/serve/batching.py over
engine/decode/batch.py's `BatchRunner.join`): rows join a running batch and leave it,
and every request's numbers are those of running it alone. Real `openai` / httpx
clients against a live server on a free loopback port; the tiny random model for
speed, one test on the bundled model."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
import torch

from engine.decode.batch import BatchRunner
from engine.decode.decoder import TransformersRunner
from engine.serve import SERVED_PREFIX, ServeOptions, ServerThread, create_app
from engine.sessions import SessionStore
from tests.engine_hold import codes_while_held, engine_held
from tests.timeouts import scaled

pytestmark = pytest.mark.timeout(180)


@torch.inference_mode()
def _logits_alone(model: Any, ids: list[int], steps: int) -> list[torch.Tensor]:
    """Greedy logits of `ids` decoded alone: the prompt's, then one per step."""
    runner = TransformersRunner(model, torch.device("cpu"))
    runner.reset()
    out = [runner.forward(ids)]
    for _ in range(steps):
        out.append(runner.forward([int(out[-1].argmax())]))
    return out


def test_rows_join_a_running_batch_with_their_own_positions(tiny_model: Any) -> None:
    model = tiny_model.model
    a, b, c = [1, 40, 50, 60, 70], [1, *range(100, 111)], [1, 7, 8]
    batch = BatchRunner(model, torch.device("cpu"), pad_id=2)
    seen: dict[int, list[torch.Tensor]] = {0: [batch.join([a])[0]]}
    for _ in range(3):  # `a` runs alone, then `b` (longer) and `c` (shorter) join
        seen[0].append(batch.step([int(seen[0][-1].argmax())])[0])
    joined = batch.join([b, c])
    assert joined.shape[0] == 2 and batch.batch_size == 3
    seen[1], seen[2] = [joined[0]], [joined[1]]
    for _ in range(4):
        logits = batch.step([int(seen[r][-1].argmax()) for r in range(3)])
        for r in range(3):
            seen[r].append(logits[r])
    batch.select([1, 2])  # `a` leaves: its columns before `b`'s first token go
    batch.compact()
    assert batch.columns == len(b) + 4 and batch.pads(0) == 0 and batch.pads(1) == len(b) - len(c)
    for _ in range(2):
        logits = batch.step([int(seen[r][-1].argmax()) for r in (1, 2)])
        for i, r in enumerate((1, 2)):
            seen[r].append(logits[i])
    for r, prompt in enumerate((a, b, c)):
        ref = _logits_alone(model, prompt, len(seen[r]) - 1)
        assert [int(x.argmax()) for x in seen[r]] == [int(x.argmax()) for x in ref]
        for got, want in zip(seen[r], ref, strict=True):
            diff = (torch.log_softmax(got, -1) - torch.log_softmax(want, -1)).abs().max()
            assert float(diff) < 1e-3


class _SizedRows(BatchRunner):
    """A `BatchRunner` sized as `LlamaSequences` is: two rows of 20 tokens."""

    max_rows, row_cells = 2, 20


def test_sized_rows_defer_newcomers_in_order_and_refuse_a_reply_too_long(
    tiny_model: Any,
) -> None:
    from engine.decode.continuous import ContinuousBatch, Newcomer, RunsAlone
    from engine.params import SamplingParams

    def newcomer(key: str, new: int) -> Newcomer:
        params = SamplingParams(temperature=0.0, max_new_tokens=new)
        return Newcomer(key, [1, 40, 50, 60], params, threading.Event())

    batch = ContinuousBatch(tiny_model, _SizedRows(tiny_model.model, torch.device("cpu"), pad_id=2))
    # "long" needs 4 + 17 tokens: more than a row holds; "c" and "d" wait for a row, in order
    first = batch.advance([newcomer("a", 3), newcomer("long", 17), newcomer("b", 5),
                           newcomer("c", 2), newcomer("d", 2)])  # fmt: skip
    assert [key for key, _ in first.steps] == ["a", "b"]
    assert [(key, type(e)) for key, e in first.refused] == [("long", RunsAlone)]
    assert first.deferred == ["c", "d"]
    joined: list[str] = []
    pending = first.deferred
    for _ in range(10):  # bounded: each reply is a few steps
        step = batch.advance([newcomer(k, 2) for k in pending])
        joined += [k for k in pending if k not in step.deferred]
        pending = step.deferred
        assert len(batch) <= 2
    assert joined == ["c", "d"] and not pending  # "c" first: "d" never overtook it


def test_join_needs_left_padding_with_the_mask(tiny_model: Any) -> None:
    from engine.errors import InvalidParameterError

    batch = BatchRunner(tiny_model.model, torch.device("cpu"), pad_id=2, padding="right")
    with pytest.raises(InvalidParameterError, match="left padding"):
        batch.join([[1, 2, 3]])


# --- the server: batched replies equal each reply alone ---------------------------------

REQUESTS: list[dict[str, Any]] = [  # prompts, lengths and settings all different
    {"content": "hi", "max_tokens": 12, "temperature": 0},
    {"content": "a longer question about the sea and the sky", "max_tokens": 9,
     "temperature": 0, "top_logprobs": 3},
    {"content": "count", "max_tokens": 14, "temperature": 0.9, "seed": 7, "top_logprobs": 2},
    {"content": "tell me more about it, please, and slowly", "max_tokens": 6,
     "temperature": 1.2, "seed": 3, "top_p": 0.9},
    {"content": "x", "max_tokens": 11, "temperature": 0.7, "seed": 11, "top_k": 20},
    {"content": "what is two and two", "max_tokens": 8, "temperature": 1.0, "seed": 5,
     "min_p": 0.05, "repetition_penalty": 1.3, "top_logprobs": 4},
    {"content": "the end", "max_tokens": 13, "temperature": 0, "repetition_penalty": 1.2},
    {"content": "one more, the eighth, a little longer than the others", "max_tokens": 10,
     "temperature": 0.8, "seed": 99, "top_logprobs": 1},
]  # fmt: skip
EXTRA = ("top_k", "min_p", "repetition_penalty")


def _server(tiny_engine: Any, **options: Any) -> ServerThread:
    engine, model = tiny_engine
    store = SessionStore.open_default() if options.get("record", False) else None
    options.setdefault("record", False)
    return ServerThread(create_app(engine, model, ServeOptions(**options), store))


def _client(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)


def _chat(server: ServerThread, request: dict[str, Any], **more: Any) -> dict[str, Any]:
    """One streamed chat request: the token ids, text, logprobs and candidates it got."""
    r = dict(request)
    extra = {k: r.pop(k) for k in EXTRA if k in r}
    top = r.pop("top_logprobs", 0)
    stream = _client(server).chat.completions.create(
        model=server.app.state.server.name,
        messages=[{"role": "user", "content": r.pop("content")}],
        logprobs=True,
        top_logprobs=top,
        stream=True,
        extra_body=extra,
        **r,
        **more,
    )
    out: dict[str, Any] = {"ids": [], "text": "", "lp": [], "plp": [], "top": [], "finish": None}
    for chunk in stream:
        for choice in chunk.choices:
            out["text"] += choice.delta.content or ""
            out["finish"] = choice.finish_reason or out["finish"]
            for e in choice.logprobs.content if choice.logprobs else ():
                out["ids"].append(e.model_extra["token_id"])
                out["lp"].append(e.logprob)
                out["plp"].append(e.model_extra["processed_logprob"])
                out["top"].append([(t.model_extra["token_id"], t.logprob) for t in e.top_logprobs])
    return out


def _same(got: dict[str, Any], alone: dict[str, Any]) -> None:
    """Ids and text exact, every logprob (raw, processed, candidates') within 1e-3."""
    assert got["ids"] == alone["ids"] and got["text"] == alone["text"]
    assert got["finish"] == alone["finish"]
    assert got["lp"] == pytest.approx(alone["lp"], abs=1e-3)
    assert got["plp"] == pytest.approx(alone["plp"], abs=1e-3)
    for a, b in zip(got["top"], alone["top"], strict=True):
        assert [t for t, _ in a] == [t for t, _ in b]
        assert [lp for _, lp in a] == pytest.approx([lp for _, lp in b], abs=1e-3)


def _until(condition: Any, what: str) -> None:
    for _ in range(int(scaled(60) / 0.02)):  # bounded: a broken scheduler ends the test
        if condition():
            return
        threading.Event().wait(0.02)
    pytest.fail(f"waited in vain for {what}")


class _Sizes:
    """Forward pre-hook on the model: the shape of every forward's input (rows, columns);
    with `hold_at`, that forward waits for `release` (bounded) after setting `entered`."""

    def __init__(self, model: Any, hold_at: int = 0) -> None:
        self.sizes: list[tuple[int, int]] = []
        self.hold_at, self.entered, self.release = hold_at, threading.Event(), threading.Event()
        self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            self.sizes.append((int(ids.shape[0]), int(ids.shape[1])))
        if len(self.sizes) == self.hold_at:
            self.entered.set()
            self.release.wait(scaled(60))

    @property
    def rows(self) -> list[int]:
        return [r for r, _ in self.sizes]

    def close(self) -> None:
        self.release.set()
        self._handle.remove()


def _alone(tiny_engine: Any, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each request run alone, one after another, through the FIFO server."""
    with _server(tiny_engine) as fifo:
        return [_chat(fifo, r) for r in requests]


def _concurrently(
    server: ServerThread, calls: list[Callable[[], Any]], jobs: int | None = None
) -> list[Any]:
    """All `calls` at once, the engine held until every one is queued or taken (`jobs`
    of them: a request with a list of prompts queues one each), so that they run as one
    batch (the worker takes what has come when the engine is free: the
    first alone, or a few; the rest join at the next step)."""
    engine = server.app.state.server.engine
    scheduler = server.app.state.server.scheduler
    submitted: list[Any] = []
    submit = scheduler.submit

    def counted(job: Any) -> None:
        submit(job)
        submitted.append(job)

    scheduler.submit = counted
    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # reported below, after every thread is joined
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    try:
        with engine_held(engine):
            for t in threads:
                t.start()
            _until(lambda: len(submitted) == (jobs or len(calls)), "every request to queue")
    finally:
        for t in threads:
            t.join(scaled(120))
    assert not errors, errors[0]
    return [results[i] for i in range(len(calls))]


def _chats(server: ServerThread, requests: list[dict[str, Any]]) -> list[Callable[[], Any]]:
    return [functools.partial(_chat, server, r) for r in requests]


def test_eight_concurrent_requests_each_equal_it_alone(tiny_engine: Any) -> None:
    alone = _alone(tiny_engine, REQUESTS)
    assert any(a["ids"] for a in alone)
    sizes = _Sizes(tiny_engine[0].loaded.model)
    try:
        with _server(tiny_engine, max_batch=8) as server:
            assert type(server.app.state.server.scheduler).__name__ == "BatchScheduler"
            together = _concurrently(server, _chats(server, REQUESTS))
    finally:
        sizes.close()
    for got, want in zip(together, alone, strict=True):
        _same(got, want)
    assert (8, 1) in sizes.sizes and max(sizes.rows) == 8  # steps of all eight together


def test_max_batch_is_respected(tiny_engine: Any) -> None:
    requests = [dict(r, temperature=0) for r in REQUESTS[:7]]
    alone = _alone(tiny_engine, requests)
    sizes = _Sizes(tiny_engine[0].loaded.model)
    try:
        with _server(tiny_engine, max_batch=3) as server:
            together = _concurrently(server, _chats(server, requests))
    finally:
        sizes.close()
    for got, want in zip(together, alone, strict=True):
        _same(got, want)
    assert max(sizes.rows) == 3  # the batch filled up, and never beyond --max-batch


def test_a_request_joins_a_running_batch(tiny_engine: Any) -> None:
    first, second = dict(REQUESTS[0], max_tokens=30), REQUESTS[2]
    alone = _alone(tiny_engine, [first, second])
    assert len(alone[0]["ids"]) > 8  # the first is still running when the second comes
    gate = _Sizes(tiny_engine[0].loaded.model, hold_at=5)  # the first's 4th step
    got: dict[str, Any] = {}
    try:
        with _server(tiny_engine, max_batch=4) as server:
            a = threading.Thread(target=lambda: got.update(a=_chat(server, first)))
            a.start()
            assert gate.entered.wait(scaled(60))
            b = threading.Thread(target=lambda: got.update(b=_chat(server, second)))
            b.start()
            scheduler = server.app.state.server.scheduler
            _until(lambda: scheduler.waiting == 1, "the second request to queue")
            gate.release.set()
            a.join(scaled(120))
            b.join(scaled(120))
    finally:
        gate.close()
    _same(got["a"], alone[0])
    _same(got["b"], alone[1])
    assert gate.sizes[:5] == [gate.sizes[0], (1, 1), (1, 1), (1, 1), (1, 1)]
    assert gate.sizes[5] == (1, 1) and gate.sizes[6][0] == 1 and gate.sizes[6][1] > 1
    assert gate.sizes[7] == (2, 1)  # the first's step, the join, then steps of both


def test_a_client_leaving_mid_batch_does_not_disturb_the_others(tiny_engine: Any) -> None:
    stay = [dict(REQUESTS[1], max_tokens=20), REQUESTS[2]]
    leaves: dict[str, Any] = {
        "content": "go on and on",
        "max_tokens": 200,
        "temperature": 1.0,
        "seed": 1,
    }
    alone = _alone(tiny_engine, stay)
    gate = _Sizes(tiny_engine[0].loaded.model, hold_at=6)
    with _server(tiny_engine, max_batch=4, record=True) as server:

        def leave() -> int:
            stream: Any = _client(server).chat.completions.create(
                model=server.app.state.server.name,
                messages=[{"role": "user", "content": leaves["content"]}],
                max_tokens=200, temperature=1.0, seed=1, stream=True, logprobs=True,
            )  # fmt: skip
            for chunk in stream:  # the first token (its text may be empty: a partial piece)
                if any(choice.logprobs and choice.logprobs.content for choice in chunk.choices):
                    break
            stream.close()  # while the batch is held at its 6th forward: mid-batch
            gate.release.set()  # the server notices at its next send, the reply leaves
            return 0

        try:
            got = _concurrently(server, [*_chats(server, stay), leave])
        finally:
            gate.close()
    for g, want in zip(got[:2], alone, strict=True):
        _same(g, want)
    with SessionStore.open_default() as store:
        replies = {s.title: store.get(s.id).messages[-1] for s in store.list()}
    left = replies[SERVED_PREFIX + leaves["content"]]
    assert left.finish_reason == "cancelled" and len(left.steps) < 200
    kept = replies[SERVED_PREFIX + stay[0]["content"]]
    assert [s.token_id for s in kept.steps] == got[0]["ids"]  # recorded as before


def _legacy(server: ServerThread, body: dict[str, Any]) -> dict[str, Any]:
    body = {"model": server.app.state.server.name, "temperature": 0, **body}
    reply = httpx.post(server.url + "/v1/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    choice = reply.json()["choices"][0]
    return {"text": choice["text"], **choice["logprobs"]}


SCORING = [
    {"prompt": "score me, all of me", "echo": True, "logprobs": 3, "max_tokens": 0},
    {"prompt": "score me and go on", "echo": True, "logprobs": 2, "max_tokens": 5},
]


def test_scoring_requests_run_between_the_steps(tiny_engine: Any) -> None:
    chats = REQUESTS[:3]
    with _server(tiny_engine) as fifo:
        alone = [_chat(fifo, r) for r in chats] + [_legacy(fifo, b) for b in SCORING]
    with _server(tiny_engine, max_batch=4) as server:
        scoring: list[Callable[[], Any]] = [functools.partial(_legacy, server, b) for b in SCORING]
        calls = [*_chats(server, chats), *scoring]
        got = _concurrently(server, calls)
    for g, want in zip(got[:3], alone[:3], strict=True):
        _same(g, want)
    for g, want in zip(got[3:], alone[3:], strict=True):
        assert g["tokens"] == want["tokens"] and g["text"] == want["text"]
        assert g["token_logprobs"][0] is None and want["token_logprobs"][0] is None
        assert g["token_logprobs"][1:] == pytest.approx(want["token_logprobs"][1:], abs=1e-3)


# lm-eval's loglikelihood requests (local-completions): token-id prompts, a list of
# them per request, the prompt echoed with its logprobs, one token generated
LM_EVAL = [
    {"prompt": [[5, 17, 30, 8, 2], [9, 12, 40, 3, 3]], "echo": True, "logprobs": 1,
     "max_tokens": 1},
    {"prompt": [[3, 44, 19, 27, 31, 6]], "echo": True, "logprobs": 1, "max_tokens": 1},
    {"prompt": [[21, 7, 7, 30, 11]], "prompt_logprobs": 2, "logprobs": 2, "max_tokens": 1},
]  # fmt: skip


def _choices(server: ServerThread, body: dict[str, Any]) -> list[dict[str, Any]]:
    body = {"model": server.app.state.server.name, "temperature": 0, **body}
    reply = httpx.post(server.url + "/v1/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"]  # type: ignore[no-any-return]


def _same_choice(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["text"] == want["text"] and got["finish_reason"] == want["finish_reason"]
    g, w = got["logprobs"] or {}, want["logprobs"] or {}
    assert g.keys() == w.keys()
    if w:
        _same_logprobs(g, w)
    if "prompt_logprobs" in want:
        assert got["prompt_token_ids"] == want["prompt_token_ids"]
        for a, b in zip(got["prompt_logprobs"][1:], want["prompt_logprobs"][1:], strict=True):
            assert {k: (v["rank"], v["decoded_token"]) for k, v in a.items()} == {
                k: (v["rank"], v["decoded_token"]) for k, v in b.items()
            }
            assert [v["logprob"] for v in a.values()] == pytest.approx(
                [v["logprob"] for v in b.values()], abs=1e-3
            )


def _same_logprobs(g: dict[str, Any], w: dict[str, Any]) -> None:
    assert g["tokens"] == w["tokens"] and g["token_ids"] == w["token_ids"]
    echoed = w["token_logprobs"][0] is None  # the echoed prompt's first token: no context
    assert (g["token_logprobs"][0] is None) == echoed
    assert g["token_logprobs"][echoed:] == pytest.approx(w["token_logprobs"][echoed:], abs=1e-3)
    for a, b in zip(g["top_logprobs"][echoed:], w["top_logprobs"][echoed:], strict=True):
        assert a.keys() == b.keys()
        assert list(a.values()) == pytest.approx(list(b.values()), abs=1e-3)


def test_prompt_passes_batch_and_a_one_token_reply_runs_its_prompt_once(
    tiny_engine: Any,
) -> None:
    with _server(tiny_engine) as fifo:
        alone = [_choices(fifo, b) for b in LM_EVAL]
    sizes = _Sizes(tiny_engine[0].loaded.model)
    try:
        with _server(tiny_engine, max_batch=4) as server:
            calls = [functools.partial(_choices, server, b) for b in LM_EVAL]
            got = _concurrently(server, calls, jobs=4)
    finally:
        sizes.close()
    for g, want in zip(got, alone, strict=True):
        assert len(g) == len(want)
        for a, b in zip(g, want, strict=True):
            _same_choice(a, b)
    # four prompts, each run once (alone: scored, then run again to generate), and the
    # ones that waited together ran as the rows of one forward
    assert sum(rows for rows, _ in sizes.sizes) == 4
    assert max(sizes.rows) >= 2


def test_queue_full_is_503_beyond_the_batch(tiny_engine: Any) -> None:
    engine, _model = tiny_engine
    with _server(tiny_engine, max_queue=1, max_batch=2) as server:
        # the batch takes at most two, the queue one more: of four, one is refused
        results = codes_while_held(server.url, engine, 4)
        assert httpx.get(server.url + "/health").json()["status"] == "ok"
    assert results[0] == 503 and len(results) == 4 and results.count(200) >= 2


@pytest.mark.real_model
@pytest.mark.timeout(900)
def test_bundled_model_batched_equals_alone(real_model: Any) -> None:
    from engine.decode import LocalEngine
    from engine.model.spec import ModelSpec

    engine = LocalEngine(preloaded=real_model)
    bundled = (engine, engine.load(ModelSpec(device="cpu")))
    requests = [
        {"content": "What is the capital of France?", "max_tokens": 16, "temperature": 0,
         "top_logprobs": 5},
        {"content": "Name three colours.", "max_tokens": 12, "temperature": 0.8, "seed": 4,
         "top_logprobs": 5},
        {"content": "Write one line about the sea, in the style of a sailor who has seen "
                    "too much of it.", "max_tokens": 20, "temperature": 0, "top_logprobs": 3},
        {"content": "Hi", "max_tokens": 10, "temperature": 1.0, "seed": 9, "top_p": 0.9},
    ]  # fmt: skip
    try:
        alone = _alone(bundled, requests)
        with _server(bundled, max_batch=4) as server:
            together = _concurrently(server, _chats(server, requests))
    finally:
        engine.thread.close()
    for got, want in zip(together, alone, strict=True):
        _same(got, want)
