"""`logitlab score`: the sliding window of transformers' guide "Perplexity of
fixed-length models" computed independently, the output shapes, bad input (one line,
exit 2) and Ctrl+C (the summary of what was scored, exit 130)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.test_score import TEXT
from tui.cli.main import main
from tui.cli.score_cmd import plan_sizes, token_ids, windows

LONG = " ".join([TEXT] * 6)  # several 256-token windows on the tiny model
SUMMARY_KEYS = {
    "model",
    "backend",
    "tokens",
    "nll",
    "ppl",
    "bits_per_byte",
    "window",
    "stride",
    "elapsed_s",
}
TOKEN_KEYS = {"position", "token_id", "token", "logprob", "rank", "entropy", "top"}


def _tiny(tiny_model_dir: Path, *extra: str) -> list[str]:
    model = ["--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32"]
    return ["score", *extra, "--backend", "transformers", *model]


def guide_recipe(model: Any, ids: torch.Tensor, max_length: int, stride: int) -> tuple[float, int]:
    """transformers' guide "Perplexity of fixed-length models", written out again:
    (mean nll, tokens). One correction: the guide counts ``num_valid_tokens - 1`` per
    window, but only the first window loses a label to the shift (later windows'
    masked prefix absorbs it), so the labels are counted after the shift, as the
    loss itself counts them."""
    seq_len = ids.size(1)
    nll_sum, n_tokens, prev_end_loc = 0.0, 0, 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc  # may be different from stride on last loop
        input_ids = ids[:, begin_loc:end_loc]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss
        num_loss_tokens = int((target_ids[:, 1:] != -100).sum())
        nll_sum += float(loss) * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    return nll_sum / n_tokens, n_tokens


def test_json_equals_the_guides_recipe(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path / "text.txt"
    path.write_text(LONG, encoding="utf-8")
    args = ["--file", str(path), "--format", "json", "--window", "256", "--stride", "128"]
    assert main(_tiny(tiny_model_dir, *args)) == 0
    ours = json.loads(capsys.readouterr().out)
    assert set(ours) == SUMMARY_KEYS
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    encodings = tokenizer(LONG, return_tensors="pt")
    assert encodings.input_ids.size(1) > 2 * 256  # several windows
    nll, tokens = guide_recipe(model, encodings.input_ids, 256, 128)
    assert ours["tokens"] == tokens == encodings.input_ids.size(1) - 1
    assert ours["nll"] == pytest.approx(nll, abs=1e-4)
    assert ours["ppl"] == pytest.approx(math.exp(nll), rel=1e-4)
    assert (ours["window"], ours["stride"], ours["backend"]) == (256, 128, "transformers")
    scored_bytes = len(LONG.encode()) - len(tokenizer.decode(encodings.input_ids[0, :1]).encode())
    assert ours["bits_per_byte"] == pytest.approx(nll * tokens / math.log(2) / scored_bytes)


def test_jsonl_is_one_line_per_scored_token_then_the_summary(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_tiny(tiny_model_dir, TEXT, "--format", "jsonl", "--window", "32")) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    *tokens, summary = lines
    assert set(summary) == SUMMARY_KEYS and summary["tokens"] == len(tokens)
    assert (summary["window"], summary["stride"]) == (32, 16)
    assert [t["position"] for t in tokens] == list(range(1, len(tokens) + 1))
    for t in tokens:
        assert set(t) == TOKEN_KEYS and t["rank"] >= 1 and t["logprob"] <= 0
        assert len(t["top"]) == 10  # the jsonl default
        assert set(t["top"][0]) == {"token_id", "token", "logprob"}
    nll = -sum(t["logprob"] for t in tokens) / len(tokens)
    assert summary["nll"] == pytest.approx(nll)


def test_text_then_the_summary_line(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_tiny(tiny_model_dir, TEXT)) == 0
    out = capsys.readouterr().out
    text, summary = out.rstrip("\n").rsplit("\n", 1)
    assert text == TEXT and "\x1b[" not in out  # not a terminal: no colour
    assert summary.startswith("[") and "tokens scored" in summary and "ppl" in summary


def test_stdin(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(TEXT))
    assert main(_tiny(tiny_model_dir, "-", "--format", "json")) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] > 10


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        (["   "], "TEXT"),
        ([], "TEXT"),
        (["--file", "{bad}"], "not UTF-8"),
        (["--file", "{missing}"], "cannot read"),
        (["x", "--file", "{bad}"], "cannot be combined"),
        (["Hello there", "--window", "300"], "context window (256)"),
        (["Hello there", "--stride", "0"], "--stride"),
        (["Hello there", "--window", "16", "--stride", "17"], "larger than the window"),
        (["Hello there", "--stride", "300"], "larger than the window (256)"),  # after the load
        (["Hello there", "--top-logprobs", "51"], "0-50"),
        (["H"], "single token"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    names: str,
) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café au lait".encode("latin-1"))
    files = {"bad": str(bad), "missing": str(tmp_path / "nope.txt")}
    args = [a.format(**files) for a in extra]
    assert main(_tiny(tiny_model_dir, *args)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and names in err, err


def test_ctrl_c_prints_the_summary_of_what_was_scored(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second window is interrupted: the first window's tokens are summarised."""
    from engine.decode import LocalEngine

    real = LocalEngine.score
    calls: list[int] = []

    def interrupted_second(self: Any, ids: Any, **kwargs: Any) -> Any:
        calls.append(len(ids))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, ids, **kwargs)

    monkeypatch.setattr(LocalEngine, "score", interrupted_second)
    args = [LONG, "--format", "json", "--window", "64", "--stride", "32"]
    assert main(_tiny(tiny_model_dir, *args)) == 130
    summary = json.loads(capsys.readouterr().out)
    assert summary["tokens"] == 63 and summary.get("interrupted") is True
    assert math.isfinite(summary["nll"]) and summary["elapsed_s"] >= 0


