"""Comparisons on the tiny model (engine/compare/, `logitlab compare`): the same spec on
both sides gives KL 0 and no divergence; a prompt alone against the same prompt in a
batch (left padding with the mask matches, right padding without it does not);
tokenization shown first; different vocabularies, cancel, progress; a remote side
(a `logitlab serve` on loopback) gives a top-N estimate flagged ``exact: false``; the
CLI's JSON shape, its corpus report and its exit codes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.compare import (
    CompareCancelled,
    CompareProgress,
    Comparison,
    SideSpec,
    close_side,
    compare,
    compare_sides,
    open_side,
    parse_side,
)
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from tui.cli.main import main

pytestmark = pytest.mark.timeout(300)
PROMPT = "1, 2, 3"
OTHER = "A, B, C, D, E and more"


def _spec(tiny_model_dir: Path, *items: str) -> SideSpec:
    return parse_side([f"model={tiny_model_dir}", "device=cpu", "dtype=float32", *items])


@pytest.fixture(scope="module")
def sides(tiny_model_dir: Path) -> Iterator[tuple[Any, Any]]:
    """Side A (alone, template off) and side B (same model and spec) loaded once."""
    a = open_side(_spec(tiny_model_dir, "template=off"), "A")
    b = open_side(_spec(tiny_model_dir, "template=off"), "B")
    yield a, b
    close_side(a)
    close_side(b)


def test_the_same_spec_on_both_sides_is_kl_zero(sides: tuple[Any, Any]) -> None:
    a, b = sides
    c = compare_sides(a, b, PROMPT, max_new_tokens=8)
    assert c.tokenization.same and c.tokenization.first_difference is None
    assert len(c.steps) == len(c.b_path) > 0
    assert all(s.kl <= 1e-6 and s.exact for s in c.steps)
    assert all(s.agree and s.logprob_a == pytest.approx(s.logprob_b, abs=1e-6) for s in c.steps)
    assert c.first_divergence is None
    assert c.summary.mean_kl is not None and c.summary.mean_kl <= 1e-6
    assert c.summary.same_top1 == 1.0
    assert [s.step for s in c.steps] == list(range(len(c.steps)))


def test_a_step_records_both_sides_candidates(sides: tuple[Any, Any]) -> None:
    a, b = sides
    c = compare_sides(a, b, PROMPT, max_new_tokens=3, top=4)
    for s in c.steps:
        assert len(s.top_a) == len(s.top_b) == 4
        assert s.top_a[0].token_id == s.top1_a and s.top_b[0].token_id == s.top1_b
        assert s.top_a[0].logprob >= s.top_a[-1].logprob


def test_a_given_text_is_the_path(sides: tuple[Any, Any]) -> None:
    a, b = sides
    c = compare_sides(a, b, PROMPT, text=", 4, 5, 6")
    assert [s.token_id for s in c.steps] == a.engine.encode(", 4, 5, 6")
    assert len(c.b_path) <= len(c.steps)
    for s in c.steps:  # B runs free: it left the text where its own choice differs
        if c.first_divergence is not None and s.step < c.first_divergence:
            assert c.b_path[s.step] == s.token_id
    if c.first_divergence is not None:
        assert c.b_path[c.first_divergence] != c.steps[c.first_divergence].token_id


def test_left_padding_with_the_mask_matches_the_prompt_alone(
    sides: tuple[Any, Any], tiny_model_dir: Path
) -> None:
    a, _ = sides
    b = open_side(_spec(tiny_model_dir, "template=off", f"batch={OTHER}"), "B")
    try:
        c = compare_sides(a, b, PROMPT, max_new_tokens=8)
    finally:
        close_side(b)
    assert b.describe()["batch"] == {"prompts": [OTHER], "padding": "left", "mask": True}
    assert all(abs(s.logprob_a - s.logprob_b) < 1e-3 and s.kl < 1e-3 for s in c.steps)
    assert c.first_divergence is None


def test_right_padding_without_the_mask_diverges(
    sides: tuple[Any, Any], tiny_model_dir: Path
) -> None:
    a, _ = sides
    spec = _spec(tiny_model_dir, "template=off", f"batch={OTHER}", "padding=right", "mask=off")
    b = open_side(spec, "B")
    try:
        c = compare_sides(a, b, PROMPT, max_new_tokens=8)
    finally:
        close_side(b)
    assert max(s.kl for s in c.steps) > 1e-2


def test_tokenization_differences_are_aligned(sides: tuple[Any, Any], tiny_model_dir: Path) -> None:
    a, _ = sides
    b = open_side(_spec(tiny_model_dir), "B")  # template on
    try:
        c = compare_sides(a, b, PROMPT, max_new_tokens=4)
    finally:
        close_side(b)
    t = c.tokenization
    assert not t.same
    assert list(t.a_ids) == a.engine.encode(PROMPT)
    assert t.first_difference == 0  # the template starts with <|im_start|>
    assert t.b_tokens[0] == "<|im_start|>"
    assert len(c.steps) > 0  # same vocabulary: the comparison goes on


def test_progress_and_cancel(sides: tuple[Any, Any]) -> None:
    a, b = sides
    seen: list[CompareProgress] = []
    compare_sides(a, b, PROMPT, max_new_tokens=4, progress=seen.append)
    stages = [p.stage for p in seen]
    assert stages[0] == "reply" and stages[-1] == "score" and "free" not in stages
    assert [p.done for p in seen if p.stage == "reply"] == list(range(len(seen) - 2))
    # greedy B read its choices off the scored rows: it never left A's path, so it
    # never ran free; a sampled B runs free from the prompt
    seen.clear()
    sampled = replace(b, params=b.params.with_changes(temperature=1.0, seed=3))
    compare_sides(a, sampled, PROMPT, max_new_tokens=4, progress=seen.append)
    stages = [p.stage for p in seen]
    assert stages.index("score") < stages.index("free") and stages[-1] == "free"
    cancel = threading.Event()

    def stop_at_second_token(p: CompareProgress) -> None:
        if p.stage == "reply" and p.done >= 2:
            cancel.set()

    with pytest.raises(CompareCancelled):
        compare_sides(a, b, PROMPT, max_new_tokens=50, progress=stop_at_second_token, cancel=cancel)


def test_sampled_sides_use_their_own_settings(tiny_model_dir: Path) -> None:
    a = _spec(tiny_model_dir, "template=off", "temperature=1.0", "seed=1", "top-k=0")
    b = _spec(tiny_model_dir, "template=off", "temperature=1.0", "seed=2", "top-k=0")
    c = compare(a, b, PROMPT, max_new_tokens=12)
    assert c.a["sampling"]["seed"] == 1 and c.b["sampling"]["seed"] == 2
    assert all(s.kl <= 1e-6 for s in c.steps)  # same model: same distributions
    # a tiny random model's near-uniform rows: two seeds part at once
    assert c.first_divergence is not None and c.first_divergence < len(c.steps)


@pytest.fixture(scope="module")
def other_vocab_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's tokenizer over a model with a larger vocabulary."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    directory = tmp_path_factory.mktemp("other-vocab")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=len(tokenizer) + 16, hidden_size=64, intermediate_size=128,
        num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_different_vocabularies_stop_at_the_tokenization(
    tiny_model_dir: Path, other_vocab_dir: Path
) -> None:
    c = compare(_spec(tiny_model_dir), _spec(other_vocab_dir), PROMPT, max_new_tokens=4)
    assert c.problem is not None and "different vocabularies" in c.problem
    assert c.steps == () and c.first_divergence is None and c.summary.steps == 0
    assert c.tokenization.same  # the same tokenizer: only the vocabularies differ


# --- a remote side: only its top-N ------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tiny_engine: Any) -> Iterator[Any]:
    from engine.serve import ServeOptions, ServerThread, create_app

    engine, model = tiny_engine
    with ServerThread(create_app(engine, model, ServeOptions(record=False), None)) as running:
        yield running


def test_a_remote_side_gives_an_estimate_never_passed_off_as_exact(
    server: Any, tiny_model_dir: Path
) -> None:
    a = _spec(tiny_model_dir)
    b = parse_side([f"engine={server.url}/v1"])
    c = compare(a, b, PROMPT, max_new_tokens=6)
    assert c.steps and all(not s.exact for s in c.steps)
    assert c.b["backend"] == "remote" and c.b["engine"] == f"{server.url}/v1"
    exact = compare(a, a, PROMPT, max_new_tokens=6)
    for est, ref in zip(c.steps, exact.steps, strict=False):
        assert est.token_id == ref.token_id
        assert est.logprob_b == pytest.approx(ref.logprob_a, abs=1e-4)  # the same model
        assert est.kl <= 1e-3  # the estimate of a KL of 0
        assert est.top1_b == ref.top1_a and est.rank_b >= 1


# --- the command line ---------------------------------------------------------------------------


def _side(tiny_model_dir: Path, *items: str) -> str:
    return ",".join([f"model={tiny_model_dir}", "device=cpu", "dtype=float32", *items])


def test_cli_json_has_the_design_shape(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    side = _side(tiny_model_dir)
    argv = ["compare", PROMPT, "--a", side, "--b", side, "--b", "temperature=0"]
    assert main([*argv, "--max-new-tokens", "5", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["a", "b", "tokenization", "steps", "first_divergence", "summary"]
    assert set(data["tokenization"]) == {"same", "a_ids", "b_ids", "first_difference"}
    assert 0 < len(data["steps"]) <= 5
    assert set(data["steps"][0]) == {
        "step", "token_id", "token", "logprob_a", "logprob_b", "kl", "exact", "rank_b",
        "top1_a", "top1_b", "agree",
    }  # fmt: skip
    assert set(data["summary"]) == {
        "steps", "mean_kl", "median_kl", "p99_kl", "max_kl", "same_top1", "rms_dp",
        "ppl_a", "ppl_b",
    }  # fmt: skip
    assert data["first_divergence"] is None and data["summary"]["max_kl"] <= 1e-6
    assert data["b"]["spec"]["temperature"] == "0"
    assert Comparison.from_json(data).to_json() == data


def test_cli_text_shows_tokenization_steps_and_summary(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compare", PROMPT, "--a", _side(tiny_model_dir, "template=off")]
    assert main([*argv, "--b", _side(tiny_model_dir), "--max-new-tokens", "3"]) == 0
    out = capsys.readouterr().out
    assert out.index("tokenization differs at position 0") < out.index("step  A's path")
    assert out.index("step  A's path") < out.index("summary:")
    assert "KL(A‖B) nats: mean" in out


def test_cli_corpus_report(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one two three four five six seven eight nine ten " * 6)
    side = _side(tiny_model_dir)
    argv = ["compare", "--a", side, "--b", side, "--file", str(corpus), "--format", "json"]
    assert main([*argv, "--window", "32", "--stride", "16"]) == 0
    data = json.loads(capsys.readouterr().out)
    report = data["corpus"]
    assert data["window"] == 32 and data["stride"] == 16
    from engine.model.loading import load

    tokenizer = load(ModelSpec(model=str(tiny_model_dir), device="cpu")).tokenizer
    n = len(tokenizer.encode(corpus.read_text(), add_special_tokens=False))
    assert report["tokens"] == n - 1  # no BOS: the first token has no context
    assert report["kl"]["max"] <= 1e-6 and report["same_top1"] == 1.0
    assert report["ppl_ratio"] == pytest.approx(1.0)
    assert set(report["dp"]["percentiles"]) >= {"p99_9", "p50", "p0_1"}
    assert main([*argv[:-2], "--window", "32"]) == 0
    text = capsys.readouterr().out
    assert "Mean    KL" in text and "Same top p" in text and "PPL(B)/PPL(A)" in text


@pytest.mark.parametrize("mode", ["path", "corpus"])
def test_cli_ctrl_c_is_exit_130_with_nothing_written(
    tiny_model_dir: Path,
    tmp_path: Path,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl+C cancels the comparison (the engine raises `CompareCancelled` at its next
    step): exit 130, one line on stderr, nothing on stdout."""
    import engine.compare
    import engine.compare.corpus
    from engine.compare import CompareCancelled

    def cancelled(*_args: object, **_kwargs: object) -> None:
        raise CompareCancelled("cancelled")

    monkeypatch.setattr(engine.compare, "compare_sides", cancelled)
    monkeypatch.setattr(engine.compare.corpus, "compare_corpus", cancelled)
    side = _side(tiny_model_dir)
    argv = ["compare", PROMPT, "--a", side, "--b", side, "--max-new-tokens", "3"]
    if mode == "corpus":
        corpus = tmp_path / "corpus.txt"
        corpus.write_text("one two three four five six seven eight " * 4)
        argv = ["compare", "--a", side, "--b", side, "--file", str(corpus)]
    assert main(argv) == 130
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == "logitlab: compare cancelled"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--a", "bakend=x", "--b", "model=m"], "--a: unknown key 'bakend'"),
        (["--a", "model=m", "--b", "batch=x,backend=llama.cpp"], "--b: batch: a batch condition"),
        (["--a", "model=/no/such/model", "--b", "model=m"], "side A: cannot load:"),
        (["--a", "model=m", "--b", "model=m", "--window", "8"], "--window: only applies with --file"),
        (["--a", "model=m", "--b", "model=m", "--text", "x", "--max-new-tokens", "3"],
         "--max-new-tokens: applies to A's reply only"),
    ],
)  # fmt: skip
def test_cli_bad_input_is_one_line_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", PROMPT, *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing half-written
    assert captured.err.count("\n") == 1 and message in captured.err


def test_cli_a_side_that_cannot_load_is_exit_2(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compare", PROMPT, "--a", _side(tiny_model_dir), "--b", "model=/no/such/dir"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "side B: cannot load:" in captured.err


def test_cli_different_vocabularies_print_the_tokenization_only(
    tiny_model_dir: Path, other_vocab_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["compare", PROMPT, "--a", _side(tiny_model_dir)]
    argv += ["--b", f"model={other_vocab_dir},device=cpu", "--format", "json"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["steps"] == [] and data["tokenization"]["same"] is True
    assert captured.err.count("\n") == 1 and "different vocabularies" in captured.err


def test_cli_sampling_defaults_are_generates(tiny_model_dir: Path) -> None:
    side = open_side(_spec(tiny_model_dir), "A")
    try:
        assert side.params == SamplingParams(top_k=50)  # the tiny model's config: greedy
    finally:
        close_side(side)
