"""The issue's workbench run over a server that answers with vLLM's ``token_id:N``
strings (tests/vllm_stub.py on the tiny model): step mode, "What is 2+2?", Space, Space,
force candidate 2, `c`; the saved session's assistant message is the text its ids
spell, every token with the piece, bytes and special flag a local run records."""

from __future__ import annotations

from typing import Any

import pytest

from engine.decode import RemoteEngine
from engine.decode.textstream import TokenTable
from tests.tui_helpers import SIZE, finished, ready, send, until
from tests.vllm_stub import VllmStub
from tui.app import make_app
from tui.widgets.step_view import StepView
from tui.widgets.token_stream import TokenStream

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]


async def test_step_force_continue_saves_the_text_of_the_ids(
    vllm_stub: VllmStub, tiny_tokenizer: Any, recorder: Any
) -> None:
    remote = RemoteEngine(vllm_stub.url)
    app = make_app(remote, recorder=recorder, persist_theme=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = await ready(pilot)
        await pilot.press("ctrl+t")
        await send(pilot, "What is 2+2?")
        for index in (0, 1):
            await until(
                pilot, lambda i=index: screen.proposal is not None and screen.proposal.index == i
            )  # type: ignore[misc]
            await pilot.press("space")
        await until(pilot, lambda: screen.proposal is not None and screen.proposal.index == 2)
        # the candidate list draws pieces, never the id strings
        shown = screen.query_one(StepView).shown
        assert shown is screen.proposal and len(shown.top) >= 2  # type: ignore[union-attr]
        assert all("token_id:" not in c.piece + c.text for c in shown.top)  # type: ignore[union-attr]
        assert any(c.text.strip() for c in shown.top)  # type: ignore[union-attr]
        forced = screen.proposal.top[1].token_id  # type: ignore[union-attr]
        await pilot.press("2")
        # the forced step is decoded and the next pick is up before continuing
        await until(
            pilot, lambda: screen.proposal is not None and screen.proposal.index == 3, timeout=60
        )
        await pilot.press("c")
        # the rest of the reply through the stub's proxy: slow on a loaded machine
        await until(pilot, lambda: finished(screen), timeout=180)
        chips = screen.query_one(TokenStream).steps
        assert chips[2].forced and chips[2].token_id == forced
    remote.close()
    store = recorder.store
    session = store.get(store.list()[0].id)
    reply = next(m for m in session.messages if m.role == "assistant")
    ids = [s.token_id for s in reply.steps]
    assert reply.content == tiny_tokenizer.decode(ids, skip_special_tokens=True)
    assert reply.content.strip()
    table = TokenTable(tiny_tokenizer)
    for step in reply.steps:
        assert step.special == table.is_special(step.token_id)
        if step.token_bytes:  # b"": part of a character, unknown to the server alone
            assert step.token_bytes == table.token_bytes(step.token_id)
        assert "token_id:" not in step.piece
