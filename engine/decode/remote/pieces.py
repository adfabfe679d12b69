"""What a token id stands for (piece, bytes, special flag) when a server sends only ids.

vLLM's ``return_tokens_as_token_ids`` answers ``"token_id:504"`` where a token's text
would be: the id is exact, its text is not there. `Pieces` fills it in, once per id and
connection, from one of two sources:

- a tokenizer the user names (``--engine-tokenizer``): the same piece, bytes and special
  flag as a local run (`TokenTable`, the local engine's own table);
- the server: ``/detokenize`` of the id alone gives its text, and ``/tokenize`` of that
  text (``return_token_strs``) gives the vocabulary piece where the text round-trips to
  the id. A token holding part of a UTF-8 character decodes alone to U+FFFD: its bytes
  stay unknown (`TokenFacts.exact` False, its piece that text), and a reply's text
  decodes such ids together on the server, as the local loop does.

A step's unknown ids (the token and its candidates) are looked up together, in parallel.
A server without ``/detokenize`` is asked once; ids then show as ``<id>``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from engine.decode.remote.client import HttpClient
from engine.decode.remote.mapping import Token, id_from_string
from engine.records import Candidate
from engine.tokens.chat import ChatMessage

LOOKUP_THREADS = 8
# where the server cannot say which tokens are special: a control token's text looks like
# "<|im_end|>" or "<file_sep>" (exactly SmolLM2's 17 specials, none of its other pieces)
_CONTROL = re.compile(r"<\|[^\s<>]+\|>|<[A-Za-z_]\w*>")


@dataclass(frozen=True)
class TokenFacts:
    """One vocabulary entry as logitlab records it."""

    piece: str  # the raw vocabulary piece ("Ġis"), or the token's text where unknown
    data: bytes  # the token's bytes (a special's: its text)
    special: bool
    exact: bool = True  # False: the bytes are unknown (part of a UTF-8 character, looked
    # up on a server whose decoding of it alone is U+FFFD; or nothing known at all)

    @property
    def display(self) -> str:
        """As the local engine shows a token: a special's piece, else its decoded bytes
        (an id nothing is known of: ``<id>``)."""
        if self.special or not self.data:
            return self.piece
        return self.data.decode("utf-8", errors="backslashreplace")

    @property
    def text(self) -> str:
        """What the token adds to a reply's text on its own (a special adds nothing)."""
        if self.special:
            return ""
        return self.data.decode("utf-8", errors="replace") if self.exact else self.piece


def unknown(token_id: int) -> TokenFacts:
    return TokenFacts(piece=f"<{token_id}>", data=b"", special=False, exact=False)


class Source(Protocol):
    """Where facts come from: `lookup` answers for every id it is given; `decode` is the
    text of ids together (specials skipped), for tokens that are parts of a character."""

    def lookup(self, ids: Sequence[int]) -> dict[int, TokenFacts]: ...
    def decode(self, ids: Sequence[int]) -> str: ...


class TokenizerSource:
    """A local tokenizer (the user named it): exactly the local engine's answers."""

    def __init__(self, tokenizer: Any) -> None:
        from engine.decode.textstream import TokenTable

        self._table = TokenTable(tokenizer)
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, name: str) -> TokenizerSource:
        """A tokenizer by hub id or directory (transformers' AutoTokenizer; no model)."""
        from engine.errors import ModelLoadError

        try:
            from transformers import AutoTokenizer

            return cls(AutoTokenizer.from_pretrained(name))
        except Exception as exc:  # transformers raises many kinds for a bad name
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"--engine-tokenizer {name!r}: cannot load it ({first})") from None

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=True))

    def eos_ids(self) -> tuple[int, ...]:
        """The tokenizer's end-of-sequence ids (what ends a local reply, as far as a
        tokenizer alone says)."""
        from engine.model.checkpoint import eos_ids

        return eos_ids(None, None, self._tokenizer)

    def chat_ids(self, messages: Sequence[ChatMessage]) -> list[int]:
        """The chat's prompt ids by this tokenizer's template, as the local engine's."""
        from engine.tokens.chat import chat_prompt_ids

        return chat_prompt_ids(self._tokenizer, messages)

    def lookup(self, ids: Sequence[int]) -> dict[int, TokenFacts]:
        table = self._table
        return {
            i: TokenFacts(table.piece(i), table.token_bytes(i), table.is_special(i)) for i in ids
        }


