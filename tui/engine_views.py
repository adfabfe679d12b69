"""Adapters from the engine's tokenizer views to the UI's `PromptView`.

Kept apart from backend.py so the protocol module stays torch-free; these run
only inside workers, after a model is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.tokens.chat import ChatMessage, chat_prompt_ids, render_chat
from tui.backend import PromptToken, PromptView

if TYPE_CHECKING:
    from engine.model.loading import LoadedModel


def prompt_ids(
    loaded: LoadedModel, messages: Sequence[ChatMessage], *, allow_special: bool
) -> list[int]:
    """Token ids of the chat prompt, honouring the special-token-injection setting."""
    return chat_prompt_ids(loaded.tokenizer, messages, allow_special=allow_special)


def prompt_view(
    loaded: LoadedModel, messages: Sequence[ChatMessage], *, allow_special: bool
) -> PromptView:
    """The rendered template as tokens with origins, warnings and the special map."""
    rendered = render_chat(loaded.tokenizer, list(messages), allow_special=allow_special)
    tokens = tuple(
        PromptToken(
            position=t.position,
            id=t.id,
            display=t.display,
            special=t.special,
            origin=t.origin,
        )
        for t in rendered.tokens.tokens
    )
    return PromptView(
        tokens=tokens,
        context_window=loaded.context_window,
        warnings=tuple(rendered.warnings),
        special_tokens=_special_map(loaded),
    )


def _special_map(loaded: LoadedModel) -> dict[str, Any]:
    from engine.tokens.views import special_tokens_summary

    return special_tokens_summary(loaded.tokenizer, loaded.eos_token_ids)
