"""Served requests stored as sessions, committed one by one off the decode thread.

Each finished request becomes one session (`engine.sessions.save_reply`): the
messages it answered (a legacy prompt as one user message), the sampling
settings it asked for, and every token with its candidates. The store has no
tags, so "served" is a title prefix (``[served] ``): `logitlab sessions list`
shows it and its search finds it. Writes run on one background thread so a
slow disk never holds up the next request's decode; `close` waits for them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from engine.decode.run import ReplyResult
from engine.errors import LogitlabError
from engine.model.description import ModelDescription
from engine.params import SamplingParams
from engine.sessions import SessionStore, default_title, save_reply
from engine.tokens.chat import ChatMessage

SERVED_PREFIX = "[served] "
log = logging.getLogger("logitlab.serve")


class Recorder:
    """Stores each completed request in `store` as a ``[served]`` session."""

    def __init__(self, store: SessionStore, model: ModelDescription) -> None:
        self._store, self._model = store, model
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logitlab-record")

    def record(
        self, params: SamplingParams, messages: Sequence[ChatMessage], result: ReplyResult
    ) -> None:
        self._writer.submit(self._save, params, list(messages), result)

    def _save(
        self, params: SamplingParams, messages: list[ChatMessage], result: ReplyResult
    ) -> None:
        first_user = next((m.content for m in messages if m.role == "user"), "")
        title = SERVED_PREFIX + (default_title(first_user) or "(empty)")
        try:
            save_reply(self._store, self._model, params, messages, result, title)
        except LogitlabError as exc:  # a full disk must not take the server down
            log.warning("could not record a served request: %s", exc)

    def close(self) -> None:
        """Commit what is pending, then close the store."""
        self._writer.shutdown(wait=True)
        self._store.close()
