"""The arguments a scoring request may take (torch-free: the remote engine checks them
too, without importing torch): `check_request`, and the most candidates per position."""

from __future__ import annotations

from collections.abc import Sequence

from engine.errors import InvalidParameterError

MAX_TOP = 50  # candidates per scored position, as `generate --top-logprobs`


def check_request(
    ids: Sequence[int],
    *,
    start: int,
    top: int,
    context_window: int | None,
    max_top: int = MAX_TOP,
    why: str = "",
) -> list[int]:
    """`ids` as a list of ints, or an InvalidParameterError saying what is wrong.

    `start` is the first position scored: 1 (the default) scores every token after
    the first; ``len(ids)`` scores none. `top` is 0..`max_top` (`why`: what limits it,
    said after the range).
    """
    path = [int(i) for i in ids]
    if not path:
        raise InvalidParameterError("ids", "is empty; there is no text to score")
    if isinstance(start, bool) or not isinstance(start, int) or not 1 <= start <= len(path):
        raise InvalidParameterError(
            "start", f"{start!r} is not a position to score from (1..{len(path)})"
        )
    if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= max_top:
        raise InvalidParameterError("top", f"{top!r} is not 0..{max_top}{why}")
    if context_window is not None and len(path) > context_window:
        raise InvalidParameterError(
            "ids", f"{len(path)} tokens do not fit the context window of {context_window}"
        )
    return path
