"""The local transformers engine: the first implementation of the decode protocol.

`LocalEngine` loads a checkpoint with `engine.model.load` and starts
`LocalReply`s over our own `Decoder`. Every torch call (load, prefill, each
step) runs on one `EngineThread`: see engine/model/thread.py for why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine.decode.rules import remaining_tokens, reply_summary, rewind_prefix
from engine.decode.textstream import TokenTable
from engine.errors import GenerationError, ModelLoadError
from engine.model import heap
from engine.model.description import ModelDescription
from engine.model.spec import ModelSpec
from engine.model.thread import EngineThread
from engine.params import SamplingParams
from engine.records import (
    FinishReason,
    GenerationSummary,
    PromptScores,
    Proposal,
    Step,
    TokenProbe,
    TokenScore,
)
from engine.tokens.chat import ChatMessage, chat_prompt_ids, render_chat
from engine.tokens.views import TokenInfo, encode_text, special_tokens_summary, token_view
from engine.tokens.vocab import VocabIndex, vocab_index

from .protocol import ProgressFn, PromptView

if TYPE_CHECKING:
    from engine.decode.decoder import DecodeModel, Decoder, ModelRunner
    from engine.model.embeddings import Neighbour
    from engine.model.lens import LensResult
    from engine.model.loading import LoadedModel


class TokenizerEngine:
    """What every in-process engine shares: a transformers tokenizer for prompts, token
    views and the vocabulary, and replies over our `Decoder` on one engine thread.
    Subclasses load `_loaded` (anything with a tokenizer, context window and eos ids)
    and say how a reply's decoder reaches the model (`_runner_factory`)."""

    _loaded: Any
    _thread: EngineThread
    _table: TokenTable | None = None  # token display cache of `_table_of`
    _table_of: object = None

    @property
    def thread(self) -> EngineThread:
        """The one thread this engine's model work runs on (other views reuse it)."""
        return self._thread

    @property
    def loaded(self) -> Any:
        if self._loaded is None:
            raise ModelLoadError("no model is loaded")
        return self._loaded

    def _runner_factory(self) -> Callable[[], ModelRunner] | None:
        return None  # transformers: the decoder builds its own runner

    def render_prompt(
        self, messages: Sequence[ChatMessage], *, allow_special: bool = False
    ) -> PromptView:
        loaded = self.loaded
        rendered = render_chat(loaded.tokenizer, list(messages), allow_special=allow_special)
        return PromptView(
            tokens=rendered.tokens.tokens,
            context_window=loaded.context_window,
            warnings=tuple(rendered.warnings),
            special_tokens=special_tokens_summary(loaded.tokenizer, loaded.eos_token_ids),
        )

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        return encode_text(self.loaded.tokenizer, text, allow_special=allow_special)

    def token_display(self, token_id: int) -> str:
        return self._tokens().display(token_id)

    def token_bytes(self, token_id: int) -> bytes:
        return self._tokens().token_bytes(token_id)

    def _tokens(self) -> TokenTable:
        loaded = self.loaded
        if self._table is None or self._table_of is not loaded:
            self._table, self._table_of = TokenTable(loaded.tokenizer), loaded
        return self._table

    # --- TokenizerAccess ---------------------------------------------------------------

    def text_tokens(self, text: str, *, allow_special: bool = False) -> tuple[TokenInfo, ...]:
        return token_view(self.loaded.tokenizer, text, allow_special=allow_special).tokens

    def vocabulary(self) -> VocabIndex:
        return vocab_index(self.loaded.tokenizer)

    # --- TokenLookup ---------------------------------------------------------------------

    def token_probabilities(
        self, ids: Sequence[int], params: SamplingParams, tokens: Sequence[int]
    ) -> tuple[TokenProbe, ...]:
        """One forward of `ids` on a runner of its own (the live reply's cache is kept)."""
        return self._thread.call(
            self._token_probabilities, [int(i) for i in ids], params, [int(t) for t in tokens]
        )

    def _token_probabilities(
        self, ids: list[int], params: SamplingParams, tokens: list[int]
    ) -> tuple[TokenProbe, ...]:
        from engine.decode.probe import next_token_probes

        factory = self._runner_factory()
        if factory is not None:
            runner = factory()
        else:
            from engine.decode.decoder import TransformersRunner

            runner = TransformersRunner(self.loaded.model, self.loaded.device)
        return next_token_probes(runner, ids, params, tokens)

    # --- PromptScoring, FullDistributions (see engine/decode/protocol.py) ------------------

    def _logit_chunks(
        self, ids: list[int], start: int, next_token: bool
    ) -> Iterator[tuple[int, Any]]:
        """Raw logits ``[n, vocab]`` per chunk for positions ``start..`` (on the engine
        thread): how this backend runs a token path (engine/decode/scoring.py)."""
        raise NotImplementedError

    def score(self, ids: Sequence[int], *, top: int = 0, start: int = 1) -> tuple[TokenScore, ...]:
        from engine.decode.score_request import check_request
        from engine.decode.scoring import on_thread

        path = check_request(ids, start=start, top=top, context_window=self.loaded.context_window)
        # chunk by chunk on the engine thread: an interrupted caller (Ctrl+C) stops the
        # work after the chunk in progress, not at the end of the path
        chunks = on_thread(self._thread, self._scored_chunks(path, top, start))
        return tuple(record for chunk in chunks for record in chunk)

    def _scored_chunks(
        self, ids: list[int], top: int, start: int
    ) -> Generator[list[TokenScore], None, None]:
        from engine.decode.probe import pieces_of
        from engine.decode.scoring import score_logits

        pieces = pieces_of(self.loaded)
        for first, logits in self._logit_chunks(ids, start, False):
            targets = ids[first : first + logits.shape[0]]
            yield score_logits(logits, targets, first, top=top, pieces=pieces)

    def logprob_rows(
        self, ids: Sequence[int], start: int = 1, *, next_token: bool = False
    ) -> Iterator[tuple[int, Any]]:
        from engine.decode.score_request import check_request
        from engine.decode.scoring import on_thread, rows_of

        path = check_request(ids, start=start, top=0, context_window=self.loaded.context_window)
        return on_thread(self._thread, rows_of(self._logit_chunks(path, start, next_token)))

    def prompt_scores(self, ids: Sequence[int]) -> PromptScores:
        """The Prompt tab's view of `score(ids)`."""
        path = [int(i) for i in ids]
        return PromptScores.from_scores(path, self.score(path))

    def chat_ids(
        self, messages: Sequence[ChatMessage], *, allow_special: bool = False
    ) -> list[int]:
        """The chat template's ids for `messages` (a model without a template refuses)."""
        loaded = self.loaded
        if not getattr(loaded.tokenizer, "chat_template", None):
            raise GenerationError(f"{loaded.model_id} has no chat template; use --raw")
        return chat_prompt_ids(loaded.tokenizer, messages, allow_special=allow_special)

    def start(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        allow_special: bool = False,
        cancel: threading.Event | None = None,
        prefix: Sequence[int] = (),
    ) -> LocalReply:
        ids = self.chat_ids(messages, allow_special=allow_special)
        return self.start_ids(ids, params, cancel=cancel, prefix=prefix)

    def start_ids(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        cancel: threading.Event | None = None,
        prefix: Sequence[int] = (),
    ) -> LocalReply:
        return self._thread.call(
            LocalReply,
            self.loaded,
            list(prompt_ids),
            params,
            cancel or threading.Event(),
            prefix=prefix,
            thread=self._thread,
            runner_factory=self._runner_factory(),
        )


