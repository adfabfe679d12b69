"""`--a` / `--b` side specs (engine/compare/spec.py): the KEY=VALUE syntax and its
one-line refusals; the records' JSON (DESIGN.md's shape) and its round trip; the KL
arithmetic. No model."""

from __future__ import annotations

import math

import pytest
import torch

from engine.compare import (
    SPEC_KEYS,
    BatchCondition,
    CompareCandidate,
    CompareStep,
    Comparison,
    SideSpec,
    Tokenization,
    parse_side,
)
from engine.compare.kl import kl_estimate, kl_rows, percentile, summarize
from engine.compare.records import first_difference
from engine.decode.registry import RemoteSpec
from engine.errors import InvalidParameterError
from engine.model.spec import ModelSpec


def test_the_keys_are_designs() -> None:
    assert SPEC_KEYS == (
        "model", "backend", "device", "dtype", "quantize", "gguf-file", "engine",
        "engine-model", "temperature", "top-k", "top-p", "min-p", "repetition-penalty",
        "seed", "template", "batch", "padding", "mask",
    )  # fmt: skip


def test_shorthand_and_repeated_items_give_the_same_side() -> None:
    short = parse_side(["model=m,backend=transformers,temperature=0.5,top-k=3,seed=7"])
    long = parse_side(["model=m", "backend=transformers", "temperature=0.5", "top-k=3", "seed=7"])
    assert short.engine == long.engine == ModelSpec(model="m", backend="transformers")
    assert short.overrides == long.overrides == {"temperature": 0.5, "top_k": 3, "seed": 7}


def test_a_value_may_hold_commas_and_spaces() -> None:
    side = parse_side(["batch=A, B, C, D, E|x, y", "padding=right", "mask=off"])
    assert side.batch == BatchCondition(("A, B, C, D, E", "x, y"), padding="right", mask=False)
    # a batch makes `auto` transformers (llama.cpp cannot batch here)
    assert side.model_spec.backend == "transformers"


def test_defaults_are_generates() -> None:
    side = parse_side(["model=m"])
    assert side.template is True and side.batch is None and side.overrides == {}
    # an unset key takes the model's generation config, as generate does
    params = side.sampling_for({"do_sample": True, "temperature": 0.6, "top_p": 0.9})
    assert params.temperature == 0.6 and params.top_p == 0.9
    assert parse_side(["batch=x"]).batch == BatchCondition(("x",), "left", True)


