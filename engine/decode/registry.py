"""The engine registry: the one place a spec becomes an engine.

Every front end (the workbench, `generate`, `serve`, `info`, `tokenize`, the
examples) calls `open_engine`: a `ModelSpec` (a hub id, a checkpoint, a GGUF file,
``--backend``) gets a `BackendEngine`, which runs each loaded spec on the backend
`resolve_backend` picks (its rules and messages live in engine/model/backend.py);
a `RemoteSpec` (``--engine URL``) gets a `RemoteEngine`.

Adding a backend: its module (an `Engine` with a ``thread`` keyword), its name in
`Backend` (engine/model/spec.py; ``--backend`` offers it from there), its rule in
`resolve_backend` when ``auto`` should pick it, and one line in `BACKEND_ENGINES`
here; tests/test_registry.py checks the table and the names agree.

Torch-free to import: each backend's module is imported when its engine is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

from engine.decode.backends import BackendEngine
from engine.decode.protocol import Engine
from engine.errors import InvalidParameterError
from engine.model.spec import Backend, ModelSpec
from engine.model.thread import EngineThread

if TYPE_CHECKING:
    from engine.decode.remote import RemoteEngine

DEFAULT_REMOTE_TIMEOUT = 60.0  # seconds (engine/decode/remote/client.py's default)


@dataclass(frozen=True)
class RemoteSpec:
    """A model on an OpenAI-compatible server (``--engine URL``): nothing loads here."""

    url: str
    api_key: str | None = None
    model: str | None = None  # which model, when the server hosts several
    timeout: float = DEFAULT_REMOTE_TIMEOUT
    tokenizer: str | None = None  # pieces of the server's token ids from this tokenizer

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise InvalidParameterError("--engine-timeout", "must be > 0 seconds")

    @property
    def model_spec(self) -> ModelSpec:
        """The spec the remote engine is 'loaded' with: the model name (or the URL) to show."""
        return ModelSpec(model=self.model or self.url)


EngineSpec = ModelSpec | RemoteSpec


def _transformers(thread: EngineThread | None) -> Engine:
    from engine.decode.local import LocalEngine

    return LocalEngine(thread=thread)


def _llama_cpp(thread: EngineThread | None) -> Engine:
    from engine.decode.llama import LlamaEngine

    return LlamaEngine(thread=thread)


# backend name -> a bare engine of it (nothing loaded) on the given engine thread
BACKEND_ENGINES: Mapping[Backend, Callable[[EngineThread | None], Engine]] = {
    "transformers": _transformers,
    "llama.cpp": _llama_cpp,
}


def backend_engine(backend: Backend, thread: EngineThread | None = None) -> Engine:
    """A bare engine of `backend` (nothing loaded), for a spec already resolved."""
    return BACKEND_ENGINES[backend](thread)


@overload
def open_engine(spec: ModelSpec) -> BackendEngine: ...
@overload
def open_engine(spec: RemoteSpec) -> RemoteEngine: ...
@overload
def open_engine(spec: EngineSpec) -> Engine: ...


def open_engine(spec: EngineSpec) -> Engine:
    """The engine that runs `spec`, not loaded yet (``engine.load(...)`` loads or connects).

    A spec that cannot run as asked (``--backend llama.cpp`` without the binding, a
    non-GGUF file on llama.cpp) raises its one-line reason here, before any work.
    """
    if isinstance(spec, RemoteSpec):
        from engine.decode.remote import RemoteEngine

        return RemoteEngine(
            spec.url,
            api_key=spec.api_key,
            model=spec.model,
            timeout=spec.timeout,
            tokenizer=spec.tokenizer,
        )
    return BackendEngine(spec, make=backend_engine)


def load_spec(spec: EngineSpec) -> ModelSpec:
    """What `Engine.load` is given for `spec` (a remote engine shows its model's name)."""
    return spec.model_spec if isinstance(spec, RemoteSpec) else spec
