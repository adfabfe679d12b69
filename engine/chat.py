"""Chat prompts: messages rendered with the tokenizer's chat template, then ids.

The template already writes any BOS it wants, so the rendered text is tokenized
without adding special tokens again (no second BOS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


def render_chat_text(
    tokenizer: Any, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
) -> str:
    """The exact string the chat template produces for `messages`."""
    return str(
        tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )
    )


def chat_prompt_ids(
    tokenizer: Any, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
) -> list[int]:
    """Token ids of the rendered chat, without a second BOS."""
    text = render_chat_text(tokenizer, messages, add_generation_prompt=add_generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
