"""`load_llama(ModelSpec) -> LlamaModel`: a GGUF file run natively by llama.cpp
(llama-cpp-python, the optional ``llamacpp`` group), no dequantizing.

The tokenizer is a transformers tokenizer built from the same file, so the
engine's token views (pieces, bytes, special flags, chat template) work
unchanged: the converted checkpoint's ``tokenizer.json`` when this file was
converted before (no torch, instant), else transformers' own GGUF tokenizer
reader (vocabulary and merges only, no weights). Load checks it against
llama.cpp's own vocabulary: same size, and the same ids for a probe text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.errors import CorruptModelError, ModelLoadError, ModelNotFoundError
from engine.model import default_model, gguf_cache, llama_safety
from engine.model.backend import INSTALL_HINT
from engine.model.checkpoint import (
    LoadProgress,
    ProgressCallback,
    SourceKind,
    _hub_snapshot,
    generation_config_file,
    quiet_transformers,
    short_error,
)
from engine.model.gguf_info import GGUFFile, read_gguf
from engine.model.llama_selftest import model_params
from engine.model.spec import ModelSpec

# llama.cpp allocates its KV cache for the whole context up front: cap it
MAX_CONTEXT = 8192
PROBE = "Hello, world! 1234 naïve café — <|im_start|>user\n  tabs\tand 日本語"


@dataclass
class LlamaModel:
    """A GGUF file loaded in llama.cpp, with the engine's view of its vocabulary."""

    llm: Any  # llama_cpp.Llama
    tokenizer: Any  # transformers tokenizer (fast) built from the same GGUF
    spec: ModelSpec
    source: SourceKind
    model_id: str
    gguf_path: Path
    gguf: GGUFFile
    context_window: int
    eos_token_ids: tuple[int, ...]
    offload: str  # where layers run, in words
    gpu_layers: int
    tokenizer_source: str  # "converted tokenizer.json" | "GGUF vocabulary"
    tokenizer_agrees: bool  # our ids == llama.cpp's ids on the probe text
    generation_config_file: dict[str, Any] = field(default_factory=dict)
    load_seconds: float = 0.0
    native: llama_safety.NativeChoice | None = None  # the self-tested native configuration
    # the loop samples on the host: llama.cpp's logits are copied to a CPU tensor
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def n_vocab(self) -> int:
        return int(self.llm.n_vocab())


def gguf_path_of(spec: ModelSpec, report: ProgressCallback) -> tuple[SourceKind, Path, str]:
    """(source, file, display id) of the GGUF file `spec` names."""
    if spec.model is None:
        return "gguf", default_model.default_gguf_path(), default_model.DISPLAY_NAME
    given = Path(spec.model).expanduser()
    if given.is_file():
        return "gguf", given, given.name
    if given.is_dir():
        if not spec.gguf_file:
            raise ModelNotFoundError(f"{spec.model} is a directory; name the file with --gguf-file")
        path = given / spec.gguf_file
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}")
        return "gguf", path, path.name
    if spec.model.lower().endswith(".gguf") or not spec.gguf_file:
        raise ModelNotFoundError(f"GGUF file not found: {spec.model}")
    path = _hub_snapshot(spec, report) / spec.gguf_file
    if not path.is_file():
        raise ModelNotFoundError(f"{spec.gguf_file} is not in {spec.model}")
    return "gguf", path, f"{spec.model}:{spec.gguf_file}"


