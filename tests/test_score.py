"""The scoring capability (`PromptScoring.score`, `FullDistributions.logprob_rows`):
equal to a fresh full forward on transformers across chunk boundaries, equal to
llama.cpp's own single-position evaluation and batched there, and the records'
arithmetic (summaries, the workbench's per-position view)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from engine.decode import LocalEngine, full_distributions, open_engine, prompt_scoring
from engine.decode.probe import score_path
from engine.decode.scoring import chunk_for, score_logits
from engine.errors import FeatureUnavailableError, InvalidParameterError
from engine.model.spec import ModelSpec
from engine.records import PromptScores, ScoreSummary, TokenScore
from tests.fake_engine import FakeEngine

TEXT = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, "
    "it was the age of foolishness, it was the epoch of belief, it was the epoch of "
    "incredulity, it was the season of Light, it was the season of Darkness."
)
TOL = 1e-4


def _engine(loaded: Any) -> LocalEngine:
    engine = LocalEngine(preloaded=loaded)
    engine.load(ModelSpec(device="cpu"))
    return engine


def _fresh(loaded: Any, ids: list[int]) -> torch.Tensor:
    """Log-probs of one full forward, no cache: row p - 1 is position p's distribution."""
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([ids]), use_cache=False).logits[0].float()
    return torch.log_softmax(logits, dim=-1)  # [len(ids), vocab]


def _check_against_fresh(
    scores: Sequence[TokenScore], fresh: torch.Tensor, ids: list[int], start: int, top: int
) -> None:
    """Each record equals the fresh forward's row to TOL; ranks and top ids exactly,
    up to ties within TOL (a random model has near-ties deep in its ranking)."""
    assert [s.position for s in scores] == list(range(start, len(ids)))
    for s in scores:
        row = fresh[s.position - 1]  # [vocab]
        chosen = row[ids[s.position]].item()
        assert s.token_id == ids[s.position]
        assert s.logprob == pytest.approx(chosen, abs=TOL)
        assert s.entropy == pytest.approx(-(row.exp() * row).sum().item(), abs=TOL)
        surely_above = int((row > chosen + TOL).sum()) + 1
        maybe_above = int((row > chosen - TOL).sum()) + 1
        assert surely_above <= s.rank <= maybe_above
        best = row.topk(top).values.tolist()
        assert [c.logprob for c in s.top] == pytest.approx(best, abs=TOL)
        for c in s.top:  # each id is really the token with that logprob
            assert row[c.token_id].item() == pytest.approx(c.logprob, abs=TOL)


@pytest.mark.parametrize("chunk", [3, 16, None])
@pytest.mark.parametrize("start", [1, 7, 40])
def test_scores_equal_a_fresh_forward_across_chunks_tiny(
    tiny_model: Any, chunk: int | None, start: int
) -> None:
    ids = tiny_model.tokenizer.encode(TEXT)
    assert len(ids) > 48  # several chunks of 3 and 16
    scores = score_path(tiny_model, ids, top=5, start=start, chunk=chunk)
    _check_against_fresh(scores, _fresh(tiny_model, ids), ids, start, 5)