class LocalEngine(TokenizerEngine):
    """A model loaded in this process (transformers), behind the `Engine` protocol."""

    def __init__(
        self, preloaded: LoadedModel | None = None, *, thread: EngineThread | None = None
    ) -> None:
        # a model already loaded (tests share one) is what the first load() returns
        self._preloaded = preloaded
        self._loaded: LoadedModel | None = None
        self._thread = thread or EngineThread()

    def load(self, spec: ModelSpec, progress: ProgressFn | None = None) -> ModelDescription:
        return self._thread.call(self._load, spec, progress)

    def _load(self, spec: ModelSpec, progress: ProgressFn | None) -> ModelDescription:
        report = progress or (lambda _stage, _fraction, _detail: None)
        if self._preloaded is not None:
            loaded, self._preloaded = self._preloaded, None
            report("ready", 1.0, loaded.model_id)
        else:
            from engine.model.loading import load

            heap.release()
            self._loaded = None  # let the old model go before the new one arrives
            loaded = load(spec, progress=lambda p: report(p.stage, p.fraction, p.detail))
        self._loaded = loaded
        heap.settle()
        from engine.model.info import description

        return description(loaded)

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            raise ModelLoadError("no model is loaded")
        return self._loaded

    # --- internals (ModelInternals) ----------------------------------------------------

    def lens(
        self, ids: Sequence[int], position: int = -1, *, top: int = 10, target: int | None = None
    ) -> LensResult:
        from engine.model.lens import logit_lens

        return self._thread.call(
            logit_lens, self.loaded, [int(i) for i in ids], position, top=top, target=target
        )

    def nearest(self, token_id: int, n: int = 10) -> tuple[Neighbour, ...]:
        from engine.model.embeddings import nearest_tokens

        return self._thread.call(nearest_tokens, self.loaded.model, token_id, n)

    def ties_embeddings(self) -> bool:
        from engine.model.embeddings import ties_embeddings

        return ties_embeddings(self.loaded.model)

    # --- PromptScoring, FullDistributions: teacher forcing in chunks (probe.py) --------

    def _logit_chunks(
        self, ids: list[int], start: int, next_token: bool
    ) -> Iterator[tuple[int, Any]]:
        from engine.decode.probe import logit_chunks

        return logit_chunks(self.loaded.model, ids, start, next_token=next_token)