def load_llama(spec: ModelSpec, progress: ProgressCallback | None = None) -> LlamaModel:
    """Load the GGUF file `spec` names in llama.cpp. Raises a `ModelLoadError` subclass."""
    report = progress or (lambda _p: None)
    started = time.perf_counter()
    report(LoadProgress("resolving", 0.0, f"{spec.display_name} on llama.cpp"))
    try:
        import llama_cpp
    except ImportError:
        raise ModelLoadError(INSTALL_HINT) from None
    source, path, model_id = gguf_path_of(spec, report)
    header = read_gguf(path)
    layers, offload = _offload(spec, header, llama_cpp)
    trained = header.arch("context_length")
    n_ctx = min(int(trained) if isinstance(trained, int) else 2048, MAX_CONTEXT)
    report(LoadProgress("resolving", 0.2, f"checking llama.cpp on this CPU ({header.file_type})"))
    native = llama_safety.choose(llama_cpp, path, header.file_type)  # or NativeCrashError
    report(LoadProgress("loading weights", 0.3, f"{path.name} ({offload})"))
    try:
        with model_params(native.config.extra_bufts):
            llm = llama_cpp.Llama(
                model_path=str(path), n_ctx=n_ctx, n_gpu_layers=layers, verbose=False, seed=0
            )
    except (ValueError, RuntimeError, OSError) as exc:
        raise CorruptModelError(
            f"llama.cpp cannot load {path.name}: it is truncated, corrupt, or of an "
            f"architecture this llama-cpp-python does not know ({short_error(exc)})"
        ) from None
    report(LoadProgress("loading weights", 0.7, f"{model_id}: tokenizer"))
    tokenizer, tokenizer_source, generation = _tokenizer(path)
    if len(tokenizer) > llm.n_vocab():
        raise CorruptModelError(
            f"{path.name}: the tokenizer has {len(tokenizer)} tokens but llama.cpp's vocabulary "
            f"{llm.n_vocab()}; the file's vocabulary is inconsistent"
        )
    ours = tokenizer.encode(PROBE, add_special_tokens=False)
    theirs = llm.tokenize(PROBE.encode("utf-8"), add_bos=False, special=True)
    eos = _eos_ids(llm, tokenizer, generation)
    loaded = LlamaModel(
        llm=llm,
        tokenizer=tokenizer,
        spec=spec,
        source=source,
        model_id=model_id,
        gguf_path=path,
        gguf=header,
        context_window=int(llm.n_ctx()),
        eos_token_ids=eos,
        offload=offload,
        gpu_layers=layers,
        tokenizer_source=tokenizer_source,
        tokenizer_agrees=list(ours) == list(theirs),
        generation_config_file=generation,
        native=native,
    )
    loaded.load_seconds = time.perf_counter() - started
    report(LoadProgress("ready", 1.0, f"{model_id} on llama.cpp ({offload})"))
    return loaded


def _offload(spec: ModelSpec, header: GGUFFile, llama_cpp: Any) -> tuple[int, str]:
    """(n_gpu_layers, where the layers run in words). ``--device cuda`` offloads every
    layer where the binding was built with GPU support, and says so where it was not."""
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    asked = spec.n_gpu_layers
    if asked is None:
        asked = -1 if spec.device.startswith("cuda") or (spec.device == "auto" and gpu) else 0
    if spec.device == "cpu":
        asked = 0
    blocks = header.arch("block_count")
    if asked == 0:
        return 0, "cpu"
    if not gpu:
        return 0, (
            "cpu: this llama-cpp-python was built without GPU offload; rebuild with "
            "CMAKE_ARGS=-DGGML_CUDA=on pip install -e '.[llamacpp]' --no-cache-dir"
        )
    total = int(blocks) if isinstance(blocks, int) else asked
    on_gpu = total if asked < 0 else min(asked, total)
    return asked, f"gpu: {on_gpu}/{total} layers offloaded"


def _tokenizer(path: Path) -> tuple[Any, str, dict[str, Any]]:
    with quiet_transformers():
        try:
            converted = gguf_cache.cached_conversion(path)
            if converted is not None and (converted / "tokenizer.json").is_file():
                from transformers import PreTrainedTokenizerFast

                tokenizer = PreTrainedTokenizerFast.from_pretrained(converted)
                return tokenizer, "converted tokenizer.json", generation_config_file(converted)
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        except Exception as exc:
            raise CorruptModelError(
                f"cannot build the tokenizer of {path.name} ({short_error(exc)})"
            ) from None
    return tokenizer, "GGUF vocabulary", {}


def _eos_ids(llm: Any, tokenizer: Any, generation: dict[str, Any]) -> tuple[int, ...]:
    found: list[int] = []
    configured = generation.get("eos_token_id")
    for value in (configured, int(llm.token_eos()), getattr(tokenizer, "eos_token_id", None)):
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, int) and item >= 0 and item not in found:
                found.append(item)
    return tuple(found)