def test_a_prefix_in_several_forwards(tiny_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The context before `start` runs in PREFIX-sized forwards without logits."""
    from engine.decode import probe

    monkeypatch.setattr(probe, "PREFIX", 8)
    ids = tiny_model.tokenizer.encode(TEXT)
    scores = score_path(tiny_model, ids, top=2, start=40, chunk=16)
    _check_against_fresh(scores, _fresh(tiny_model, ids), ids, 40, 2)


def test_the_engine_scores_on_its_thread_and_pieces_are_named(tiny_model: Any) -> None:
    engine = _engine(tiny_model)
    ids = tiny_model.tokenizer.encode(TEXT)
    scores = prompt_scoring(engine).score(ids, top=3)
    _check_against_fresh(scores, _fresh(tiny_model, ids), ids, 1, 3)
    pieces = tiny_model.tokenizer.convert_ids_to_tokens(ids)
    assert [s.piece for s in scores] == pieces[1:]
    assert all(c.piece for s in scores for c in s.top)
    assert prompt_scoring(engine).score(ids, start=len(ids)) == ()  # nothing asked for


def test_logprob_rows_are_whole_rows_in_bounded_chunks(tiny_model: Any) -> None:
    engine = _engine(tiny_model)
    ids = tiny_model.tokenizer.encode(TEXT)
    fresh = _fresh(tiny_model, ids)
    chunks = list(full_distributions(engine).logprob_rows(ids, 5, next_token=True))
    firsts = [first for first, _rows in chunks]
    sizes = [rows.shape[0] for _first, rows in chunks]
    assert firsts[0] == 5 and firsts[-1] + sizes[-1] == len(ids) + 1  # the next token too
    assert all(a + n == b for a, n, b in zip(firsts, sizes, firsts[1:], strict=False))
    vocab = fresh.shape[-1]
    assert max(sizes) <= chunk_for(vocab)
    rows = torch.cat([r for _f, r in chunks])  # [len(ids) + 1 - 5, vocab]
    assert rows.dtype == torch.float32 and rows.device.type == "cpu"
    assert torch.allclose(rows, fresh[4:], atol=TOL)


def test_a_closed_row_iterator_leaves_the_engine_usable(tiny_model: Any) -> None:
    engine = _engine(tiny_model)
    ids = tiny_model.tokenizer.encode(TEXT)
    rows = engine.logprob_rows(ids)
    next(rows)
    rows.close()  # type: ignore[attr-defined]
    assert len(engine.score(ids[:10])) == 9


@pytest.mark.parametrize(
    ("ids", "kwargs", "field"),
    [
        ([], {}, "ids"),
        ([5, 6], {"start": 0}, "start"),
        ([5, 6], {"start": 3}, "start"),
        ([5, 6], {"top": 51}, "top"),
        ([5, 6], {"top": -1}, "top"),
        ([5] * 300, {}, "ids"),  # the tiny model's context window is 256
    ],
)
def test_bad_requests_say_what_is_wrong(
    tiny_model: Any, ids: list[int], kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidParameterError) as info:
        _engine(tiny_model).score(ids, **kwargs)
    assert info.value.field == field and "\n" not in str(info.value)


def test_backend_engine_delegates_scoring(tiny_model_dir: Any) -> None:
    spec = ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="float32")
    engine = open_engine(spec)
    try:
        engine.load(spec)
        ids = engine.encode("hello there, hello again")
        assert len(prompt_scoring(engine).score(ids)) == len(ids) - 1
        assert full_distributions(engine) is engine
    finally:
        engine.thread.close()  # type: ignore[attr-defined]


def test_engines_without_scoring_say_so_in_one_line() -> None:
    for check in (prompt_scoring, full_distributions):
        with pytest.raises(FeatureUnavailableError) as info:
            check(FakeEngine())
        assert "\n" not in str(info.value)


def test_a_score_unavailable_line_is_the_refusal() -> None:
    class Server:
        def score(self, ids: Sequence[int], *, top: int = 0, start: int = 1) -> tuple[()]:
            return ()

        def score_unavailable(self) -> str | None:
            return "http://x/v1 has neither prompt_logprobs nor echo with logprobs"

    with pytest.raises(FeatureUnavailableError, match="neither prompt_logprobs"):
        prompt_scoring(Server())


def test_reduction_of_a_known_distribution() -> None:
    logits = torch.tensor([[0.0, 0.0, math.log(2.0), -math.inf]])  # p = .25 .25 .5 0
    (s,) = score_logits(logits, [1], 4, top=2, pieces=lambda ids: [f"<{i}>" for i in ids])
    assert s.position == 4 and s.token_id == 1 and s.piece == "<1>"
    assert s.logprob == pytest.approx(math.log(0.25)) and s.rank == 2  # one token above
    assert s.entropy == pytest.approx(-(0.5 * math.log(0.25) + 0.5 * math.log(0.5)))
    assert [c.token_id for c in s.top] == [2, 0] or [c.token_id for c in s.top] == [2, 1]
    assert s.top[0].logprob == pytest.approx(math.log(0.5)) and s.top[0].piece == "<2>"
    assert s.surprisal_bits == pytest.approx(2.0) and s.prob == pytest.approx(0.25)


def test_summary_and_the_workbench_view() -> None:
    scores = [TokenScore(1, 7, math.log(0.5), 1, 0.7), TokenScore(2, 8, math.log(0.25), 3, 1.0)]
    summary = ScoreSummary().plus(scores[:1]).plus(scores[1:])
    assert summary == ScoreSummary.of(scores) and summary.tokens == 2
    assert summary.nll == pytest.approx(1.5 * math.log(2))
    assert summary.ppl == pytest.approx(2**1.5)
    assert summary.bits_per_byte(3) == pytest.approx(1.0)  # 3 bits over 3 bytes
    assert math.isnan(ScoreSummary().nll) and math.isnan(summary.bits_per_byte(0))
    view = PromptScores.from_scores([6, 7, 8], scores)
    assert view.logprobs[0] is None and view.ranks == (None, 1, 3)
    assert view.surprisal_bits(2) == pytest.approx(2.0)


@pytest.mark.real_model
def test_scores_equal_a_fresh_forward_bundled(real_model: Any) -> None:
    """The real model has no near-ties: ranks and top ids are exact."""
    ids = real_model.tokenizer.encode(TEXT * 3)
    scores = score_path(real_model, ids, top=10, chunk=37)  # several chunk boundaries
    fresh = _fresh(real_model, ids)
    _check_against_fresh(scores, fresh, ids, 1, 10)
    for s in scores:
        row = fresh[s.position - 1]
        assert s.rank == int((row > row[s.token_id]).sum()) + 1
        assert [c.token_id for c in s.top] == row.topk(10).indices.tolist()


# --- llama.cpp ---------------------------------------------------------------------------

# llama.cpp's numbers depend on the batch: its CPU kernels for a one-token batch and
# for a many-token batch round differently (on the bundled Q4_1 model with repacked
# weights, llama-cpp-python's own logits_all rows differ from its one-token-at-a-time
# rows by up to 0.9 nats on a tail token). So `score` is compared exactly with
# llama-cpp-python evaluating the same batches with logits_all, and only loosely
# (the chosen token's logprob: measured up to 2e-3) with one-position evaluation,
# which still proves each row belongs to its position.
SAME_BATCHES_TOL, ONE_POSITION_TOL = 1e-5, 2e-2


@pytest.fixture(scope="module")
def llama() -> Any:
    pytest.importorskip("llama_cpp")
    from engine.decode.llama import LlamaEngine

    engine = LlamaEngine()
    engine.load(ModelSpec(backend="llama.cpp", device="cpu"))
    yield engine
    engine.thread.close()


class _CountingLib:
    """llama_cpp with its `llama_decode` calls counted (and their batch sizes)."""

    def __init__(self, lib: Any) -> None:
        self._lib, self.batches = lib, []

    def llama_decode(self, ctx: Any, batch: Any) -> int:
        self.batches.append(int(batch.n_tokens))
        return int(self._lib.llama_decode(ctx, batch))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lib, name)


@pytest.mark.real_model
@pytest.mark.timeout(300)
def test_llama_scores_equal_llama_cpp_python_logits_all_and_are_batched(
    llama: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llama_cpp
    import numpy as np

    from engine.decode.llama import LlamaRunner
    from engine.model.llama_selftest import model_params

    shared, loaded = llama._shared, llama.loaded
    ids = llama.encode(TEXT * 12)
    assert len(ids) > shared.n_batch  # more than one batch
    counting = _CountingLib(shared._lib)
    monkeypatch.setattr(shared, "_lib", counting)
    scores = llama.score(ids, top=5)
    # batched: one decode per n_batch positions, never one per token
    assert counting.batches == [shared.n_batch, len(ids) - 1 - shared.n_batch]
    assert [s.position for s in scores] == list(range(1, len(ids)))
    with model_params(loaded.native.config.extra_bufts):  # the same native configuration
        reference = llama_cpp.Llama(
            model_path=str(loaded.gguf_path),
            n_ctx=len(ids),
            n_batch=shared.n_batch,
            logits_all=True,
            verbose=False,
        )
    reference.eval(ids[:-1])
    logits = torch.from_numpy(np.array(reference.scores[: len(ids) - 1], dtype=np.float32))
    rows = torch.log_softmax(logits, dim=-1)  # [n - 1, vocab]: row p - 1 is position p
    for s in scores:
        row = rows[s.position - 1]
        assert s.logprob == pytest.approx(row[s.token_id].item(), abs=SAME_BATCHES_TOL)
        entropy = -(row.exp() * row).nansum().item()
        assert s.entropy == pytest.approx(entropy, abs=SAME_BATCHES_TOL)
        assert s.rank == int((row > row[s.token_id]).sum()) + 1
        assert [c.token_id for c in s.top] == row.topk(5).indices.tolist()
    for p in (len(ids) - 1, len(ids) // 2, 17, 2, 1):  # descending: the cache holds ids[:p]
        counting.batches.clear()
        last = llama.thread.call(LlamaRunner(shared).forward, ids[:p])  # the last id alone
        assert counting.batches == [1]
        alone = torch.log_softmax(last.float(), dim=-1)[ids[p]].item()
        assert scores[p - 1].logprob == pytest.approx(alone, abs=ONE_POSITION_TOL)


@pytest.mark.real_model
@pytest.mark.timeout(300)
def test_llama_rows_and_a_later_start_agree_with_the_full_score(llama: Any) -> None:
    ids = llama.encode(TEXT * 2)
    full = llama.score(ids)
    tail = llama.score(ids, start=30)  # the cache holds the path: only logits re-evaluated
    assert [s.logprob for s in tail] == pytest.approx([s.logprob for s in full[29:]], abs=1e-5)
    chunks = list(llama.logprob_rows(ids, 30, next_token=True))
    rows = torch.cat([r for _f, r in chunks])
    assert chunks[0][0] == 30 and rows.shape[0] == len(ids) + 1 - 30
    picked = rows[torch.arange(len(ids) - 30), torch.tensor(ids[30:])]
    assert picked.tolist() == pytest.approx([s.logprob for s in tail], abs=1e-5)


@pytest.mark.real_model
@pytest.mark.timeout(300)
def test_llama_scoring_survives_an_interleaved_reply(llama: Any) -> None:
    """A reply between two chunks moves the shared context; the rows stay right."""
    from engine.decode import run_reply
    from engine.params import SamplingParams
    from engine.tokens import ChatMessage

    ids = llama.encode(TEXT * 12)
    reference = llama.score(ids)
    rows = llama.logprob_rows(ids, 1)
    first, chunk = next(rows)
    run_reply(llama.start([ChatMessage("user", "Hi")], SamplingParams(max_new_tokens=3)))
    rest = list(rows)
    all_rows = torch.cat([chunk, *(r for _f, r in rest)])
    picked = all_rows[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    assert first == 1 and picked.tolist() == pytest.approx([s.logprob for s in reference], abs=1e-5)
