"""One contract, every engine: the same protocol checks run on the local transformers
loop (the tiny random model), llama.cpp (the bundled GGUF, when llama-cpp-python is
installed), the remote client against a live `logitlab serve` on a free loopback port,
and the tests' fake engine. A rule broken in one engine fails here, under its name.

The rules themselves are written once (engine/decode/rules.py); this module checks
that each engine follows them: prefill, propose/step, force, rewind (into a kept
prefix too), cancel, the stop rules (EOS, stop strings, max_new_tokens, the context
window), summaries, and the one-line refusal of a capability an engine lacks.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.decode import Engine, Reply, open_engine, run_reply
from engine.decode.protocol import (
    ModelInternals,
    PromptScoring,
    TokenizerAccess,
    TokenLookup,
    model_internals,
    prompt_scoring,
    token_lookup,
    tokenizer_access,
)
from engine.decode.run import ReplyResult
from engine.errors import FeatureUnavailableError, GenerationError, LogitlabError
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from engine.tokens import ChatMessage
from tests.fake_engine import FakeEngine

pytestmark = pytest.mark.timeout(300)
MESSAGES = [ChatMessage("user", "Hello there")]
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=10, top_logprobs=5)
LONG_REPLY = " ".join(f"word{i}" for i in range(60))  # the fake's script: longer than any test
CAPABILITIES: dict[str, tuple[type, Callable[[object], object]]] = {
    "internals": (ModelInternals, model_internals),
    "tokenizer": (TokenizerAccess, tokenizer_access),
    "lookup": (TokenLookup, token_lookup),
    "scoring": (PromptScoring, prompt_scoring),
}


@dataclass
class Subject:
    """An engine under contract and what the checks need to know about it."""

    name: str
    engine: Engine
    eos_id: int | None  # None: forcing EOS is not recognised (a remote server's)
    capabilities: frozenset[str]
    context_steps: int | None = None  # steps until the context window fills; None: too many
    closers: list[Callable[[], None]] = field(default_factory=list)


def _local(request: pytest.FixtureRequest) -> Subject:
    engine, _model = request.getfixturevalue("tiny_engine")
    return Subject(
        "local",
        engine,
        eos_id=int(engine.loaded.eos_token_ids[0]),
        capabilities=frozenset(CAPABILITIES),
        context_steps=_room(engine),
    )


def _llama_cpp(request: pytest.FixtureRequest) -> Subject:
    pytest.importorskip("llama_cpp")
    engine = open_engine(ModelSpec(backend="llama.cpp", device="cpu"))
    try:
        engine.load(ModelSpec(backend="llama.cpp", device="cpu"))
    except FeatureUnavailableError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"llama.cpp cannot run here: {exc}")
    except LogitlabError as exc:  # a native crash proven in the self-test child
        if type(exc).__name__ == "NativeCrashError":
            pytest.skip(f"llama.cpp crashes on this machine: {exc}")
        raise
    loaded: Any = engine.current.loaded
    return Subject(
        "llama.cpp",
        engine,
        eos_id=int(loaded.eos_token_ids[0]),
        capabilities=frozenset({"tokenizer", "lookup", "scoring"}),
        closers=[engine.thread.close],
    )


def _remote(request: pytest.FixtureRequest) -> Subject:
    from engine.decode import RemoteSpec
    from engine.serve import ServeOptions, ServerThread, create_app

    local, model = request.getfixturevalue("tiny_engine")
    server = ServerThread(create_app(local, model, ServeOptions(record=False), None)).start()
    spec = RemoteSpec(server.url + "/v1", timeout=60.0)
    engine = open_engine(spec)
    engine.load(spec.model_spec)
    return Subject(
        "remote",
        engine,
        eos_id=None,
        capabilities=frozenset({"scoring"}),  # logitlab serve scores prompts (prompt_logprobs)
        context_steps=_room(local),
        closers=[engine.close, server.stop],
    )


def _fake(_request: pytest.FixtureRequest) -> Subject:
    engine = FakeEngine([LONG_REPLY], context_window=32)
    engine.load(ModelSpec())
    return Subject(
        "fake",
        engine,
        eos_id=engine.vocab.ids["<|im_end|>"],
        capabilities=frozenset(),
        context_steps=_room(engine),
        closers=[engine.close],
    )


def _room(engine: Engine) -> int:
    """How many tokens fit after the chat prompt."""
    prompt = engine.render_prompt(MESSAGES)
    return prompt.context_window - prompt.count


SUBJECTS = {"local": _local, "llama.cpp": _llama_cpp, "remote": _remote, "fake": _fake}


@pytest.fixture(
    scope="module",
    params=[
        "local",
        pytest.param("llama.cpp", marks=pytest.mark.real_model),
        "remote",
        "fake",
    ],
)
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    made = SUBJECTS[request.param](request)
    yield made
    for close in made.closers:
        close()


def _params(**changes: Any) -> SamplingParams:
    return GREEDY.with_changes(**changes)


def _start(subject: Subject, **kwargs: Any) -> Reply:
    prefix = kwargs.pop("prefix", ())
    cancel = kwargs.pop("cancel", None)
    return subject.engine.start(MESSAGES, _params(**kwargs), cancel=cancel, prefix=prefix)


def _run(subject: Subject, **kwargs: Any) -> ReplyResult:
    return run_reply(_start(subject, **kwargs))


def _ids(result: ReplyResult) -> list[int]:
    return [s.token_id for s in result.steps]


# --- prompt and tokens -------------------------------------------------------------------


def test_prompt_and_tokens(subject: Subject) -> None:
    prompt = subject.engine.render_prompt(MESSAGES)
    assert prompt.count == len(prompt.ids) > 0
    assert prompt.context_window > prompt.count
    assert all(isinstance(i, int) for i in subject.engine.encode("Hello there"))
    step = _run(subject, max_new_tokens=1).steps[0]
    assert subject.engine.token_bytes(step.token_id) == step.token_bytes
    assert isinstance(subject.engine.token_display(step.token_id), str)


def test_start_ids_continues_exactly_those_ids(subject: Subject) -> None:
    """The prompt's ids given as ids (no template, no re-tokenizing) reply as the
    messages do."""
    ids = subject.engine.render_prompt(MESSAGES).ids
    by_ids = run_reply(subject.engine.start_ids(ids, _params(max_new_tokens=5)))
    by_messages = _run(subject, max_new_tokens=5)
    assert _ids(by_ids) == _ids(by_messages)
    assert by_ids.summary.prompt_tokens == len(ids)


# --- prefill, propose, step ------------------------------------------------------------


def test_prefill_then_steps_are_numbered_and_described(subject: Subject) -> None:
    reply = _start(subject, max_new_tokens=4)
    assert reply.prefill() >= 0.0
    assert reply.prompt_tokens == subject.engine.render_prompt(MESSAGES).count
    assert not reply.done and reply.finish_reason is None
    steps = [reply.step() for _ in range(4)]
    assert [s.index for s in steps] == [0, 1, 2, 3]
    for s in steps:
        assert not s.forced
        assert s.logprob <= 0.0
        assert 1 <= len(s.top) <= 5
        top = [c.logprob for c in s.top]
        assert top == sorted(top, reverse=True)


def test_propose_then_step_commits_the_proposal(subject: Subject) -> None:
    reply = _start(subject)
    reply.prefill()
    for index in range(3):
        proposal = reply.propose()
        assert proposal.index == index
        again = reply.propose()  # asking again changes nothing
        assert (again.index, again.sampled) == (proposal.index, proposal.sampled)
        step = reply.step()
        assert (step.index, step.token_id, step.forced) == (index, proposal.sampled, False)


def test_force_commits_another_candidate(subject: Subject) -> None:
    reply = _start(subject)
    reply.prefill()
    proposal = reply.propose()
    other = next(c for c in proposal.top if c.token_id != proposal.sampled)
    step = reply.step(force=other.token_id)
    assert step.forced and step.token_id == other.token_id and step.index == 0
    assert step.logprob == pytest.approx(other.logprob, abs=1e-4)
    after = reply.propose()
    assert after.index == 1
    assert reply.step().token_id == after.sampled


def test_force_without_a_proposal(subject: Subject) -> None:
    free = _run(subject, max_new_tokens=2)
    reply = _start(subject, max_new_tokens=2)
    reply.prefill()
    forced = reply.step(force=free.steps[0].token_id)
    assert forced.forced and forced.index == 0
    assert reply.step().token_id == free.steps[1].token_id


# --- rewind --------------------------------------------------------------------------------


def test_rewind_continues_where_it_was_cut(subject: Subject) -> None:
    reply = _start(subject)
    reply.prefill()
    first = [reply.step() for _ in range(5)]
    reply.rewind(2)
    again = [reply.step() for _ in range(2)]
    assert [s.index for s in again] == [3, 4]
    assert [s.token_id for s in again] == [s.token_id for s in first[3:]]
    reply.rewind(0)
    assert reply.step().index == 5


def test_rewind_past_the_start_is_refused(subject: Subject) -> None:
    reply = _start(subject)
    reply.prefill()
    reply.step()
    with pytest.raises(LogitlabError):
        reply.rewind(2)


def test_rewind_after_the_end_goes_on(subject: Subject) -> None:
    reply = _start(subject, max_new_tokens=3)
    result = run_reply(reply)
    assert reply.done and result.summary.finish_reason == "length"
    reply.rewind(1)
    assert not reply.done and reply.finish_reason is None
    last = reply.step()
    assert last.index == 2 and last.finish_reason == "length"


# --- a kept prefix ---------------------------------------------------------------------------


def test_prefix_numbers_steps_after_it_and_counts_it(subject: Subject) -> None:
    free = _run(subject, max_new_tokens=8)
    ids = _ids(free)
    kept = _run(subject, max_new_tokens=8, prefix=ids[:3])
    assert [s.index for s in kept.steps] == list(range(3, 8))
    assert _ids(kept) == ids[3:]
    assert kept.summary.completion_tokens == 8
    assert list(kept.summary.token_ids) == ids
    assert kept.summary.finish_reason == "length"  # the limit counts the prefix


def test_rewind_into_the_prefix(subject: Subject) -> None:
    ids = _ids(_run(subject, max_new_tokens=6))
    reply = _start(subject, max_new_tokens=6, prefix=ids[:3])
    reply.prefill()
    assert reply.step().index == 3
    reply.rewind(3)  # one decoded here, two of the prefix
    step = reply.step()
    assert (step.index, step.token_id) == (1, ids[1])


# --- cancel ------------------------------------------------------------------------------------


def test_cancel_stops_between_steps(subject: Subject) -> None:
    reply = _start(subject)
    reply.prefill()
    reply.step()
    reply.cancel()
    assert reply.done and reply.finish_reason == "cancelled"
    with pytest.raises(GenerationError):
        reply.step()
    summary = reply.summary()
    assert summary.finish_reason == "cancelled" and summary.completion_tokens == 1
    reply.rewind(1)  # a new branch: the cancel is over
    assert not reply.done
    assert reply.step().index == 0


def test_cancel_event_given_at_start(subject: Subject) -> None:
    cancel = threading.Event()
    reply = _start(subject, cancel=cancel)
    reply.prefill()
    reply.step()
    cancel.set()
    assert reply.done and reply.finish_reason == "cancelled"
    assert reply.summary().finish_reason == "cancelled"


# --- stop rules ----------------------------------------------------------------------------------


def test_max_new_tokens_is_length(subject: Subject) -> None:
    result = _run(subject, max_new_tokens=3)
    assert len(result.steps) == 3
    assert result.summary.finish_reason == "length"
    assert [s.finish_reason for s in result.steps] == [None, None, "length"]


def test_eos_is_stop(subject: Subject) -> None:
    if subject.eos_id is None:
        pytest.skip(f"{subject.name}: a server marks EOS in its own replies, not a forced token")
    reply = _start(subject)
    reply.prefill()
    reply.step()
    end = reply.step(force=subject.eos_id)
    assert end.finish_reason == "stop" and end.special and end.text == ""
    assert reply.done and reply.summary().finish_reason == "stop"


def test_stop_string_ends_the_reply_and_is_not_shown(subject: Subject) -> None:
    """Seeded sampling (the tiny model's greedy reply repeats one newline): the same
    reply again with a stop string from its middle ends where that string begins."""
    sampled = {"temperature": 1.0, "seed": 7, "max_new_tokens": 12}
    free = _run(subject, **sampled)
    text = free.summary.text
    stop = next((s.text for s in free.steps[3:] if s.text.strip() and not s.special), None)
    if stop is None:
        pytest.skip(f"{subject.name}: the reply shows no text to stop at")
    result = _run(subject, **sampled, stop=(stop,))
    assert result.summary.finish_reason == "stop"
    assert result.steps[-1].finish_reason == "stop"
    assert result.summary.text == text[: text.find(stop)]
    assert stop not in "".join(s.text for s in result.steps)
    assert len(result.steps) < 12


def test_stop_string_when_stepping(subject: Subject) -> None:
    """Step by step (a remote engine asks for one token at a time: the server never sees
    the text before it), a stop string spanning two tokens still ends the reply."""
    free = _run(subject, max_new_tokens=8)
    stop = free.steps[1].text + free.steps[2].text
    if not stop:
        pytest.skip(f"{subject.name}: the reply shows no text to stop at")
    reply = _start(subject, max_new_tokens=8, stop=(stop,))
    reply.prefill()
    steps = []
    while not reply.done:
        reply.propose()
        steps.append(reply.step())
    assert steps[-1].finish_reason == reply.summary().finish_reason == "stop"
    text = free.summary.text
    assert reply.summary().text == "".join(s.text for s in steps) == text[: text.find(stop)]


def test_a_full_context_window_is_context(subject: Subject) -> None:
    room = subject.context_steps
    if room is None or room > 400:
        pytest.skip(f"{subject.name}: the context window is too long to fill in a test")
    result = _run(subject, max_new_tokens=room + 50, top_logprobs=1)
    assert result.summary.finish_reason == "context"
    assert len(result.steps) == room
    assert result.summary.prompt_tokens + result.summary.completion_tokens == (
        subject.engine.render_prompt(MESSAGES).context_window
    )


# --- summaries -----------------------------------------------------------------------------------


def test_summary_agrees_with_the_steps(subject: Subject) -> None:
    reply = _start(subject, max_new_tokens=6)
    result = run_reply(reply)
    summary = result.summary
    assert summary.completion_tokens == len(result.steps) == 6
    assert list(summary.token_ids) == _ids(result)
    assert summary.text == "".join(s.text for s in result.steps)
    assert summary.prompt_tokens == reply.prompt_tokens > 0
    assert summary.finish_reason == result.steps[-1].finish_reason == reply.finish_reason
    assert all(s.finish_reason is None for s in result.steps[:-1])
    assert summary.time_to_first_token_ms >= result.steps[0].elapsed_ms
    assert math.isfinite(summary.tokens_per_second) and summary.tokens_per_second > 0


def test_no_summary_before_the_end(subject: Subject) -> None:
    reply = _start(subject)
    reply.prefill()
    reply.step()
    with pytest.raises(GenerationError):
        reply.summary()


# --- capabilities ----------------------------------------------------------------------------------


@pytest.mark.parametrize("capability", sorted(CAPABILITIES))
def test_capability_offered_or_refused_in_one_line(subject: Subject, capability: str) -> None:
    kind, check = CAPABILITIES[capability]
    if capability in subject.capabilities:
        assert isinstance(subject.engine, kind)
        assert check(subject.engine) is subject.engine
        return
    assert not isinstance(subject.engine, kind)
    with pytest.raises(FeatureUnavailableError) as refused:
        check(subject.engine)
    assert "\n" not in str(refused.value) and str(refused.value)
