"""The FastAPI app: OpenAI-compatible endpoints over one loaded `Engine`.

`create_app(engine, model, options, store)` wires the routes, the error shape,
the guards (body limit, API key, optional CORS), the FIFO `Scheduler` and the
session `Recorder`. Every request renders / encodes its prompt and checks it
against the context window on the event loop (fast, tokenizer only), then waits
its turn in the FIFO; the decode itself is the workbench's (`Engine.start_ids`,
`Reply.step`), so served numbers equal `logitlab generate`'s.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import StreamingResponse

from engine.decode.protocol import Engine
from engine.decode.run import ReplyResult
from engine.errors import InvalidParameterError
from engine.model.description import ModelDescription
from engine.params import SamplingParams, resolve_sampling
from engine.records import Step
from engine.serve import openai_shapes as shapes
from engine.serve.errors import ApiError, Guard, api_error, install_handlers
from engine.serve.queue import Failed, Finished, Job, QueueFullError, Scheduler
from engine.serve.recorder import Recorder
from engine.serve.schemas import (
    MAX_TOP_LOGPROBS,
    ChatCompletionRequest,
    ChatMessageIn,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
    refuse_unsupported,
    sampling_overrides,
)
from engine.sessions import SessionStore
from engine.tokens.chat import ChatMessage

RECORDED_CANDIDATES = 5  # candidates kept per token in a recorded session, asked or not
DISCONNECT_POLL_S = 0.25


@dataclass(frozen=True)
class ServeOptions:
    """What `logitlab serve` decides beyond the model."""

    api_key: str | None = None
    record: bool = True
    max_queue: int = 64
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 1 << 20


class _Server:
    """The state behind the routes: the engine, its description, the queue, the recorder."""

    def __init__(
        self,
        engine: Engine,
        model: ModelDescription,
        options: ServeOptions,
        store: SessionStore | None,
    ) -> None:
        self.engine, self.model, self.options = engine, model, options
        self.name = model.model_id
        self.created = int(time.time())
        self.scheduler = Scheduler(engine, options.max_queue)
        self.recorder = Recorder(store, model) if options.record and store is not None else None

    # --- request -> job ----------------------------------------------------------------

    def check_model(self, name: str | None) -> None:
        if name and name != self.name:
            raise ApiError(
                404, f"the model {name!r} does not exist; this server serves {self.name!r}",
                param="model", code="model_not_found",
            )  # fmt: skip

    def params(self, request: Any, max_tokens: int | None, top_logprobs: int) -> SamplingParams:
        overrides = {**sampling_overrides(request, max_tokens), "top_logprobs": top_logprobs}
        params, _sources = resolve_sampling(self.model.generation_config, overrides)
        return params

    def check_length(self, ids: Sequence[int], param: str) -> None:
        if not ids:
            raise ApiError(400, f"{param}: the prompt is empty", param=param)
        window = self.model.context_window
        if len(ids) >= window:
            raise ApiError(
                400,
                f"the prompt is {len(ids)} tokens but the model's context window is {window}; "
                f"shorten it to at most {window - 1} tokens",
                param=param,
                code="context_length_exceeded",
            )

    def submit(
        self, ids: Sequence[int], params: SamplingParams, messages: list[ChatMessage]
    ) -> Job:
        recorder = self.recorder

        def record(result: ReplyResult) -> None:
            if recorder is not None:
                recorder.record(params, messages, result)

        job = Job(ids, params, asyncio.get_running_loop(), on_result=record)
        try:
            self.scheduler.submit(job)
        except QueueFullError as exc:
            raise ApiError(
                503, f"the server is busy: {exc}; retry shortly", type_="server_error",
                code="queue_full", headers={"Retry-After": "1"},
            ) from exc  # fmt: skip
        return job

    def close(self) -> None:
        self.scheduler.close()
        if self.recorder is not None:
            self.recorder.close()


def create_app(
    engine: Engine,
    model: ModelDescription,
    options: ServeOptions | None = None,
    store: SessionStore | None = None,
) -> FastAPI:
    """The ASGI app for a loaded engine. `store`: where served requests are recorded
    (None, or ``options.record`` false: nothing is). ``app.state.server.close()``
    cancels what is in flight and commits pending sessions (the CLI calls it)."""
    options = options or ServeOptions()
    server = _Server(engine, model, options, store)
    app = FastAPI(title="logitlab", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server
    install_handlers(app)
    _routes(app, server)
    if options.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(Guard, max_body=options.max_body_bytes, api_key=options.api_key)
    return app


def _routes(app: FastAPI, s: _Server) -> None:
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": s.name, "waiting": s.scheduler.waiting}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(s)]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str) -> dict[str, Any]:
        s.check_model(name)
        return _model_card(s)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatCompletionRequest, request: Request) -> Any:
        s.check_model(body.model)
        refuse_unsupported(body)
        top = _chat_top_logprobs(body)
        messages = _chat_messages(body.messages)
        params = s.params(body, body.max_completion_tokens or body.max_tokens, _kept(s, top))
        ids = s.engine.render_prompt(messages).ids
        s.check_length(ids, "messages")
        job = s.submit(ids, params, messages)
        meta = _Meta("chatcmpl-" + uuid.uuid4().hex, int(time.time()), s.name, top, body.logprobs)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(_chat_stream(s, job, meta, include_usage))
        steps, result = await _collect(job, request)
        return _chat_response(s, meta, steps, result)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        s.check_model(body.model)
        refuse_unsupported(body)
        if body.suffix:
            raise InvalidParameterError("suffix", "is not supported")
        top = body.logprobs
        if top is not None and not 0 <= top <= MAX_TOP_LOGPROBS:
            raise InvalidParameterError("logprobs", f"must be in [0, {MAX_TOP_LOGPROBS}]")
        if body.echo and top is not None:
            raise InvalidParameterError(
                "echo", "cannot be combined with logprobs (no prompt scoring)"
            )
        ids, prompt_text = _completion_prompt(s, body.prompt)
        params = s.params(body, body.max_tokens, _kept(s, top or 0))
        s.check_length(ids, "prompt")
        job = s.submit(ids, params, [ChatMessage("user", prompt_text)])
        meta = _Meta(
            "cmpl-" + uuid.uuid4().hex, int(time.time()), s.name, top or 0, top is not None
        )
        echo = prompt_text if body.echo else ""
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(_completion_stream(s, job, meta, include_usage, echo))
        steps, result = await _collect(job, request)
        return _completion_response(s, meta, steps, result, echo)

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        s.check_model(body.model)
        if (body.prompt is None) == (body.messages is None):
            raise InvalidParameterError("prompt", "give exactly one of prompt or messages")
        if body.messages is not None:
            ids = s.engine.render_prompt(_chat_messages(body.messages)).ids
        else:
            ids = s.engine.encode(body.prompt or "")
        out: dict[str, Any] = {
            "count": len(ids),
            "max_model_len": s.model.context_window,
            "tokens": ids,
        }
        if body.return_token_strs:
            out["token_strs"] = [s.engine.token_display(i) for i in ids]
        return out

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        s.check_model(body.model)
        _check_ids(s, body.tokens, "tokens")
        return {"prompt": _decode(s, body.tokens)}


# --- request parsing -----------------------------------------------------------------


def _model_card(s: _Server) -> dict[str, Any]:
    return {
        "id": s.name,
        "object": "model",
        "created": s.created,
        "owned_by": "logitlab",
        "root": s.name,
        "max_model_len": s.model.context_window,
        "context_window": s.model.context_window,
    }


def _kept(s: _Server, asked: int) -> int:
    """Candidates the decode records: what was asked, and a few more for the session."""
    return max(asked, RECORDED_CANDIDATES) if s.recorder is not None else asked


def _chat_top_logprobs(body: ChatCompletionRequest) -> int:
    top = body.top_logprobs
    if top is None:
        return 0
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise InvalidParameterError(
            "top_logprobs", f"must be in [0, {MAX_TOP_LOGPROBS}], got {top}"
        )
    if not body.logprobs and top:
        raise InvalidParameterError("top_logprobs", "needs logprobs: true")
    return top


def _chat_messages(messages: Sequence[ChatMessageIn]) -> list[ChatMessage]:
    out = []
    for i, m in enumerate(messages):
        role = "system" if m.role == "developer" else m.role
        if role not in ("system", "user", "assistant"):
            raise InvalidParameterError(
                f"messages[{i}].role", f"must be system, user or assistant, got {m.role!r}"
            )
        if isinstance(m.content, str):
            content = m.content
        elif m.content is None:
            raise InvalidParameterError(f"messages[{i}].content", "is required")
        else:
            parts = []
            for j, part in enumerate(m.content):
                if part.type != "text" or part.text is None:
                    raise InvalidParameterError(
                        f"messages[{i}].content[{j}]", f"only text parts are supported, got {part.type!r}"
                    )  # fmt: skip
                parts.append(part.text)
            content = "".join(parts)
        out.append(ChatMessage(role, content))  # type: ignore[arg-type]
    return out


def _completion_prompt(s: _Server, prompt: Any) -> tuple[list[int], str]:
    if isinstance(prompt, str):
        return s.engine.encode(prompt), prompt
    if prompt and all(isinstance(p, int) for p in prompt):
        ids = [int(p) for p in prompt]
        _check_ids(s, ids, "prompt")
        return ids, _decode(s, ids)
    if isinstance(prompt, list) and len(prompt) == 1:  # a batch of one is fine
        return _completion_prompt(s, prompt[0])
    raise InvalidParameterError("prompt", "give one prompt (a string or a list of token ids)")


def _check_ids(s: _Server, ids: Sequence[int], param: str) -> None:
    vocab = int(s.model.config.get("vocab_size") or 0)
    bad = next((i for i in ids if i < 0 or (vocab and i >= vocab)), None)
    if bad is not None:
        raise InvalidParameterError(param, f"token id {bad} is not in [0, {vocab})")


def _decode(s: _Server, ids: Sequence[int]) -> str:
    return b"".join(s.engine.token_bytes(i) for i in ids).decode("utf-8", errors="replace")


# --- responses -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Meta:
    id: str
    created: int
    model: str
    top: int
    logprobs: bool


async def _collect(job: Job, request: Request) -> tuple[list[Step], ReplyResult]:
    """Wait for a job's end; a client that goes away cancels it."""
    steps: list[Step] = []
    while True:
        try:
            event = await asyncio.wait_for(job.events.get(), DISCONNECT_POLL_S)
        except TimeoutError:
            if await request.is_disconnected():
                job.cancel.set()
            continue
        if isinstance(event, Step):
            steps.append(event)
        elif isinstance(event, Failed):
            raise api_error(event.error)
        else:
            return steps, _result_of(event, steps)


