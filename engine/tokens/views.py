"""Token views: each token's id, raw piece, exact bytes, visible-whitespace display and flags.

Token ids are the source of truth. A token's bytes come from its vocabulary
piece (undoing the GPT-2 byte map, reading ``<0xNN>`` byte-fallback pieces,
turning ``▁`` into a space), never from ``decode([id]).encode()``, which loses
the half of a character a byte-level token carries. A view of a text is aligned
byte by byte against the text's UTF-8, so the bytes of all its tokens
concatenate to exactly that UTF-8, and each token knows its character span.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

Origin = Literal["template", "system", "user", "assistant", "text"]

_Bytes = bytes  # TokenInfo has a field named `bytes`; annotations after it need the type
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_VISIBLE = {" ": "·", "\n": "↵", "\t": "→", "\r": "␍", "\x7f": "␡"}


# --- records ------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenInfo:
    """One token as the inspector shows it.

    ``bytes`` are the bytes this token contributes to the text (for a view of a
    text: a synthetic prefix space a SentencePiece tokenizer inserted is not
    text, so it is left out); ``piece_bytes`` are what the vocabulary piece
    itself stands for. ``start``/``end`` are character offsets in the viewed
    text (None for a view of bare ids).
    """

    position: int
    id: int
    piece: str
    display: str
    bytes: bytes
    special: bool
    partial: bool
    origin: Origin = "text"
    message_index: int | None = None
    start: int | None = None
    end: int | None = None
    piece_bytes: _Bytes = b""

    def to_dict(self) -> dict[str, Any]:
        """The `tokenize --format json` token object (DESIGN.md), plus `partial`."""
        return {
            "position": self.position,
            "id": self.id,
            "piece": self.piece,
            "display": self.display,
            "bytes": list(self.bytes),
            "special": self.special,
            "partial": self.partial,
            "origin": self.origin,
            "message_index": self.message_index,
        }


@dataclass(frozen=True)
class TokenView:
    """The tokens of one text (or id list), in order; ``byte_exact`` says the
    token bytes concatenate to the text's UTF-8 (False only when a normalizer
    rewrote the text, e.g. NFKC or lowercasing)."""

    tokens: tuple[TokenInfo, ...]
    text: str
    byte_exact: bool = True

    @property
    def count(self) -> int:
        return len(self.tokens)

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    def to_dict(self) -> dict[str, Any]:
        """`logitlab tokenize --format json`: ``{"count": n, "tokens": [...]}``."""
        return {"count": self.count, "tokens": [t.to_dict() for t in self.tokens]}


# --- how a tokenizer writes bytes into pieces ---------------------------------------


@dataclass(frozen=True)
class _Scheme:
    """What a tokenizer's pieces mean as bytes, read once from its tokenizer.json."""

    byte_level: bool
    byte_fallback: bool
    metaspace: str | None  # the replacement char, usually "▁"
    added: dict[int, str] = field(default_factory=dict)  # id -> content of added tokens
    special_ids: frozenset[int] = frozenset()


_SCHEMES: weakref.WeakKeyDictionary[Any, _Scheme] = weakref.WeakKeyDictionary()


def _scheme(tokenizer: Any) -> _Scheme:
    """The tokenizer's piece scheme, cached per tokenizer object."""
    try:
        cached = _SCHEMES.get(tokenizer)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None:
        return cached
    scheme = _read_scheme(tokenizer)
    with contextlib.suppress(TypeError):
        _SCHEMES[tokenizer] = scheme
    return scheme


def _read_scheme(tokenizer: Any) -> _Scheme:
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(
        tokenizer, "_tokenizer", None
    )
    config: dict[str, Any] = {}
    if backend is not None:
        try:
            config = json.loads(backend.to_str())
        except Exception:
            config = {}
    parts = [config.get("decoder"), config.get("pre_tokenizer"), config.get("normalizer")]
    types = [node for part in parts for node in _walk(part)]
    replacement = None
    for node in types:
        if node.get("type") == "Metaspace":
            replacement = node.get("replacement", "▁")
        elif node.get("type") == "Replace" and node.get("content") == " ":
            pattern = node.get("pattern", {})
            replacement = pattern.get("String", replacement) if isinstance(pattern, dict) else None
    model = config.get("model") or {}
    added_decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    added = {int(i): str(getattr(t, "content", t)) for i, t in added_decoder.items()}
    special = {int(i) for i, t in added_decoder.items() if getattr(t, "special", False)}
    special |= {int(i) for i in getattr(tokenizer, "all_special_ids", []) or []}
    return _Scheme(
        byte_level=any(node.get("type") == "ByteLevel" for node in types),
        byte_fallback=bool(model.get("byte_fallback"))
        or any(node.get("type") == "ByteFallback" for node in types),
        metaspace=replacement if replacement else ("▁" if backend is None else None),
        added=added,
        special_ids=frozenset(special),
    )