class LocalReply:
    """`Decoder` with its prompt, behind the `Reply` protocol.

    A reply can continue from tokens no live decoder holds (a resumed session, a
    reply from before a model reload): the decoder is prefilled with prompt +
    `prefix` in one forward, and its steps are renumbered from ``len(prefix)`` so
    indices match the stored reply. Rewinding into the prefix rebuilds the decoder
    the same way. Text of the first new token is decoded without the prefix as
    context, which is exact for byte-level BPE vocabularies (SmolLM2, GPT-2, Llama 3).
    """

    def __init__(
        self,
        loaded: LoadedModel | DecodeModel,
        prompt_ids: list[int],
        params: SamplingParams,
        cancel: threading.Event,
        *,
        thread: EngineThread,  # the engine's: torch must stay on one thread
        prefix: Sequence[int] = (),
        runner_factory: Callable[[], ModelRunner] | None = None,
    ) -> None:
        self._loaded, self._params, self._cancel = loaded, params, cancel
        self._runner_factory = runner_factory
        self._thread = thread
        self._prompt_ids = prompt_ids
        self._prefix = [int(i) for i in prefix]
        self._decoder = self._new_decoder()
        self.prompt_tokens = len(prompt_ids)

    @property
    def decoder(self) -> Decoder:
        """The live decoder (views that need more than `Step` records read it)."""
        return self._decoder

    @property
    def prompt_ids(self) -> list[int]:
        return list(self._prompt_ids)

    def _new_decoder(self) -> Decoder:
        from engine.decode.decoder import Decoder

        params = self._params
        if self._prefix:  # the length limit counts the whole reply, prefix included
            remaining = remaining_tokens(params.max_new_tokens, len(self._prefix))
            params = params.with_changes(max_new_tokens=remaining)
        runner = self._runner_factory() if self._runner_factory is not None else None
        return Decoder(self._loaded, params, cancel=self._cancel, runner=runner)

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

    def reseed(self, seed: int) -> None:
        """Sample from here on with `seed` (fan-out: one seed per continuation)."""
        self._params = self._params.with_changes(seed=seed)
        self._thread.call(self._decoder.reseed, seed)

    def _rewind(self, n: int) -> None:
        prefix = rewind_prefix(self._prefix, self._decoder.generated_ids, n)
        if prefix is None:
            self._decoder.rewind(n)
            return
        self._prefix = prefix
        self._cancel.clear()
        self._decoder = self._new_decoder()
        self.prefill()

    def cancel(self) -> None:
        self._decoder.cancel()

    @property
    def done(self) -> bool:
        return self._decoder.done

    @property
    def finish_reason(self) -> FinishReason | None:
        return self._decoder.finish_reason

    def summary(self) -> GenerationSummary:
        decoder = self._decoder
        return reply_summary(
            decoder.finish_reason,
            text=decoder.text,
            prompt_tokens=len(self._prompt_ids),
            steps=decoder.steps,
            prefill_ms=decoder.prefill_seconds * 1000.0,
            prefix=self._prefix,
        )
