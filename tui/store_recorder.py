"""`StoreRecorder`: every chat is a session, every completed message committed as it completes.

Writes go to one background writer thread, in order, so the event loop never
waits on SQLite (a 256-token reply with its candidates is ~15 ms with
``synchronous=FULL``; a long one more). The screen decides *what* to write on
its own thread, from snapshots of its turns; the writer only talks to the
store and posts `SessionSaved` / `SessionSaveFailed` back.

Branching: the reply tree is written whole (`SessionStore.rewrite_last_assistant`)
when a branch completes, or is switched to or deleted. A reply (or branch) still
being decoded is checkpointed once a second as `cancelled`: mid-branch that is the
tree with the branch so far as its current path and every older path kept, so a
native crash loses at most the last second and never an older branch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from textual.message import Message

from engine.errors import LogitlabError, StoreError
from engine.model import ModelDescription
from engine.params import SamplingParams
from engine.sessions import ModelRecord, Session, SessionMessage, SessionSettings, SessionStore
from tui.conversation import Turn, message_from_turn
from tui.crash import logged
from tui.messages import SessionSaved, SessionSaveFailed
from tui.settings import UISettings

FLUSH_TIMEOUT = 30.0


class StoreRecorder:
    def __init__(self, store: SessionStore | None, *, problem: str = "") -> None:
        self.store = store
        self.problem = "" if store is not None else (problem or "no session store")
        self._post: Callable[[Message], object] = lambda _m: None
        self._facts: ModelDescription | None = None
        self._stored: list[Turn] = []  # turns committed to the current session (UI thread)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logitlab-store")
        # writer-thread state: touched only by jobs running on the writer
        self._session_id: str | None = None
        self._model: ModelRecord | None = None
        self._settings: SessionSettings | None = None
        self._draft = ""  # the draft the store holds for the current session

    @classmethod
    def open_default(cls) -> StoreRecorder:
        """Over the user's store; a database from a newer logitlab leaves sessions off."""
        try:
            return cls(SessionStore.open_default())
        except StoreError as exc:
            return cls(None, problem=str(exc))

    # --- the Recorder protocol (UI thread) ----------------------------------------------

    def attach(self, post: Callable[[Message], object]) -> None:
        self._post = post

    def notes(self) -> list[tuple[str, str]]:
        if self.store is None:
            return [(f"Sessions are not saved in this run: {self.problem}", "error")]
        if self.store.recovered_from is not None:
            return [
                (
                    "The session database was unreadable; it was moved to "
                    f"{self.store.recovered_from} and a new one was started.",
                    "warning",
                )
            ]
        return []

    def model_loaded(self, facts: ModelDescription) -> None:
        # the session's model is updated with its next write: a session that is only
        # looked at under another model keeps the model that produced it
        self._facts = facts

    def message_completed(
        self, turn: Turn, settings: UISettings, params: SamplingParams, *, checkpoint: bool = False
    ) -> None:
        if self.store is None or self._facts is None:
            return
        replace_last = turn.role == "assistant" and any(t is turn for t in self._stored)
        if not replace_last:
            self._stored.append(turn)
        message = message_from_turn(turn)
        if checkpoint and message.finish_reason is None:
            message = replace(message, finish_reason="cancelled")  # what a crash now leaves
        wanted = SessionSettings(settings.system_prompt, params)
        record = ModelRecord.from_description(self._facts)
        self._submit(lambda: self._commit(message, replace_last, wanted, record))

    def settings_changed(self, settings: UISettings, params: SamplingParams) -> None:
        if self.store is None:
            return
        wanted = SessionSettings(settings.system_prompt, params)
        self._submit(lambda: self._sync_settings(wanted))

    def draft_changed(self, draft: str, settings: UISettings, params: SamplingParams) -> None:
        if self.store is None or self._facts is None:
            return
        wanted = SessionSettings(settings.system_prompt, params)
        record = ModelRecord.from_description(self._facts)
        self._submit(lambda: self._write_draft(draft, wanted, record))

    def comparison_made(self, turn: Turn, data: Mapping[str, Any]) -> None:
        if self.store is None or not any(t is turn for t in self._stored):
            return
        index = next(i for i, t in enumerate(self._stored) if t is turn)
        self._submit(lambda: self._add_comparison(index, data))

    def _add_comparison(self, index: int, data: Mapping[str, Any]) -> None:
        """Keep `data` with the stored message of turn `index` (a system message, which
        the screen holds as a setting, is not a turn)."""
        store, sid = self.store, self._session_id
        if store is None or sid is None:
            return
        messages = [m for m in store.get(sid).messages if m.role != "system"]
        message = messages[index] if index < len(messages) else None
        if message is None or message.id is None:
            return
        store.add_comparison(sid, message.id, data)
        self._post(SessionSaved(sid))

    def new_session(self) -> None:
        self._stored = []
        self._submit(self._reset)

    def resume(self, session: Session, turns: Sequence[Turn]) -> None:
        self._stored = list(turns)

        def job() -> None:
            self._session_id, self._model, self._settings = (
                session.id,
                session.model,
                session.settings,
            )
            self._draft = session.draft

        self._submit(job)

    def current_session_id(self) -> str | None:
        """Blocks until pending writes are done: call it from a worker thread."""
        self.flush()
        return self._session_id

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> None:
        """Wait for every write submitted so far (workers and tests)."""
        self._writer.submit(lambda: None).result(timeout)

    def close(self) -> None:
        """Finish pending writes, then close the store."""
        self._writer.shutdown(wait=True)
        if self.store is not None:
            self.store.close()

    # --- the writer thread --------------------------------------------------------------

    def _submit(self, job: Callable[[], None]) -> None:
        self._writer.submit(self._guarded, job)

    def _guarded(self, job: Callable[[], None]) -> None:
        try:
            job()
        except (LogitlabError, sqlite3.Error, OSError) as exc:
            self._post(SessionSaveFailed(str(exc)))
        except Exception as exc:  # never kill the writer; say what happened, log the rest
            self._post(SessionSaveFailed(logged(exc, "saving the session")))

    def _reset(self) -> None:
        self._session_id = self._model = self._settings = None
        self._draft = ""

    def _commit(
        self,
        message: SessionMessage,
        replace_last: bool,
        settings: SessionSettings,
        model: ModelRecord,
    ) -> None:
        store = self.store
        assert store is not None
        sid = self._ensure_session(model, settings)
        if replace_last:
            store.rewrite_last_assistant(sid, message)
        else:
            store.append_message(sid, message)
            if message.role == "user" and self._draft:  # the draft was sent
                store.set_draft(sid, "")
                self._draft = ""
        self._post(SessionSaved(sid))

    def _write_draft(self, draft: str, settings: SessionSettings, model: ModelRecord) -> None:
        if draft == self._draft or (self._session_id is None and not draft.strip()):
            return
        assert self.store is not None
        # an existing session keeps its model and settings: typing is not a reply
        created = self._session_id is None
        sid = self._ensure_session(model, settings) if created else self._session_id
        assert sid is not None
        self.store.set_draft(sid, draft)
        self._draft = draft
        if created:
            self._post(SessionSaved(sid))

    def _ensure_session(self, model: ModelRecord, settings: SessionSettings) -> str:
        """The current session's id, creating it with the first write; model and settings
        brought up to date."""
        store = self.store
        assert store is not None
        if self._session_id is None:
            session = store.create(model, settings)
            self._session_id, self._model, self._settings = session.id, model, settings
        sid = self._session_id
        if model != self._model:
            store.update_model(sid, model)
            self._model = model
        self._sync_settings(settings)
        return sid

    def _sync_settings(self, settings: SessionSettings) -> None:
        if self._session_id is None or self.store is None or settings == self._settings:
            return
        self.store.update_settings(self._session_id, settings)
        self._settings = settings
