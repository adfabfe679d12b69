"""Where a model's files are, without importing torch: the bundled default, a hub
snapshot (the normal HF cache; offline it fails fast), a local checkpoint
directory, or a GGUF file converted once to a cached checkpoint. And what its
config files say (context window, stop ids, the generation config file).

Both `load` (weights) and `load_tokenizer` (no weights) start here; only a
GGUF file's first conversion imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.errors import (
    CorruptModelError,
    HubUnreachableError,
    LoadOutOfMemoryError,
    ModelNotFoundError,
    NotCausalLMError,
)
from engine.model import default_model, gguf_cache
from engine.model.spec import ModelSpec

SourceKind = Literal["hub", "local", "gguf"]
Stage = Literal["resolving", "converting", "loading weights", "moving to device", "ready"]


@dataclass(frozen=True)
class LoadProgress:
    """One progress report: a stage, how far along the whole load is (0..1), a detail."""

    stage: Stage
    fraction: float
    detail: str = ""


ProgressCallback = Callable[[LoadProgress], None]

# --- resolving the source ----------------------------------------------------------


def resolve_checkpoint(
    spec: ModelSpec, report: ProgressCallback
) -> tuple[SourceKind, Path, str, bool]:
    """Return (source kind, local checkpoint dir, display id, converted-now)."""
    if spec.model is None:
        path = default_model.default_gguf_path()
        directory, converted = _gguf_checkpoint(path, spec, report)
        return "gguf", directory, default_model.DISPLAY_NAME, converted

    given = Path(spec.model).expanduser()
    if given.exists() or _looks_like_path(spec.model):
        if not given.exists():
            raise ModelNotFoundError(f"model path does not exist: {spec.model}")
        if given.is_file():
            if given.suffix.lower() != ".gguf":
                raise NotCausalLMError(
                    f"{spec.model} is a file but not a .gguf model; pass a checkpoint directory or a GGUF file"
                )
            directory, converted = _gguf_checkpoint(given, spec, report)
            return "gguf", directory, given.name, converted
        if spec.gguf_file:
            gguf = given / spec.gguf_file
            if not gguf.is_file():
                raise ModelNotFoundError(f"GGUF file not found: {gguf}")
            directory, converted = _gguf_checkpoint(gguf, spec, report)
            return "gguf", directory, gguf.name, converted
        if not (given / "config.json").is_file():
            raise NotCausalLMError(
                f"{spec.model} is not a transformers checkpoint (no config.json); "
                "pass a model directory, a .gguf file, or a hub id"
            )
        return "local", given.resolve(), given.resolve().name, False

    # a hub id
    local = _hub_snapshot(spec, report)
    if spec.gguf_file:
        gguf = local / spec.gguf_file
        directory, converted = _gguf_checkpoint(gguf, spec, report)
        return "gguf", directory, f"{spec.model}:{spec.gguf_file}", converted
    return "hub", local, spec.model, False


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith(("/", "./", "../", "~", "\\"))
        or text.endswith(".gguf")
        or text.count("/") > 1
        or os.path.isabs(text)
    )


def _hub_snapshot(spec: ModelSpec, report: ProgressCallback) -> Path:
    """A local snapshot of a hub repo: from the cache when offline, else downloaded.

    Offline (HF_HUB_OFFLINE=1) or with the hub unreachable, a model that is not
    in the cache fails at once with a message saying so; nothing hangs.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    assert spec.model is not None
    patterns = _hub_patterns(spec)
    try:
        cached: Path | None = Path(
            snapshot_download(spec.model, allow_patterns=patterns, local_files_only=True)
        )
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError):
        cached = None
    if _hub_offline():
        if cached is None or (not (cached / "config.json").exists() and not spec.gguf_file):
            raise HubUnreachableError(
                f"{spec.model!r} is not in the local Hugging Face cache and the hub is off "
                "(HF_HUB_OFFLINE=1); download it where the hub is reachable, or pass a local path"
            )
        return cached
    report(LoadProgress("resolving", 0.02, f"contacting the hub for {spec.model}"))
    try:
        return Path(snapshot_download(spec.model, allow_patterns=patterns, etag_timeout=5))
    except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as exc:
        raise ModelNotFoundError(
            f"{spec.model!r} is not a model on the hub (or it is private/gated): {type(exc).__name__}"
        ) from None
    except Exception as exc:  # connection errors come in many types
        if cached is not None:
            return cached
        raise HubUnreachableError(
            f"{spec.model!r} is not in the local cache and the hub is unreachable "
            f"({type(exc).__name__}); connect, or pass a local path"
        ) from None


