"""`engine.decode.ReplyDriver` without a UI: the events a front end sees for a free
reply, step mode (accept / force / continue), a branch resume, a fan-out, and the
one route every failure takes (`ReplyFailed`, exactly one terminal event)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from engine.decode import (
    BranchFinished,
    DriverEvent,
    FanOutFinished,
    PromptRendered,
    ProposalMade,
    ReplyDriver,
    ReplyFailed,
    ReplyFinished,
    ReplyStarted,
    StepDecoded,
)
from engine.errors import LogitlabError
from engine.params import SamplingParams
from engine.tokens import ChatMessage
from tests.fake_engine import FakeEngine

MESSAGES = [ChatMessage("user", "What is the capital of France?")]
TERMINAL = (ReplyFinished, ReplyFailed, FanOutFinished)


class Events(list[DriverEvent]):
    """The driver's events as they arrive; `wait_for` blocks until one matches."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()

    def __call__(self, event: DriverEvent) -> None:
        with self._cond:
            self.append(event)
            self._cond.notify_all()

    def wait_for(self, kind: type, count: int = 1) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.count_of(kind) >= count, timeout=5)

    def count_of(self, kind: type) -> int:
        return sum(isinstance(e, kind) for e in self)

    def of(self, kind: type) -> list[DriverEvent]:
        return [e for e in self if isinstance(e, kind)]


def _driver(engine: FakeEngine, events: Events, **kwargs: object) -> ReplyDriver:
    return ReplyDriver(engine, MESSAGES, SamplingParams(), on_event=events, **kwargs)  # type: ignore[arg-type]


def _in_thread(work: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_a_free_reply_renders_prefills_steps_and_finishes_once() -> None:
    events = Events()
    driver = _driver(FakeEngine(["Paris is nice."]), events)
    end = driver.run()
    kinds = [type(e) for e in events]
    assert kinds[:2] == [PromptRendered, ReplyStarted] and kinds[-1] is ReplyFinished
    assert end is events[-1] and isinstance(end, ReplyFinished) and end.finish_reason == "stop"
    steps = [e.step for e in events.of(StepDecoded)]  # type: ignore[attr-defined]
    assert "".join(s.text for s in steps) == "Paris is nice."
    assert driver.live == [s.token_id for s in steps] and not driver.active


def test_exact_prompt_ids_are_not_rendered() -> None:
    events = Events()
    driver = _driver(FakeEngine(["Hi."]), events, prompt_ids=[1, 2, 3])
    driver.run()
    assert not events.of(PromptRendered)
    assert events.of(ReplyStarted)[0].prompt_tokens == 3  # type: ignore[attr-defined]


def test_step_mode_waits_for_accept_force_and_continue() -> None:
    events = Events()
    driver = _driver(FakeEngine(["One two three four five."]), events, step_mode=True)
    worker = _in_thread(driver.run)
    events.wait_for(ProposalMade)
    assert driver.waiting
    driver.accept()
    events.wait_for(ProposalMade, 2)
    proposal = events.of(ProposalMade)[-1].proposal  # type: ignore[attr-defined]
    forced = proposal.top[1].token_id
    driver.force(forced)
    events.wait_for(ProposalMade, 3)
    driver.continue_free()
    worker.join(5)
    steps = events.of(StepDecoded)
    # the three taken at a proposal (the third by "continue"), then the free-running rest
    assert [e.picked for e in steps[:3]] == [True, True, True]  # type: ignore[attr-defined]
    assert steps[1].step.token_id == forced and steps[1].step.forced  # type: ignore[attr-defined]
    assert len(steps) > 3 and not any(e.picked for e in steps[3:])  # type: ignore[attr-defined]
    assert isinstance(events[-1], ReplyFinished) and events.count_of(ProposalMade) == 3


def test_stop_at_a_proposal_cancels_the_reply() -> None:
    events = Events()
    driver = _driver(FakeEngine(), events, step_mode=True)
    worker = _in_thread(driver.run)
    events.wait_for(ProposalMade)
    driver.stop()
    worker.join(5)
    assert isinstance(events[-1], ReplyFinished) and events[-1].finish_reason == "cancelled"
    assert events.count_of(TERMINAL[0]) == 1 and not driver.active


def test_resume_rewinds_to_the_branch_point_and_waits_for_a_pick() -> None:
    events = Events()
    engine = FakeEngine(["a b c d e."])
    driver = _driver(engine, events)
    driver.run()
    kept = driver.live[:2]
    events.clear()
    worker = _in_thread(lambda: driver.resume_at(kept))
    events.wait_for(ProposalMade)
    assert engine.started[0].rewound and driver.live == kept
    assert events.of(ProposalMade)[0].proposal.index == 2  # type: ignore[attr-defined]
    driver.stop()
    worker.join(5)
    assert isinstance(events[-1], ReplyFinished)


def test_fan_out_makes_one_branch_per_seed() -> None:
    events = Events()
    engine = FakeEngine(["x y z."])
    driver = _driver(engine, events)
    driver.run()
    target = driver.live[:1]
    events.clear()
    end = driver.fan_out(target, [7, 8, 9])
    branches = events.of(BranchFinished)
    assert [b.seed for b in branches] == [7, 8, 9]  # type: ignore[attr-defined]
    assert engine.started[0].seeds == [7, 8, 9]
    assert end == FanOutFinished(3, cancelled=False) and events[-1] == end


def test_fan_out_without_a_live_reply_prefills_the_target() -> None:
    events = Events()
    engine = FakeEngine(["x y z."])
    driver = _driver(engine, events, step_mode=True)
    end = driver.fan_out([engine.vocab.id("x")], [1])
    assert isinstance(end, FanOutFinished) and end.made == 1
    assert engine.started[0].prefix == [engine.vocab.id("x")]
    assert not events.of(ReplyStarted)  # a fan-out reports branches, not a reply


@pytest.mark.parametrize(
    ("error", "unexpected"),
    [(LogitlabError("the server went away"), False), (RuntimeError("boom\nmore"), True)],
)
def test_every_failure_takes_one_route(error: Exception, unexpected: bool) -> None:
    class Broken(FakeEngine):
        def render_prompt(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def,override]
            raise error

    events = Events()
    end = _driver(Broken(), events).run()
    assert isinstance(end, ReplyFailed) and events == [end]
    assert end.exception is error and end.unexpected is unexpected
    assert end.error == ("the server went away" if not unexpected else "RuntimeError: boom")


def test_resume_without_a_reply_fails_in_one_line() -> None:
    events = Events()
    end = _driver(FakeEngine(), events).resume_at([1, 2])
    assert isinstance(end, ReplyFailed) and end.error == "nothing to branch from"
    assert end.what == "continuing a branched reply" and not end.unexpected
