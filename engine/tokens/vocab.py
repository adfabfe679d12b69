"""Vocabulary lookup: id -> piece/bytes/display, and string -> matching tokens.

Built once per tokenizer (a few hundred ms for 150k tokens), then every search
is a dict lookup, a bisect, or C-speed ``str.find`` over one joined string, so
it stays well under 50 ms per keystroke (``bench/vocab_lookup.py`` measures it).
A query matches a token's raw piece (``Ġhello``), its display form
(``·hello``) or its text (`` hello``), so users can type any of them.
"""

from __future__ import annotations

import bisect
import heapq
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from engine.errors import InvalidParameterError
from engine.tokens.views import is_special, piece_to_bytes, token_display

SearchMode = Literal["exact", "prefix", "substring"]
MODES: tuple[SearchMode, ...] = ("exact", "prefix", "substring")
_SEP = "\x00"  # cannot occur in a key: keys are pieces and display forms


@dataclass(frozen=True)
class VocabEntry:
    """One vocabulary entry (the fields a TokenInfo has that do not depend on context)."""

    id: int
    piece: str
    display: str
    bytes: bytes
    special: bool

    @property
    def text(self) -> str:
        """The bytes as text; broken UTF-8 becomes U+FFFD."""
        return self.bytes.decode("utf-8", errors="replace")

    @property
    def partial(self) -> bool:
        """True when the bytes are not whole UTF-8 characters on their own."""
        try:
            self.bytes.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "piece": self.piece,
            "display": self.display,
            "bytes": list(self.bytes),
            "special": self.special,
            "partial": self.partial,
        }


class VocabIndex:
    """A search index over a tokenizer's vocabulary (base vocab plus added tokens)."""

    def __init__(self, tokenizer: Any) -> None:
        self._entries: dict[int, VocabEntry] = {}
        for piece, token_id in tokenizer.get_vocab().items():
            data = piece_to_bytes(tokenizer, token_id, piece)
            self._entries[token_id] = VocabEntry(
                id=token_id,
                piece=piece,
                display=token_display(tokenizer, token_id, data),
                bytes=data,
                special=is_special(tokenizer, token_id),
            )
        self.size = len(tokenizer)
        self._exact: dict[str, list[int]] = {}
        keyed: list[tuple[str, int]] = []
        joined: list[str] = []
        self._starts: list[int] = []
        self._owners: list[int] = []
        offset = 0
        for token_id in sorted(self._entries):
            for key in self._keys(self._entries[token_id]):
                self._exact.setdefault(key, []).append(token_id)
                keyed.append((key, token_id))
                joined.append(key)
                self._starts.append(offset)
                self._owners.append(token_id)
                offset += len(key) + 1
        keyed.sort()
        self._sorted_keys = [k for k, _ in keyed]
        self._sorted_ids = [i for _, i in keyed]
        self._joined = _SEP.join(joined)

    @staticmethod
    def _keys(entry: VocabEntry) -> list[str]:
        forms = (entry.piece, entry.display, entry.text)
        return [form for form in dict.fromkeys(forms) if form and _SEP not in form]

    def __len__(self) -> int:
        return len(self._entries)

    def lookup_id(self, token_id: int) -> VocabEntry:
        """The entry for one id; an InvalidParameterError names the valid range."""
        entry = self._entries.get(int(token_id))
        if entry is None:
            raise InvalidParameterError(
                "token_id", f"{token_id} is not in the vocabulary (ids 0..{self.size - 1})"
            )
        return entry

    def resolve(self, query: str, encode: Callable[[str], list[int]]) -> tuple[VocabEntry, str]:
        """The one token a person means by `query`, and a note when it was a guess.

        Digits are an id; a quoted ``'Ġthe'`` or ``" the"`` must match a piece,
        display form or text exactly; anything else is tried the same way, then
        tokenized with `encode` (text of several tokens gives the first, noted)."""
        if not query.strip():
            raise InvalidParameterError("token", "type an id, a 'piece' or some text")
        if query.strip().isdigit():
            return self.lookup_id(int(query.strip())), ""
        quoted = len(query) >= 2 and query[0] == query[-1] and query[0] in "'\""
        wanted = query[1:-1] if quoted else query
        if exact := self.search(wanted, "exact", 1):
            return exact[0], ""
        if quoted:
            raise InvalidParameterError("token", f"no token is exactly {wanted!r}")
        ids = encode(query)
        if not ids:
            raise InvalidParameterError("token", f"{query!r} has no tokens")
        note = "" if len(ids) == 1 else f"{query!r} is {len(ids)} tokens; the first"
        return self.lookup_id(ids[0]), note

    def search(
        self, query: str, mode: SearchMode = "substring", limit: int = 50
    ) -> list[VocabEntry]:
        """Tokens matching ``query``: exact matches first, then (prefix mode and up)
        the shortest prefix matches, then (substring mode) matches anywhere, by id."""
        if mode not in MODES:
            raise InvalidParameterError("mode", f"must be one of {', '.join(MODES)}, not {mode!r}")
        if not query or limit <= 0:
            return []
        found: dict[int, None] = dict.fromkeys(self._exact.get(query, []))
        if mode != "exact" and len(found) < limit:
            for token_id in self._prefix(query, limit):
                found.setdefault(token_id)
        if mode == "substring" and len(found) < limit:
            self._substring(query, found, limit)
        return [self._entries[i] for i in list(found)[:limit]]

    def _prefix(self, query: str, limit: int) -> list[int]:
        low = bisect.bisect_left(self._sorted_keys, query)
        high = bisect.bisect_left(self._sorted_keys, query + "\U0010ffff")
        candidates = range(low, high)
        best = heapq.nsmallest(
            limit * 3, candidates, key=lambda j: (len(self._sorted_keys[j]), self._sorted_ids[j])
        )
        return [self._sorted_ids[j] for j in best]

    def _substring(self, query: str, found: dict[int, None], limit: int) -> None:
        if _SEP in query:
            return
        position = self._joined.find(query)
        while position >= 0 and len(found) < limit:
            key_index = bisect.bisect_right(self._starts, position) - 1
            found.setdefault(self._owners[key_index])
            # skip to the next key: one match per key is enough
            next_key = key_index + 1
            if next_key >= len(self._starts):
                break
            position = self._joined.find(query, self._starts[next_key])


_INDEXES: weakref.WeakKeyDictionary[Any, VocabIndex] = weakref.WeakKeyDictionary()


def vocab_index(tokenizer: Any) -> VocabIndex:
    """The tokenizer's index, built on first use and kept while the tokenizer lives."""
    index = _INDEXES.get(tokenizer)
    if index is None:
        index = VocabIndex(tokenizer)
        _INDEXES[tokenizer] = index
    return index