def _hub_patterns(spec: ModelSpec) -> list[str]:
    if spec.gguf_file:
        return [spec.gguf_file]
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
    if spec.trust_remote_code:
        patterns.append("*.py")
    return patterns


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _gguf_checkpoint(path: Path, spec: ModelSpec, report: ProgressCallback) -> tuple[Path, bool]:
    """The converted checkpoint for a GGUF file, converting it first if needed."""
    if not path.is_file():
        raise ModelNotFoundError(f"GGUF file not found: {path}")
    cached = gguf_cache.cached_conversion(path)
    if cached is not None:
        return cached, False
    report(LoadProgress("converting", 0.05, f"first-time conversion of {path.name} (about 30 s)"))

    def load_gguf(p: Path) -> tuple[Any, Any]:
        import torch  # dequantizing needs it; only a first conversion gets here
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
            with gguf_tensor_progress(report):
                model = AutoModelForCausalLM.from_pretrained(
                    str(p.parent), gguf_file=p.name, trust_remote_code=spec.trust_remote_code
                )
        except (MemoryError, torch.OutOfMemoryError) as exc:
            raise LoadOutOfMemoryError(f"out of memory converting {p.name}: {exc}") from None
        except Exception as exc:
            raise CorruptModelError(
                f"cannot read GGUF file {p.name}: it is truncated, corrupt, or of an unsupported "
                f"architecture ({short_error(exc)})"
            ) from None
        return model, tokenizer

    return gguf_cache.convert(path, load_gguf), True


# --- what the config files say --------------------------------------------------------


def context_window(config: Any, tokenizer: Any) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 0)
    return limit if isinstance(limit, int) and 0 < limit < 10_000_000 else 2048


def eos_ids(generation_config: Any, config: Any, tokenizer: Any) -> tuple[int, ...]:
    """Every id generation stops on: generation config, model config and tokenizer."""
    found: list[int] = []
    for value in (
        getattr(generation_config, "eos_token_id", None),
        getattr(config, "eos_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
    ):
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, int) and item not in found:
                found.append(item)
    return tuple(found)


def generation_config_file(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / "generation_config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return {k: v for k, v in data.items() if not k.startswith("_") and k != "transformers_version"}


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No tqdm bars or warnings on the terminal while loading (they would tear the TUI)."""
    from huggingface_hub.utils import (  # type: ignore[attr-defined]
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hub_bars_off = are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_were_on:
            hf_logging.enable_progress_bar()
        if not hub_bars_off:
            enable_progress_bars()


@contextlib.contextmanager
def gguf_tensor_progress(report: ProgressCallback) -> Iterator[None]:
    """Turn transformers' GGUF dequantization loop into our progress reports.

    transformers iterates the GGUF tensors through a module-level ``tqdm``; we
    swap in a silent iterator that reports how many tensors are done, so the UI
    gets a real progress bar and the terminal gets no tqdm output.
    """
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)

    def tracked(iterable: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        items = list(iterable)
        total = max(len(items), 1)
        for done, item in enumerate(items):
            if done % 16 == 0:
                report(
                    LoadProgress(
                        "converting",
                        0.05 + 0.5 * done / total,
                        f"dequantizing tensor {done}/{total}",
                    )
                )
            yield item

    gguf_utils.tqdm = tracked  # type: ignore[attr-defined]
    try:
        yield
    finally:
        gguf_utils.tqdm = original  # type: ignore[attr-defined]
