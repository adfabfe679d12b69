"""Choosing a backend (--backend auto|transformers|llama.cpp) and refusing options
that do not apply. No model and no binding needed: the binding's presence is faked."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from engine.config import config_from_dict
from engine.errors import FeatureUnavailableError, InvalidParameterError, ModelLoadError
from engine.model import backend as backend_module
from engine.model.backend import gguf_without_binding, resolve_backend
from engine.model.spec import ModelSpec
from tui.cli.main import main


@pytest.fixture
def binding(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_available(available: bool) -> None:
        monkeypatch.setattr(backend_module, "llama_cpp_available", lambda: available)

    return set_available


def test_auto_picks_llama_cpp_for_gguf_when_installed(binding: Any) -> None:
    binding(True)
    assert resolve_backend(ModelSpec()) == "llama.cpp"  # the bundled default is a GGUF file
    assert resolve_backend(ModelSpec(model="/models/x.Q4_K_M.gguf")) == "llama.cpp"
    assert resolve_backend(ModelSpec(model="org/repo", gguf_file="x.gguf")) == "llama.cpp"
    assert resolve_backend(ModelSpec(model="org/repo")) == "transformers"
    # options only transformers honours steer auto there
    assert resolve_backend(ModelSpec(quantize="4bit")) == "transformers"
    assert resolve_backend(ModelSpec(dtype="float16")) == "transformers"
    assert gguf_without_binding(ModelSpec()) is None


def test_auto_falls_back_to_transformers_without_the_binding(binding: Any) -> None:
    binding(False)
    assert resolve_backend(ModelSpec()) == "transformers"
    tip = gguf_without_binding(ModelSpec())
    assert tip is not None and "pip install -e '.[llamacpp]'" in tip
    with pytest.raises(ModelLoadError, match=r"pip install -e '\.\[llamacpp\]'"):
        resolve_backend(ModelSpec(backend="llama.cpp"))


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"backend": "llama.cpp", "quantize": "4bit"}, "quantize", "quantized already"),
        ({"backend": "llama.cpp", "dtype": "float16"}, "dtype", "GGUF's own types"),
        ({"backend": "transformers", "n_gpu_layers": 10}, "n_gpu_layers", "llama.cpp only"),
        ({"backend": "vllm"}, "backend", "not one of"),
        ({"n_gpu_layers": -2}, "n_gpu_layers", ">= -1"),
    ],
)
def test_options_that_do_not_apply_are_refused(
    kwargs: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidParameterError, match=words) as caught:
        ModelSpec(**kwargs)
    assert caught.value.field == field


def test_llama_cpp_refuses_a_checkpoint_directory(binding: Any) -> None:
    binding(True)
    with pytest.raises(InvalidParameterError, match=r"\.gguf files only"):
        resolve_backend(ModelSpec(model="HuggingFaceTB/SmolLM2-135M", backend="llama.cpp"))
    with pytest.raises(InvalidParameterError, match="ask for transformers"):
        resolve_backend(ModelSpec(n_gpu_layers=5, quantize="8bit"))


def test_cli_refusals_are_one_line_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["generate", "hi", "--backend", "llama.cpp", "--quantize", "4bit"],
        ["info", "--backend", "transformers", "--n-gpu-layers", "4"],
        ["serve", "--backend", "llama.cpp", "--dtype", "float16"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "does not apply" in err or "llama.cpp only" in err


def test_lens_refuses_llama_cpp_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lens", "hi", "--backend", "llama.cpp"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "llama.cpp does not expose" in err


def test_feature_error_names_the_backend() -> None:
    from tui.cli.options import internals_spec

    with pytest.raises(FeatureUnavailableError):
        internals_spec(ModelSpec(backend="llama.cpp"), "the layer lens")
    assert internals_spec(ModelSpec(), "x").backend == "transformers"


def test_config_toml_sets_the_backend() -> None:
    config = config_from_dict({"model": {"backend": "llama.cpp", "n_gpu_layers": -1}})
    spec = config.model.to_spec()
    assert (spec.backend, spec.n_gpu_layers) == ("llama.cpp", -1)
    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model\.backend"):
        config_from_dict({"model": {"backend": "onnx"}})


def _fake_llama_cpp(gpu: bool) -> types.SimpleNamespace:
    return types.SimpleNamespace(llama_supports_gpu_offload=lambda: gpu)


def test_device_cuda_offloads_or_says_why_not(tmp_path: Path) -> None:
    from engine.model.gguf_info import GGUFFile
    from engine.model.llama import _offload

    header = GGUFFile(tmp_path, 0, {"general.architecture": "llama", "llama.block_count": 30}, ())
    assert _offload(ModelSpec(device="cuda"), header, _fake_llama_cpp(True)) == (
        -1,
        "gpu: 30/30 layers offloaded",
    )
    layers, words = _offload(ModelSpec(device="cuda"), header, _fake_llama_cpp(False))
    assert layers == 0 and "built without GPU offload" in words and "GGML_CUDA" in words
    assert _offload(ModelSpec(device="cpu"), header, _fake_llama_cpp(True))[0] == 0
    assert _offload(ModelSpec(n_gpu_layers=8), header, _fake_llama_cpp(True)) == (
        8,
        "gpu: 8/30 layers offloaded",
    )


def test_backend_module_never_imports_the_binding() -> None:
    import subprocess

    code = (
        "import sys; from engine.model.backend import resolve_backend; "
        "from engine.model.spec import ModelSpec; resolve_backend(ModelSpec()); "
        "print('llama_cpp' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- with the real binding (skipped without it) ----------------------------------------


def test_auto_picks_the_installed_binding_unfaked() -> None:
    pytest.importorskip("llama_cpp")
    assert backend_module.llama_cpp_available()
    assert resolve_backend(ModelSpec()) == "llama.cpp"
    assert resolve_backend(ModelSpec(model="/models/x.Q4_K_M.gguf")) == "llama.cpp"
    assert resolve_backend(ModelSpec(quantize="4bit")) == "transformers"
    assert gguf_without_binding(ModelSpec()) is None


@pytest.mark.real_model
@pytest.mark.timeout(300)
def test_auto_runs_the_bundled_gguf_on_the_installed_binding() -> None:
    """`logitlab info` with no --backend, as a user runs it: the bundled GGUF file is
    loaded by llama.cpp (not fallen back from: that would print a warning)."""
    import json
    import os
    import subprocess

    pytest.importorskip("llama_cpp")
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli.main", "info", "--device", "cpu", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "llama.cpp"
    assert "running on transformers" not in result.stderr
