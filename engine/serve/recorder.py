"""Served requests stored as sessions, committed one by one off the decode thread.

Each finished request becomes one session (`engine.sessions.save_reply`): the
messages it answered (a legacy prompt as one user message), the sampling
settings it asked for, and every token with its candidates. The store has no
tags, so "served" is a title prefix (``[served] ``): `logitlab sessions list`
shows it and its search finds it. Writes run on one background thread so a
slow disk never holds up the next request's decode; `close` waits for them.

A request that scored its prompt (``echo`` + ``logprobs``, ``prompt_logprobs``) keeps
the scores on the prompt's (last) user message as teacher-forced steps (positions
1.., ``forced``), in the export's ``logprobs.content`` of that message: no new field,
so older readers load it as before. A score-only request (``max_tokens: 0``) has no
assistant message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from engine.decode.run import ReplyResult
from engine.errors import LogitlabError
from engine.model.description import ModelDescription
from engine.params import SamplingParams
from engine.records import Step, TokenScore
from engine.serve.openai_shapes import BytesOf
from engine.serve.prompt_scores import prompt_steps
from engine.sessions import (
    ModelRecord,
    SessionMessage,
    SessionSettings,
    SessionStore,
    default_title,
    reply_from_steps,
    save_generation,
    save_reply,
    utc_now,
)
from engine.tokens.chat import ChatMessage

SERVED_PREFIX = "[served] "
log = logging.getLogger("logitlab.serve")


class Recorder:
    """Stores each completed request in `store` as a ``[served]`` session."""

    def __init__(self, store: SessionStore, model: ModelDescription, bytes_of: BytesOf) -> None:
        self._store, self._model, self._bytes_of = store, model, bytes_of
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logitlab-record")

    def record(
        self,
        params: SamplingParams,
        messages: Sequence[ChatMessage],
        result: ReplyResult,
        prompt_ids: Sequence[int] = (),
        scores: Sequence[TokenScore] | None = None,
    ) -> None:
        """Queue the write. Called on the thread that drove the engine (its token bytes
        are read here, not on the writer thread)."""
        steps = None if scores is None else prompt_steps(prompt_ids, scores, self._bytes_of)
        self._writer.submit(self._save, params, list(messages), result, steps)

    def _save(
        self,
        params: SamplingParams,
        messages: list[ChatMessage],
        result: ReplyResult,
        prompt: tuple[Step, ...] | None,
    ) -> None:
        first_user = next((m.content for m in messages if m.role == "user"), "")
        title = SERVED_PREFIX + (default_title(first_user) or "(empty)")
        try:
            if prompt is None:
                save_reply(self._store, self._model, params, messages, result, title)
            else:
                self._save_scored(params, messages, result, prompt, title)
        except LogitlabError as exc:  # a full disk must not take the server down
            log.warning("could not record a served request: %s", exc)

    def _save_scored(
        self,
        params: SamplingParams,
        messages: list[ChatMessage],
        result: ReplyResult,
        prompt: tuple[Step, ...],
        title: str,
    ) -> None:
        system = next((m.content for m in messages if m.role == "system"), "")
        stored = [
            SessionMessage(m.role, m.content, utc_now()) for m in messages if m.role != "system"
        ]
        last_user = max((i for i, m in enumerate(stored) if m.role == "user"), default=None)
        if last_user is not None:
            stored[last_user] = replace(stored[last_user], steps=prompt)
        if result.steps:
            stored.append(reply_from_steps(result.steps, result.summary.finish_reason))
        settings = SessionSettings(system_prompt=system, sampling=params)
        model = ModelRecord.from_description(self._model)
        save_generation(self._store, model, settings, stored, title)

    def close(self) -> None:
        """Commit what is pending, then close the store."""
        self._writer.shutdown(wait=True)
        self._store.close()
