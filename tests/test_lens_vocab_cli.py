"""`logitlab lens` and `logitlab vocab`: the DESIGN.md JSON shapes, the table, and one-line
refusals (bad --position, empty query, no match). Run in-process on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tui.cli.main import main


def _model(tiny_model_dir: Path) -> list[str]:
    return ["--model", str(tiny_model_dir), "--device", "cpu"]


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main([*argv, "--format", "json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_lens_json_has_the_design_shape(
    tiny_model_dir: Path, tiny_model: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _json(capsys, "lens", "Hello there", *_model(tiny_model_dir), "--top", "3")
    layers = tiny_model.model.config.num_hidden_layers
    assert set(data) >= {"position", "input_token", "layers"}
    assert set(data["input_token"]) == {"id", "token"}
    assert len(data["layers"]) == layers + 1
    first, last = data["layers"][0], data["layers"][-1]
    assert first["layer"] == 0 and first["name"] == "embeddings"
    assert [row["layer"] for row in data["layers"]] == list(range(layers + 1))
    for row in data["layers"]:
        assert len(row["top"]) == 3
        assert set(row["top"][0]) == {"token_id", "token", "logprob"}
        assert set(row["target"]) == {"token_id", "token", "logprob", "rank"}
    # the target is the final layer's top-1
    assert last["target"]["token_id"] == last["top"][0]["token_id"]
    assert last["target"]["rank"] == 1


def test_lens_raw_position_explains_that_prompt_position(
    tiny_model_dir: Path, tiny_model: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = tiny_model.tokenizer.encode("one two three")
    data = _json(
        capsys, "lens", "one two three", "--raw", "--position", "1", *_model(tiny_model_dir)
    )
    assert data["position"] == 1
    assert data["input_token"]["id"] == ids[1]


def test_lens_table_marks_the_settling_layer(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lens", "Hi", *_model(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "embeddings" in out and "top-1 from here on" in out


@pytest.mark.parametrize(
    "bad",
    [["--position", "999"], ["--top", "0"], ["--raw", "--system", "S"]],
    ids=["position", "top", "raw-system"],
)
def test_lens_bad_values_exit_2_with_one_line(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], bad: list[str]
) -> None:
    assert main(["lens", "Hi", *_model(tiny_model_dir), *bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("logitlab: error:")


def test_vocab_json_has_the_design_shape_and_near_starts_with_the_match(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _json(capsys, "vocab", "Paris", *_model(tiny_model_dir), "--near", "4")
    assert set(data) >= {"matches", "near"}
    match = data["matches"][0]
    assert set(match) == {"id", "piece", "token", "bytes", "special"}
    assert bytes(match["bytes"]).decode() in ("Paris", " Paris")
    assert len(data["near"]) == 4
    assert data["near"][0] == {"id": match["id"], "token": match["token"], "cosine": 1.0}
    assert set(data["near"][1]) == {"id", "token", "cosine"}
    assert data["tied_embeddings"] is True


def test_vocab_by_id_without_near_loads_only_the_tokenizer(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.model.loading

    def no_weights(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("vocab without --near must not load the model")

    monkeypatch.setattr(engine.model.loading, "load", no_weights)
    data = _json(capsys, "vocab", "2", *_model(tiny_model_dir))
    assert [m["id"] for m in data["matches"]] == [2]
    assert data["near"] == []


@pytest.mark.parametrize(
    ("query", "extra", "code"),
    [("", [], 2), ("zzqqxxjj\u2603\u2603", ["--by", "exact"], 1), ("999999999", [], 2)],
    ids=["empty", "no-match", "bad-id"],
)
def test_vocab_refusals_are_one_line(
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    query: str,
    extra: list[str],
    code: int,
) -> None:
    assert main(["vocab", query, *_model(tiny_model_dir), *extra]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("logitlab: error:")
