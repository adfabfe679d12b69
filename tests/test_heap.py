"""A load freezes what it leaves alive out of the garbage collector's walks, and a
reload hands the old model back first, so replacing a model frees it."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.decode import LocalEngine
from engine.model import ModelSpec, heap
from engine.model.thread import EngineThread


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the run collects as usual


def test_a_load_freezes_the_heap_and_a_reload_frees_the_old_model(
    tiny_model_dir: Path, unfrozen: None
) -> None:
    engine = LocalEngine(thread=EngineThread())
    spec = ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="float32")
    engine.load(spec)
    assert gc.get_freeze_count() > 0
    tracked = len(gc.get_objects())  # what a full collection walks now
    assert tracked < gc.get_freeze_count()  # far fewer than were frozen
    old = weakref.ref(engine.loaded.model)
    # a reference cycle that holds the model, frozen with it (as a library's own
    # cycles would be): only a collection after unfreezing can free it
    cycle: list[object] = [engine.loaded.model]
    cycle.append(cycle)
    heap.settle()
    del cycle
    engine.load(spec)
    assert old() is None  # collected, not kept frozen
    assert engine.loaded.model is not None and gc.get_freeze_count() > 0
