"""Holding a served engine busy so requests pile up in its queue (serve tests)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from tests.timeouts import scaled


@contextlib.contextmanager
def engine_held(engine: Any) -> Iterator[None]:
    """`engine`'s thread kept busy until the block ends (bounded): requests sent meanwhile
    wait in the server's queue or its worker's hands."""
    hold, entered = threading.Event(), threading.Event()

    def busy() -> None:
        entered.set()
        hold.wait(scaled(120))

    blocker = threading.Thread(target=lambda: engine.thread.call(busy))
    blocker.start()
    try:
        assert entered.wait(scaled(60))
        yield
    finally:
        hold.set()
        blocker.join(scaled(120))


def codes_while_held(url: str, engine: Any, count: int) -> list[int]:
    """`count` one-token chat requests sent at once while `engine` is held: their status
    codes, the first answered first (nothing can finish with 200 while it is held)."""
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
    codes: queue.Queue[int] = queue.Queue()

    def post() -> None:
        codes.put(httpx.post(url + "/v1/chat/completions", json=body, timeout=120).status_code)

    posts = [threading.Thread(target=post) for _ in range(count)]
    first = None
    try:
        with engine_held(engine):
            for p in posts:
                p.start()
            first = codes.get(timeout=scaled(60))
    finally:
        for p in posts:
            p.join(scaled(120))
    return [first, *(codes.get_nowait() for _ in range(codes.qsize()))]
