"""The GGUF conversion cache writes a standard checkpoint: tied embeddings saved as
`save_pretrained` saves them (``model.embed_tokens.weight`` kept, ``lm_head.weight``
omitted), which vLLM, SGLang and lm-eval load; a cache of the older writer (which kept
``lm_head.weight``) is converted again once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open

from engine.model import gguf_cache

pytestmark = pytest.mark.timeout(180)


def _names(directory: Path) -> set[str]:
    with safe_open(str(directory / "model.safetensors"), framework="pt") as handle:
        return set(handle.keys())


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOGITLAB_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "tiny.gguf"  # only hashed: the loader below stands in for GGUF
    source.write_bytes(b"GGUF stand-in")
    return source


def _loader(model_dir: Path, tie: bool, calls: list[int]) -> Any:
    def load(_path: Path) -> tuple[Any, Any]:
        from transformers import AutoTokenizer, LlamaForCausalLM

        calls.append(1)
        model = LlamaForCausalLM.from_pretrained(model_dir, tie_word_embeddings=tie)
        return model, AutoTokenizer.from_pretrained(model_dir)

    return load


def test_tied_model_keeps_the_embedding_name(cache: Path, tiny_model_dir: Path) -> None:
    import torch
    from transformers import LlamaForCausalLM

    calls: list[int] = []
    out = gguf_cache.convert(cache, _loader(tiny_model_dir, True, calls))
    names = _names(out)
    assert "model.embed_tokens.weight" in names
    assert "lm_head.weight" not in names
    assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is True
    # a plain loader ties the head again: the same logits as the source model
    original = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    loaded = LlamaForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, original(ids).logits)
    assert gguf_cache.cached_conversion(cache) == out
    gguf_cache.convert(cache, _loader(tiny_model_dir, True, calls))
    assert len(calls) == 1  # cached: not converted twice


def test_untied_model_keeps_both(cache: Path, tiny_model_dir: Path) -> None:
    out = gguf_cache.convert(cache, _loader(tiny_model_dir, False, []))
    assert {"model.embed_tokens.weight", "lm_head.weight"} <= _names(out)


def test_old_cache_is_converted_again_once(cache: Path, tiny_model_dir: Path) -> None:
    calls: list[int] = []
    out = gguf_cache.convert(cache, _loader(tiny_model_dir, True, calls))
    marker = out / gguf_cache.MARKER
    old = json.loads(marker.read_text())
    del old["format"]  # what the first writer left
    marker.write_text(json.dumps(old))
    assert gguf_cache.cached_conversion(cache) is None
    again = gguf_cache.convert(cache, _loader(tiny_model_dir, True, calls))
    assert again == out and len(calls) == 2
    assert json.loads(marker.read_text())["format"] == gguf_cache.FORMAT
    gguf_cache.convert(cache, _loader(tiny_model_dir, True, calls))
    assert len(calls) == 2


@pytest.mark.real_model
def test_bundled_conversion_is_standard(real_model: Any) -> None:
    """The bundled model's converted directory: the names transformers' and vLLM's
    Llama loaders read, every tensor they expect there, nothing else."""
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    from engine.model.default_model import default_gguf_path

    out = gguf_cache.cached_conversion(default_gguf_path())
    assert out is not None
    names = _names(out)
    config = AutoConfig.from_pretrained(out)
    assert config.tie_word_embeddings
    with torch.device("meta"):
        expected = set(LlamaForCausalLM(config).state_dict()) - {"lm_head.weight"}
    assert names == expected
