"""The llama.cpp engine: GGUF files run natively through llama-cpp-python's
low-level API, under our own `Decoder`.

`LlamaRunner` is all that differs from the transformers loop: it evaluates a batch
with logits for the last position only, copies that row (``[vocab]`` float32) into
a CPU tensor, and rewinds by removing positions from llama.cpp's KV cache. The
sampling functions, candidates, numbers, text stream and finish rules are the
`Decoder`'s, so for the same logits both backends record the same numbers.

One llama.cpp context holds one KV cache. Every runner of an engine shares it
(`SharedContext`) and remembers the ids its own cache should hold; before a
forward it syncs the context to them, keeping the longest common prefix. So
replies can interleave (the workbench branching, the server's queue) and a
branch re-prefills only what differs.

Scoring (`PromptScoring.score`, `FullDistributions.logprob_rows`):
`SharedContext.logit_chunks` evaluates a token path in batches of ``n_batch`` with
llama.cpp's logits switched on for every position whose distribution is wanted
(``batch.logits[i]``), and reads them all at once (``llama_get_logits``: ``[n,
vocab]`` float32): one decode per batch, never one per token. The prefix before the
first wanted position reuses the cache where it already holds it.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from engine.decode.decoder import ModelRunner
from engine.decode.local import TokenizerEngine
from engine.errors import GenerationError, ModelLoadError
from engine.model import heap
from engine.model.description import ModelDescription
from engine.model.llama import LlamaModel, load_llama
from engine.model.spec import ModelSpec
from engine.model.thread import EngineThread

from .protocol import ProgressFn


class SharedContext:
    """A llama.cpp context, its batch, and the ids its KV cache holds (sequence 0)."""

    def __init__(self, llm: Any) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.llm = llm
        self.ctx = llm.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_vocab = int(llm.n_vocab())
        self.n_batch = int(llm.n_batch)
        self.n_ctx = int(llm.n_ctx())
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.cached: list[int] = []
        self.llm._ctx.kv_cache_clear()

    def close(self) -> None:
        if self.batch is not None:
            self._lib.llama_batch_free(self.batch)
            self.batch = None

    def __del__(self) -> None:
        self.close()

    def run(self, target: list[int]) -> torch.Tensor:
        """Make the KV cache hold `target` and return the logits after its last id."""
        self._fits(len(target))
        self._sync(target, evaluate_last=True)
        return logits_row(self._lib, self.ctx, -1, self.n_vocab)

    def logit_chunks(
        self, ids: list[int], start: int, next_token: bool = False
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """``(first_position, logits [n, vocab] float32)`` per batch for positions
        ``start .. len(ids) - 1`` (and ``len(ids)`` with `next_token`): row i is the
        distribution over the token at ``first_position + i`` (see the module doc)."""
        stop = len(ids) + 1 if next_token else len(ids)  # positions start .. stop - 1
        if start >= stop:
            return
        inputs, first_needed = ids[: stop - 1], start - 1  # input indices with logits
        self._fits(len(inputs))
        held = self._common(inputs[:first_needed])  # the cache may hold a prefix already
        for lo in range(held, len(inputs), self.n_batch):
            hi = min(lo + self.n_batch, len(inputs))
            if self.cached != inputs[:lo]:  # another runner used the context meanwhile
                self._sync(inputs[:lo], evaluate_last=False)
            first_output = max(first_needed - lo, 0)  # the prefix shares the batches
            self._decode(inputs[lo:hi], lo, outputs_from=first_output)
            self.cached.extend(inputs[lo:hi])
            n = hi - lo - first_output
            if n <= 0:
                continue
            pointer = self._lib.llama_get_logits(self.ctx)
            rows = np.ctypeslib.as_array(
                ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(n, self.n_vocab)
            )
            yield lo + first_output + 1, torch.from_numpy(rows.copy())  # llama.cpp reuses it

    def _fits(self, n: int) -> None:
        if n > self.n_ctx:
            raise GenerationError(f"{n} tokens do not fit llama.cpp's context of {self.n_ctx}")

    def _common(self, target: list[int], keep: int | None = None) -> int:
        """Cut the KV cache back to its longest common prefix with `target` (at most
        `keep` ids); how many ids it still holds."""
        common = 0
        for ours, theirs in zip(self.cached, target, strict=False):
            if ours != theirs:
                break
            common += 1
        if keep is not None:
            common = min(common, keep)
        if common < len(self.cached):
            self._lib.llama_memory_seq_rm(self.memory, 0, common, -1)
            del self.cached[common:]
        return common

    def _sync(self, target: list[int], *, evaluate_last: bool) -> None:
        """Make the KV cache hold exactly `target`, keeping the longest common prefix;
        `evaluate_last`: the last id is evaluated even if held (its logits are wanted)."""
        common = self._common(target, len(target) - 1 if evaluate_last else None)
        for start in range(common, len(target), self.n_batch):
            self._decode(target[start : start + self.n_batch], start)
            self.cached.extend(target[start : start + self.n_batch])

    def _decode(self, ids: list[int], first_position: int, *, outputs_from: int = -1) -> None:
        """Evaluate `ids` at `first_position..`; logits for the batch's entries from
        index `outputs_from` on (-1: the last only)."""
        first_output = len(ids) - 1 if outputs_from < 0 else outputs_from
        entries = [(t, first_position + i, 0, i >= first_output) for i, t in enumerate(ids)]
        code = decode_entries(self._lib, self.ctx, self.batch, entries)
        if code != 0:
            # the cache may hold part of the batch now: forget what we know of it
            self._lib.llama_memory_seq_rm(self.memory, 0, first_position, -1)
            raise GenerationError(f"llama.cpp could not decode {len(ids)} tokens (code {code})")


Entry = tuple[int, int, int, bool]  # token, position, sequence id, logits wanted


def decode_entries(lib: Any, ctx: Any, batch: Any, entries: Sequence[Entry]) -> int:
    """Fill llama.cpp's `batch` with `entries` and decode it in `ctx` (`lib`: the
    llama_cpp module, as the caller holds it): llama_decode's code."""
    batch.n_tokens = len(entries)
    for i, (token, pos, seq, wanted) in enumerate(entries):
        batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = wanted
    return int(lib.llama_decode(ctx, batch))


