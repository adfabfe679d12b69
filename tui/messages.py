"""Past-tense events workers post to screens: the only bridge from engine to UI."""

from __future__ import annotations

from textual.message import Message

from engine.records import GenerationSummary, Proposal, Step
from tui.backend import ModelFacts, PromptView


class LoadProgressed(Message):
    """The engine reported a loading stage."""

    def __init__(self, stage: str, fraction: float, detail: str) -> None:
        super().__init__()
        self.stage, self.fraction, self.detail = stage, fraction, detail

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LoadProgressed)


class ModelLoaded(Message):
    def __init__(self, facts: ModelFacts) -> None:
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
