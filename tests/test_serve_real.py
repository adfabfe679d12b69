"""The served numbers are the workbench's: on the bundled model, greedy ids through
the server equal `LocalEngine` + `run_reply`, and every logprob matches."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from engine.decode import LocalEngine, run_reply
from engine.model.spec import ModelSpec
from engine.params import resolve_sampling
from engine.serve import ServeOptions, ServerThread, create_app
from engine.tokens import ChatMessage

pytestmark = [pytest.mark.real_model, pytest.mark.timeout(300)]


def test_greedy_served_equals_in_process(real_model: Any) -> None:
    engine = LocalEngine(preloaded=real_model)
    model = engine.load(ModelSpec(device="cpu"))
    messages = [ChatMessage("user", "What is the capital of France?")]
    params, _ = resolve_sampling(
        model.generation_config, {"temperature": 0.0, "max_new_tokens": 24, "top_logprobs": 5}
    )
    local = run_reply(engine.start(messages, params))

    with ServerThread(create_app(engine, model, ServeOptions(record=False))) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(
            model=model.model_id,
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            temperature=0,
            max_tokens=24,
            logprobs=True,
            top_logprobs=5,
        )
    content = reply.choices[0].logprobs.content
    assert [e.model_extra["token_id"] for e in content] == list(local.summary.token_ids)
    assert reply.choices[0].message.content == local.summary.text
    for entry, step in zip(content, local.steps, strict=True):
        assert entry.logprob == step.logprob
        assert [t.logprob for t in entry.top_logprobs] == [c.logprob for c in step.top]
        assert [t.model_extra["token_id"] for t in entry.top_logprobs] == [
            c.token_id for c in step.top
        ]
        assert entry.bytes == list(step.token_bytes)
    engine.thread.close()