class ServerSource:
    """The server's ``/detokenize`` and ``/tokenize`` (vLLM's shapes), in parallel."""

    def __init__(self, client: HttpClient, model: str) -> None:
        self._client, self._model = client, model
        self._missing = False  # the server has no /detokenize: asked once
        self._strs: bool | None = None  # its /tokenize gives pieces (token_strs); None: untried

    def lookup(self, ids: Sequence[int]) -> dict[int, TokenFacts]:
        if self._missing or not ids:
            return {i: unknown(i) for i in ids}
        first = self._one(ids[0])
        if first is None:
            self._missing = True
            return {i: unknown(i) for i in ids}
        out = {ids[0]: first}
        rest = list(ids[1:])
        if rest:
            with ThreadPoolExecutor(min(LOOKUP_THREADS, len(rest))) as pool:
                for token_id, facts in zip(rest, pool.map(self._one, rest), strict=True):
                    out[token_id] = facts if facts is not None else unknown(token_id)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """The server's text of the ids together (callers pass no specials)."""
        if self._missing:
            return ""
        answer = self._client.try_post("/detokenize", {"model": self._model, "tokens": list(ids)})
        return _text_of(answer) or ""

    def _one(self, token_id: int) -> TokenFacts | None:
        """One id's facts; None where the server has no /detokenize."""
        answer = self._client.try_post("/detokenize", {"model": self._model, "tokens": [token_id]})
        text = _text_of(answer)
        if text is None:
            return None
        piece, whole = text, "\ufffd" not in text
        if whole and text and self._strs is not False:
            again = self._client.try_post(
                "/tokenize",
                {"model": self._model, "prompt": text, "add_special_tokens": False,
                 "return_token_strs": True},
            )  # fmt: skip
            strs = again.get("token_strs") if isinstance(again, dict) else None
            if self._strs is None:
                self._strs = isinstance(strs, list)  # llama.cpp, SGLang: never (text only)
            alone = isinstance(again, dict) and again.get("tokens") == [token_id]
            if alone and isinstance(strs, list) and len(strs) == 1 and isinstance(strs[0], str):
                piece = strs[0]  # else the text tokenizes otherwise: piece = text
        special = bool(_CONTROL.fullmatch(text)) and piece == text
        data = text.encode("utf-8") if whole else b""  # part of a character: unknown
        return TokenFacts(piece=piece, data=data, special=special, exact=whole)


class Pieces:
    """Facts per id for one connection: learnt from replies, else looked up (cached)."""

    def __init__(self, source: Source) -> None:
        self._source = source
        self._facts: dict[int, TokenFacts] = {}
        self._lock = threading.Lock()

    def learn(self, token_id: int, data: bytes) -> None:
        """Bytes a server sent with an id (its text is known: no lookup for it)."""
        if token_id >= 0 and data:
            with self._lock:
                if token_id not in self._facts:
                    text = data.decode("utf-8", errors="replace")
                    special = bool(_CONTROL.fullmatch(text))
                    self._facts[token_id] = TokenFacts(text, data, special)

    def known(self, token_id: int) -> TokenFacts | None:
        return self._facts.get(token_id)

    def exact(self, token_id: int) -> bool:
        """Whether the id's bytes are known exactly (learnt, or looked up whole)."""
        facts = self._facts.get(token_id)
        return facts is None or facts.exact

    def decode(self, ids: Sequence[int]) -> str:
        return self._source.decode(ids)

    def facts(self, ids: Iterable[int]) -> dict[int, TokenFacts]:
        """Every id's facts; the unknown ones looked up together."""
        wanted = [i for i in dict.fromkeys(int(i) for i in ids) if i >= 0]
        missing = [i for i in wanted if i not in self._facts]
        if missing:
            found = self._source.lookup(missing)
            with self._lock:
                for token_id in missing:
                    self._facts.setdefault(token_id, found.get(token_id) or unknown(token_id))
        return {i: self._facts[i] for i in wanted}

    def get(self, token_id: int) -> TokenFacts:
        if token_id < 0:
            return unknown(token_id)
        return self.facts([token_id])[token_id]

    def fill(self, tokens: Sequence[Token]) -> list[Token]:
        """Tokens whose server sent ids only (``token_id:N``) given their pieces and bytes;
        with a tokenizer the user named, every token (it is the authority on pieces)."""
        every = isinstance(self._source, TokenizerSource)
        chosen = [tok for tok in tokens if tok.token_id >= 0 and (tok.id_only or every)]
        need = [
            i
            for tok in chosen
            for i in (tok.token_id, *(c.token_id for c in tok.top if every or _id_only(c)))
        ]
        if not need:
            return list(tokens)
        facts = self.facts(need)
        picked = {id(tok) for tok in chosen}
        return [self._filled(tok, facts, every) if id(tok) in picked else tok for tok in tokens]

    def _filled(self, tok: Token, facts: dict[int, TokenFacts], every: bool) -> Token:
        own = facts.get(tok.token_id, unknown(tok.token_id))
        top, top_bytes = [], []
        for cand, data in zip(tok.top, tok.top_bytes, strict=True):
            if (every or _id_only(cand)) and cand.token_id in facts:
                f = facts[cand.token_id]
                cand, data = replace(cand, piece=f.piece, text=f.text), f.data
            top.append(cand)
            top_bytes.append(data)
        return replace(
            tok,
            data=own.data,
            piece=own.piece,
            # a named tokenizer knows; the server's text rule (`mark_text`) decides otherwise
            special=own.special if every else tok.special,
            top=tuple(top),
            top_bytes=tuple(top_bytes),
            id_only=False,
        )


def _text_of(answer: Any) -> str | None:
    """The text of a /detokenize answer: vLLM's ``prompt``, SGLang's ``text``, llama.cpp's
    ``content``."""
    if isinstance(answer, dict):
        for key in ("prompt", "text", "content"):
            if isinstance(answer.get(key), str):
                return str(answer[key])
    return None


def _id_only(cand: Candidate) -> bool:
    return cand.token_id >= 0 and id_from_string(cand.piece) == cand.token_id
