"""The hook sessions plug into: the screen reports what happened, a recorder keeps it.

The screen calls these on its own thread as things complete; a recorder must
not block it. `NullRecorder` keeps nothing (tests, or sessions switched off);
`tui.store_recorder.StoreRecorder` commits each message to the SQLite store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from textual.message import Message

from engine.model import ModelDescription
from engine.params import SamplingParams
from tui.conversation import Turn
from tui.settings import UISettings

if TYPE_CHECKING:
    from engine.sessions import Session, SessionStore

Post = Callable[[Message], object]


class Recorder(Protocol):
    #: the store behind the recorder, None when sessions are off in this run
    store: SessionStore | None
    #: why sessions are off when they should be on ("" otherwise)
    problem: str

    def attach(self, post: Post) -> None:
        """Where to post `SessionSaved` / `SessionSaveFailed` (thread-safe)."""
        ...

    def notes(self) -> list[tuple[str, str]]:
        """(message, severity) to show once at start: recovered or refused databases."""
        ...

    def model_loaded(self, facts: ModelDescription) -> None: ...

    def message_completed(
        self, turn: Turn, settings: UISettings, params: SamplingParams, *, checkpoint: bool = False
    ) -> None:
        """Commit `turn`. ``checkpoint``: a reply still being decoded, saved as far as it
        has come (as ``cancelled``, which it is if the process dies now); its completion
        replaces it."""
        ...

    def settings_changed(self, settings: UISettings, params: SamplingParams) -> None: ...

    def draft_changed(self, draft: str, settings: UISettings, params: SamplingParams) -> None:
        """The unsent text of the message box, kept in the session (one is started for a
        non-empty draft), so that neither a crash nor a quit loses what was typed."""
        ...

    def comparison_made(self, turn: Turn, data: Mapping[str, Any]) -> None:
        """Keep a comparison of the reply `turn` (`Comparison.to_json(extended=True)`)."""
        ...

    def new_session(self) -> None:
        """Forget the current session: the next message starts a new one."""
        ...

    def resume(self, session: Session, turns: Sequence[Turn]) -> None:
        """Record into an opened session; `turns` are its messages as the screen holds them."""
        ...

    def current_session_id(self) -> str | None:
        """The session being recorded into, after pending writes (call from a worker)."""
        ...

    def close(self) -> None: ...


class NullRecorder:
    store: SessionStore | None = None
    problem = ""  # nothing to report: not saving is what was asked for

    def attach(self, post: Post) -> None:
        pass

    def notes(self) -> list[tuple[str, str]]:
        return []

    def model_loaded(self, facts: ModelDescription) -> None:
        pass

    def message_completed(
        self, turn: Turn, settings: UISettings, params: SamplingParams, *, checkpoint: bool = False
    ) -> None:
        pass

    def settings_changed(self, settings: UISettings, params: SamplingParams) -> None:
        pass

    def draft_changed(self, draft: str, settings: UISettings, params: SamplingParams) -> None:
        pass

    def comparison_made(self, turn: Turn, data: Mapping[str, Any]) -> None:
        pass

    def new_session(self) -> None:
        pass

    def resume(self, session: Session, turns: Sequence[Turn]) -> None:
        pass

    def current_session_id(self) -> str | None:
        return None

    def close(self) -> None:
        pass
