"""Device and dtype resolution: `auto` becomes a concrete choice, or a clear error."""

from __future__ import annotations

import torch

from engine.errors import DeviceUnavailableError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def available_devices() -> list[str]:
    """Devices this machine can run on, most capable first (for messages and pickers)."""
    found: list[str] = []
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        found.append("mps")
    found.append("cpu")
    return found


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda if available, else mps, else cpu; others are checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    here = ", ".join(available_devices())
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise DeviceUnavailableError(f"device 'mps' is not available here (available: {here})")
        return torch.device("mps")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {name!r} is not available: this torch build or machine has no CUDA GPU "
                f"(available: {here})"
            )
        index = int(name.split(":", 1)[1]) if ":" in name else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {name!r} is not available: {torch.cuda.device_count()} CUDA device(s) "
                f"(available: {here})"
            )
        return torch.device("cuda", index)
    raise DeviceUnavailableError(f"unknown device {name!r} (available: {here})")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` -> bf16 on CUDA with bf16 support, fp16 on other CUDA and MPS, fp32 on CPU."""
    if name != "auto":
        return _DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
