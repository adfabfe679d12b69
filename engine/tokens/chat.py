"""Chat prompts: messages rendered with the tokenizer's chat template, then ids.

The template already writes any BOS it wants, so the rendered text is tokenized
without adding special tokens again (no second BOS).

The injection guard: a special-token string inside a message (a user typing
``<|im_end|>``) is tokenized as plain text by default, so typed text can never
close a turn or forge a system message; only the markup the template itself
writes becomes control tokens. This is what transformers 5's
``apply_chat_template(..., sanitize_control_tokens=True)`` does; we do it from
the message spans we already know (the tests check both give the same ids),
which also gives every token its origin for the inspector.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from engine.tokens.views import Origin, TokenView, encode_text, view_of_ids

Role = Literal["system", "user", "assistant"]

# private-use stand-ins for message contents while finding where the template puts them
_SENTINEL = "\U000f0000{}\U000f0001"
_SENTINEL_RE = re.compile("\U000f0000(\\d+)\U000f0001")


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class MessageSpan:
    """Where one message's content sits in the rendered text (character offsets)."""

    role: Role
    message_index: int
    start: int
    end: int


@dataclass(frozen=True)
class Injection:
    """A special-token string found inside a message's content."""

    message_index: int
    token: str
    start: int  # character offsets in the rendered text
    end: int


@dataclass(frozen=True)
class RenderedChat:
    """A chat as the model sees it: the exact text, its ids and tokens with origins.

    ``spans`` lets the UI colour each message; ``injections`` are the indices of
    messages that contain special-token text (treated as plain text unless the
    chat was rendered with ``allow_special``); ``warnings`` say what happened.
    """

    text: str
    ids: list[int]
    tokens: TokenView
    spans: tuple[MessageSpan, ...]
    warnings: tuple[str, ...]
    injections: tuple[int, ...]
    allow_special: bool = False


def render_chat_text(
    tokenizer: Any, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
) -> str:
    """The exact string the chat template produces for `messages`."""
    return _render(tokenizer, [m.content for m in messages], messages, add_generation_prompt)


def chat_prompt_ids(
    tokenizer: Any,
    messages: Sequence[ChatMessage],
    *,
    add_generation_prompt: bool = True,
    allow_special: bool = False,
) -> list[int]:
    """Token ids of the rendered chat, without a second BOS, with the injection guard on
    unless ``allow_special``."""
    text, spans = _render_with_spans(tokenizer, messages, add_generation_prompt)
    injections = [] if allow_special else find_injections(tokenizer, text, spans)
    return _encode_guarded(tokenizer, text, injections)


def render_chat(
    tokenizer: Any,
    messages: Sequence[ChatMessage],
    *,
    add_generation_prompt: bool = True,
    allow_special: bool = False,
) -> RenderedChat:
    """Render, tokenize and label a chat for the inspector (and the decode loop)."""
    text, spans = _render_with_spans(tokenizer, messages, add_generation_prompt)
    found = find_injections(tokenizer, text, spans)
    ids = _encode_guarded(tokenizer, text, [] if allow_special else found)
    view = view_of_ids(tokenizer, ids, text, _origin_lookup(spans))
    warnings = [*_injection_warnings(found, allow_special), *_bos_warnings(tokenizer, ids)]
    if len(spans) < len(messages):
        warnings.append("could not locate every message in the rendered text; origins are partial")
    return RenderedChat(
        text=text,
        ids=ids,
        tokens=view,
        spans=tuple(spans),
        warnings=tuple(warnings),
        injections=tuple(sorted({i.message_index for i in found})),
        allow_special=allow_special,
    )


# --- rendering and message spans -------------------------------------------------------


