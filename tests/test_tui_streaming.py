"""A streaming reply on the screen: the token stream's own window, the chat's
chunks, the status bar's once-a-second numbers (what keeps the UI cheap enough
to show >= 0.9 of the engine's rate: bench/ui.py)."""

from __future__ import annotations

import pytest

import tui.widgets.chat_pane as chat_module
from tests.fake_engine import FakeEngine
from tests.tui_helpers import driving, ready, replied, send, until
from tui.widgets.chat_pane import ChatPane
from tui.widgets.status_bar import StatusBar
from tui.widgets.token_stream import TokenStream, _Lines

pytestmark = pytest.mark.anyio

LONG_REPLY = " ".join(f"w{i}" for i in range(160))


def shown(stream: TokenStream) -> str:
    """The token stream's lines in view, as text."""
    return "\n".join(stream.render_line(y).text for y in range(stream.content_size.height))


def test_chips_fill_lines_greedily_and_a_long_chip_folds() -> None:
    lines = _Lines(10)
    assert lines.add(["abc", "defg", "hi"]) == range(0, 2)  # 'abc defg' fits, 'hi' wraps
    assert [[p.text for p in line] for line in lines.lines] == [["abc", "defg"], ["hi"]]
    touched = lines.add(["x" * 23, "end"])  # 23 cells fold over three lines
    assert touched == range(1, 5)
    assert [[p.text for p in line] for line in lines.lines[2:]] == [
        ["x" * 10],
        ["x" * 10],
        ["xxx", "end"],  # the next chip joins the fold's last line
    ]
    assert lines.lines_of(3) == range(2, 5)
    assert lines.lines_of(4) == range(4, 5)
    assert lines.lines_of(0) == range(0, 1)


def test_wide_characters_count_as_two_cells() -> None:
    lines = _Lines(6)
    lines.add(["日本", "語"])  # 4 + 1 + 2 = 7 cells: the second wraps
    assert [[p.text for p in line] for line in lines.lines] == [["日本"], ["語"]]


async def test_the_window_follows_a_long_reply_and_the_cursor_brings_it_back() -> None:
    async with driving(FakeEngine([LONG_REPLY])) as pilot:
        screen = await replied(pilot, "Count.")
        stream = screen.query_one(TokenStream)
        height = stream.content_size.height
        assert stream.line_count > height  # taller than the window
        assert stream.top == stream.line_count - height  # riding the newest line
        assert "<|im_end|>" in shown(stream) and "w0 " not in shown(stream)
        stream.focus()
        await pilot.press("home")
        assert stream.cursor == 0 and stream.top == 0
        assert shown(stream).startswith("w0 ")
        stream.scroll_lines(3)  # the mouse wheel moves the window, not the cursor
        assert stream.top == 3 and stream.cursor == 0
        await pilot.press("right")  # a key shows the cursor again
        assert stream.top == 0
        await pilot.press("end")
        assert stream.top == stream.line_count - height


async def test_the_window_fits_the_terminal_and_rewraps_on_resize() -> None:
    async with driving(FakeEngine([LONG_REPLY]), size=(80, 24)) as pilot:
        screen = await replied(pilot, "Count.")
        stream = screen.query_one(TokenStream)
        small = stream.content_size.height
        narrow_lines = stream.line_count
        await pilot.resize_terminal(160, 45)
        await until(pilot, lambda: stream.content_size.height > small)
        assert stream.line_count < narrow_lines  # wider lines hold more chips
        assert stream.top == max(0, stream.line_count - stream.content_size.height)
        assert "<|im_end|>" in shown(stream)


async def test_the_chat_takes_the_text_in_chunks_and_all_of_it_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chat_module, "APPEND_EVERY", 60.0)  # no chunk but the first
    backend = FakeEngine(pause_at=5)
    async with driving(backend) as pilot:
        screen = await ready(pilot)
        await send(pilot, "What is the capital of France?")
        stream = screen.query_one(TokenStream)
        chat = screen.query_one(ChatPane)
        await until(pilot, lambda: len(stream.steps) == 5)
        assert chat._reply is not None
        assert chat._reply.source == "The"  # the first batch, at once
        assert chat.behind and chat.reply_text == "The capital of **France** is"  # the rest waits
        backend.release.set()
        await until(pilot, lambda: stream.steps[-1].finish_reason is not None)
        await until(pilot, lambda: "Eiffel" in chat._reply.source)


async def test_a_paused_reply_shows_its_text_without_waiting_for_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chat_module, "APPEND_EVERY", 0.3)
    # pause_at: like step mode, nothing comes for a while
    async with driving(FakeEngine(pause_at=5)) as pilot:
        screen = await ready(pilot)
        await send(pilot, "What is the capital of France?")
        chat = screen.query_one(ChatPane)
        await until(pilot, lambda: chat._reply is not None and "is" in chat._reply.source)
        assert chat._reply is not None
        assert chat._reply.source == "The capital of **France** is"
        assert screen.gen_run is not None and screen.gen_run.active  # still paused


async def test_the_status_bar_shows_the_final_numbers_when_the_reply_ends() -> None:
    async with driving(FakeEngine([LONG_REPLY])) as pilot:
        screen = await replied(pilot, "Count.")
        status = screen.query_one(StatusBar)
        stream = screen.query_one(TokenStream)
        assert status.context_used == screen.replies.prompt_tokens + len(stream.steps)
        # the summary's numbers (the fake's steps take 25 ms each: 40 tok/s; TTFT 37 ms)
        assert status.tokens_per_second == 40.0
        assert status.ttft_ms == 37.0


async def test_a_reply_waiting_in_step_mode_shows_all_of_it_and_exact_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chat_module, "APPEND_EVERY", 60.0)  # only the wait can show the text
    async with driving(FakeEngine()) as pilot:
        screen = await ready(pilot)
        await pilot.press("ctrl+t")
        await send(pilot, "hi")
        stream = screen.query_one(TokenStream)
        for index in range(1, 4):  # picks faster than the once-a-second numbers
            await until(pilot, lambda: screen.proposal is not None)
            await pilot.press("space")
            await until(pilot, lambda i=index: len(stream.steps) == i)
        await until(pilot, lambda: screen.proposal is not None and screen.proposal.index == 3)
        status = screen.query_one(StatusBar)
        assert status.context_used == screen.replies.prompt_tokens + 3
        chat = screen.query_one(ChatPane)
        assert chat._reply is not None and chat._reply.source == "The capital of"
