"""`RemoteReply`: one reply on an OpenAI-compatible server, behind the `Reply` protocol.

Steps come from an open stream (chat, or completions from ids; `StreamReader`)
or, in step mode, from one-token requests; `_pending` is the proposed next token
(the server's pick and its candidates) until it is accepted or another is forced.
When and why the reply stops, its summary and a kept prefix follow the rules
every engine shares (engine/decode/rules.py).

`done` and `finish_reason` only read state: every request happens in `prefill`,
`propose` and `step`. So a streamed step is returned once the stream has said
whether another token follows it (the end of a stream belongs to its last step).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

from engine.decode.remote.capabilities import Capabilities
from engine.decode.remote.client import HttpClient
from engine.decode.remote.mapping import UNKNOWN, Token, mark_text, processed_rank, rank_of
from engine.decode.remote.native import one_token_request, read_one_token
from engine.decode.remote.pieces import Pieces
from engine.decode.remote.stream import StreamReader
from engine.decode.rules import (
    StopScan,
    finish_reason_after,
    remaining_tokens,
    reply_summary,
    rewind_prefix,
)
from engine.errors import GenerationError, LogitlabError
from engine.params import SamplingParams
from engine.records import FinishReason, GenerationSummary, Proposal, Step
from engine.tokens.chat import ChatMessage


class Server(Protocol):
    """What a reply needs of its engine (`RemoteEngine`): the connection, what the
    server offers, its tokenizing and the token bytes learnt so far."""

    client: HttpClient

    @property
    def url(self) -> str: ...
    @property
    def pieces(self) -> Pieces: ...
    @property
    def capabilities(self) -> Capabilities: ...
    def need_ids(self) -> None: ...
    def chat_ids(self, messages: Sequence[ChatMessage]) -> list[int]: ...
    def token_bytes(self, token_id: int) -> bytes: ...
    def learn(self, token_id: int, data: bytes) -> None: ...
    def ends_reply(self, token_id: int) -> bool: ...
    def learn_end(self, token_id: int) -> None: ...
    def sampling_body(self, params: SamplingParams, max_tokens: int) -> dict[str, Any]: ...
    def top_n(self, params: SamplingParams) -> int: ...


class _ReplyText:
    """A reply's text from its tokens' bytes (specials add none), cut by the stop rule.

    As the local loop's text stream: bytes that do not end a whole UTF-8 character are
    held until a later token completes it. A token whose bytes are not known (part of a
    character looked up on the server: pieces.py) is decoded with the held ones there."""

    def __init__(self, stops: Sequence[str], pieces: Pieces, steps: Sequence[Step] = ()) -> None:
        self._stops = StopScan(stops)
        self._pieces = pieces
        self._held: list[Step] = []
        for step in steps:
            self.push(step)

    @property
    def stopped(self) -> bool:
        return self._stops.stopped is not None

    def push(self, step: Step) -> str:
        if step.special:
            return self._stops.push("")
        self._held.append(step)
        text = self._decode()
        if text.endswith("\ufffd"):
            return ""  # the rest of the character is still to come
        self._held = []
        return self._stops.push(text)

    def finish(self) -> str:
        tail, self._held = (self._decode() if self._held else ""), []
        return self._stops.push(tail) + self._stops.finish()

    def _decode(self) -> str:
        if all(self._pieces.exact(s.token_id) for s in self._held):
            return b"".join(s.token_bytes for s in self._held).decode("utf-8", errors="replace")
        return self._pieces.decode([s.token_id for s in self._held])


class RemoteReply:
    """One reply on a remote server (see the module docstring)."""

    def __init__(
        self,
        engine: Server,
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
        self._buffer: deque[Step] = deque()  # read from the stream, not yet committed
        self._pending: Step | None = None
        self._reader: StreamReader | None = None
        self._failure: LogitlabError | None = None  # a read ahead's error, for the next step
        self._finish: FinishReason | None = None
        self._prefill_ms = 0.0
        self._text = _ReplyText(params.stop, engine.pieces)
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
        self._prefill_ms = (time.perf_counter() - started) * 1000.0
        return self._prefill_ms

    def propose(self) -> Proposal:
        self._check_can_step()
        if self._pending is None:
            if not self._buffer and self._reader is not None:
                self._fill()
            self._pending = self._buffer.popleft() if self._buffer else self._one_token()
        p = self._pending
        return Proposal(
            index=p.index, sampled=p.token_id, top=p.top, entropy=UNKNOWN, processed_entropy=UNKNOWN
        )

    def step(self, force: int | None = None) -> Step:
        self._check_can_step()
        if force is not None and self._pending is None:
            self.propose()
        if self._pending is not None:
            step, self._pending = self._pending, None
            if force is not None and force != step.token_id:
                step = self._forced(step, force)
                self._end_stream()  # the server went on from its own pick
            elif force is not None:  # the user chose it, as the local loop records
                step = replace(step, forced=True)
        else:
            step = self._streamed()
        return self._commit(step)

    def rewind(self, n: int) -> None:
        """Cut the reply (a kept prefix included) and go on from ids; like the local loop,
        a rewind starts a branch the user asked for, so it clears a cancel."""
        prefix = rewind_prefix(self._prefix, [s.token_id for s in self._steps], n)
        self._engine.need_ids()
        self._end_stream()
        self._pending = None
        if prefix is None:
            self._steps = self._steps[: len(self._steps) - n]
        else:
            self._prefix, self._steps = prefix, []
        self._finish, self._failure = None, None
        self._cancel.clear()
        self._text = _ReplyText(self._params.stop, self._engine.pieces, self._steps)
        self._ids_prompt()

    def reseed(self, seed: int) -> None:
        """A fresh sampling seed from here on (a fan-out's next continuation): the next
        request sends it; what was read or proposed under the old seed is dropped."""
        self._end_stream()
        self._pending = None
        self._params = self._params.with_changes(seed=seed)

    def cancel(self) -> None:
        self._cancel.set()
        self._engine.client.close_streams()

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def finish_reason(self) -> FinishReason | None:
        if self._finish is not None:
            return self._finish
        return "cancelled" if self._cancel.is_set() else None

    def summary(self) -> GenerationSummary:
        """The shared summary; a finished reply lets go of its stream (a cancel by event)."""
        self._end_stream()
        return reply_summary(
            self.finish_reason,
            text="".join(s.text for s in self._steps),
            prompt_tokens=self._server_prompt_tokens or self.prompt_tokens,
            steps=self._steps,
            prefill_ms=self._prefill_ms,
            prefix=self._prefix,
        )

    def note(self, line: str) -> None:
        """A one-line notice for the user (front ends show `notices` once)."""
        if line not in self.notices:
            self.notices.append(line)

    # --- committing ------------------------------------------------------------------------

    def _check_can_step(self) -> None:
        reason = self.finish_reason
        if reason is not None:
            raise GenerationError(f"the generation has finished ({reason}); rewind to continue")

    def _commit(self, step: Step) -> Step:
        """The step's text and finish reason by the shared rules; the server's own reason
        (its length limit, an abort) where no rule of ours ends the reply."""
        text = self._text.push(step)
        server = step.finish_reason
        if server == "stop" and step.special and not self._text.stopped:
            self._engine.learn_end(step.token_id)  # the server ended its reply on it
        made = len(self._prefix) + len(self._steps) + 1
        finish = finish_reason_after(
            stopped=server == "stop"
            or self._text.stopped
            or (step.forced and self._engine.ends_reply(step.token_id)),
            generated=made,
            prompt_tokens=self.prompt_tokens,
            max_new_tokens=self._params.max_new_tokens,
            context_window=self._engine.capabilities.context_window,
        )
        finish = finish or server
        if finish is not None:
            text += self._text.finish()
            self._finish = finish
            self._end_stream()
        step = replace(step, text=text, finish_reason=finish)
        self._steps.append(step)
        return step

    def _forced(self, proposed: Step, force: int) -> Step:
        cand = next((c for c in proposed.top if c.token_id == force), None)
        facts = self._engine.pieces.get(force)
        data = facts.data
        logprob = cand.logprob if cand else UNKNOWN
        processed = cand.processed_logprob if cand else UNKNOWN
        return Step(
            index=proposed.index,
            token_id=force,
            piece=cand.piece if cand else facts.piece,
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
            special=facts.special,
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
            piece=token.piece or token.data.decode("utf-8", errors="replace"),
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
            special=token.special or not token.in_text,
            token_bytes=token.data,
            finish_reason=finish,
        )

    # --- requests ---------------------------------------------------------------------------

    def _ids_prompt(self) -> list[int]:
        """The prompt as ids (token-id requests need them): given, or the server's tokenizing."""
        self._engine.need_ids()
        if self._prompt_ids is None:
            assert self._messages is not None
            self._prompt_ids = self._engine.chat_ids(self._messages)
            self.prompt_tokens = len(self._prompt_ids)
        return self._prompt_ids

    def _context_ids(self) -> list[int]:
        return [*self._ids_prompt(), *self._prefix, *(s.token_id for s in self._steps)]

    def _remaining(self) -> int:
        return remaining_tokens(self._params.max_new_tokens, len(self._prefix) + len(self._steps))

    def _one_token(self) -> Step:
        """Step mode: one token of the ids so far, with its candidates."""
        engine = self._engine
        caps = engine.capabilities
        path, body = one_token_request(
            caps.step_api,
            caps.model,
            engine.sampling_body(self._params, 1),
            self._context_ids(),
            self._params,
            engine.top_n(self._params),
        )
        started = time.perf_counter()
        answer = engine.client.post(path, body)
        elapsed = (time.perf_counter() - started) * 1000.0
        tokens, text, finish = read_one_token(caps.step_api, answer, engine.url)
        tokens = mark_text(engine.pieces.fill(tokens), text)
        if not tokens:
            raise GenerationError(f"{engine.url} returned no logprobs for the step")
        return self._step_of(tokens[0], elapsed, finish)

    def _one_by_one(self) -> bool:
        """Free decoding from ids on a server whose ids come from its own endpoint
        (llama.cpp, SGLang: native.py) is one request per token: nothing streams them."""
        if self._reader is not None or self._buffer or self._failure is not None:
            return False
        if self._engine.capabilities.step_api not in ("llama.cpp", "sglang"):
            return False
        return self._messages is None or bool(self._steps) or bool(self._prefix)

    def _streamed(self) -> Step:
        """The next streamed step; when it is the last one read, the stream is read on
        until it sends another token or ends (its end is this step's finish reason)."""
        if self._one_by_one():
            return self._one_token()
        if self._failure is not None:  # the read ahead of the last step failed: now it counts
            failure, self._failure = self._failure, None
            raise failure
        if not self._buffer:
            self._fill()
        if not self._buffer:
            raise GenerationError(f"{self._engine.url} ended the reply without another token")
        if len(self._buffer) == 1 and self._buffer[0].finish_reason is None and self._reader:
            try:  # read ahead while the step is still in the buffer (indices count it)
                ended = self._fill()
            except LogitlabError as exc:  # the step arrived whole: it is kept
                self._failure, ended = exc, None
            if ended is not None and len(self._buffer) == 1:
                self._buffer[0] = replace(self._buffer[0], finish_reason=ended)
        return self._buffer.popleft()

    def _open_stream(self) -> StreamReader:
        engine = self._engine
        sampling = engine.sampling_body(self._params, self._remaining())
        common = {**sampling, "stream": True, "stream_options": {"include_usage": True}}
        if self._messages is not None and not self._steps and not self._prefix:
            body: dict[str, Any] = {
                **common,
                "messages": [{"role": m.role, "content": m.content} for m in self._messages],
                "logprobs": True,
                "top_logprobs": engine.top_n(self._params),
            }
            events = engine.client.stream("/v1/chat/completions", body)
            return StreamReader(events, chat=True, fill=engine.pieces.fill)
        body = {**common, "prompt": self._context_ids(), "logprobs": engine.top_n(self._params)}
        events = engine.client.stream("/v1/completions", body)
        return StreamReader(events, chat=False, fill=engine.pieces.fill)

    def _fill(self) -> FinishReason | None:
        """Read the next chunk of streamed steps (opening the stream if none is open);
        the reason the stream ended when it has (a cancel, the server's, else ``stop``)."""
        if self._reader is None:
            self._reader = self._open_stream()
        reader = self._reader
        chunk = reader.next_chunk()
        if chunk is None:  # what it sent stays in the buffer
            self._close_reader()
            if self._cancel.is_set():
                return "cancelled"
            return reader.finish or "stop"
        if chunk.text_only:
            self.note(f"{self._engine.url} returned no logprobs: text only, no token data")
        for i, token in enumerate(chunk.tokens):
            last = i == len(chunk.tokens) - 1
            self._buffer.append(
                self._step_of(token, chunk.token_ms, chunk.finish if last else None)
            )
        return None

    def _end_stream(self) -> None:
        """Close the open stream (if any) and forget what it had sent ahead."""
        self._buffer.clear()
        self._close_reader()

    def _close_reader(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            if reader.prompt_tokens is not None:
                self._server_prompt_tokens = reader.prompt_tokens
            reader.close()