def _render(
    tokenizer: Any,
    contents: Sequence[str],
    messages: Sequence[ChatMessage],
    add_generation_prompt: bool,
) -> str:
    return str(
        tokenizer.apply_chat_template(
            [{"role": m.role, "content": c} for m, c in zip(messages, contents, strict=True)],
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
    )


def _render_with_spans(
    tokenizer: Any, messages: Sequence[ChatMessage], add_generation_prompt: bool
) -> tuple[str, list[MessageSpan]]:
    """The rendered text and each message's content span in it.

    The template is rendered a second time with each content replaced by a
    sentinel; the text between sentinels is the template's own markup. The real
    text must equal that markup interleaved with the contents (or the stripped
    contents, for templates that ``| trim``), which gives exact spans. If it
    does not (a template that rewrites content), spans are found by search.
    """
    text = _render(tokenizer, [m.content for m in messages], messages, add_generation_prompt)
    sentinels = [_SENTINEL.format(i) for i in range(len(messages))]
    if any("\U000f0000" in m.content for m in messages):
        return text, _search_spans(text, messages)
    skeleton = _render(tokenizer, sentinels, messages, add_generation_prompt)
    for transform in (lambda s: s, str.strip):
        spans = _interleave(text, skeleton, messages, transform)
        if spans is not None:
            return text, spans
    return text, _search_spans(text, messages)


def _interleave(
    text: str, skeleton: str, messages: Sequence[ChatMessage], transform: Any
) -> list[MessageSpan] | None:
    parts = _SENTINEL_RE.split(skeleton)  # [markup, index, markup, index, ..., markup]
    built: list[str] = []
    spans: list[MessageSpan] = []
    length = 0
    for position, part in enumerate(parts):
        if position % 2 == 0:
            built.append(part)
            length += len(part)
            continue
        index = int(part)
        content = transform(messages[index].content)
        spans.append(MessageSpan(messages[index].role, index, length, length + len(content)))
        built.append(content)
        length += len(content)
    return spans if "".join(built) == text else None


def _search_spans(text: str, messages: Sequence[ChatMessage]) -> list[MessageSpan]:
    """Fallback: find each content in order after the previous one."""
    spans, cursor = [], 0
    for index, message in enumerate(messages):
        content = message.content.strip() or message.content
        found = text.find(content, cursor) if content else -1
        if found >= 0:
            spans.append(MessageSpan(message.role, index, found, found + len(content)))
            cursor = found + len(content)
    return spans


def _origin_lookup(spans: Sequence[MessageSpan]) -> Any:
    """(char start, char end) -> the message the token overlaps, else template markup."""

    def origin_of(start: int, end: int) -> tuple[Origin, int | None]:
        for span in spans:
            if start < span.end and end > span.start:
                return span.role, span.message_index
        return "template", None

    return origin_of


# --- the injection guard --------------------------------------------------------------------


def control_tokens(tokenizer: Any) -> tuple[str, ...]:
    """Strings that become control tokens: every special token, plus added tokens the
    chat template writes (as transformers' sanitize_control_tokens decides), longest first."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = "\0".join(str(t) for t in template.values())
    found = set()
    for token in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values():
        content = str(getattr(token, "content", token))
        if not content or content.isspace():
            continue
        if getattr(token, "special", False) or content in template:
            found.add(content)
    found |= {str(t) for t in getattr(tokenizer, "all_special_tokens", []) or [] if str(t).strip()}
    return tuple(sorted(found, key=len, reverse=True))


def find_injections(tokenizer: Any, text: str, spans: Sequence[MessageSpan]) -> list[Injection]:
    """Every control-token string inside a message's content span."""
    tokens = control_tokens(tokenizer)
    if not tokens:
        return []
    pattern = re.compile("|".join(map(re.escape, tokens)))
    return [
        Injection(span.message_index, match.group(0), match.start(), match.end())
        for span in spans
        for match in pattern.finditer(text, span.start, span.end)
    ]


def _encode_guarded(tokenizer: Any, text: str, injections: Sequence[Injection]) -> list[int]:
    """Encode ``text`` whole, except that each injected control string is encoded as
    plain text (``split_special_tokens``) in its own piece, as transformers'
    ``encode_marked_chat`` does."""
    if not injections:
        return encode_text(tokenizer, text, allow_special=True)
    newline = encode_text(tokenizer, "\n", allow_special=True)
    ids: list[int] = []
    cursor = 0
    for injection in sorted(injections, key=lambda i: i.start):
        ids += _encode_piece(tokenizer, text[cursor : injection.start], True, newline, cursor)
        ids += _encode_piece(tokenizer, injection.token, False, newline, injection.start)
        cursor = injection.end
    ids += _encode_piece(tokenizer, text[cursor:], True, newline, cursor)
    return ids


def _encode_piece(
    tokenizer: Any, piece: str, allow_special: bool, newline: list[int], offset: int
) -> list[int]:
    """Encode a piece from the middle of a chat. After the start, encode behind a newline
    and drop it, so a SentencePiece tokenizer adds no prefix space mid-text."""
    if not piece:
        return []
    if offset == 0:
        return encode_text(tokenizer, piece, allow_special=allow_special)
    ids = encode_text(tokenizer, "\n" + piece, allow_special=allow_special)
    if ids[: len(newline)] == newline:
        return ids[len(newline) :]
    return encode_text(tokenizer, piece, allow_special=allow_special)


def _injection_warnings(found: Sequence[Injection], allow_special: bool) -> list[str]:
    by_message: dict[int, list[str]] = {}
    for injection in found:
        by_message.setdefault(injection.message_index, []).append(injection.token)
    treated = (
        "parsed as control tokens (allow_special)" if allow_special else "tokenized as plain text"
    )
    return [
        f"message {index} contains special-token text {', '.join(dict.fromkeys(tokens))}: {treated}"
        for index, tokens in sorted(by_message.items())
    ]


def _bos_warnings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """A BOS written twice at the start (template + tokenizer, or template + content)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and len(ids) >= 2 and ids[0] == ids[1] == bos:
        token = getattr(tokenizer, "bos_token", bos)
        return [f"duplicated BOS: the prompt starts with {token} twice"]
    return []