def _result_of(event: Finished, steps: list[Step]) -> ReplyResult:
    if event.result is not None:
        return event.result
    raise ApiError(503, "the request was cancelled before it started", type_="server_error")


async def _drain(job: Job) -> AsyncIterator[tuple[list[Step], Finished | Failed | None]]:
    """The job's events in batches: all the steps ready now, and the end when it came."""
    try:
        while True:
            batch: list[Step] = []
            event = await job.events.get()
            while True:
                if not isinstance(event, Step):
                    yield batch, event
                    return
                batch.append(event)
                if job.events.empty():
                    break
                event = job.events.get_nowait()
            yield batch, None
    finally:
        job.cancel.set()  # the client went away (or we are done: then it is a no-op)


def _sse(chunks: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        async for chunk in chunks:
            yield "data: " + json.dumps(chunk, ensure_ascii=False) + "\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(
        lines(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _chat_logprobs(s: _Server, meta: _Meta, steps: Sequence[Step]) -> dict[str, Any] | None:
    if not meta.logprobs:
        return None
    return shapes.chat_logprobs(steps, meta.top, s.engine.token_bytes)


def _chat_response(
    s: _Server, meta: _Meta, steps: list[Step], result: ReplyResult
) -> dict[str, Any]:
    return {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.summary.text},
                "logprobs": _chat_logprobs(s, meta, result.steps),
                "finish_reason": shapes.finish_reason(result.summary.finish_reason),
            }
        ],
        "usage": shapes.usage(result.summary),
        "system_fingerprint": None,
    }


