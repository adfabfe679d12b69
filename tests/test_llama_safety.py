"""The llama.cpp self-test guard: a configuration whose child dies of a real SIGSEGV
never runs in process (test-only hook LOGITLAB_LLAMA_SELFTEST_CRASH), on any CPU."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

import llama_cpp

from engine.decode.registry import open_engine
from engine.errors import NativeCrashError
from engine.model import llama_safety
from engine.model.default_model import default_gguf_path
from engine.model.spec import ModelSpec
from engine.paths import data_dir

pytestmark = [pytest.mark.real_model, pytest.mark.fresh_selftest, pytest.mark.timeout(600)]


def test_extra_bufts_crash_falls_back_to_the_safe_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGITLAB_LLAMA_SELFTEST_CRASH", "extra")
    choice = llama_safety.choose(llama_cpp, default_gguf_path(), "MOSTLY_Q4_1")
    if llama_safety.KNOWN_CRASH in choice.system_info:
        assert choice.config == llama_safety.SAFE  # never even tried
    else:
        assert choice.config == llama_safety.SAFE
        assert any("SIGSEGV" in line for line in choice.skipped)
        assert list(data_dir().glob("llama-selftest-*-extra-bufts-on.log"))
    again = llama_safety.choose(llama_cpp, default_gguf_path(), "MOSTLY_Q4_1")
    assert again.config == llama_safety.SAFE and "(cached)" in again.verdict.detail


def test_every_configuration_crashing_falls_back_to_transformers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGITLAB_LLAMA_SELFTEST_CRASH", "all")
    with pytest.raises(NativeCrashError, match="SIGSEGV"):
        llama_safety.choose(llama_cpp, default_gguf_path(), "MOSTLY_Q4_1")
    engine = open_engine(ModelSpec(device="cpu"))
    model = engine.load(ModelSpec(device="cpu"))
    assert model.backend == "transformers"
    assert model.notices and "crashed in its self-test" in model.notices[0]
    with pytest.raises(NativeCrashError):
        open_engine(ModelSpec(backend="llama.cpp")).load(ModelSpec(backend="llama.cpp"))
