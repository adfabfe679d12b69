"""Token views (ids, pieces, bytes, flags), chat rendering with the injection guard,
and the vocabulary index. Torch-free: a tokenizer is all these need."""

from engine.tokens.chat import (
    ChatMessage,
    RenderedChat,
    chat_prompt_ids,
    control_tokens,
    render_chat,
)
from engine.tokens.views import (
    Origin,
    TokenInfo,
    TokenView,
    chat_template_source,
    display_bytes,
    display_text,
    encode_text,
    ids_view,
    special_tokens_summary,
    token_view,
)
from engine.tokens.vocab import VocabEntry, VocabIndex, vocab_index

__all__ = [
    "ChatMessage",
    "Origin",
    "RenderedChat",
    "TokenInfo",
    "TokenView",
    "VocabEntry",
    "VocabIndex",
    "chat_prompt_ids",
    "chat_template_source",
    "control_tokens",
    "display_bytes",
    "display_text",
    "encode_text",
    "ids_view",
    "render_chat",
    "special_tokens_summary",
    "token_view",
    "vocab_index",
]
