"""Continuous batching on the llama.cpp backend (engine/decode/llama_batch.py): the
bundled GGUF's replies share one llama.cpp context, a sequence id each, and every
request's ids, logprobs and candidates equal running it alone on the engine's own
context; rows that do not fit wait, and a reply longer than a row runs alone. Real
`openai` / httpx clients against a live server on a free loopback port."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("llama_cpp")

from engine.decode import LlamaEngine
from engine.decode import llama_batch as llama_batch_module
from engine.decode.llama_batch import LlamaSequences, sequence_cells
from engine.model.spec import ModelSpec
from tests.test_serve_batching import (
    REQUESTS,
    SCORING,
    _chats,
    _concurrently,
    _legacy,
    _same,
    _server,
)

pytestmark = [pytest.mark.real_model, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def llama() -> Iterator[tuple[LlamaEngine, Any]]:
    engine = LlamaEngine()
    facts = engine.load(ModelSpec(backend="llama.cpp", device="cpu"))
    yield engine, facts
    engine.thread.close()


@pytest.fixture
def rows_seen(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of every batched llama.cpp step."""
    seen: list[int] = []
    step = LlamaSequences.step

    def counted(self: LlamaSequences, tokens: Any) -> Any:
        seen.append(len(tokens))
        return step(self, tokens)

    monkeypatch.setattr(LlamaSequences, "step", counted)
    return seen


def _alone(llama: tuple[LlamaEngine, Any], calls: Callable[[Any], list[Any]]) -> list[Any]:
    with _server(llama) as fifo:
        assert type(fifo.app.state.server.scheduler).__name__ == "Scheduler"
        return [call() for call in calls(fifo)]


def test_concurrent_replies_each_equal_it_alone(
    llama: tuple[LlamaEngine, Any], rows_seen: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _facts = llama
    per_token = engine.thread.call(llama_batch_module.kv_bytes_per_token, engine.loaded.llm)
    monkeypatch.setattr(llama_batch_module, "KV_BUDGET", 8 * 1024 * per_token)  # 190 MB

    def calls(server: Any) -> list[Any]:
        scoring = [functools.partial(_legacy, server, body) for body in SCORING]
        return [*_chats(server, REQUESTS), *scoring]

    alone = _alone(llama, calls)
    with _server(llama, max_batch=8) as server:
        scheduler = server.app.state.server.scheduler
        assert type(scheduler).__name__ == "BatchScheduler"
        together = _concurrently(server, calls(server))
        assert scheduler._batch is not None
    assert scheduler._batch is None  # the server stopped: its llama.cpp context is freed
    chats = len(REQUESTS)
    for got, want in zip(together[:chats], alone[:chats], strict=True):
        _same(got, want)
    for got, want in zip(together[chats:], alone[chats:], strict=True):  # scored, then joined
        assert got["tokens"] == want["tokens"] and got["text"] == want["text"]
        assert got["token_logprobs"][1:] == pytest.approx(want["token_logprobs"][1:], abs=1e-3)
    assert max(rows_seen) >= 4  # the replies did share steps


def test_rows_that_do_not_fit_wait_and_a_long_reply_runs_alone(
    llama: tuple[LlamaEngine, Any], rows_seen: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _facts = llama
    per_token = engine.thread.call(llama_batch_module.kv_bytes_per_token, engine.loaded.llm)
    # a budget of two rows of 1024 tokens: 4 replies take turns, 2 at a time
    monkeypatch.setattr(llama_batch_module, "KV_BUDGET", 2 * 1024 * per_token)
    assert sequence_cells(engine.loaded.context_window, 4, per_token) == (1024, 2)
    requests = [dict(r, max_tokens=min(r["max_tokens"], 8)) for r in REQUESTS[:4]]
    long = {"content": "Say hello.", "max_tokens": 1500, "temperature": 0}  # > 1024: alone
    requests.append(long)
    alone = _alone(llama, lambda server: _chats(server, requests))
    with _server(llama, max_batch=4) as server:
        together = _concurrently(server, _chats(server, requests))
    for got, want in zip(together, alone, strict=True):
        _same(got, want)
    assert 0 < len(together[-1]["ids"]) < 1500  # it ended by itself, outside the batch
    assert rows_seen and max(rows_seen) == 2  # never more rows than the budget holds
    # a row's first token comes from its prompt, each later one from a batched step: the
    # four short replies account for every step, the long one for none
    assert sum(rows_seen) == sum(len(g["ids"]) - 1 for g in together[:-1])


def test_sequence_cells_fit_the_budget() -> None:
    budget = llama_batch_module.KV_BUDGET
    for window, rows, per_token in [(8192, 16, 23040), (4096, 16, 524288), (512, 16, 23040)]:
        cells, fit = sequence_cells(window, rows, per_token)
        assert cells <= window and 1 <= fit <= rows
        assert cells * fit * per_token <= max(budget, cells * per_token)
        assert cells >= min(window, llama_batch_module.MIN_ROW_CELLS)
    assert sequence_cells(8192, 16, 23040) == (2816, 16)  # the bundled model: 16 rows
    assert sequence_cells(4096, 16, 524288) == (1024, 2)  # a 7B: fewer, whole rows
    assert sequence_cells(8192, 1, 23040) == (8192, 1)  # one row: a full window
