"""Shared fixtures: an isolated user dir per test, the real bundled model once per
run, and a tiny randomly initialised Llama for fast tests.

HF_HUB_OFFLINE is set before anything imports huggingface_hub: tests never
reach the hub. The model conversion cache stays the user's (or
LOGITLAB_CACHE_DIR), so the ~20 s GGUF conversion happens once per machine.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sessions and config go to a per-test temporary dir, never the user's."""
    monkeypatch.setenv("LOGITLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOGITLAB_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path


@pytest.fixture(autouse=True)
def no_unexpected_app_errors(request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    """An error the app survived (an error dialog) still fails the test that caused it,
    unless the test is marked ``app_errors`` (it provokes them on purpose)."""
    from tui.resilience import ResilientApp

    seen: list[Any] = []
    original = ResilientApp._record

    def record(self: ResilientApp, report: Any) -> None:
        seen.append(report)
        original(self, report)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ResilientApp, "_record", record)
        yield seen
    if seen and request.node.get_closest_marker("app_errors") is None:
        details = "\n".join(f"{r.summary} in {r.where} (log: {r.log_path})" for r in seen)
        pytest.fail(f"the app reported unexpected errors:\n{details}", pytrace=False)


@pytest.fixture
def anyio_backend() -> str:
    """The async tests (Textual's Pilot) run on asyncio."""
    return "asyncio"


@pytest.fixture
def recorder() -> Iterator[Any]:
    """A session recorder on the test's own sessions database."""
    from tui.store_recorder import StoreRecorder

    recorder = StoreRecorder.open_default()
    assert recorder.store is not None
    yield recorder
    recorder.close()


@pytest.fixture(scope="session")
def real_model() -> Any:
    """The bundled SmolLM2-135M-Instruct, loaded once per test run (fp32, CPU)."""
    import torch

    from engine.model.loading import load
    from engine.model.spec import ModelSpec

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    return load(ModelSpec(device="cpu"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, real_model: Any) -> Path:
    """A tiny random Llama with the real SmolLM2 tokenizer, saved as a checkpoint dir."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    directory = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = real_model.tokenizer
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,  # >= 64: bitsandbytes 4-bit blocks on CPU need it
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> Any:
    """The tiny Llama loaded through engine.load() (CPU, fp32)."""
    from engine.model.loading import load
    from engine.model.spec import ModelSpec

    return load(ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def tiny_engine(tiny_model_dir: Path) -> Iterator[tuple[Any, Any]]:
    """A `LocalEngine` with the tiny Llama loaded, and its description (one per module:
    the serve and remote tests run servers over it)."""
    from engine.decode import LocalEngine
    from engine.model.spec import ModelSpec

    engine = LocalEngine()
    model = engine.load(ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="float32"))
    yield engine, model
    engine.thread.close()
