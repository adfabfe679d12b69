"""One long-lived thread for all of a model's torch work.

Measured on this 2-core CPU build (torch 2.13, OpenMP): once a thread has run
torch's parallel ops and is still alive, torch in *another* thread runs at about
single-thread speed (greedy decode of the bundled model: 17 tok/s against 30 on
the thread that did the work first). Thread pools keep their threads alive, so a
UI that loads in one worker thread and decodes in another gets the slow path.
Running every load, prefill and step on the same `EngineThread` keeps torch on
one thread and at full speed; callers in any thread just wait for the result.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class EngineThread:
    """Runs callables one at a time on a single dedicated thread."""

    def __init__(self, name: str = "logitlab-engine") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._ident: int | None = None
        self._executor.submit(self._remember_ident).result()

    def _remember_ident(self) -> None:
        self._ident = threading.get_ident()

    def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run `fn` on the engine thread and return its result (or raise its error).

        Called from the engine thread itself, it runs inline instead of deadlocking.
        """
        if threading.get_ident() == self._ident:
            return fn(*args, **kwargs)
        return self._executor.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
