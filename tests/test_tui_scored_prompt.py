"""A served scoring request (echo + logprobs, prompt_logprobs, max_tokens 0) is recorded
with its prompt's teacher-forced scores on the user message; reopened in the workbench,
the token stream shows them: each prompt token coloured by how likely the model found
it, the inspector on its numbers and candidates."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.params import SamplingParams
from engine.sessions import ModelRecord, SessionSettings
from tests.fake_engine import FakeEngine
from tests.session_factories import make_step, user
from tests.tui_helpers import SIZE, fake_app, ready
from tui.screens.views import SCORES_TITLE
from tui.widgets.step_view import StepView
from tui.widgets.token_stream import TokenStream

pytestmark = pytest.mark.anyio


async def test_a_scored_prompt_reopens_with_its_scores(recorder) -> None:  # type: ignore[no-untyped-def]
    store = recorder.store
    assert store is not None
    words = [" capital", " of", " France", " is", " Paris"]
    steps = tuple(
        replace(make_step(i + 1, 600 + i, w, logprob=-0.5 * (i + 1)), forced=True)
        for i, w in enumerate(words)
    )
    prompt = replace(user("The capital of France is Paris"), steps=steps)
    model = ModelRecord("fake-model", "local", "cpu", "float32")
    session = store.create(model, SessionSettings("", SamplingParams()))
    store.append_message(session.id, prompt)
    backend = FakeEngine()
    app = fake_app(backend, recorder=recorder, session=store.get(session.id))
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(pilot)
            stream = screen.query_one(TokenStream)
            assert list(stream.steps) == list(steps)
            assert stream.border_title == SCORES_TITLE
            await pilot.press("f4", "home", "l")
            assert screen.query_one(StepView).shown == steps[1]
    finally:
        backend.close()
