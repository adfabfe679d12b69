"""Past-tense events workers post to screens: the only bridge from engine to UI."""

from __future__ import annotations

from textual.message import Message

from engine.decode import PromptView
from engine.model import LensResult, ModelDescription
from engine.records import GenerationSummary, PromptScores, Proposal, Step, TokenProbe
from engine.sessions import Session, SessionSummary


class LoadProgressed(Message):
    """The engine reported a loading stage."""

    def __init__(self, stage: str, fraction: float, detail: str) -> None:
        super().__init__()
        self.stage, self.fraction, self.detail = stage, fraction, detail

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LoadProgressed)


class ModelLoaded(Message):
    def __init__(self, facts: ModelDescription) -> None:
        super().__init__()
        self.facts = facts


class ModelLoadFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class PromptRendered(Message):
    def __init__(self, view: PromptView) -> None:
        super().__init__()
        self.view = view


class GenerationStarted(Message):
    """The prompt was prefilled; steps follow."""

    def __init__(self, prompt_tokens: int, prefill_ms: float) -> None:
        super().__init__()
        self.prompt_tokens, self.prefill_ms = prompt_tokens, prefill_ms


class StepsDecoded(Message):
    """A batch of steps (one message per ~30 ms, not per token)."""

    def __init__(self, steps: tuple[Step, ...]) -> None:
        super().__init__()
        self.steps = steps


class ProposalReady(Message):
    """Step-through mode: the next-token candidates, waiting for a choice."""

    def __init__(self, proposal: Proposal) -> None:
        super().__init__()
        self.proposal = proposal


class GenerationFinished(Message):
    def __init__(self, finish_reason: str, summary: GenerationSummary | None) -> None:
        super().__init__()
        self.finish_reason, self.summary = finish_reason, summary


class GenerationFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


# --- sessions -------------------------------------------------------------------------


class SessionSaved(Message):
    """The store committed a message (or settings) to the session `session_id`."""

    def __init__(self, session_id: str) -> None:
        super().__init__()
        self.session_id = session_id


class SessionSaveFailed(Message):
    """A store write failed; the chat goes on, the message is not saved."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class SessionLoaded(Message):
    """A stored (or just imported) session was read and should be shown."""

    def __init__(self, session: Session, *, imported: bool = False) -> None:
        super().__init__()
        self.session, self.imported = session, imported


class ExportReady(Message):
    """The current session, freshly read, ready for the export dialog."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session


class SessionActionFailed(Message):
    """Opening, exporting or importing a session failed; `error` says why."""

    def __init__(self, what: str, error: str) -> None:
        super().__init__()
        self.what, self.error = what, error


class SessionsListed(Message):
    """The browser's rows for the search it asked for."""

    def __init__(self, search: str, summaries: list[SessionSummary]) -> None:
        super().__init__()
        self.search, self.summaries = search, summaries

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SessionsListed)


class LensComputed(Message):
    """The layer lens for `key` (ids, position, target) is ready."""

    def __init__(self, key: tuple[object, ...], label: str, result: LensResult) -> None:
        super().__init__()
        self.key, self.label, self.result = key, label, result


class LensFailed(Message):
    """The layer lens for `key` could not be computed (one line)."""

    def __init__(self, key: tuple[object, ...], label: str, error: str) -> None:
        super().__init__()
        self.key, self.label, self.error = key, label, error


class BranchDecoded(Message):
    """A fanned-out continuation finished (or was cancelled): it becomes a branch."""

    def __init__(self, steps: tuple[Step, ...], finish_reason: str, seed: int) -> None:
        self.steps, self.finish_reason, self.seed = steps, finish_reason, seed
        super().__init__()


class FanOutProgressed(Message):
    """Continuation `index` of `total` (seed `seed`) has `tokens` tokens so far."""

    def __init__(self, index: int, total: int, tokens: int, seed: int) -> None:
        self.index, self.total, self.tokens, self.seed = index, total, tokens, seed
        super().__init__()


class FanOutFinished(Message):
    def __init__(self, made: int, cancelled: bool) -> None:
        self.made, self.cancelled = made, cancelled
        super().__init__()


class ContextCounted(Message):
    """How many tokens of the context window the chat as shown takes."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        super().__init__()


class TokenProbed(Message):
    """A looked-up token's numbers at the step `key` names (ids, token) are ready."""

    def __init__(self, key: tuple[object, ...], label: str, probe: TokenProbe) -> None:
        super().__init__()
        self.key, self.label, self.probe = key, label, probe


class PromptScored(Message):
    """The prompt's surprisal (teacher-forced scores) is ready."""

    def __init__(self, scores: PromptScores) -> None:
        super().__init__()
        self.scores = scores


class ProbeFailed(Message):
    """A token look-up or the prompt's scoring could not be done (one line);
    `what` is "lookup" or "surprisal", `key` the request it answers."""

    def __init__(self, what: str, key: tuple[object, ...], error: str) -> None:
        super().__init__()
        self.what, self.key, self.error = what, key, error
