"""The one seam between the UI and the engine.

Screens talk to a `Backend` (load a model, render a prompt, start a reply) and
to the `Generation` it returns (prefill / propose / step / rewind / cancel).
`EngineBackend` implements both over the local transformers engine and imports
it lazily, so the app paints before torch is imported; tests pass a scripted
fake with the same shape, and a remote OpenAI-style engine can slot in later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import GenerationError
from engine.model.spec import ModelSpec
from engine.model.thread import EngineThread
from engine.params import SamplingParams
from engine.records import GenerationSummary, Proposal, Step
from engine.tokens.chat import ChatMessage

if TYPE_CHECKING:
    from engine.decode.decoder import Decoder
    from engine.model.loading import LoadedModel

# (stage, fraction 0..1, detail) — the engine's LoadProgress, without importing torch
ProgressFn = Callable[[str, float, str], None]


@dataclass(frozen=True)
class ModelFacts:
    """What the UI shows about the loaded model (status bar, Model tab, settings sources)."""

    spec: ModelSpec
    model_id: str
    device: str
    dtype: str
    quantize: str
    context_window: int
    info: dict[str, Any] = field(default_factory=dict)  # ModelInfo.to_dict() sans module tree
    generation_config: dict[str, Any] = field(default_factory=dict)  # what the model file set


@dataclass(frozen=True)
class PromptToken:
    """One token of the rendered chat template."""

    position: int
    id: int
    display: str  # printable form, whitespace made visible
    special: bool
    origin: str  # template | system | user | assistant | text


@dataclass(frozen=True)
class PromptView:
    """The rendered prompt as the Prompt tab shows it."""

    tokens: tuple[PromptToken, ...]
    context_window: int
    warnings: tuple[str, ...] = ()
    special_tokens: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.tokens)


class Generation(Protocol):
    """One reply being decoded: the decode-loop protocol the screens drive."""

    prompt_tokens: int

    def prefill(self) -> float:
        """Run the prompt through the model; returns the time it took in ms."""
        ...

    def propose(self) -> Proposal: ...

    def step(self, force: int | None = None) -> Step: ...

    def rewind(self, n: int) -> None: ...

    def cancel(self) -> None: ...

    @property
    def done(self) -> bool: ...

    @property
    def finish_reason(self) -> str | None: ...

    def summary(self) -> GenerationSummary: ...


class Backend(Protocol):
    """Everything the UI needs from an engine. Methods may block: call them in workers."""

    def load(self, spec: ModelSpec, progress: ProgressFn) -> ModelFacts: ...

    def render_prompt(
        self, messages: Sequence[ChatMessage], *, allow_special: bool
    ) -> PromptView: ...

    def start(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        allow_special: bool,
        cancel: threading.Event,
        prefix: Sequence[int] = (),
    ) -> Generation:
        """A generation for the reply to `messages`. `prefix`: token ids of the reply
        already generated (a stored reply being branched): prefilled with the prompt,
        and the steps that follow are numbered from ``len(prefix)``."""
        ...


def visible(text: str) -> str:
    """Whitespace made visible, the way the token views print pieces."""
    return text.replace(" ", "·").replace("\n", "↵").replace("\t", "→")


class EngineBackend:
    """The local transformers engine behind the `Backend` protocol."""

    def __init__(
        self, preloaded: LoadedModel | None = None, *, thread: EngineThread | None = None
    ) -> None:
        # a model already loaded (tests share one) is used by the first load()
        self._preloaded = preloaded
        self._loaded: LoadedModel | None = None
        # every torch call runs on this one thread: see engine/model/thread.py for why
        self._thread = thread or EngineThread()

    def load(self, spec: ModelSpec, progress: ProgressFn) -> ModelFacts:
        return self._thread.call(self._load, spec, progress)

    def _load(self, spec: ModelSpec, progress: ProgressFn) -> ModelFacts:
        if self._preloaded is not None:
            loaded, self._preloaded = self._preloaded, None
            progress("ready", 1.0, loaded.model_id)
        else:
            from engine.model.loading import load

            self._loaded = None  # let the old model go before the new one arrives
            loaded = load(spec, progress=lambda p: progress(p.stage, p.fraction, p.detail))
        self._loaded = loaded
        info = {k: v for k, v in loaded.info.to_dict().items() if k != "module_tree"}
        return ModelFacts(
            spec=loaded.spec,
            model_id=loaded.model_id,
            device=str(loaded.device),
            dtype=loaded.dtype_name,
            quantize=loaded.quantize,
            context_window=loaded.context_window,
            info=info,
            generation_config=dict(loaded.generation_config_file),
        )

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            raise RuntimeError("no model is loaded")
        return self._loaded

    def render_prompt(self, messages: Sequence[ChatMessage], *, allow_special: bool) -> PromptView:
        from tui.engine_views import prompt_view

        return prompt_view(self.loaded, messages, allow_special=allow_special)

    def start(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        allow_special: bool,
        cancel: threading.Event,
        prefix: Sequence[int] = (),
    ) -> Generation:
        from tui.engine_views import prompt_ids

        ids = prompt_ids(self.loaded, messages, allow_special=allow_special)
        return self._thread.call(
            EngineGeneration, self.loaded, ids, params, cancel, prefix=prefix, thread=self._thread
        )


class EngineGeneration:
    """`engine.decode.decoder.Decoder` with its prompt, behind the `Generation` protocol.

    A reply can continue from tokens no live decoder holds (a resumed session, a
    reply from before a model reload): the decoder is prefilled with prompt +
    `prefix` in one forward, and its steps are renumbered from ``len(prefix)`` so
    indices match the stored reply. Rewinding into the prefix rebuilds the decoder
    the same way. Text of the first new token is decoded without the prefix as
    context, which is exact for byte-level BPE vocabularies (SmolLM2, GPT-2, Llama 3).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        prompt_ids: list[int],
        params: SamplingParams,
        cancel: threading.Event,
        *,
        thread: EngineThread,  # the backend's: torch must stay on one thread
        prefix: Sequence[int] = (),
    ) -> None:
        self._loaded, self._params, self._cancel = loaded, params, cancel
        self._thread = thread
        self._prompt_ids = prompt_ids
        self._prefix = [int(i) for i in prefix]
        self._decoder = self._new_decoder()
        self.prompt_tokens = len(prompt_ids)

    def _new_decoder(self) -> Decoder:
        from engine.decode.decoder import Decoder

        params = self._params
        if self._prefix:  # the length limit counts the whole reply, prefix included
            remaining = max(1, params.max_new_tokens - len(self._prefix))
            params = params.with_changes(max_new_tokens=remaining)
        return Decoder(self._loaded, params, cancel=self._cancel)

    def prefill(self) -> float:
        started = time.perf_counter()
        self._thread.call(self._decoder.prefill, [*self._prompt_ids, *self._prefix])
        return (time.perf_counter() - started) * 1000.0

    def propose(self) -> Proposal:
        proposal = self._thread.call(self._decoder.propose)
        if self._prefix:
            proposal = replace(proposal, index=proposal.index + len(self._prefix))
        return proposal

    def step(self, force: int | None = None) -> Step:
        step = self._thread.call(self._decoder.step, force=force)
        if self._prefix:
            step = replace(step, index=step.index + len(self._prefix))
        return step

    def rewind(self, n: int) -> None:
        self._thread.call(self._rewind, n)

    def _rewind(self, n: int) -> None:
        generated = list(self._decoder.generated_ids)
        if n <= len(generated):
            self._decoder.rewind(n)
            return
        keep = len(self._prefix) + len(generated) - n
        if keep < 0:
            raise GenerationError(f"cannot rewind {n} tokens: the reply has fewer")
        self._prefix = [*self._prefix, *generated][:keep]
        self._cancel.clear()
        self._decoder = self._new_decoder()
        self.prefill()

    def cancel(self) -> None:
        self._decoder.cancel()

    @property
    def done(self) -> bool:
        return bool(self._decoder.done)

    @property
    def finish_reason(self) -> str | None:
        return self._decoder.finish_reason

    def summary(self) -> GenerationSummary:
        summary = self._decoder.summary()
        if not self._prefix:
            return summary
        return replace(
            summary,
            prompt_tokens=len(self._prompt_ids),
            completion_tokens=len(self._prefix) + summary.completion_tokens,
            token_ids=(*self._prefix, *summary.token_ids),
        )