async def _chat_stream(
    s: _Server, job: Job, meta: _Meta, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], logprobs: Any, finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {
            "id": meta.id,
            "object": "chat.completion.chunk",
            "created": meta.created,
            "model": meta.model,
            "choices": [choice],
        }

    yield chunk({"role": "assistant", "content": ""}, None, None)
    async for steps, end in _drain(job):
        if steps:
            text = "".join(step.text for step in steps)
            yield chunk({"content": text}, _chat_logprobs(s, meta, steps), None)
        if isinstance(end, Failed):
            yield api_error(end.error).response_body()
        elif isinstance(end, Finished) and end.result is not None:
            reason = shapes.finish_reason(end.result.summary.finish_reason)
            yield chunk({}, None, reason)
            if include_usage:
                yield {
                    "id": meta.id,
                    "object": "chat.completion.chunk",
                    "created": meta.created,
                    "model": meta.model,
                    "choices": [],
                    "usage": shapes.usage(end.result.summary),
                }


def _legacy_logprobs(
    s: _Server, meta: _Meta, steps: Sequence[Step], offset: int
) -> dict[str, Any] | None:
    if not meta.logprobs:
        return None
    return shapes.legacy_logprobs(steps, meta.top, s.engine.token_bytes, offset)


def _completion_response(
    s: _Server, meta: _Meta, steps: list[Step], result: ReplyResult, echo: str
) -> dict[str, Any]:
    return {
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [
            {
                "index": 0,
                "text": echo + result.summary.text,
                "logprobs": _legacy_logprobs(s, meta, result.steps, len(echo)),
                "finish_reason": shapes.finish_reason(result.summary.finish_reason),
            }
        ],
        "usage": shapes.usage(result.summary),
    }


async def _completion_stream(
    s: _Server, job: Job, meta: _Meta, include_usage: bool, echo: str
) -> AsyncIterator[dict[str, Any]]:
    def chunk(text: str, logprobs: Any, finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}
        return {
            "id": meta.id,
            "object": "text_completion",
            "created": meta.created,
            "model": meta.model,
            "choices": [choice],
        }

    offset = len(echo)
    if echo:
        yield chunk(echo, None, None)
    async for steps, end in _drain(job):
        if steps:
            text = "".join(step.text for step in steps)
            yield chunk(text, _legacy_logprobs(s, meta, steps, offset), None)
            offset += len(text)
        if isinstance(end, Failed):
            yield api_error(end.error).response_body()
        elif isinstance(end, Finished) and end.result is not None:
            yield chunk("", None, shapes.finish_reason(end.result.summary.finish_reason))
            if include_usage:
                usage_chunk = chunk("", None, None)
                usage_chunk["choices"] = []
                usage_chunk["usage"] = shapes.usage(end.result.summary)
                yield usage_chunk
