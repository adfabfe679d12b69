"""Reading a streamed completion: server-sent events -> batches of reported tokens.

`StreamReader` knows the two wire shapes (chat ``delta`` + ``logprobs.content``,
legacy ``text`` + ``logprobs``), the finish reason, the usage the server reports
and when a server sends text without logprobs; it knows nothing about the reply
it feeds (indices, stop rules, committing): `RemoteReply` turns its `Chunk`s into
`Step`s. Each token's time is its share of the wait since the previous chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from engine.decode.remote.mapping import Token, chat_token, legacy_tokens, mark_text, text_only
from engine.records import FinishReason

# OpenAI's finish reasons as ours (vLLM's "abort" is a cancel); any other is a stop
SERVER_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "abort": "cancelled",
}


def server_finish(reason: Any) -> FinishReason | None:
    """A choice's ``finish_reason`` as ours (None while the reply goes on)."""
    return SERVER_FINISH.get(reason, "stop") if reason else None


@dataclass(frozen=True)
class Chunk:
    """What one event of the stream reported: tokens (each with its share of the wait,
    in ms), the finish reason if the server ended here, and whether it sent text only."""

    tokens: tuple[Token, ...]
    token_ms: float
    finish: FinishReason | None
    text_only: bool = False


class StreamReader:
    """One open stream of events, read a chunk at a time (`next_chunk`).

    `prompt_tokens` is the server's usage count once it has sent one; `finish` the
    last finish reason it reported. Closing ends the underlying response.
    """

    def __init__(
        self,
        events: Iterator[dict[str, Any]],
        *,
        chat: bool,
        fill: Callable[[Sequence[Token]], list[Token]] = list,
    ) -> None:
        self._events = events
        self._chat = chat
        self._fill = fill  # pieces and bytes of tokens sent by id only (`Pieces.fill`)
        self._chunks = self._read()
        self._last = time.perf_counter()
        self.prompt_tokens: int | None = None
        self.finish: FinishReason | None = None

    def next_chunk(self) -> Chunk | None:
        """The next chunk that holds tokens; None when the stream has ended."""
        return next(self._chunks, None)

    def close(self) -> None:
        self._chunks.close()
        close = getattr(self._events, "close", None)
        if close is not None:
            close()

    def _read(self) -> Generator[Chunk, None, None]:
        for event in self._events:
            usage = event.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
                self.prompt_tokens = int(usage["prompt_tokens"])
            for choice in event.get("choices") or []:
                chunk = self._chunk(choice)
                if chunk.finish is not None:
                    self.finish = chunk.finish
                if chunk.tokens:
                    yield chunk

    def _chunk(self, choice: dict[str, Any]) -> Chunk:
        finish = server_finish(choice.get("finish_reason"))
        if self._chat:
            logprobs = choice.get("logprobs") or {}
            text = (choice.get("delta") or {}).get("content") or ""
            entries = [chat_token(e) for e in logprobs.get("content") or []]
        else:
            text = choice.get("text") or ""
            entries = legacy_tokens(choice.get("logprobs") or {})
        bare = bool(text) and not entries  # a server without logprobs: text-only steps
        if bare:
            entries = [text_only(text)]
        now = time.perf_counter()
        share = (now - self._last) * 1000.0 / max(len(entries), 1)
        entries = self._fill(entries)
        self._last = time.perf_counter()  # a vocabulary lookup is not the server's time
        return Chunk(tuple(mark_text(entries, text)), share, finish, text_only=bare)
