"""The reply in progress is saved once a second, so a native crash (which no handler
sees: tests/test_terminal_guard.py kills a real workbench) loses at most that second.

Here the interval is 0, so every batch of steps checkpoints: the store must hold the
reply so far as `cancelled` while it is still being decoded, and mid-branch the tree
with the old path kept as a branch.
"""

from __future__ import annotations

import pytest

from tests.fake_engine import FakeEngine
from tests.tui_helpers import SIZE, fake_app, finished, ready, replied, send, stored, until
from tui.screens import reply_actions
from tui.store_recorder import StoreRecorder

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reply_actions, "CHECKPOINT_EVERY", 0.0)


def last_reply(recorder: StoreRecorder):  # type: ignore[no-untyped-def]
    store = stored(recorder)
    listed = store.list()
    if not listed:
        return None
    message = store.get(listed[0].id).messages[-1]
    return message if message.role == "assistant" else None


async def test_a_reply_in_progress_is_saved_as_far_as_it_came(recorder: StoreRecorder) -> None:
    backend = FakeEngine(pause_at=4)
    app = fake_app(backend, recorder=recorder)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await ready(pilot)
            await send(pilot, "hi")
            await until(
                pilot, lambda: (m := last_reply(recorder)) is not None and len(m.steps) >= 3
            )
            assert screen.gen_run is not None and screen.gen_run.active  # still decoding
            saved = last_reply(recorder)
            assert saved is not None and saved.finish_reason == "cancelled"
            live = screen.conversation.last_reply
            assert live is not None
            assert saved.steps == tuple(live.steps[: len(saved.steps)])
            assert saved.content == "".join(s.text for s in saved.steps)
            backend.release.set()
            await until(pilot, lambda: finished(screen))
            done = last_reply(recorder)
            assert done is not None and done.finish_reason == "stop"  # replaced on completion
            assert done.steps == tuple(live.steps)
            assert len(stored(recorder).get(stored(recorder).list()[0].id).messages) == 2
    finally:
        backend.close()


async def test_mid_branch_the_old_path_is_kept_as_a_branch(recorder: StoreRecorder) -> None:
    backend = FakeEngine()
    app = fake_app(backend, recorder=recorder)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await replied(pilot, "hi")
            reply = screen.conversation.last_reply
            assert reply is not None
            original = tuple(reply.steps)
            await until(
                pilot, lambda: (m := last_reply(recorder)) is not None and m.finish_reason == "stop"
            )
            await pilot.press("f4", "home", "l", "l", "b")
            await until(pilot, lambda: screen.proposal is not None)
            await pilot.press("2")  # force candidate 2 at step 2: the branch has 3 steps
            await until(pilot, lambda: screen.proposal is not None and screen.proposal.index == 3)
            saved = last_reply(recorder)
            assert saved is not None
            # the branch so far is the current path, saved as cut off ...
            assert saved.finish_reason == "cancelled" and len(saved.steps) == 3
            assert saved.steps[:2] == original[:2] and saved.steps[2].forced
            # ... and the whole old reply is still there as a branch of it
            [old] = saved.alternatives
            assert old.branch_index == 2 and old.finish_reason == "stop"
            assert tuple(old.steps) == original[2:]
            await pilot.press("c")
            await until(pilot, lambda: finished(screen))
            await until(
                pilot, lambda: (m := last_reply(recorder)) is not None and m.finish_reason == "stop"
            )
    finally:
        backend.close()
