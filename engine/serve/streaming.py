"""A job's events as a response: collected whole, or streamed as server-sent events.

The worker hands steps to the request's queue (engine/serve/queue.py); these read
it on the event loop, and a client that goes away cancels its job. The bodies are
`openai_shapes`'; one stream loop serves chat and legacy completions.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from engine.decode.run import ReplyResult
from engine.records import Step, TokenScore
from engine.serve import openai_shapes as shapes
from engine.serve.errors import ApiError, api_error
from engine.serve.openai_shapes import BytesOf, ResponseMeta
from engine.serve.prompt_scores import echo_logprobs
from engine.serve.queue import Failed, Finished, Job, Scored

DISCONNECT_POLL_S = 0.25


@dataclass(frozen=True)
class Done:
    """A job that ran: its reply (empty when it only scored) and the prompt's scores."""

    result: ReplyResult
    scores: tuple[TokenScore, ...] | None = None


async def collect(job: Job, request: Request) -> Done:
    """Wait for a job's end: its result and, for a scoring job, the prompt's scores;
    a client that goes away cancels it."""
    while True:
        try:
            event = await asyncio.wait_for(job.events.get(), DISCONNECT_POLL_S)
        except TimeoutError:
            if await request.is_disconnected():
                job.cancel.set()
            continue
        if isinstance(event, Step | Scored):
            continue  # the end holds every step and the scores
        if isinstance(event, Failed):
            raise api_error(event.error)
        if event.result is None:
            raise ApiError(503, "the request was cancelled before it started", type_="server_error")
        return Done(event.result, event.scores)


Mark = Scored | Finished | Failed | None


async def _drain(job: Job) -> AsyncIterator[tuple[list[Step], Mark]]:
    """The job's events in batches: all the steps ready now, then the event that
    followed them (the prompt's scores, or the end, after which it stops)."""
    try:
        while True:
            batch: list[Step] = []
            event = await job.events.get()
            while True:
                if isinstance(event, Scored):
                    yield batch, event
                    break
                if not isinstance(event, Step):
                    yield batch, event
                    return
                batch.append(event)
                if job.events.empty():
                    yield batch, None
                    break
                event = job.events.get_nowait()
    finally:
        job.cancel.set()  # the client went away (or we are done: then it is a no-op)


def sse(chunks: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        async for chunk in chunks:
            yield "data: " + json.dumps(chunk, ensure_ascii=False) + "\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(
        lines(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def stream(
    job: Job, meta: ResponseMeta, bytes_of: BytesOf, include_usage: bool, echo: str = ""
) -> AsyncIterator[dict[str, Any]]:
    """The chunks of a streamed response: chat opens with the role, legacy with the
    echoed prompt (with its scores when the job scores it: ``echo`` + ``logprobs``, as
    vLLM streams it); then the steps as they come, the finish and (if asked) the usage."""
    if meta.chat:
        yield shapes.first_chunk(meta)
    elif echo and job.score_top is None:
        yield shapes.chunk(meta, echo)
    offset = len(echo)
    async for steps, end in _drain(job):
        if isinstance(end, Scored):
            logprobs = echo_logprobs(job.prompt_ids, end.scores, meta.top, bytes_of)
            yield shapes.chunk(meta, echo, logprobs)
            continue
        if steps:
            text = "".join(step.text for step in steps)
            yield shapes.chunk(meta, text, shapes.step_logprobs(meta, steps, bytes_of, offset))
            offset += len(text)
        if isinstance(end, Failed):
            yield api_error(end.error).response_body()
        elif isinstance(end, Finished) and end.result is not None:
            summary = end.result.summary
            yield shapes.chunk(meta, None, None, shapes.finish_reason(summary.finish_reason))
            if include_usage:
                yield shapes.usage_chunk(meta, summary)