def test_a_remote_side() -> None:
    side = parse_side(["engine=http://127.0.0.1:8000/v1,engine-model=m"])
    assert side.engine == RemoteSpec("http://127.0.0.1:8000/v1", model="m")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["bakend=x"], "--b: unknown key 'bakend'"),
        (["model=m,bakend=x"], "--b: unknown key 'bakend'"),
        (["model"], "--b: 'model' is not KEY=VALUE"),
        (["model=a", "model=b"], "--b: model is given twice"),
        (["model="], "--b: model= needs a value"),
        (["temperature=hot"], "--b: temperature: 'hot' is not a number"),
        (["top-k=1.5"], "--b: top-k: '1.5' is not an integer"),
        (["temperature=-1"], "--b: temperature: must be a number >= 0"),
        (["template=maybe"], "--b: template: 'maybe' is not on or off"),
        (["padding=left"], "--b: padding only applies with batch="),
        (["mask=off"], "--b: mask only applies with batch="),
        (["batch=x", "padding=middle"], "--b: padding: 'middle' is not left or right"),
        (["batch=x|"], "--b: batch: give the other prompts"),
        (
            ["batch=x", "backend=llama.cpp"],
            "--b: batch: a batch condition runs on the transformers",
        ),
        (["engine=http://h/v1", "batch=x"], "--b: batch: a batch condition needs a local"),
        (["engine=http://h/v1", "model=m"], "--b: engine= cannot be combined with model="),
        (["engine-model=m"], "--b: engine-model only applies with engine=URL"),
        (["device=gpu"], "--b: device: 'gpu' is not one of"),
        (["backend=llama.cpp", "quantize=4bit"], "--b: quantize: does not apply"),
    ],
)
def test_bad_items_are_one_line(items: list[str], message: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        parse_side(items, flag="--b")
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_workbench_passes_its_settings_whole() -> None:
    from engine.params import SamplingParams

    params = SamplingParams(temperature=0.3, top_k=5)
    side = SideSpec(engine=ModelSpec(), sampling=params)
    assert side.sampling_for({"temperature": 0.9, "do_sample": True}) is params


# --- records and their JSON ------------------------------------------------------------------


def _step(i: int, kl: float, a: float = -0.5, b: float = -0.7, agree: bool = True) -> CompareStep:
    return CompareStep(
        step=i, token_id=10 + i, token=f"t{i}", logprob_a=a, logprob_b=b, kl=kl, exact=True,
        rank_b=1, top1_a=10 + i, top1_b=10 + i if agree else 99, agree=agree,
        top_a=(CompareCandidate(10 + i, f"t{i}", a),), top_b=(CompareCandidate(99, "x", -0.1),),
    )  # fmt: skip


def _comparison() -> Comparison:
    steps = (_step(0, 0.01), _step(1, 0.2, agree=False), _step(2, 0.0, a=-math.inf))
    return Comparison(
        a={"model": "m", "backend": "transformers"},
        b={"model": "m", "backend": "llama.cpp"},
        tokenization=Tokenization((1, 2, 3), (1, 2, 4), ("a", "b", "c"), ("a", "b", "d")),
        steps=steps,
        first_divergence=1,
        summary=summarize(steps[:2]),
        b_path=(10, 99),
        b_tokens=("t0", "x"),
    )


def test_to_json_is_exactly_designs_shape() -> None:
    data = _comparison().to_json()
    assert list(data) == ["a", "b", "tokenization", "steps", "first_divergence", "summary"]
    assert data["tokenization"] == {
        "same": False, "a_ids": [1, 2, 3], "b_ids": [1, 2, 4], "first_difference": 2,
    }  # fmt: skip
    assert list(data["steps"][0]) == [
        "step", "token_id", "token", "logprob_a", "logprob_b", "kl", "exact", "rank_b",
        "top1_a", "top1_b", "agree",
    ]  # fmt: skip
    assert list(data["summary"]) == [
        "steps", "mean_kl", "median_kl", "p99_kl", "max_kl", "same_top1", "rms_dp",
        "ppl_a", "ppl_b",
    ]  # fmt: skip
    assert data["steps"][2]["logprob_a"] is None  # JSON has no -inf
    assert data["first_divergence"] == 1


def test_from_json_reads_back_either_form() -> None:
    c = _comparison()
    assert Comparison.from_json(c.to_json(extended=True)) == c
    plain = Comparison.from_json(c.to_json())
    assert plain.steps[0].top_a == () and plain.b_path == ()
    assert plain.to_json() == c.to_json()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.pop("steps"), "comparison.steps"),
        (lambda d: d["steps"][0].update(kl="x"), "steps[0].kl"),
        (lambda d: d["steps"][1].pop("agree"), "steps[1].agree"),
        (lambda d: d["tokenization"].update(a_ids=["1"]), "tokenization.a_ids"),
        (lambda d: d.update(first_divergence="1"), "comparison.first_divergence"),
        (lambda d: d["summary"].update(mean_kl="0"), "summary.mean_kl"),
        (lambda d: d.update(version=2), "comparison.version"),
    ],
)
def test_from_json_names_the_bad_field(change: object, field: str) -> None:
    data = _comparison().to_json(extended=True)
    change(data)  # type: ignore[operator]
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Comparison.from_json(data)


def test_first_difference() -> None:
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert first_difference([1, 2], [1, 2, 3]) == 2
    assert first_difference([], [7]) == 0


# --- the numbers --------------------------------------------------------------------------------


def test_kl_rows_is_kl_and_zero_for_equal_rows() -> None:
    torch.manual_seed(0)
    a = torch.log_softmax(torch.randn(4, 50), dim=-1)
    b = torch.log_softmax(torch.randn(4, 50), dim=-1)
    expected = (a.double().exp() * (a.double() - b.double())).sum(dim=-1)
    assert torch.allclose(kl_rows(a, b), expected, atol=1e-6)
    assert kl_rows(a, a).abs().max().item() == 0.0


def test_the_top_n_estimate_is_a_lower_bound_and_exact_with_everything_known() -> None:
    torch.manual_seed(1)
    a = torch.log_softmax(torch.randn(200), dim=-1)
    b = torch.log_softmax(torch.randn(200), dim=-1)
    exact = kl_rows(a[None], b[None]).item()
    full_a, full_b = dict(enumerate(a.tolist())), dict(enumerate(b.tolist()))
    assert kl_estimate(full_a, full_b) == pytest.approx(exact, abs=1e-6)
    top_b = {int(i): b[i].item() for i in b.topk(20).indices}
    estimate = kl_estimate(full_a, top_b)
    assert 0.0 <= estimate <= exact + 1e-9
    assert estimate > 0.0


def test_summary_and_percentiles() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    steps = [_step(0, 0.1, a=math.log(0.5), b=math.log(0.25)), _step(1, 0.3, agree=False)]
    s = summarize(steps)
    assert s.steps == 2 and s.mean_kl == pytest.approx(0.2) and s.max_kl == 0.3
    assert s.median_kl == pytest.approx(0.2)
    assert s.same_top1 == 0.5
    dp = [0.25 - 0.5, math.exp(-0.7) - math.exp(-0.5)]
    assert s.rms_dp == pytest.approx(math.sqrt((dp[0] ** 2 + dp[1] ** 2) / 2))
    assert s.ppl_a == pytest.approx(math.exp(-(math.log(0.5) - 0.5) / 2))
    assert summarize([]).mean_kl is None
