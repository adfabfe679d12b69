"""What the routes share: the engine, its description, the scheduler (the FIFO, or the
continuous batch on transformers: engine/serve/batching.py) and the recorder
(`ServerState`), and how a request's fields become a prompt, sampling params and a
`Job`, refused with the OpenAI error shape when they cannot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from engine.decode.protocol import Engine, prompt_scoring
from engine.errors import FeatureUnavailableError, InvalidParameterError
from engine.model.description import ModelDescription
from engine.params import SamplingParams, resolve_sampling
from engine.serve.batching import make_scheduler
from engine.serve.errors import ApiError
from engine.serve.queue import Finished, Job, QueueFullError
from engine.serve.recorder import Recorder
from engine.serve.schemas import (
    MAX_BATCH,
    MAX_TOP_LOGPROBS,
    ChatCompletionRequest,
    ChatMessageIn,
    sampling_overrides,
)
from engine.sessions import SessionStore
from engine.tokens.chat import ChatMessage

RECORDED_CANDIDATES = 5  # candidates kept per token in a recorded session, asked or not


class ServerState:
    """The state behind the routes: the engine, its description, the queue, the recorder."""

    def __init__(
        self,
        engine: Engine,
        model: ModelDescription,
        store: SessionStore | None,
        *,
        record: bool,
        max_queue: int,
        max_batch: int = 1,
    ) -> None:
        self.engine, self.model = engine, model
        self.name = model.model_id
        self.created = int(time.time())
        self.scheduler = make_scheduler(engine, max_queue, max_batch)
        recorder = (
            Recorder(store, model, engine.token_bytes) if record and store is not None else None
        )
        self.recorder = recorder

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

    def kept(self, asked: int) -> int:
        """Candidates the decode records: what was asked, and a few more for the session."""
        return max(asked, RECORDED_CANDIDATES) if self.recorder is not None else asked

    def check_length(self, ids: Sequence[int], param: str, room: int = 1) -> None:
        """The prompt fits the context window with `room` tokens to spare (0: scored only)."""
        if not ids:
            raise ApiError(400, f"{param}: the prompt is empty", param=param)
        window = self.model.context_window
        if len(ids) > window - room:
            raise ApiError(
                400,
                f"the prompt is {len(ids)} tokens but the model's context window is {window}; "
                f"shorten it to at most {window - room} tokens",
                param=param,
                code="context_length_exceeded",
            )

    def check_scoring(self, param: str) -> None:
        """400 in one line where this engine cannot score a prompt."""
        try:
            prompt_scoring(self.engine)
        except FeatureUnavailableError as exc:
            raise ApiError(400, f"{param}: {exc.message}", param=param, code="unsupported") from exc

    def submit(
        self,
        ids: Sequence[int],
        params: SamplingParams,
        messages: list[ChatMessage],
        *,
        score_top: int | None = None,
        generate: bool = True,
    ) -> Job:
        """Queue a job: generate (`params`), after scoring the prompt with `score_top`
        candidates when asked; `generate` False: score only."""
        recorder = self.recorder

        def record(finished: Finished) -> None:
            if recorder is not None and finished.result is not None:
                recorder.record(params, messages, finished.result, ids, finished.scores)

        loop = asyncio.get_running_loop()
        job = Job(ids, params, loop, on_result=record, score_top=score_top, generate=generate)
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

    # --- prompts and ids ------------------------------------------------------------------

    def completion_prompts(self, prompt: Any) -> list[tuple[list[int], str]]:
        """A legacy prompt as (ids, text) per prompt: text, a list of token ids, or a
        batch (a list of texts, a list of id lists: lm-eval sends these)."""
        if isinstance(prompt, str) or (prompt and all(isinstance(p, int) for p in prompt)):
            return [self._one_prompt(prompt)]
        if not prompt:
            raise InvalidParameterError("prompt", "is empty")
        if len(prompt) > MAX_BATCH:
            raise InvalidParameterError(
                "prompt", f"holds {len(prompt)} prompts; send at most {MAX_BATCH} at once"
            )
        return [self._one_prompt(p) for p in prompt]

    def _one_prompt(self, prompt: str | list[int]) -> tuple[list[int], str]:
        if isinstance(prompt, str):
            return self.engine.encode(prompt), prompt
        ids = [int(p) for p in prompt]
        self.check_ids(ids, "prompt")
        return ids, self.decode(ids)

    def check_ids(self, ids: Sequence[int], param: str) -> None:
        vocab = int(self.model.config.get("vocab_size") or 0)
        bad = next((i for i in ids if i < 0 or (vocab and i >= vocab)), None)
        if bad is not None:
            raise InvalidParameterError(param, f"token id {bad} is not in [0, {vocab})")

    def decode(self, ids: Sequence[int]) -> str:
        return b"".join(self.engine.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def model_card(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "object": "model",
            "created": self.created,
            "owned_by": "logitlab",
            "root": self.name,
            "max_model_len": self.model.context_window,
            "context_window": self.model.context_window,
        }


def chat_top_logprobs(body: ChatCompletionRequest) -> int:
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


def chat_messages(messages: Sequence[ChatMessageIn]) -> list[ChatMessage]:
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
