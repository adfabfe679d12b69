"""`BackendEngine`: an engine that runs each loaded spec on its own backend.

It runs each loaded spec on the backend it resolves to (engine/model/backend.py:
llama.cpp for a GGUF file when the binding is installed, else transformers), so a
model picked later in the workbench can switch backends. Front ends get one from
the registry (`open_engine`, engine/decode/registry.py), which also says how a
backend's engine is made. Everything but `load` goes to the current engine, optional
capabilities included: ``isinstance(engine, ModelInternals)`` is true only when
the current backend can look inside its model. Scoring is delegated the same way:
`score` and `logprob_rows` (`PromptScoring`, `FullDistributions`) are the current
backend's, transformers and llama.cpp both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from engine.errors import LogitlabError, ModelLoadError, NativeCrashError
from engine.model.backend import gguf_without_binding, resolve_backend
from engine.model.description import ModelDescription
from engine.model.spec import Backend, ModelSpec
from engine.model.thread import EngineThread
from engine.params import SamplingParams
from engine.tokens.chat import ChatMessage

from .protocol import Engine, ProgressFn, PromptView, Reply

# a bare engine of a backend (nothing loaded) on the given thread: the registry's table
MakeEngine = Callable[[Backend, EngineThread | None], Engine]


class BackendEngine:
    """An `Engine` that loads each spec on its own backend; one engine thread for all.

    The backend's engine is made by the first `load` (a loading screen's worker, not
    the UI thread): importing it imports torch, which must not delay the first paint.
    """

    def __init__(self, spec: ModelSpec | None = None, *, make: MakeEngine) -> None:
        self._make = make
        self._thread = EngineThread()
        self._backend: Backend = resolve_backend(spec or ModelSpec())
        self._engine: Engine | None = None

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def current(self) -> Engine:
        """The engine of the loaded model's backend (made at once if nothing is loaded)."""
        if self._engine is None:
            self._engine = self._make(self._backend, self._thread)
        return self._engine

    @property
    def _current(self) -> Engine:
        if self._engine is None:
            raise ModelLoadError("no model is loaded")
        return self._engine

    @property
    def thread(self) -> EngineThread:
        return self._thread

    def backend_for(self, spec: ModelSpec) -> tuple[str, str]:
        """(the backend `spec` would load on, a one-line tip) for a loading screen;
        ("", "") when the spec cannot load (the load itself says why)."""
        try:
            backend = resolve_backend(spec)
        except LogitlabError:
            return "", ""
        return backend, gguf_without_binding(spec) or ""

    def load(self, spec: ModelSpec, progress: ProgressFn | None = None) -> ModelDescription:
        """Load `spec` on its backend. On `auto`, a GGUF file whose llama.cpp crashed in
        its self-test (`engine.model.llama_safety`) runs on transformers instead, and the
        description's notices say why."""
        backend = resolve_backend(spec)
        try:
            return self._load_on(backend, spec, progress)
        except NativeCrashError as exc:
            if spec.backend != "auto":
                raise
            model = self._load_on("transformers", spec, progress)
            notice = f"running on transformers: {exc}"
            return replace(model, notices=(*model.notices, notice))

    def _load_on(
        self, backend: Backend, spec: ModelSpec, progress: ProgressFn | None
    ) -> ModelDescription:
        if backend != self._backend or self._engine is None:
            self._engine = self._make(backend, self._thread)  # the old model goes with it
            self._backend = backend
        return self._engine.load(spec, progress)

    def render_prompt(
        self, messages: Sequence[ChatMessage], *, allow_special: bool = False
    ) -> PromptView:
        return self._current.render_prompt(messages, allow_special=allow_special)

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        return self._current.encode(text, allow_special=allow_special)

    def token_display(self, token_id: int) -> str:
        return self._current.token_display(token_id)

    def token_bytes(self, token_id: int) -> bytes:
        return self._current.token_bytes(token_id)

    def start(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        allow_special: bool = False,
        cancel: threading.Event | None = None,
        prefix: Sequence[int] = (),
    ) -> Reply:
        return self._current.start(
            messages, params, allow_special=allow_special, cancel=cancel, prefix=prefix
        )

    def start_ids(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        cancel: threading.Event | None = None,
        prefix: Sequence[int] = (),
    ) -> Reply:
        return self._current.start_ids(prompt_ids, params, cancel=cancel, prefix=prefix)

    def __getattr__(self, name: str) -> Any:
        """Optional capabilities (lens, text_tokens, chat_ids...) of the current engine."""
        engine = self.__dict__.get("_engine")
        if name.startswith("_") or engine is None:
            raise AttributeError(name)
        return getattr(engine, name)
