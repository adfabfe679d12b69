"""A scripted engine behind the UI's `Engine` protocol: deterministic and instant.

Replies are split into word tokens; every step offers three candidates (the
scripted token and two alternatives, one of them filtered out by the sampler),
the reply ends with a special ``<|im_end|>`` token, and forcing another
candidate records a forced step and then carries on with the script. Gates let
tests freeze loading or a reply mid-way (waits are bounded, never hang a run).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Sequence

from engine.decode import Engine, ProgressFn, PromptView
from engine.decode.rules import StopScan, finish_reason_after, reply_summary, rewind_prefix
from engine.errors import GenerationError, ModelLoadError
from engine.model import ModelDescription
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from engine.records import Candidate, FinishReason, GenerationSummary, Proposal, Step
from engine.tokens import Origin, TokenInfo, display_bytes, display_text
from engine.tokens.chat import ChatMessage

END = "<|im_end|>"
START = "<|im_start|>"
PROBS = (0.92, 0.55, 0.18, 0.75, 0.35, 0.97, 0.62)
ALTERNATES = (" the", " a", " it", " so", " then")
WAIT_LIMIT = 10.0
PREFILL_MS, STEP_MS = 12.0, 25.0  # summaries: 40 tok/s, time to first token 37 ms
DEFAULT_REPLY = "The capital of **France** is Paris.\nIt is known for the Eiffel Tower."


class Vocab:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {END: 2, START: 1}

    def id(self, text: str) -> int:
        return self.ids.setdefault(text, 100 + len(self.ids))

    def text(self, token_id: int) -> str:
        for text, tid in self.ids.items():
            if tid == token_id:
                return text
        return f"<{token_id}>"


def piece(text: str) -> str:
    return text.replace(" ", "Ġ").replace("\n", "Ċ")


class FakeReply:
    """A scripted reply. When it stops, how it is summarised and how a kept prefix
    counts are the engine's shared rules (engine/decode/rules.py), as for every real
    engine: the contract suite (tests/test_engine_contract.py) runs this one too."""

    def __init__(
        self,
        backend: FakeEngine,
        script: list[str],
        params: SamplingParams,
        cancel: threading.Event,
        prompt_tokens: int,
        prefix: Sequence[int] = (),
    ) -> None:
        self.backend, self.script, self.params = backend, [*script, END], params
        self.cancel_event = cancel
        self.prompt_tokens = prompt_tokens
        self.prefix = list(prefix)
        self._kept = len(self.prefix)  # how many of `steps` stand in for the kept prefix
        # a stored reply being continued: its tokens stand in as plain steps
        self.steps: list[Step] = [
            Step(i, tid, "", "", False, 0.0, 1, 0.0, 0.0, 1, 0.0) for i, tid in enumerate(prefix)
        ]
        self._text = StopScan(params.stop)
        self._finish: FinishReason | None = None
        self.seeds: list[int] = []
        self.rewound: list[int] = []

    # the protocol -------------------------------------------------------------------
    def prefill(self) -> float:
        return PREFILL_MS

    def propose(self) -> Proposal:
        self._check_can_step()
        top = self._candidates(len(self.steps))
        return Proposal(
            index=len(self.steps),
            sampled=self._scripted_id(len(self.steps)),
            top=top,
            entropy=_entropy(top),
            processed_entropy=_entropy(top) / 2,
        )

    def step(self, force: int | None = None) -> Step:
        self._check_can_step()
        index = len(self.steps)
        self.backend.maybe_pause(index, self.cancel_event)
        top = self._candidates(index)
        token_id = self._scripted_id(index) if force is None else force
        chosen = next((c for c in top if c.token_id == token_id), None)
        text = self.backend.vocab.text(token_id)
        logprob = chosen.logprob if chosen else math.log(1e-4)
        processed = chosen.processed_logprob if chosen else -math.inf
        ranked = sorted(top, key=lambda c: -c.logprob)
        rank = next((i + 1 for i, c in enumerate(ranked) if c.token_id == token_id), 99)
        special = text == END
        shown = self._text.push("" if special else text)
        finish = finish_reason_after(
            stopped=special or self._text.stopped is not None,
            generated=index + 1,
            prompt_tokens=self.prompt_tokens,
            max_new_tokens=self.params.max_new_tokens,
            context_window=self.backend.context_window,
        )
        if finish is not None:
            shown += self._text.finish()
        step = Step(
            index=index,
            token_id=token_id,
            piece=piece(text),
            text=shown,
            forced=force is not None,
            logprob=logprob,
            rank=rank,
            entropy=2.5 if index in self.backend.unsure else _entropy(top),
            processed_logprob=processed,
            processed_rank=rank,
            processed_entropy=_entropy(top) / 2,
            top=top,
            elapsed_ms=STEP_MS,
            special=special,
            token_bytes=text.encode(),
            finish_reason=finish,
        )
        self.steps.append(step)
        self._finish = finish
        return step

    def rewind(self, n: int) -> None:
        decoded = [s.token_id for s in self.steps[self._kept :]]
        prefix = rewind_prefix([s.token_id for s in self.steps[: self._kept]], decoded, n)
        if prefix is not None:
            self._kept = len(prefix)
        del self.steps[len(self.steps) - n :]
        self.rewound.append(n)
        self._finish = None
        self.cancel_event.clear()  # a rewind starts a branch the user asked for
        self._text = StopScan(self.params.stop)
        for s in self.steps[self._kept :]:
            self._text.push(s.text)

    def reseed(self, seed: int) -> None:
        self.seeds.append(seed)

    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def finish_reason(self) -> FinishReason | None:
        if self._finish is not None:
            return self._finish
        return "cancelled" if self.cancel_event.is_set() else None

    def summary(self) -> GenerationSummary:
        return reply_summary(
            self.finish_reason,
            text="".join(s.text for s in self.steps),
            prompt_tokens=self.prompt_tokens,
            steps=self.steps[self._kept :],
            prefill_ms=PREFILL_MS,
            prefix=[s.token_id for s in self.steps[: self._kept]],
        )

    def _check_can_step(self) -> None:
        if self.finish_reason is not None:
            raise GenerationError(f"the generation has finished ({self.finish_reason})")

    # the script ---------------------------------------------------------------------
    def _scripted_id(self, index: int) -> int:
        return self.backend.vocab.id(self.script[min(index, len(self.script) - 1)])

    def _candidates(self, index: int) -> tuple[Candidate, ...]:
        vocab = self.backend.vocab
        p = PROBS[index % len(PROBS)]
        alt1 = ALTERNATES[index % len(ALTERNATES)]
        alt2 = ALTERNATES[(index + 2) % len(ALTERNATES)]
        scripted = self.script[min(index, len(self.script) - 1)]
        entries = [
            (scripted, p, p + 0.02),
            (alt1, (1 - p) * 0.6, (1 - p) * 0.55),
            (alt2, (1 - p) * 0.3, 0.0),
        ]
        seen: set[str] = set()
        out = []
        for text, prob, processed in sorted(entries, key=lambda e: -e[1]):
            if text in seen:
                continue
            seen.add(text)
            out.append(
                Candidate(
                    token_id=vocab.id(text),
                    piece=piece(text),
                    logprob=math.log(prob),
                    processed_logprob=math.log(processed) if processed > 0 else -math.inf,
                    text=text,
                    dropped_by=None if processed > 0 else "top-p",
                )
            )
        return tuple(out)


class FakeEngine:
    """Scripted `Engine`: `replies` are used in turn, the last one repeats."""

    def __init__(
        self,
        replies: Sequence[str] = (DEFAULT_REPLY,),
        *,
        pause_at: int | None = None,
        step_delay: float = 0.0,
        hold_load: bool = False,
        fail_load: str | None = None,
        context_window: int = 8192,
        unsure: Sequence[int] = (),
    ) -> None:
        self.replies = list(replies)
        self.unsure = frozenset(unsure)  # step indices given a high entropy (2.5 nats)
        self.vocab = Vocab()
        self.pause_at = pause_at
        self.step_delay = step_delay
        self.release = threading.Event()
        self.load_gate = threading.Event()
        if not hold_load:
            self.load_gate.set()
        self.fail_load = fail_load
        self.context_window = context_window
        self.started: list[FakeReply] = []
        self.loads: list[ModelSpec] = []

    def close(self) -> None:
        """Let every waiting worker finish (test teardown)."""
        self.release.set()
        self.load_gate.set()

    def maybe_pause(self, index: int, cancel: threading.Event) -> None:
        if self.step_delay:
            time.sleep(self.step_delay)
        if self.pause_at is not None and index == self.pause_at:
            deadline = time.monotonic() + WAIT_LIMIT
            while not self.release.is_set() and not cancel.is_set() and time.monotonic() < deadline:
                time.sleep(0.005)

    def load(self, spec: ModelSpec, progress: ProgressFn | None = None) -> ModelDescription:
        self.loads.append(spec)
        progress = progress or (lambda _stage, _fraction, _detail: None)
        progress("resolving", 0.0, spec.display_name)
        progress("converting", 0.3, "first-time conversion of model.gguf (about 30 s)")
        self.load_gate.wait(WAIT_LIMIT)
        if self.fail_load:
            raise ModelLoadError(self.fail_load)
        progress("loading weights", 0.6, "fake-model")
        progress("ready", 1.0, "fake-model on cpu (float32)")
        return ModelDescription(
            spec=spec,
            model_id=spec.model or "fake-model",
            source="gguf",
            device="cpu",
            dtype="float32",
            quantize=spec.quantize,
            context_window=self.context_window,
            architecture="FakeForCausalLM",
            parameters_total=134515008,
            parameters_by_kind={"mlp": 80000000, "attention": 30000000, "embeddings": 24515008},
            config={"layers": 30, "hidden_size": 576, "vocab_size": 49152},
            generation_config={"do_sample": True, "temperature": 0.2, "top_p": 0.9},
        )

    def render_prompt(
        self, messages: Sequence[ChatMessage], *, allow_special: bool = False
    ) -> PromptView:
        tokens: list[TokenInfo] = []
        warnings: list[str] = []

        def add(text: str, special: bool, origin: Origin) -> None:
            data = text.encode()
            shown = text if special else display_bytes(data)
            token_id = self.vocab.id(text)
            tokens.append(
                TokenInfo(len(tokens), token_id, piece(text), shown, data, special, False, origin)
            )

        for m in messages:
            add(START, True, "template")
            add(m.role + "\n", False, "template")
            if START in m.content or END in m.content:
                what = "injected as special tokens" if allow_special else "kept as plain text"
                warnings.append(f"{m.role} message contains special-token text ({what})")
            for word in re.findall(r"\s*\S+|\s+", m.content):
                add(word, False, m.role)
            add(END, True, "template")
            add("\n", False, "template")
        add(START, True, "template")
        add("assistant\n", False, "template")
        return PromptView(
            tuple(tokens),
            self.context_window,
            tuple(warnings),
            {
                "bos": {"token": START, "id": 1},
                "eos": {"token": END, "id": 2},
                "eos_ids": [2],
            },
        )

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        return [self.vocab.id(word) for word in re.findall(r"\s*\S+|\s+", text)]

    def token_display(self, token_id: int) -> str:
        text = self.vocab.text(token_id)
        return text if text in (START, END) else display_text(text)

    def token_bytes(self, token_id: int) -> bytes:
        return self.vocab.text(token_id).encode()

    def start(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        allow_special: bool = False,
        cancel: threading.Event | None = None,
        prefix: Sequence[int] = (),
    ) -> FakeReply:
        prompt = self.render_prompt(messages, allow_special=allow_special)
        return self.start_ids(prompt.ids, params, cancel=cancel, prefix=prefix)

    def start_ids(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        cancel: threading.Event | None = None,
        prefix: Sequence[int] = (),
    ) -> FakeReply:
        reply = self.replies[min(len(self.started), len(self.replies) - 1)]
        script = re.findall(r"\s*\S+", reply)
        gen = FakeReply(self, script, params, cancel or threading.Event(), len(prompt_ids), prefix)
        self.started.append(gen)
        return gen


def _entropy(top: Sequence[Candidate]) -> float:
    return -sum(c.prob * c.logprob for c in top)


# the fake is an `Engine`: mypy checks this file (pyproject's [tool.mypy] files)
_: Engine = FakeEngine()