def logits_row(lib: Any, ctx: Any, i: int, n_vocab: int) -> torch.Tensor:
    """The logits of the last decode's output `i` (-1: the last), ``[vocab]`` float32,
    copied: llama.cpp reuses its buffer."""
    pointer = lib.llama_get_logits_ith(ctx, i)
    row = np.ctypeslib.as_array(
        ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,)
    )
    return torch.from_numpy(row.copy())


class LlamaRunner:
    """One decoder's view of the shared context: the ids its cache holds."""

    def __init__(self, shared: SharedContext) -> None:
        self._shared = shared
        self._ids: list[int] = []

    def reset(self) -> None:
        self._ids = []

    def cached(self) -> int:
        return len(self._ids)

    def crop(self, length: int) -> None:
        del self._ids[length:]  # the context itself is cropped at the next forward

    def forward(self, ids: list[int]) -> torch.Tensor:
        target = [*self._ids, *ids]
        logits = self._shared.run(target)
        self._ids = target
        return logits


class LlamaEngine(TokenizerEngine):
    """A GGUF file in llama.cpp, behind the `Engine` protocol. Offers the tokenizer
    playground and vocabulary (`TokenizerAccess`), token look-up, scoring
    (`PromptScoring`, `FullDistributions`); not hidden states or embeddings."""

    backend = "llama.cpp"  # what a refusal names (`protocol._name`)

    def __init__(self, *, thread: EngineThread | None = None) -> None:
        self._loaded: LlamaModel | None = None
        self._shared: SharedContext | None = None
        self._thread = thread or EngineThread()

    def load(self, spec: ModelSpec, progress: ProgressFn | None = None) -> ModelDescription:
        return self._thread.call(self._load, spec, progress)

    def _load(self, spec: ModelSpec, progress: ProgressFn | None) -> ModelDescription:
        report = progress or (lambda _stage, _fraction, _detail: None)
        heap.release()
        if self._shared is not None:
            self._shared.close()
        self._loaded, self._shared = None, None  # free the old model first
        loaded = load_llama(spec, progress=lambda p: report(p.stage, p.fraction, p.detail))
        self._loaded, self._shared = loaded, SharedContext(loaded.llm)
        heap.settle()
        from engine.model.info import llama_description

        return llama_description(loaded)

    @property
    def loaded(self) -> LlamaModel:
        if self._loaded is None:
            raise ModelLoadError("no model is loaded")
        return self._loaded

    def _runner_factory(self) -> Callable[[], ModelRunner]:
        shared = self._shared
        if shared is None:
            raise ModelLoadError("no model is loaded")
        return lambda: LlamaRunner(shared)

    def _logit_chunks(
        self, ids: list[int], start: int, next_token: bool
    ) -> Iterator[tuple[int, torch.Tensor]]:
        shared = self._shared
        if shared is None:
            raise ModelLoadError("no model is loaded")
        return shared.logit_chunks(ids, start, next_token)

    def llama_tokenize(self, text: str, *, allow_special: bool = False) -> list[int]:
        """llama.cpp's own tokenization of `text` (to compare with `encode`)."""
        ids: Sequence[int] = self.loaded.llm.tokenize(
            text.encode("utf-8"), add_bos=False, special=allow_special
        )
        return [int(i) for i in ids]
