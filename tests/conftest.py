"""Shared fixtures: an isolated user dir per test, the real bundled model once per
run, and a tiny randomly initialised Llama (with its own tiny tokenizer) for fast tests.

Only tests marked ``real_model`` may touch the bundled model: ``-m "not real_model"`` is
the quick inner loop and must run where the bundled model is not even installed. The
``bundled_model_guard`` fixture fails an unmarked test that asks for the ``real_model``
fixture or opens the bundled GGUF file or its converted checkpoint.

HF_HUB_OFFLINE is set before anything imports huggingface_hub: tests never
reach the hub. The model conversion cache stays the user's (or
LOGITLAB_CACHE_DIR), so the ~20 s GGUF conversion happens once per machine.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.model.default_model import GGUF_NAME
from engine.model.llama_safety import CACHE_ENV as SELFTEST_CACHE_ENV
from engine.model.llama_safety import CACHE_FILE as SELFTEST_FILE

# The bundled file is <stem>.gguf and its conversion <cache>/converted/<stem>-<key>/:
# an opened path holding the stem is the bundled model.
BUNDLED_STEM = Path(GGUF_NAME).stem
_bundled_opens: list[str] | None = None  # a list while an unmarked test runs


def _watch_opens(event: str, args: tuple[Any, ...]) -> None:
    """An audit hook (they cannot be removed): records files opened from Python code
    (the hash of the GGUF, transformers reading the converted config.json) while
    `_bundled_opens` is a list."""
    if event != "open" or _bundled_opens is None:
        return
    path = args[0]
    if isinstance(path, str | bytes | os.PathLike) and BUNDLED_STEM in os.fsdecode(path):
        _bundled_opens.append(os.fsdecode(path))


sys.addaudithook(_watch_opens)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A slow machine stretches the `timeout` markers too (LOGITLAB_TEST_TIMEOUT_SCALE)."""
    from tests.timeouts import TIMEOUT_SCALE

    if TIMEOUT_SCALE == 1.0:
        return
    for item in items:
        marker = item.get_closest_marker("timeout")
        if marker is not None and marker.args:
            item.add_marker(pytest.mark.timeout(marker.args[0] * TIMEOUT_SCALE), append=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Watch an unmarked test from the start of its setup: a module- or session-scoped
    fixture it is the first to need is set up here, before any function fixture."""
    global _bundled_opens
    _bundled_opens = None if item.get_closest_marker("real_model") is not None else []
    item.stash[_OPENS] = _bundled_opens
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    global _bundled_opens
    yield
    _bundled_opens = None


_OPENS = pytest.StashKey[list[str] | None]()


@pytest.fixture(autouse=True)
def bundled_model_guard(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Fails a test not marked ``real_model`` that uses the bundled model; yields the
    paths it opened so far (the guard's own test provokes one on purpose)."""
    opened = request.node.stash.get(_OPENS, None)
    if opened is None:  # marked real_model
        yield []
        return
    if "real_model" in request.fixturenames:
        pytest.fail("uses the real_model fixture: mark the test real_model", pytrace=False)
    yield opened
    if opened:
        pytest.fail(
            f"opened the bundled model without the real_model mark: {opened[:3]}", pytrace=False
        )


@pytest.fixture(scope="session")
def shared_selftest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the llama.cpp self-test verdicts of the run are kept for every test."""
    return tmp_path_factory.mktemp("llama-selftest") / SELFTEST_FILE


@pytest.fixture(autouse=True)
def isolated_user_dirs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    shared_selftest: Path,
) -> Path:
    """Sessions and config go to a per-test temporary dir, never the user's.

    The llama.cpp self-test (engine/model/llama_safety.py) runs once per verdict file,
    a child process of ~4 s: one file is shared by the whole run, except with tests
    marked ``fresh_selftest`` (they provoke crashes in it on purpose: theirs is in
    their own data dir)."""
    monkeypatch.setenv("LOGITLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOGITLAB_CONFIG_DIR", str(tmp_path / "config"))
    if request.node.get_closest_marker("fresh_selftest") is None:
        monkeypatch.setenv(SELFTEST_CACHE_ENV, str(shared_selftest))
    else:
        monkeypatch.delenv(SELFTEST_CACHE_ENV, raising=False)
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
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a tiny byte-level BPE tokenizer shaped like SmolLM2's
    (tests/tiny_tokenizer.py), saved as a checkpoint dir; nothing of the bundled model."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from tests.tiny_tokenizer import build_tiny_tokenizer

    directory = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tiny_tokenizer()
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


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir: Path) -> Any:
    """The tiny Llama's tokenizer, loaded on its own (no model)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def vllm_stub(tiny_engine: tuple[Any, Any], tiny_tokenizer: Any) -> Iterator[Any]:
    """A server answering in vLLM's ``token_id:N`` shapes (tests/vllm_stub.py) in front of
    `logitlab serve` on the tiny model; stopped with the module."""
    from engine.serve import ServeOptions, ServerThread, create_app
    from tests.vllm_stub import VllmStub

    engine, model = tiny_engine
    app = create_app(engine, model, ServeOptions(record=False), None)
    with ServerThread(app) as server, VllmStub(server.url, tiny_tokenizer) as proxy:
        yield proxy
