"""Adapters from the engine's tokenizer views to the UI's `PromptView`.

Kept apart from backend.py so the protocol module stays torch-free; these run
only inside workers, after a model is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.chat import ChatMessage
from tui.backend import PromptToken, PromptView, visible

if TYPE_CHECKING:
    from engine.loading import LoadedModel


def prompt_ids(
    loaded: LoadedModel, messages: Sequence[ChatMessage], *, allow_special: bool
) -> list[int]:
    """Token ids of the chat prompt, honouring the special-token-injection setting."""
    from engine import chat

    try:
        return list(
            chat.chat_prompt_ids(loaded.tokenizer, messages, allow_special=allow_special)  # type: ignore[call-arg]
        )
    except TypeError:  # an engine without the allow_special switch
        return list(chat.chat_prompt_ids(loaded.tokenizer, messages))


def prompt_view(
    loaded: LoadedModel, messages: Sequence[ChatMessage], *, allow_special: bool
) -> PromptView:
    """The rendered template as tokens with origins, warnings and the special map."""
    from engine import chat

    render = getattr(chat, "render_chat", None)
    if render is None:
        return _plain_view(loaded, messages, allow_special=allow_special)
    rendered = render(loaded.tokenizer, list(messages), allow_special=allow_special)
    tokens = tuple(
        PromptToken(
            position=int(t.position),
            id=int(t.id),
            display=str(t.display),
            special=bool(t.special),
            origin=str(t.origin),
        )
        for t in rendered.tokens.tokens
    )
    warnings = [str(w) for w in getattr(rendered, "warnings", ()) or ()]
    return PromptView(
        tokens=tokens,
        context_window=loaded.context_window,
        warnings=tuple(warnings),
        special_tokens=_special_map(loaded),
    )


def _plain_view(
    loaded: LoadedModel, messages: Sequence[ChatMessage], *, allow_special: bool
) -> PromptView:
    tokenizer = loaded.tokenizer
    ids = prompt_ids(loaded, messages, allow_special=allow_special)
    special = set(getattr(tokenizer, "all_special_ids", ()) or ())
    pieces = tokenizer.convert_ids_to_tokens(ids)
    tokens = tuple(
        PromptToken(
            position=i,
            id=tid,
            display=visible(str(piece).replace("Ġ", " ").replace("Ċ", "\n")),
            special=tid in special,
            origin="template" if tid in special else "text",
        )
        for i, (tid, piece) in enumerate(zip(ids, pieces, strict=True))
    )
    return PromptView(
        tokens=tokens, context_window=loaded.context_window, special_tokens=_special_map(loaded)
    )


def _special_map(loaded: LoadedModel) -> dict[str, Any]:
    from engine.tokens import special_tokens_summary

    return special_tokens_summary(loaded.tokenizer, loaded.eos_token_ids)
