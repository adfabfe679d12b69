"""Incremental, UTF-8-safe detokenizing and per-token display data.

Token ids are the source of truth. `TextStream` derives text by decoding a
short window of the running id list (the prefix/read offsets of transformers'
``TextStreamer`` and ``tokenizers.decoders.DecodeStream``): a step emits the new
suffix only once it is complete UTF-8, so an emoji or CJK character split over
byte tokens appears once, whole. It also holds back text that could be the
start of a stop string, so a matched stop string is never emitted.

`TokenTable` answers per-id questions (piece, exact bytes, special?, display
text) lazily with a cache, so recording candidates costs dict lookups.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from engine.decode.rules import StopScan
from engine.tokens.views import is_special, piece_to_bytes, token_piece

REPLACEMENT = "\ufffd"


class TextStream:
    """Text deltas for a growing id list; deltas concatenate to the full decode.

    ``"".join(deltas) == tokenizer.decode(ids, skip_special_tokens=True)``, minus
    a matched stop string and anything after it (the cut is `StopScan`'s, the
    one every engine shares). Call `finish` once when the generation ends to
    flush text still held back.
    """

    def __init__(self, tokenizer: Any, stop: tuple[str, ...] = ()) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self._prefix_text = ""  # decode(ids[prefix_offset:read_offset])
        self._stops = StopScan(stop)  # the complete text goes through the stop rule

    @classmethod
    def replay(cls, tokenizer: Any, stop: tuple[str, ...], ids: Iterable[int]) -> TextStream:
        """A stream that has already seen `ids` (used after a rewind)."""
        stream = cls(tokenizer, stop)
        for token_id in ids:
            stream.push(token_id)
        return stream

    @property
    def text(self) -> str:
        """The text emitted so far."""
        return self._stops.text

    @property
    def stopped(self) -> str | None:
        """The stop string that matched (None: none yet)."""
        return self._stops.stopped

    def push(self, token_id: int) -> str:
        """Add one token; return the text it makes safe to show (may be "")."""
        self._ids.append(token_id)
        if self.stopped is not None:
            return ""
        window = self._decode(self._ids[self._prefix_offset :])
        complete = ""
        if len(window) > len(self._prefix_text) and not window.endswith(REPLACEMENT):
            complete = window[len(self._prefix_text) :]
            self._prefix_offset, self._read_offset = self._read_offset, len(self._ids)
            self._prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        return self._stops.push(complete)

    def finish(self) -> str:
        """Flush everything still pending (an incomplete character decodes as U+FFFD)."""
        if self.stopped is not None:
            return ""
        complete = ""
        if self._read_offset < len(self._ids):
            window = self._decode(self._ids[self._prefix_offset :])
            complete = window[len(self._prefix_text) :]
            self._prefix_offset = self._read_offset = len(self._ids)
            self._prefix_text = ""
        return self._stops.push(complete) + self._stops.finish()

    def peek(self, token_id: int) -> str:
        """What `token_id` would add if pushed next (best-effort, ignores stop strings)."""
        window = self._decode([*self._ids[self._prefix_offset :], token_id])
        return window[len(self._prefix_text) :]

    def _decode(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids, skip_special_tokens=True))


# --- per-token data -----------------------------------------------------------------


class TokenTable:
    """Piece, exact bytes, special flag and display text of ids, cached per id."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._pieces: dict[int, str] = {}
        self._bytes: dict[int, bytes] = {}
        self._special: dict[int, bool] = {}

    def piece(self, token_id: int) -> str:
        """The raw vocabulary piece (``convert_ids_to_tokens``), e.g. "Ġthe"."""
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = token_piece(self._tokenizer, token_id)
            self._pieces[token_id] = piece
        return piece

    def is_special(self, token_id: int) -> bool:
        special = self._special.get(token_id)
        if special is None:
            special = self._special[token_id] = is_special(self._tokenizer, token_id)
        return special

    def token_bytes(self, token_id: int) -> bytes:
        """The token's exact bytes: GPT-2 byte map undone, ``<0xNN>`` -> that byte."""
        data = self._bytes.get(token_id)
        if data is None:
            data = self._bytes[token_id] = piece_to_bytes(
                self._tokenizer, token_id, self.piece(token_id)
            )
        return data

    def display(self, token_id: int) -> str:
        """Text to show for one token: its decoded bytes, or the piece if special.

        A token holding part of a UTF-8 character shows its bytes as ``\\xNN``.
        """
        if self.is_special(token_id):
            return self.piece(token_id)
        return self.token_bytes(token_id).decode("utf-8", errors="backslashreplace")