def _walk(node: Any) -> list[dict[str, Any]]:
    """Every component dict inside a (possibly nested Sequence) tokenizer component."""
    if not isinstance(node, dict):
        return []
    found = [node]
    for key in ("decoders", "pretokenizers", "normalizers"):
        for child in node.get(key) or []:
            found += _walk(child)
    return found


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """The inverse of GPT-2's bytes_to_unicode map (printable stand-ins for bytes)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars, strict=True)}


def piece_to_bytes(tokenizer: Any, token_id: int, piece: str) -> bytes:
    """The bytes a vocabulary piece stands for under the tokenizer's scheme."""
    scheme = _scheme(tokenizer)
    if token_id in scheme.added:
        return scheme.added[token_id].encode("utf-8")
    if scheme.byte_fallback:
        match = _BYTE_PIECE.match(piece)
        if match:
            return bytes([int(match.group(1), 16)])
    if scheme.byte_level:
        table = _unicode_to_byte()
        if all(ch in table for ch in piece):
            return bytes(table[ch] for ch in piece)
    if scheme.metaspace:
        piece = piece.replace(scheme.metaspace, " ")
    return piece.encode("utf-8")


def token_piece(tokenizer: Any, token_id: int) -> str:
    """The raw vocabulary piece (``Ġ``, ``▁``, ``<0xNN>`` visible)."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    return "" if piece is None else str(piece)


def token_bytes(tokenizer: Any, token_id: int) -> bytes:
    """Exact bytes of one token, from its piece — not ``decode([id]).encode()``."""
    return piece_to_bytes(tokenizer, token_id, token_piece(tokenizer, token_id))


def is_special(tokenizer: Any, token_id: int) -> bool:
    """True for special tokens and other added tokens (control markup, not text)."""
    scheme = _scheme(tokenizer)
    return token_id in scheme.special_ids or token_id in scheme.added


def display_bytes(data: bytes) -> str:
    """Text with whitespace made visible; bytes that are not whole UTF-8 characters
    show as ``<0xNN>`` so half a character never becomes a replacement glyph."""
    return data.decode("utf-8", errors="surrogateescape").translate(_visible_table())


def display_text(text: str) -> str:
    """Text with whitespace and control characters made visible (the token views' map)."""
    return text.translate(_visible_table())


@lru_cache(maxsize=1)
def _visible_table() -> dict[int, str]:
    """str.translate table: visible whitespace, control pictures, escaped bytes as <0xNN>."""
    table = {code: chr(0x2400 + code) for code in range(0x20)}  # control pictures: ␀ ␁ ...
    table.update({ord(ch): shown for ch, shown in _VISIBLE.items()})
    table.update({0xDC00 + b: f"<0x{b:02X}>" for b in range(0x80, 0x100)})  # surrogateescape
    return table


def display_piece(tokenizer: Any, token_id: int) -> str:
    """What the inspector shows for a token: special tokens as written, others as
    their bytes with visible whitespace and the leading-space marker resolved."""
    return token_display(tokenizer, token_id, token_bytes(tokenizer, token_id))


def token_display(tokenizer: Any, token_id: int, data: bytes) -> str:
    content = _scheme(tokenizer).added.get(token_id)
    if content is not None and not content.isspace():
        return content  # control markup shows as written: <|im_end|>
    return display_bytes(data)


# --- views ------------------------------------------------------------------------------

OriginOf = Callable[[int, int], tuple[Origin, int | None]]  # (char start, char end) -> origin


def token_view(
    tokenizer: Any, text: str, *, allow_special: bool = False, add_special_tokens: bool = False
) -> TokenView:
    """Tokenize plain text (origin ``text``). Special-token strings in the text stay
    plain text unless ``allow_special`` — typed text must not become control tokens."""
    ids = encode_text(tokenizer, text, allow_special=allow_special)
    if add_special_tokens:
        ids = list(tokenizer.build_inputs_with_special_tokens(ids))
    return view_of_ids(tokenizer, ids, text)


def encode_text(tokenizer: Any, text: str, *, allow_special: bool) -> list[int]:
    """Ids of ``text`` with no BOS/EOS added; ``split_special_tokens`` is the guard."""
    encoded = tokenizer(text, add_special_tokens=False, split_special_tokens=not allow_special)
    return list(encoded["input_ids"])


def ids_view(tokenizer: Any, ids: Sequence[int], *, origin: Origin = "text") -> TokenView:
    """A view of bare ids (a generated continuation, a saved prompt): bytes from pieces."""
    tokens = _infos(tokenizer, [int(i) for i in ids], None, lambda _s, _e: (origin, None))
    text = b"".join(t.bytes for t in tokens).decode("utf-8", errors="replace")
    return TokenView(tokens=tokens, text=text)


def view_of_ids(
    tokenizer: Any, ids: Sequence[int], text: str, origin_of: OriginOf | None = None
) -> TokenView:
    """A view of ``ids`` known to encode ``text``: aligned to the text byte by byte."""
    tokens = _infos(
        tokenizer, [int(i) for i in ids], text, origin_of or (lambda _s, _e: ("text", None))
    )
    exact = b"".join(t.bytes for t in tokens) == text.encode("utf-8")
    return TokenView(tokens=tokens, text=text, byte_exact=exact)


def _infos(
    tokenizer: Any, ids: list[int], text: str | None, origin_of: OriginOf
) -> tuple[TokenInfo, ...]:
    pieces = [token_piece(tokenizer, i) for i in ids]
    raw = [piece_to_bytes(tokenizer, i, p) for i, p in zip(ids, pieces, strict=True)]
    spans: list[tuple[int | None, int | None]]
    if text is None:
        own, spans = raw, [(None, None)] * len(ids)
    else:
        own, spans = _align(text, raw)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    infos = []
    for position, token_id in enumerate(ids):
        decoder.decode(own[position])
        partial = bool(decoder.getstate()[0])
        start, end = spans[position]
        if start is None or end is None:
            origin, index = origin_of(-1, -1)
        else:
            origin, index = origin_of(start, end)
        special = is_special(tokenizer, token_id)
        infos.append(
            TokenInfo(
                position=position,
                id=token_id,
                piece=pieces[position],
                display=token_display(tokenizer, token_id, own[position]),
                bytes=own[position],
                special=special,
                partial=partial,
                origin=origin,
                message_index=index,
                start=start,
                end=end,
                piece_bytes=raw[position],
            )
        )
    return tuple(infos)


def _align(text: str, raw: list[bytes]) -> tuple[list[bytes], list[tuple[int | None, int | None]]]:
    """Match each token's bytes against the text's UTF-8 in order.

    A token whose bytes are one space more than the text at that point carries a
    prefix space the tokenizer inserted (SentencePiece ``▁hello`` at the start,
    GPT-2 ``add_prefix_space``): that space is not text and is dropped. Returns
    each token's own bytes and its character span (start at the first byte, end
    after the last byte, rounded out to whole characters).
    """
    data = text.encode("utf-8")
    char_at = _byte_to_char(text, len(data))
    cursor = 0
    own: list[bytes] = []
    spans: list[tuple[int | None, int | None]] = []
    for chunk in raw:
        if data.startswith(chunk, cursor):
            piece = chunk
        elif chunk.startswith(b" ") and data.startswith(chunk[1:], cursor):
            piece = chunk[1:]
        else:  # a normalizer rewrote the text here: keep the piece's bytes, no span
            own.append(chunk)
            spans.append((None, None))
            continue
        end = cursor + len(piece)
        own.append(piece)
        spans.append((char_at[cursor], _char_end(char_at, cursor, end)))
        cursor = end
    return own, spans


def _byte_to_char(text: str, total: int) -> list[int]:
    """For each byte offset (and the end), the index of the character it belongs to."""
    table: list[int] = []
    for index, ch in enumerate(text):
        table.extend([index] * len(ch.encode("utf-8")))
    table.append(len(text))
    return table[: total + 1]


def _char_end(char_at: list[int], start: int, end: int) -> int:
    if end == start:
        return char_at[start]
    return char_at[end - 1] + 1


# --- special tokens and vocabulary facts ---------------------------------------------------


def special_tokens_summary(tokenizer: Any, eos_ids: Sequence[int]) -> dict[str, Any]:
    """bos/eos/pad/unk and additional special tokens with ids, every added token,
    vocab size, the EOS ids the decoder stops on, and the chat template and where
    it came from — what the tutorials print from ``special_tokens_map``."""
    named: dict[str, Any] = {}
    for role in ("bos", "eos", "pad", "unk"):
        token = getattr(tokenizer, f"{role}_token", None)
        named[role] = None if token is None else _token_entry(tokenizer, str(token))
    additional = [
        _token_entry(tokenizer, str(t))
        for t in (getattr(tokenizer, "additional_special_tokens", None) or [])
    ]
    added = [
        {"id": int(i), "token": str(t.content), "special": bool(getattr(t, "special", False))}
        for i, t in sorted((getattr(tokenizer, "added_tokens_decoder", {}) or {}).items())
    ]
    template, source = chat_template_source(tokenizer)
    return {
        **named,
        "additional": additional,
        "added_tokens": added,
        "vocab_size": len(tokenizer),
        "base_vocab_size": int(getattr(tokenizer, "vocab_size", len(tokenizer))),
        "eos_ids": [int(i) for i in eos_ids],
        "eos_tokens": [token_piece(tokenizer, int(i)) for i in eos_ids],
        "chat_template": template,
        "chat_template_source": source,
    }


def _token_entry(tokenizer: Any, token: str) -> dict[str, Any]:
    return {"token": token, "id": tokenizer.convert_tokens_to_ids(token)}


def chat_template_source(tokenizer: Any) -> tuple[str | None, str]:
    """The chat template text and the file it came from (``none`` when there is none)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    if not template:
        return None, "none"
    directory = Path(str(getattr(tokenizer, "name_or_path", "") or ""))
    for name in ("chat_template.jinja", "chat_template.json", "tokenizer_config.json"):
        if (directory / name).is_file():
            return str(template), str(directory / name)
    return str(template), "tokenizer"
