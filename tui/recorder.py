"""The hook sessions plug into: the screen reports completed messages here.

`NullRecorder` keeps nothing; the sessions UI (issue 6) supplies a recorder
over `engine.store.SessionStore` that commits each message as it completes.
"""

from __future__ import annotations

from typing import Protocol

from engine.params import SamplingParams
from tui.backend import ModelFacts
from tui.conversation import Alternative, Turn
from tui.settings import UISettings


class Recorder(Protocol):
    def model_loaded(self, facts: ModelFacts) -> None: ...

    def message_completed(
        self, turn: Turn, settings: UISettings, params: SamplingParams
    ) -> None: ...

    def alternative_added(self, turn: Turn, alternative: Alternative) -> None: ...


class NullRecorder:
    def model_loaded(self, facts: ModelFacts) -> None:
        pass

    def message_completed(self, turn: Turn, settings: UISettings, params: SamplingParams) -> None:
        pass

    def alternative_added(self, turn: Turn, alternative: Alternative) -> None:
        pass
