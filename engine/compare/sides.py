"""How one side of a comparison runs: `Side` (an engine, its model, its settings).

A side renders its prompt (the chat template or plain text), generates freely with
its own sampling settings, and teacher-forces a token path, giving per position
either the whole log-softmax row (transformers, llama.cpp: `FullDistributions`) or
its top-N (a remote server: `PromptScoring.score`). A side with a `BatchCondition`
does both inside a batch on the transformers backend (engine/decode/batch.py).

`open_side` loads a `SideSpec`; the workbench wraps the engine it already has
(`Side.of`). Imports torch only when a side computes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.compare.spec import SideSpec
from engine.decode.protocol import (
    Engine,
    FullDistributions,
    full_distributions,
    prompt_scoring,
)
from engine.decode.registry import RemoteSpec, load_spec, open_engine
from engine.errors import FeatureUnavailableError, InvalidParameterError, LogitlabError
from engine.model.description import ModelDescription
from engine.params import SamplingParams
from engine.records import TokenScore
from engine.tokens.chat import ChatMessage

if TYPE_CHECKING:
    import torch

    from engine.decode.batch import BatchRunner

TOP_N_REMOTE = 20  # candidates asked of a remote side per position (servers cap near 20)

Prompt = str | Sequence[ChatMessage]


class CompareCancelled(LogitlabError):
    """The comparison was cancelled (Esc in the workbench, Ctrl+C in the CLI)."""


class SideLoadError(InvalidParameterError):
    """A side cannot load or cannot run as asked; the field names the side ("side B")."""


@dataclass(frozen=True)
class Chunk:
    """A side's distributions over path positions ``first .. first + length - 1``:
    whole log-softmax rows ``[n, vocab]`` (`rows`), or a remote side's `scores`."""

    first: int  # index into the path
    rows: torch.Tensor | None = None
    scores: tuple[TokenScore, ...] = ()

    @property
    def length(self) -> int:
        return int(self.rows.shape[0]) if self.rows is not None else len(self.scores)

    def part(self, lo: int, hi: int) -> Chunk:
        """Path positions ``lo .. hi - 1`` (absolute) of this chunk."""
        a, b = lo - self.first, hi - self.first
        if self.rows is not None:
            return Chunk(lo, rows=self.rows[a:b])
        return Chunk(lo, scores=self.scores[a:b])


