"""EngineThread: every call runs on one thread; errors and results come back."""

from __future__ import annotations

import threading

import pytest

from engine.errors import GenerationError
from engine.model.thread import EngineThread


def test_calls_run_on_one_thread_from_any_caller() -> None:
    engine = EngineThread()
    seen: set[int] = set()

    def where() -> int:
        seen.add(threading.get_ident())
        return threading.get_ident()

    results: list[int] = []
    callers = [
        threading.Thread(target=lambda: results.append(engine.call(where))) for _ in range(4)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(seen) == 1 and results == [next(iter(seen))] * 4
    assert engine.call(where) != threading.get_ident()
    engine.close()


def test_errors_propagate_and_nested_calls_run_inline() -> None:
    engine = EngineThread()

    def fail() -> None:
        raise GenerationError("out of memory on cpu during a decode step")

    with pytest.raises(GenerationError, match="out of memory"):
        engine.call(fail)
    assert engine.call(lambda: engine.call(lambda: 41) + 1) == 42  # no deadlock
    engine.close()