def test_windows_score_every_token_once() -> None:
    """Every token after the first, once, with context in its window; with stride ==
    window (no overlap, the guide's worse strategy) a window's first token has none
    and is not scored, as in the guide."""
    for n in (2, 3, 10, 64, 65, 100, 257, 1000):
        for window, stride in ((2, 1), (2, 2), (16, 8), (16, 16), (64, 5), (256, 128)):
            scored: list[int] = []
            found = windows(n, window, stride)
            for begin, end, start in found:
                assert end - begin <= window and start >= 1
                scored += range(begin + start, end)
            unscored = {0} | ({b for b, _e, _s in found} if stride == window else set())
            assert scored == [p for p in range(n) if p not in unscored], (n, window, stride)


def test_sizes_default_to_the_context_window_capped() -> None:
    assert plan_sizes(None, None, 8192) == (4096, 2048)
    assert plan_sizes(None, None, 256) == (256, 128)
    assert plan_sizes(100, None, 256) == (100, 50)
    assert plan_sizes(None, 7, 2048) == (2048, 7)
    assert plan_sizes(None, None, 0) == (4096, 2048)  # a server that does not say
    assert plan_sizes(9000, None, 0) == (9000, 4500)


def test_the_bos_rule_and_no_bos() -> None:
    class Tokenizer:
        bos_token_id = 1

        def __call__(self, text: str, add_special_tokens: bool) -> dict[str, list[int]]:
            return {"input_ids": [1, 9] if add_special_tokens else [9]}

    class Loaded:
        tokenizer = Tokenizer()

    class Engine:
        loaded = Loaded()

        def encode(self, text: str) -> list[int]:
            return [9, 10]

    assert token_ids(Engine(), "ab", no_bos=False) == ([1, 9, 10], 1)
    assert token_ids(Engine(), "ab", no_bos=True) == ([9, 10], None)
    Tokenizer.__call__ = lambda self, text, add_special_tokens: {"input_ids": [9]}  # type: ignore[method-assign,assignment]
    assert token_ids(Engine(), "ab", no_bos=False) == ([9, 10], None)


@pytest.mark.real_model
@pytest.mark.timeout(600)
def test_json_equals_the_guides_recipe_bundled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's check on the bundled model (its converted checkpoint on transformers)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.model import default_model, gguf_cache

    path = tmp_path / "text.txt"
    path.write_text(LONG, encoding="utf-8")
    args = ["--file", str(path), "--format", "json", "--backend", "transformers"]
    assert main(["score", *args, "--window", "256", "--stride", "128", "--device", "cpu"]) == 0
    ours = json.loads(capsys.readouterr().out)
    converted = gguf_cache.cached_conversion(default_model.default_gguf_path())
    assert converted is not None
    tokenizer = AutoTokenizer.from_pretrained(converted)
    model = AutoModelForCausalLM.from_pretrained(converted, dtype=torch.float32).eval()
    encodings = tokenizer(LONG, return_tensors="pt")
    nll, tokens = guide_recipe(model, encodings.input_ids, 256, 128)
    assert ours["tokens"] == tokens
    assert ours["nll"] == pytest.approx(nll, abs=1e-4)


@pytest.mark.real_model
@pytest.mark.timeout(600)
def test_llama_cpp_scores_the_same_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("llama_cpp")
    args = ["score", TEXT, "--format", "json", "--device", "cpu"]
    assert main([*args, "--backend", "llama.cpp"]) == 0
    llama = json.loads(capsys.readouterr().out)
    assert main([*args, "--backend", "transformers"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert llama["backend"] == "llama.cpp" and llama["tokens"] == local["tokens"]
    # Q4_1 in llama.cpp against its dequantized weights in transformers: close, not equal
    assert llama["nll"] == pytest.approx(local["nll"], rel=0.05)


def test_a_progress_bar_on_a_terminal_only(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from tui.cli import score_cmd

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(score_cmd, "PROGRESS_FROM", 10)
    args = [LONG, "--format", "json", "--window", "128"]
    assert main(_tiny(tiny_model_dir, *args)) == 0
    assert "scoring" not in capsys.readouterr().err  # not a terminal: no bar
    err = Terminal()
    monkeypatch.setattr("sys.stderr", err)
    assert main(_tiny(tiny_model_dir, *args)) == 0
    bar = err.getvalue()
    assert bar.count("\rscoring") >= 3 and bar.endswith("\r\033[K")  # cleared at the end
    total = json.loads(capsys.readouterr().out)["tokens"]
    assert f" {total}/{total} tokens" in bar


@pytest.mark.timeout(300)
def test_sigint_to_a_running_score_prints_the_summary(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A real Ctrl+C: SIGINT once the first scored token is out; what was scored is
    summarised (jsonl: the lines so far, then the summary), exit 130."""
    import os
    import signal
    import subprocess
    import sys

    path = tmp_path / "long.txt"
    path.write_text(LONG, encoding="utf-8")
    args = ["--file", str(path), "--format", "jsonl", "--window", "16", "--stride", "1"]
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(
        [sys.executable, "-m", "tui.cli.main", *_tiny(tiny_model_dir, *args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"},
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline()  # one window (of hundreds) scored
        child.send_signal(signal.SIGINT)
        rest, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130, err
    # JSON lines end at "\n" only: a token's text may hold U+0085 or U+2028 raw,
    # which str.splitlines() would also split at
    lines = [first, *rest.split("\n")]
    *tokens, summary = [json.loads(line) for line in lines if line.strip()]
    assert summary["interrupted"] is True and summary["tokens"] == len(tokens) >= 1
    assert "Traceback" not in err
