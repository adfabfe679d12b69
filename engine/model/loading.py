"""`load(ModelSpec) -> LoadedModel`: resolve the source (engine/model/checkpoint.py),
load the weights on the chosen device and dtype, quantize if asked.

Every failure a user can cause becomes one `engine.errors` exception with a
message that says what to do. `load_tokenizer` (no weights, no torch) lives in
engine/model/tokenizer.py and is re-exported here.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.errors import (
    CorruptModelError,
    LoadOutOfMemoryError,
    ModelLoadError,
    NotCausalLMError,
    QuantizationUnavailableError,
)
from engine.model.checkpoint import (
    LoadProgress,
    ProgressCallback,
    SourceKind,
    context_window,
    eos_ids,
    generation_config_file,
    quiet_transformers,
    resolve_checkpoint,
    short_error,
)
from engine.model.devices import dtype_name, resolve_device, resolve_dtype
from engine.model.spec import ModelSpec
from engine.model.tokenizer import LoadedTokenizer, load_tokenizer

__all__ = ["LoadProgress", "LoadedModel", "LoadedTokenizer", "load", "load_tokenizer"]


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

    with quiet_transformers():
        source, checkpoint, model_id, converted = resolve_checkpoint(spec, report)
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
        context_window=context_window(model.config, tokenizer),
        eos_token_ids=eos_ids(model.generation_config, model.config, tokenizer),
        generation_config_file=generation_config_file(checkpoint),
        converted=converted,
    )
    loaded.load_seconds = time.perf_counter() - started
    report(LoadProgress("ready", 1.0, f"{model_id} on {device} ({loaded.dtype_name})"))
    return loaded


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
            f"{spec.quantize} quantization needs bitsandbytes, which cannot load here ({short_error(exc)}); "
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
            f"config.json of {name} is not valid JSON ({short_error(exc)})"
        ) from None
    except ValueError as exc:
        message = str(exc)
        if "trust_remote_code" in message:
            raise NotCausalLMError(
                f"{name} needs custom code to load; pass --trust-remote-code if you trust it"
            ) from None
        raise NotCausalLMError(
            f"{name} is not a model transformers knows ({short_error(exc)})"
        ) from None
    except OSError as exc:
        raise CorruptModelError(f"cannot read the config of {name} ({short_error(exc)})") from None

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
        raise CorruptModelError(f"cannot load {name} ({short_error(exc)})") from None
    except (MemoryError, torch.OutOfMemoryError) as exc:
        raise LoadOutOfMemoryError(
            f"out of memory loading {name} on {device}: try --quantize 4bit, a smaller --dtype, "
            f"or another device ({short_error(exc)})"
        ) from None
    except ImportError as exc:
        raise QuantizationUnavailableError(f"cannot load {name}: {short_error(exc)}") from None
    except (OSError, RuntimeError) as exc:
        if "out of memory" in str(exc).lower():
            raise LoadOutOfMemoryError(f"out of memory loading {name} on {device}") from None
        raise CorruptModelError(
            f"the weights of {name} are missing, truncated or corrupt ({short_error(exc)})"
        ) from None
    except Exception as exc:  # safetensors' own error types, header parse errors
        raise CorruptModelError(
            f"the weights of {name} are truncated or corrupt ({short_error(exc)})"
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            checkpoint, trust_remote_code=spec.trust_remote_code
        )
    except Exception as exc:
        raise CorruptModelError(
            f"cannot load the tokenizer of {name} ({short_error(exc)})"
        ) from None
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
        raise ModelLoadError(f"cannot move the model to {device} ({short_error(exc)})") from None


def _compute_dtype(model: Any, fallback: torch.dtype) -> torch.dtype:
    for param in model.parameters():
        dtype: torch.dtype = param.dtype
        if dtype.is_floating_point:
            return dtype
    return fallback
