"""Builders for sessions, messages and steps shared by the session tests.

Scripted records stand in for a model: the store and exporters only see data.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from engine.params import SamplingParams
from engine.records import Candidate, Step
from engine.sessions.records import ModelRecord, SessionMessage, SessionSettings

MODEL = ModelRecord(id="SmolLM2-135M-Instruct", source="gguf", device="cpu", dtype="float32")
SETTINGS = SessionSettings(
    system_prompt="Be brief.",
    sampling=SamplingParams(temperature=0.7, top_k=50, top_p=0.9, seed=1234),
)
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def make_step(index: int, token_id: int = 504, text: str = "The", **changes: object) -> Step:
    """A plausible step: the chosen token first in its top list, a filtered candidate last."""
    values: dict[str, object] = dict(
        index=index,
        token_id=token_id,
        piece="Ġ" + text,
        text=text,
        forced=False,
        logprob=-0.03,
        rank=1,
        entropy=0.21,
        processed_logprob=-0.01,
        processed_rank=1,
        processed_entropy=0.05,
        top=(
            Candidate(token_id, "Ġ" + text, -0.03, -0.01, text),
            Candidate(token_id + 1, "Ġx", -4.5, -math.inf, "x", dropped_by="top-p"),
        ),
        elapsed_ms=41.25,
        special=False,
        token_bytes=text.encode(),
        finish_reason=None,
    )
    values.update(changes)
    return Step(**values)  # type: ignore[arg-type]


def user(content: str, minutes: int = 0) -> SessionMessage:
    return SessionMessage("user", content, T0 + timedelta(minutes=minutes))


def reply(words: list[str], finish_reason: str = "stop", minutes: int = 1) -> SessionMessage:
    steps = tuple(make_step(i, 500 + i, w) for i, w in enumerate(words))
    if steps:
        last = steps[-1]
        steps = (*steps[:-1], replace(last, finish_reason=finish_reason))
    return SessionMessage(
        "assistant",
        "".join(words),
        T0 + timedelta(minutes=minutes),
        finish_reason=finish_reason,
        steps=steps,
    )
