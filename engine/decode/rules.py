"""The rules every engine's reply follows, written once: when a reply stops, how it is
summarised, and how a kept prefix (a stored reply being continued) counts.

The local loop, llama.cpp, the remote client and the tests' fake engine all call
these, so a rule changed here changes for every engine, and the contract suite
(tests/test_engine_contract.py) holds each engine to it.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.errors import (
    GenerationError,
    InvalidParameterError,
    LogitlabError,
    PromptTooLongError,
)
from engine.records import FinishReason, GenerationSummary, Step, decode_rate

# --- what a reply may start from ---------------------------------------------------


def prompt_problem(ids: Sequence[int], context: int) -> LogitlabError | None:
    """Why `ids` cannot be prefilled in a context window of `context` tokens (it must
    leave room for one new token), or None."""
    if not ids:
        return InvalidParameterError("prompt", "is empty; give at least one token")
    if len(ids) >= context:
        return PromptTooLongError(
            f"the prompt is {len(ids)} tokens but the model's context window is "
            f"{context}; shorten it to at most {context - 1} tokens"
        )
    return None


# --- when a reply stops --------------------------------------------------------------


def finish_reason_after(
    *,
    stopped: bool,
    generated: int,
    prompt_tokens: int,
    max_new_tokens: int,
    context_window: int,
) -> FinishReason | None:
    """Why a reply ends after its latest token, or None to go on.

    In this order: an end-of-sequence token or a matched stop string (`stopped`) is
    ``stop``; `generated` tokens (a kept prefix included) reaching `max_new_tokens`
    is ``length``; prompt plus reply filling the context window is ``context``. A
    window or prompt length of 0 means unknown (a remote server that did not say).
    """
    if stopped:
        return "stop"
    if generated >= max_new_tokens:
        return "length"
    if context_window and prompt_tokens and prompt_tokens + generated >= context_window:
        return "context"
    return None


class StopScan:
    """Text released as it comes, cut before the first stop string and holding back a
    tail that could still become one, so a matched stop string is never shown.

    Engines feed it complete text (`push`); `finish` flushes what is held back when the
    reply ends for another reason. ``text`` is everything released so far.
    """

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self._stops = tuple(stops)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._text = ""  # all text pushed (cut at a matched stop string)
        self._emitted = 0  # how much of _text has been released
        self.stopped: str | None = None  # the stop string that matched

    @property
    def text(self) -> str:
        return self._text[: self._emitted]

    def push(self, text: str) -> str:
        """Add complete text; return the part that is now safe to show (may be "")."""
        if self.stopped is not None:
            return ""
        self._text += text
        return self._release(final=False)

    def finish(self) -> str:
        """Release everything still held back (the reply ended without a stop string)."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        if self.stopped is not None:
            return ""
        start, end = self._emitted, len(self._text)
        if self._stops:
            match = _first_match(self._text, self._stops, start)
            if match is not None:
                index, stop = match
                self.stopped = stop
                self._text = self._text[:index]
                self._emitted = index
                return self._text[start:index]
            if not final:
                end -= _partial_stop_suffix(self._text, self._stops, start, self._longest)
        self._emitted = end
        return self._text[start:end]


def _first_match(text: str, stops: tuple[str, ...], start: int) -> tuple[int, str] | None:
    """The earliest stop string occurrence at or after `start`."""
    best: tuple[int, str] | None = None
    for stop in stops:
        index = text.find(stop, start)
        if index >= 0 and (best is None or index < best[0]):
            best = (index, stop)
    return best


def _partial_stop_suffix(text: str, stops: tuple[str, ...], start: int, longest: int) -> int:
    """Length of the longest tail of text[start:] that begins some stop string."""
    limit = min(longest - 1, len(text) - start)
    for size in range(limit, 0, -1):
        tail = text[-size:]
        if any(stop.startswith(tail) for stop in stops):
            return size
    return 0


# --- how a reply is summarised ------------------------------------------------------------


def reply_summary(
    finish_reason: FinishReason | None,
    *,
    text: str,
    prompt_tokens: int,
    steps: Sequence[Step],
    prefill_ms: float,
    prefix: Sequence[int] = (),
) -> GenerationSummary:
    """The summary of a finished reply: usage, time to first token, decode rate.

    `steps` are the ones decoded here (a kept `prefix` was decoded before: it counts
    as completion tokens and heads `token_ids`, but has no timing). Time to first
    token = prefill + the first step; the rate is `decode_rate`. An unfinished reply
    has no summary (GenerationError): a front end asks once `done` is true.
    """
    if finish_reason is None:
        raise GenerationError("the generation has not finished")
    step_ms = [s.elapsed_ms for s in steps]
    ids = (*(int(i) for i in prefix), *(s.token_id for s in steps))
    return GenerationSummary(
        finish_reason=finish_reason,
        text=text,
        prompt_tokens=prompt_tokens,
        completion_tokens=len(ids),
        tokens_per_second=decode_rate(step_ms, prefill_ms),
        time_to_first_token_ms=prefill_ms + (step_ms[0] if step_ms else 0.0),
        token_ids=ids,
    )


# --- a kept prefix ----------------------------------------------------------------------------


def remaining_tokens(max_new_tokens: int, made: int) -> int:
    """How many tokens a reply that has `made` already may still add (at least one:
    a request for zero is refused by every engine)."""
    return max(1, max_new_tokens - made)


def rewind_prefix(prefix: Sequence[int], generated: Sequence[int], n: int) -> list[int] | None:
    """Rewinding `n` tokens of a reply that continued `prefix` and decoded `generated`:
    None when the cut stays in `generated` (drop its last `n`), else the shorter prefix
    to restart from (nothing decoded here survives). Too many tokens: GenerationError."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise GenerationError(f"cannot rewind {n!r} tokens: give a count >= 0")
    kept = len(prefix) + len(generated) - n
    if kept < 0:
        raise GenerationError(f"cannot rewind {n} tokens: the reply has fewer")
    if n <= len(generated):
        return None
    return [*prefix, *generated][:kept]