@dataclass
class Side:
    """One side, loaded: its `spec`, `engine`, `model` and the sampling `params` it runs
    with. `name` ("A" / "B") labels its errors."""

    spec: SideSpec
    engine: Engine
    model: ModelDescription
    params: SamplingParams
    name: str = "A"

    @classmethod
    def of(cls, engine: Engine, model: ModelDescription, spec: SideSpec, name: str = "A") -> Side:
        """A side over an engine already loaded (the workbench's current run)."""
        side = cls(spec, engine, model, spec.sampling_for(model.generation_config), name)
        side.check_batch()
        return side

    # --- prompt -------------------------------------------------------------------------

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        """The prompt as this side runs it: the chat template's ids (template on), or
        the plain text's (off; several messages' contents joined by blank lines)."""
        messages = [ChatMessage("user", prompt)] if isinstance(prompt, str) else list(prompt)
        if not self.spec.template:
            return self.engine.encode("\n\n".join(m.content for m in messages))
        chat_ids = getattr(self.engine, "chat_ids", None)
        if callable(chat_ids):
            return [int(i) for i in chat_ids(messages)]
        return self.engine.render_prompt(messages).ids

    def displays(self, ids: Sequence[int]) -> tuple[str, ...]:
        return tuple(self.engine.token_display(int(i)) for i in ids)

    # --- running --------------------------------------------------------------------------

    def generate(
        self,
        prompt_ids: Sequence[int],
        budget: int,
        cancel: threading.Event,
        on_token: Callable[[int], None] | None = None,
    ) -> list[int]:
        """This side's own continuation of `prompt_ids` (its sampling settings), at most
        `budget` tokens; a cancel raises `CompareCancelled`."""
        params = self.params.with_changes(max_new_tokens=max(1, budget))
        ids: list[int] = []
        if self.spec.batch is not None:
            batched: list[int] = self._on_thread(
                self._generate_batched, prompt_ids, params, cancel, on_token
            )
            return batched
        reply = self.engine.start_ids(list(prompt_ids), params, cancel=cancel)
        reply.prefill()
        while not reply.done:
            ids.append(reply.step().token_id)
            if on_token is not None:
                on_token(len(ids))
        if reply.finish_reason == "cancelled":
            raise CompareCancelled("the comparison was cancelled")
        return ids

    def distributions(
        self, prompt_ids: Sequence[int], path: Sequence[int], cancel: threading.Event
    ) -> Iterator[Chunk]:
        """Teacher forcing: this side's distribution at each position of `path` after
        `prompt_ids`, chunk by chunk in order (whole rows where it can, else top-N)."""
        prompt, path = [int(i) for i in prompt_ids], [int(i) for i in path]
        if not path:
            return
        if self.spec.batch is not None:
            rows = self._on_thread(self._batch_rows, prompt, path)
            yield Chunk(0, rows=rows)
            return
        ids = [*prompt, *path]
        try:
            full: FullDistributions | None = full_distributions(self.engine)
        except FeatureUnavailableError:
            full = None
        if full is not None:
            chunks = full.logprob_rows(ids, start=len(prompt))
            try:
                for first, rows in chunks:
                    if cancel.is_set():
                        raise CompareCancelled("the comparison was cancelled")
                    yield Chunk(first - len(prompt), rows=rows)
            finally:
                close = getattr(chunks, "close", None)
                if callable(close):
                    close()
            return
        scores = prompt_scoring(self.engine).score(ids, top=TOP_N_REMOTE, start=len(prompt))
        yield Chunk(0, scores=tuple(scores))

    # --- batch conditions (transformers) --------------------------------------------------

    def check_batch(self) -> None:
        """Refuse, in one line, a batch condition this side's engine cannot run."""
        if self.spec.batch is None:
            return
        if self.model.backend != "transformers" or getattr(self.engine, "loaded", None) is None:
            raise SideLoadError(
                f"side {self.name}",
                f"a batch condition runs on the transformers backend only, not {self.model.backend}",
            )

    def _on_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        thread = getattr(self.engine, "thread", None)
        return thread.call(fn, *args) if thread is not None else fn(*args)

    def _batch_runner(self) -> BatchRunner:
        from engine.decode.batch import BatchRunner, pad_id_of

        condition = self.spec.batch
        assert condition is not None
        loaded: Any = getattr(self.engine, "loaded")  # noqa: B009 - a capability, checked
        pad = pad_id_of(loaded.tokenizer, loaded.eos_token_ids)
        return BatchRunner(
            loaded.model, loaded.device, pad_id=pad, padding=condition.padding, mask=condition.mask
        )

    def _other_prompts(self) -> list[list[int]]:
        assert self.spec.batch is not None
        return [self.prompt_ids(p) for p in self.spec.batch.prompts]

    def _batch_rows(self, prompt: list[int], path: list[int]) -> torch.Tensor:
        from engine.decode.batch import batch_logprob_rows

        return batch_logprob_rows(self._batch_runner(), prompt, self._other_prompts(), path)

    def _generate_batched(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        cancel: threading.Event,
        on_token: Callable[[int], None] | None,
    ) -> list[int]:
        from engine.decode.batch import BatchRowRunner
        from engine.decode.decoder import Decoder

        runner = BatchRowRunner(self._batch_runner(), self._other_prompts())
        loaded: Any = getattr(self.engine, "loaded")  # noqa: B009
        decoder = Decoder(loaded, params, cancel, runner=runner)
        decoder.prefill(prompt_ids)
        ids = []
        for step in decoder:
            ids.append(step.token_id)
            if on_token is not None:
                on_token(len(ids))
        if decoder.finish_reason == "cancelled":
            raise CompareCancelled("the comparison was cancelled")
        return ids

    # --- the report's description -----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The ``a`` / ``b`` object of the JSON: the spec as given and as resolved, the model."""
        spec, model, p = self.spec, self.model, self.params
        remote = spec.engine if isinstance(spec.engine, RemoteSpec) else None
        return {
            "spec": dict(spec.given),
            "model": model.model_id,
            "source": model.source,
            "backend": "remote" if remote is not None else model.backend,
            "engine": remote.url if remote is not None else None,
            "device": model.device,
            "dtype": model.dtype,
            "quantize": model.quantize,
            "template": spec.template,
            "batch": spec.batch.to_json() if spec.batch is not None else None,
            "sampling": {
                "temperature": p.temperature,
                "top_k": p.top_k,
                "top_p": p.top_p,
                "min_p": p.min_p,
                "repetition_penalty": p.repetition_penalty,
                "seed": p.seed,
            },
        }


def open_side(
    spec: SideSpec,
    name: str = "A",
    progress: Callable[[str, float, str], None] | None = None,
) -> Side:
    """Load `spec`'s model (or connect to its server) as side `name`. A side that cannot
    load or cannot run as asked raises `SideLoadError` ("side B: ..."), one line."""
    engine_spec = spec.engine if isinstance(spec.engine, RemoteSpec) else spec.model_spec
    try:
        engine = open_engine(engine_spec)
        model = engine.load(load_spec(engine_spec), progress)
    except LogitlabError as exc:
        raise SideLoadError(f"side {name}", f"cannot load: {exc}") from exc
    side = Side(spec, engine, model, spec.sampling_for(model.generation_config), name)
    side.check_batch()
    return side


def close_side(side: Side) -> None:
    """Let a side's engine go (its engine thread, a remote client)."""
    close = getattr(side.engine, "close", None)
    if callable(close):
        close()
    thread = getattr(side.engine, "thread", None)
    if thread is not None:
        thread.close()
