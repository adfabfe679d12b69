"""Which backend runs a spec: `auto` picks llama.cpp for a GGUF file when the
binding (llama-cpp-python, the optional ``llamacpp`` group) is installed, and
transformers otherwise. Torch-free and binding-free: it only asks whether the
binding could be imported.
"""

from __future__ import annotations

import importlib.util

from engine.errors import InvalidParameterError, ModelLoadError
from engine.model.spec import Backend, ModelSpec

INSTALL_COMMAND = "pip install -e '.[llamacpp]'"
INSTALL_HINT = (
    f"the llama.cpp backend needs llama-cpp-python; install it with: {INSTALL_COMMAND} "
    "(or: make llamacpp)"
)


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python is installed (not imported: that loads a shared library)."""
    return importlib.util.find_spec("llama_cpp") is not None


def names_gguf(spec: ModelSpec) -> bool:
    """Whether `spec` names a GGUF file (the bundled default is one)."""
    if spec.model is None or spec.gguf_file:
        return True
    return spec.model.lower().endswith(".gguf")


def resolve_backend(spec: ModelSpec) -> Backend:
    """The backend that runs `spec`, or the one-line reason it cannot run as asked.

    `auto` follows the options given: ``--quantize``/``--dtype`` apply to
    transformers only, ``--n-gpu-layers`` to llama.cpp only.
    """
    if spec.backend == "transformers":
        return "transformers"
    if spec.backend == "llama.cpp":
        if not names_gguf(spec):
            raise InvalidParameterError(
                "backend", f"llama.cpp runs .gguf files only; {spec.model} is not one"
            )
        if not llama_cpp_available():
            raise ModelLoadError(INSTALL_HINT)
        return "llama.cpp"
    wants_transformers = spec.quantize != "none" or spec.dtype != "auto"
    if spec.n_gpu_layers is not None:
        if wants_transformers:
            raise InvalidParameterError(
                "n_gpu_layers", "applies to llama.cpp, but --quantize/--dtype ask for transformers"
            )
        return resolve_backend(_with_backend(spec, "llama.cpp"))
    if names_gguf(spec) and not wants_transformers and llama_cpp_available():
        return "llama.cpp"
    return "transformers"


def gguf_without_binding(spec: ModelSpec) -> str | None:
    """A one-line tip for a user running a GGUF file on transformers only because
    the binding is missing (None when it does not apply)."""
    if spec.backend == "auto" and names_gguf(spec) and not llama_cpp_available():
        return f"tip: this GGUF file runs natively (~6x faster) with {INSTALL_COMMAND}"
    return None


def _with_backend(spec: ModelSpec, backend: str) -> ModelSpec:
    from dataclasses import replace

    return replace(spec, backend=backend)
