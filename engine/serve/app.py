"""The FastAPI app: OpenAI-compatible endpoints over one loaded `Engine`.

`create_app(engine, model, options, store)` wires the routes, the error shape,
the guards (body limit, API key, optional CORS), the FIFO `Scheduler` and the
session `Recorder`. This module is the routes only: request parsing and the
shared state are engine/serve/state.py, the response bodies openai_shapes.py,
waiting on a job and streaming it streaming.py. Every request renders / encodes its prompt and checks it
against the context window on the event loop (fast, tokenizer only), then waits
its turn in the FIFO; the decode itself is the workbench's (`Engine.start_ids`,
`Reply.step`), so served numbers equal `logitlab generate`'s. Prompt scoring
(``echo`` + ``logprobs``, ``prompt_logprobs``, ``max_tokens: 0``) is the engine's
`PromptScoring.score` in the same FIFO (engine/serve/completions.py), so served
scores equal `logitlab score`'s.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware

from engine.decode.protocol import Engine
from engine.errors import InvalidParameterError
from engine.model.description import ModelDescription
from engine.serve import openai_shapes as shapes
from engine.serve.completions import completion_body, prompt_fields, scoring
from engine.serve.errors import ApiError, Guard, install_handlers
from engine.serve.openai_shapes import ResponseMeta
from engine.serve.queue import Job
from engine.serve.schemas import (
    MAX_TOP_LOGPROBS,
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
    refuse_unsupported,
)
from engine.serve.state import ServerState, chat_messages, chat_top_logprobs
from engine.serve.streaming import collect, sse, stream
from engine.sessions import SessionStore
from engine.tokens.chat import ChatMessage


@dataclass(frozen=True)
class ServeOptions:
    """What `logitlab serve` decides beyond the model."""

    api_key: str | None = None
    record: bool = True
    max_queue: int = 64
    max_batch: int = 1  # replies decoded together (transformers, llama.cpp); 1: the FIFO
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 1 << 20


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
    server = ServerState(
        engine, model, store, record=options.record, max_queue=options.max_queue,
        max_batch=options.max_batch,
    )  # fmt: skip
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


def _meta(s: ServerState, prefix: str, top: int, logprobs: bool, *, chat: bool) -> ResponseMeta:
    return ResponseMeta(prefix + uuid.uuid4().hex, int(time.time()), s.name, top, logprobs, chat)


def _routes(app: FastAPI, s: ServerState) -> None:
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": s.name, "waiting": s.scheduler.waiting}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [s.model_card()]}

    @app.get("/v1/models/{name:path}")
    async def model(name: str) -> dict[str, Any]:
        s.check_model(name)
        return s.model_card()

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatCompletionRequest, request: Request) -> Any:
        s.check_model(body.model)
        refuse_unsupported(body)
        top = chat_top_logprobs(body)
        messages = chat_messages(body.messages)
        asked = body.max_completion_tokens
        max_tokens = asked if asked is not None else body.max_tokens
        how = scoring(body, max_tokens, None)
        if how.top is not None:
            s.check_scoring(how.param)
        params = s.params(body, max_tokens or None, s.kept(top))
        ids = s.engine.render_prompt(messages).ids
        s.check_length(ids, "messages", room=1 if how.generate else 0)
        job = s.submit(ids, params, messages, score_top=how.top, generate=how.generate)
        meta = _meta(s, "chatcmpl-", top, bool(body.logprobs), chat=True)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return sse(stream(job, meta, s.engine.token_bytes, include_usage))
        done = await collect(job, request)
        bytes_of = s.engine.token_bytes
        answer = shapes.response(meta, done.result.summary, done.result.steps, bytes_of)
        return {**answer, **prompt_fields(ids, done, how, bytes_of)}

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        s.check_model(body.model)
        refuse_unsupported(body)
        if body.suffix:
            raise InvalidParameterError("suffix", "is not supported")
        top = body.logprobs
        if top is not None and not 0 <= top <= MAX_TOP_LOGPROBS:
            raise InvalidParameterError("logprobs", f"must be in [0, {MAX_TOP_LOGPROBS}]")
        how = scoring(body, body.max_tokens, top if body.echo else None)
        if how.top is not None:
            s.check_scoring(how.param)
        prompts = s.completion_prompts(body.prompt)
        if body.stream and len(prompts) > 1:
            raise InvalidParameterError("prompt", "stream one prompt at a time")
        params = s.params(body, body.max_tokens or None, s.kept(top or 0))
        for ids, _text in prompts:
            s.check_length(ids, "prompt", room=1 if how.generate else 0)
        jobs: list[Job] = []
        try:
            for ids, text in prompts:
                message = [ChatMessage("user", text)]
                jobs.append(
                    s.submit(ids, params, message, score_top=how.top, generate=how.generate)
                )
        except ApiError:  # the queue filled up mid-batch: none of it runs
            for job in jobs:
                job.cancel.set()
            raise
        meta = _meta(s, "cmpl-", top or 0, top is not None, chat=False)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            echo = prompts[0][1] if body.echo else ""
            return sse(stream(jobs[0], meta, s.engine.token_bytes, include_usage, echo))
        try:
            ends = [await collect(job, request) for job in jobs]
        finally:
            for job in jobs:  # one failed, or the client left: the rest need not run
                job.cancel.set()
        return completion_body(meta, ends, prompts, how, body.echo, s.engine.token_bytes)

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        s.check_model(body.model)
        if (body.prompt is None) == (body.messages is None):
            raise InvalidParameterError("prompt", "give exactly one of prompt or messages")
        if body.messages is not None:
            ids = s.engine.render_prompt(chat_messages(body.messages)).ids
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
        s.check_ids(body.tokens, "tokens")
        return {"prompt": s.decode(body.tokens)}
