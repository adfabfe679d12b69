"""`RemoteEngine` / `RemoteReply`: the decode protocol over an OpenAI-compatible server.

Full replies stream ``/v1/chat/completions`` with ``logprobs`` and turn each
entry into a `Step`. Step-through asks ``/v1/completions`` for one token of a
token-id prompt (prompt ids from ``/tokenize`` + the reply so far) with its
candidates: accepting keeps the server's pick, forcing appends another id,
branching (rewind) cuts the id list. Free decoding after a force or a rewind
streams ``/v1/completions`` from the ids. A server without token-id prompts
gets full replies only (`FeatureUnavailableError`, one line): text is never
re-tokenized and called exact.

All calls block (httpx); front ends call them from worker threads, as they do
the local engine. No torch anywhere on this path.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from engine.decode.protocol import ProgressFn, PromptView
from engine.decode.remote.capabilities import Capabilities, probe
from engine.decode.remote.client import DEFAULT_TIMEOUT, HttpClient
from engine.decode.remote.mapping import (
    UNKNOWN,
    Token,
    chat_token,
    legacy_tokens,
    mark_text,
    processed_rank,
    rank_of,
    text_only,
)
from engine.errors import FeatureUnavailableError, GenerationError, ModelLoadError
from engine.model.description import ModelDescription
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from engine.records import FinishReason, GenerationSummary, Proposal, Step, decode_rate
from engine.tokens.chat import ChatMessage
from engine.tokens.views import TokenInfo

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "abort": "cancelled"}


class RemoteEngine:
    """A model on a serving engine (vLLM, SGLang, llama.cpp, logitlab serve)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.client = HttpClient(url, api_key, timeout)
        self.wanted = model
        self._caps: Capabilities | None = None
        self._bytes: dict[int, bytes] = {}  # token id -> bytes, learnt from replies

    @property
    def url(self) -> str:
        return self.client.url

    @property
    def capabilities(self) -> Capabilities:
        if self._caps is None:
            raise ModelLoadError(f"not connected to {self.url} yet")
        return self._caps

    def capabilities_or_none(self) -> Capabilities | None:
        return self._caps

    def step_unavailable(self) -> str | None:
        """Why step mode cannot run here (None: it can, or not connected yet)."""
        return self._caps.step_unavailable() if self._caps is not None else None

    def close(self) -> None:
        self.client.close()

    def load(self, spec: ModelSpec, progress: ProgressFn | None = None) -> ModelDescription:
        report = progress or (lambda _stage, _fraction, _detail: None)
        report("connecting", 0.0, self.url)
        self._caps = caps = probe(self.client, self.wanted)
        report("ready", 1.0, caps.model)
        return ModelDescription(
            spec=spec,
            model_id=caps.model,
            source="remote",
            device=self.url,
            dtype="server",
            quantize="server",
            context_window=caps.context_window,
            architecture=caps.server,
            config={"engine": caps.as_dict()},
        )

    # --- tokens ------------------------------------------------------------------------

    def render_prompt(
        self, messages: Sequence[ChatMessage], *, allow_special: bool = False
    ) -> PromptView:
        caps = self.capabilities
        if not caps.tokenize_chat:
            return PromptView(
                tokens=(),
                context_window=caps.context_window,
                warnings=(
                    f"{caps.url} cannot tokenize chat messages: the exact prompt ids are unknown",
                ),
            )
        ids, strs = self._tokenize_chat(messages)
        tokens = tuple(
            TokenInfo(
                position=i,
                id=tid,
                piece=piece,
                display=piece,
                bytes=self._bytes.get(tid, b""),
                special=piece.startswith("<") and piece.endswith(">") and len(piece) > 2,
                partial=False,
                origin="template",
            )
            for i, (tid, piece) in enumerate(zip(ids, strs, strict=True))
        )
        return PromptView(tokens=tokens, context_window=caps.context_window)

    def _tokenize_chat(self, messages: Sequence[ChatMessage]) -> tuple[list[int], list[str]]:
        answer = self.client.post(
            "/tokenize",
            {
                "model": self.capabilities.model,
                "messages": [{"role": m.role, "content": m.content} for m in messages],
                "add_generation_prompt": True,
                "return_token_strs": True,
            },
        )
        ids = [int(i) for i in answer.get("tokens") or []]
        strs = answer.get("token_strs") or [str(i) for i in ids]
        return ids, [str(s) for s in strs]

    def chat_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        if not self.capabilities.tokenize_chat:
            raise FeatureUnavailableError(
                f"{self.url} cannot tokenize chat messages, so a reply cannot continue from ids"
            )
        return self._tokenize_chat(messages)[0]

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        if not self.capabilities.tokenize_text:
            raise FeatureUnavailableError(f"{self.url} has no /tokenize endpoint")
        answer = self.client.post(
            "/tokenize",
            {"model": self.capabilities.model, "prompt": text, "add_special_tokens": False},
        )
        return [int(i) for i in answer.get("tokens") or []]

    def learn(self, token_id: int, data: bytes) -> None:
        if token_id >= 0 and data:
            self._bytes.setdefault(token_id, data)

    def token_bytes(self, token_id: int) -> bytes:
        if token_id < 0:
            return b""
        if token_id not in self._bytes:
            answer = self.client.try_post(
                "/detokenize", {"model": self.capabilities.model, "tokens": [token_id]}
            )
            text = answer.get("prompt") if isinstance(answer, dict) else None
            self._bytes[token_id] = str(text).encode("utf-8") if text is not None else b""
        return self._bytes[token_id]

    def token_display(self, token_id: int) -> str:
        if token_id < 0:
            return "?"
        data = self.token_bytes(token_id)  # as the local engine shows it: decoded bytes
        return data.decode("utf-8", errors="backslashreplace") if data else f"<{token_id}>"

    # --- replies -----------------------------------------------------------------------

    def start(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams,
        *,
        allow_special: bool = False,
        cancel: threading.Event | None = None,
        prefix: Sequence[int] = (),
    ) -> RemoteReply:
        return RemoteReply(self, params, cancel, messages=messages, prefix=prefix)

    def start_ids(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        cancel: threading.Event | None = None,
        prefix: Sequence[int] = (),
    ) -> RemoteReply:
        self._need_ids()
        return RemoteReply(self, params, cancel, prompt_ids=prompt_ids, prefix=prefix)

    def _need_ids(self) -> None:
        why = self.capabilities.step_unavailable()
        if why is not None:
            raise FeatureUnavailableError(why)

    def sampling_body(self, params: SamplingParams, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.capabilities.model,
            "max_tokens": max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.top_k:
            body["top_k"] = params.top_k
        if params.min_p:
            body["min_p"] = params.min_p
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if self.capabilities.server == "vllm":
            body["return_tokens_as_token_ids"] = True
        return body

    def top_n(self, params: SamplingParams) -> int:
        most = self.capabilities.max_top_logprobs or 20
        return max(1, min(params.top_logprobs or 1, most))


class RemoteReply:
    """One reply on a remote server, behind the `Reply` protocol.

    Steps come from an open stream (chat, or completions from ids) or, in step
    mode, from one-token requests; `_pending` is the proposed next token (the
    server's pick and its candidates) until it is accepted or another is forced.
    """

    def __init__(
        self,
        engine: RemoteEngine,
        params: SamplingParams,
        cancel: threading.Event | None,
        *,
        messages: Sequence[ChatMessage] | None = None,
        prompt_ids: Sequence[int] | None = None,
        prefix: Sequence[int] = (),
    ) -> None:
        self._engine, self._params = engine, params
        self._cancel = cancel or threading.Event()
        self._messages = list(messages) if messages is not None else None
        self._prompt_ids = list(prompt_ids) if prompt_ids is not None else None
        self._prefix = [int(i) for i in prefix]
        self._steps: list[Step] = []
        self._buffer: deque[Step] = deque()
        self._pending: Step | None = None
        self._stream: Iterator[list[Step]] | None = None
        self._finish: FinishReason | None = None
        self._stream_finish: FinishReason | None = None
        self._prefill_ms = 0.0
        self._last = time.perf_counter()
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._server_prompt_tokens: int | None = None
        self.prompt_tokens = len(self._prompt_ids) if self._prompt_ids is not None else 0
        self.notices: list[str] = []

    # --- protocol ------------------------------------------------------------------------

    def prefill(self) -> float:
        """Prompt ids where they are needed (a prefix to continue); the server prefills
        inside the first request, so time to first token is measured to its first token."""
        started = time.perf_counter()
        if self._prefix or self._prompt_ids is not None:
            self._ids_prompt()
        elif self._engine.capabilities.tokenize_chat and self._messages is not None:
            self._prompt_ids = self._engine.chat_ids(self._messages)
            self.prompt_tokens = len(self._prompt_ids)
        self._last = time.perf_counter()
        self._prefill_ms = (self._last - started) * 1000.0
        return self._prefill_ms

    def propose(self) -> Proposal:
        if self._pending is None:
            if self._buffer or self._stream is not None:
                self._fill()
            if self._buffer:
                self._pending = self._buffer.popleft()
            else:
                self._pending = self._one_token()
        p = self._pending
        return Proposal(
            index=p.index, sampled=p.token_id, top=p.top, entropy=UNKNOWN, processed_entropy=UNKNOWN
        )

    def step(self, force: int | None = None) -> Step:
        if self.done:
            raise GenerationError("the reply is finished")
        if force is not None and self._pending is None:
            self.propose()
        if self._pending is not None:
            step, self._pending = self._pending, None
            if force is not None and force != step.token_id:
                step = self._forced(step, force)
                self._end_stream()  # the server went on from its own pick
                self._buffer.clear()
        else:
            if not self._buffer:
                self._fill()
            if not self._buffer:
                raise GenerationError("the server ended the reply without another token")
            step = self._buffer.popleft()
        return self._commit(step)

    def rewind(self, n: int) -> None:
        kept = len(self._prefix) + len(self._steps) - n
        if kept < 0:
            raise GenerationError(f"cannot rewind {n} tokens: the reply has fewer")
        self._engine._need_ids()
        self._end_stream()
        self._buffer.clear()
        self._pending = None
        all_ids = [*self._prefix, *(s.token_id for s in self._steps)]
        if len(self._prefix) > kept:
            self._prefix, self._steps = all_ids[:kept], []
        else:
            self._steps = self._steps[: kept - len(self._prefix)]
        del all_ids
        self._finish = self._stream_finish = None
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for s in self._steps:
            self._text.decode(s.token_bytes)
        self._ids_prompt()

    def cancel(self) -> None:
        self._cancel.set()
        self._engine.client.close_streams()

    @property
    def done(self) -> bool:
        if self._finish is not None and not self._buffer and self._pending is None:
            return True
        if self._cancel.is_set():
            self._end_stream()
            self._finish = "cancelled"
            self._buffer.clear()
            self._pending = None
            return True
        if self._buffer or self._pending is not None:
            return False
        if self._stream is not None:
            self._fill()
            if not self._buffer and self._stream is None:
                self._finish = self._stream_finish or "stop"
        return self._finish is not None and not self._buffer

    @property
    def finish_reason(self) -> FinishReason | None:
        return self._finish

    def summary(self) -> GenerationSummary:
        step_ms = [s.elapsed_ms for s in self._steps]
        ids = (*self._prefix, *(s.token_id for s in self._steps))
        prompt = self._server_prompt_tokens or self.prompt_tokens
        return GenerationSummary(
            finish_reason=self._finish or "cancelled",
            text="".join(s.text for s in self._steps),
            prompt_tokens=prompt,
            completion_tokens=len(ids),
            tokens_per_second=decode_rate(step_ms, self._prefill_ms),
            time_to_first_token_ms=self._prefill_ms + (step_ms[0] if step_ms else 0.0),
            token_ids=ids,
        )

    def note(self, line: str) -> None:
        """A one-line notice for the user (front ends show `notices` once)."""
        if line not in self.notices:
            self.notices.append(line)

    # --- committing ------------------------------------------------------------------------

    def _commit(self, step: Step) -> Step:
        text = self._text.decode(step.token_bytes) if not step.special else ""
        finish = self._limit_reached(step, text)
        step = replace(step, text=text, finish_reason=finish)
        self._steps.append(step)
        if finish is not None:
            self._finish = finish
            self._end_stream()
            self._buffer.clear()
        return step

    def _limit_reached(self, step: Step, text: str) -> FinishReason | None:
        if step.finish_reason is not None:
            return self._context_or(step.finish_reason)
        made = len(self._prefix) + len(self._steps) + 1
        if made >= self._params.max_new_tokens:
            return self._context_or("length")
        window = self._engine.capabilities.context_window
        if window and self.prompt_tokens and self.prompt_tokens + made >= window:
            return "context"
        if self._params.stop and self._stream is None:  # one-token requests: the stop is ours
            so_far = "".join(s.text for s in self._steps) + text
            if any(stop in so_far for stop in self._params.stop):
                return "stop"
        return None

    def _context_or(self, reason: FinishReason) -> FinishReason:
        window = self._engine.capabilities.context_window
        made = len(self._prefix) + len(self._steps) + 1
        full = bool(window) and self.prompt_tokens + made >= window
        if reason == "length" and full and made < self._params.max_new_tokens:
            return "context"
        return reason

    def _forced(self, proposed: Step, force: int) -> Step:
        cand = next((c for c in proposed.top if c.token_id == force), None)
        data = self._engine.token_bytes(force)
        logprob = cand.logprob if cand else UNKNOWN
        processed = cand.processed_logprob if cand else UNKNOWN
        return Step(
            index=proposed.index,
            token_id=force,
            piece=cand.piece if cand else data.decode("utf-8", errors="replace"),
            text="",
            forced=True,
            logprob=logprob,
            rank=rank_of(force, data, logprob, proposed.top) if cand else 0,
            entropy=UNKNOWN,
            processed_logprob=processed,
            processed_rank=0,
            processed_entropy=UNKNOWN,
            top=proposed.top,
            elapsed_ms=proposed.elapsed_ms,
            token_bytes=data,
        )

    def _step_of(self, token: Token, elapsed_ms: float, finish: FinishReason | None) -> Step:
        for cand, data in zip(token.top, token.top_bytes, strict=True):
            self._engine.learn(cand.token_id, data)
        self._engine.learn(token.token_id, token.data)
        index = len(self._prefix) + len(self._steps) + len(self._buffer)
        index += 1 if self._pending is not None else 0
        return Step(
            index=index,
            token_id=token.token_id,
            piece=token.data.decode("utf-8", errors="replace"),
            text="",
            forced=False,
            logprob=token.logprob,
            rank=rank_of(token.token_id, token.data, token.logprob, token.top),
            entropy=UNKNOWN,
            processed_logprob=token.processed_logprob,
            processed_rank=processed_rank(token),
            processed_entropy=UNKNOWN,
            top=token.top,
            elapsed_ms=elapsed_ms,
            special=not token.in_text,
            token_bytes=token.data,
            finish_reason=finish,
        )

    # --- requests ---------------------------------------------------------------------------

    def _ids_prompt(self) -> list[int]:
        """The prompt as ids (token-id requests need them): given, or the server's tokenizing."""
        self._engine._need_ids()
        if self._prompt_ids is None:
            assert self._messages is not None
            self._prompt_ids = self._engine.chat_ids(self._messages)
            self.prompt_tokens = len(self._prompt_ids)
        return self._prompt_ids

    def _context_ids(self) -> list[int]:
        return [*self._ids_prompt(), *self._prefix, *(s.token_id for s in self._steps)]

    def _remaining(self) -> int:
        return max(1, self._params.max_new_tokens - len(self._prefix) - len(self._steps))

    def _one_token(self) -> Step:
        """Step mode: one token of the ids so far, with its candidates."""
        engine = self._engine
        body = {
            **engine.sampling_body(self._params, 1),
            "prompt": self._context_ids(),
            "logprobs": engine.top_n(self._params),
        }
        started = time.perf_counter()
        answer = engine.client.post("/v1/completions", body)
        elapsed = (time.perf_counter() - started) * 1000.0
        choice = (answer.get("choices") or [{}])[0]
        tokens = mark_text(legacy_tokens(choice.get("logprobs") or {}), choice.get("text") or "")
        if not tokens:
            raise GenerationError(f"{engine.url} returned no logprobs for the step")
        reason = choice.get("finish_reason")
        # "length" is only the one-token limit of this request
        finish: FinishReason | None = "stop" if reason == "stop" else None
        return self._step_of(tokens[0], elapsed, finish)

    def _open_stream(self) -> Iterator[list[Step]]:
        engine = self._engine
        if self._messages is not None and not self._steps and not self._prefix:
            body: dict[str, Any] = {
                **engine.sampling_body(self._params, self._remaining()),
                "messages": [{"role": m.role, "content": m.content} for m in self._messages],
                "stream": True,
                "stream_options": {"include_usage": True},
                "logprobs": True,
                "top_logprobs": engine.top_n(self._params),
            }
            return self._read(engine.client.stream("/v1/chat/completions", body), chat=True)
        body = {
            **engine.sampling_body(self._params, self._remaining()),
            "prompt": self._context_ids(),
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": engine.top_n(self._params),
        }
        return self._read(engine.client.stream("/v1/completions", body), chat=False)

    def _read(self, events: Iterator[dict[str, Any]], *, chat: bool) -> Iterator[list[Step]]:
        for event in events:
            usage = event.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
                self._server_prompt_tokens = int(usage["prompt_tokens"])
            for choice in event.get("choices") or []:
                reason = choice.get("finish_reason")
                finish = _FINISH.get(reason, "stop") if reason else None
                if chat:
                    logprobs = choice.get("logprobs") or {}
                    text = (choice.get("delta") or {}).get("content") or ""
                    entries = [chat_token(e) for e in logprobs.get("content") or []]
                else:
                    text = choice.get("text") or ""
                    entries = legacy_tokens(choice.get("logprobs") or {})
                if text and not entries:  # a server without logprobs: text-only steps
                    self.note(f"{self._engine.url} returned no logprobs: text only, no token data")
                    entries = [text_only(text)]
                now = time.perf_counter()
                share = (now - self._last) * 1000.0 / max(len(entries), 1)
                self._last = now
                tokens = mark_text(entries, text)
                batch = [
                    self._step_of(t, share, finish if i == len(tokens) - 1 else None)
                    for i, t in enumerate(tokens)
                ]
                if finish is not None:
                    self._stream_finish = finish
                if batch:
                    yield batch

    def _fill(self) -> None:
        """Read the next batch of streamed steps (opening the stream if none is open)."""
        if self._stream is None:
            if self._finish is not None:
                return
            self._stream = self._open_stream()
            self._last = time.perf_counter()
        try:
            batch = next(self._stream)
        except StopIteration:
            self._stream = None
            if self._cancel.is_set():
                self._finish = "cancelled"
            elif not self._buffer:
                self._finish = self._stream_finish or "stop"
            return
        self._buffer.extend(batch)

    def _end_stream(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            close = getattr(stream, "close", None)
            if close is not None:
                close()
