"""Running a comparison: two sides, one shared token path, step by step.

1. **Tokenization first.** Each side renders the prompt its own way (template on or
   off, its tokenizer); the two id lists and their first difference are recorded
   before any number. Sides whose vocabularies differ stop there: the comparison has
   no steps and `Comparison.problem` says why in one line.
2. **The shared path.** A's reply to the prompt (A's sampling settings, at most
   `max_new_tokens`), or a given path (`text` encoded by A, or `path` ids: the
   workbench's selected reply).
3. **Teacher forcing.** Both sides score the path after their own prompt ids: per
   position KL(A‖B) over the whole vocabulary, the path token's logprob under each,
   its rank under B, each side's top-1 and top-N (engine/compare/kl.py: exact where
   both gave whole rows, an estimate flagged ``exact: false`` otherwise).
4. **B runs free** from its prompt (B's sampling settings, the path's length as the
   budget); the first step where its own choice leaves the path is
   `first_divergence`. A greedy B's choices while it follows the path are its top-1s
   on the rows just scored (the same prefix, the same distribution), so
   `first_divergence` is exactly where `top1_b` first leaves the path (`_b_free`).

`compare` opens both sides from specs and closes them; `compare_sides` runs on sides
already open (the workbench's current engine as A). Both report `CompareProgress`
through an optional callback and stop between steps or chunks when `cancel` is set
(`CompareCancelled`). Blocking: the workbench calls them on a worker thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.compare.records import (
    EMPTY_SUMMARY,
    CompareCandidate,
    CompareStep,
    Comparison,
    Tokenization,
    first_difference,
)
from engine.compare.sides import (
    Chunk,
    CompareCancelled,
    Prompt,
    Side,
    close_side,
    open_side,
)
from engine.compare.spec import SideSpec
from engine.errors import InvalidParameterError

if TYPE_CHECKING:
    import torch

DEFAULT_TOP = 10  # candidates kept per side and step (the workbench's Step tab)
VOCAB_SAMPLE = 256  # ids whose bytes both sides must agree on, spread over the vocabulary


@dataclass(frozen=True)
class CompareProgress:
    """Where a comparison is: `stage` ("load", "reply", "score", "free"), the side it
    concerns ("A", "B" or "" for both), `done` of `total` units (tokens or positions;
    0 when unknown)."""

    stage: str
    side: str
    done: int
    total: int


ProgressFn = Callable[[CompareProgress], None]


def compare(
    a: SideSpec,
    b: SideSpec,
    prompt: Prompt,
    *,
    text: str | None = None,
    max_new_tokens: int | None = None,
    top: int = DEFAULT_TOP,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> Comparison:
    """Load both sides, compare them on `prompt` (see the module doc), let them go.
    A side that cannot load raises `SideLoadError` (one line) before any work."""
    report = progress or (lambda _p: None)
    report(CompareProgress("load", "A", 0, 2))
    side_a = open_side(a, "A")
    try:
        report(CompareProgress("load", "B", 1, 2))
        side_b = open_side(b, "B")
        try:
            return compare_sides(
                side_a,
                side_b,
                prompt,
                text=text,
                max_new_tokens=max_new_tokens,
                top=top,
                progress=progress,
                cancel=cancel,
            )
        finally:
            close_side(side_b)
    finally:
        close_side(side_a)


def compare_sides(
    a: Side,
    b: Side,
    prompt: Prompt,
    *,
    path: Sequence[int] | None = None,
    text: str | None = None,
    max_new_tokens: int | None = None,
    top: int = DEFAULT_TOP,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> Comparison:
    """The comparison of two open sides on `prompt`; the shared path is `path` (ids),
    else `text` (encoded by A, no template), else A's own reply."""
    if path is not None and text is not None:
        raise InvalidParameterError("text", "give a text or a path, not both")
    report = progress or (lambda _p: None)
    stop = cancel if cancel is not None else threading.Event()
    prompt_a, prompt_b = a.prompt_ids(prompt), b.prompt_ids(prompt)
    tokenization = Tokenization(
        tuple(prompt_a), tuple(prompt_b), a.displays(prompt_a), b.displays(prompt_b)
    )
    problem = vocabulary_problem(a, b, [*prompt_a, *prompt_b])
    if problem is not None:
        return Comparison(a.describe(), b.describe(), tokenization, (), None, EMPTY_SUMMARY,
                          problem=problem)  # fmt: skip
    shared = _shared_path(a, prompt_a, path, text, max_new_tokens, report, stop)
    steps = list(_steps(a, b, prompt_a, prompt_b, shared, top, report, stop))
    b_path = _b_free(b, prompt_b, shared, steps, report, stop)
    from engine.compare.kl import summarize

    return Comparison(
        a=a.describe(),
        b=b.describe(),
        tokenization=tokenization,
        steps=tuple(steps),
        first_divergence=first_difference(shared, b_path) if shared else None,
        summary=summarize(steps),
        b_path=tuple(b_path),
        b_tokens=b.displays(b_path),
    )


def _b_free(
    b: Side,
    prompt_b: list[int],
    path: list[int],
    steps: Sequence[CompareStep],
    report: ProgressFn,
    stop: threading.Event,
) -> list[int]:
    """B's own continuation of its prompt, at most as long as the path.

    A greedy B with whole rows (not in a batch) picks its top-1 while it follows the
    path: the same prefix gives the very distribution just scored, so its choices up to
    the first divergence are read from those rows (consistent with `top1_b` to the bit,
    where a second evaluation could break a near tie the other way) and it runs free
    from its first own choice. Otherwise (sampling, a batch, a top-N side) B runs free
    from the prompt."""
    if not path:
        return []
    total = len(path)
    eos = _eos_ids(b)
    if b.params.greedy and b.spec.batch is None and eos is not None and len(steps) == total:
        leave = next((s.step for s in steps if s.top1_b != s.token_id), None)
        if leave is None:
            return list(path)
        head = [*path[:leave], steps[leave].top1_b]
        if head[-1] in eos or len(head) >= total:
            return head
        report(CompareProgress("free", "B", len(head), total))
        rest = b.generate(
            [*prompt_b, *head],
            total - len(head),
            stop,
            lambda n: report(CompareProgress("free", "B", len(head) + n, total)),
        )
        return [*head, *rest]
    report(CompareProgress("free", "B", 0, total))
    return b.generate(
        prompt_b, total, stop, lambda n: report(CompareProgress("free", "B", n, total))
    )


def _eos_ids(side: Side) -> frozenset[int] | None:
    """The end-of-sequence ids of a side whose rows are whole (None: not known here)."""
    from engine.decode.protocol import FullDistributions

    loaded = getattr(side.engine, "loaded", None)
    if not isinstance(side.engine, FullDistributions) or loaded is None:
        return None
    return frozenset(int(i) for i in loaded.eos_token_ids)


def vocabulary_problem(a: Side, b: Side, ids: Sequence[int] = ()) -> str | None:
    """One line when `a` and `b` do not share one vocabulary (so no KL is defined);
    None when they do. Compares the vocabulary sizes the models report, then the bytes
    of `ids` and of ids spread over the vocabulary (local sides only: a remote side's
    bytes cost a request each)."""
    size_a, size_b = _vocab_size(a), _vocab_size(b)
    if size_a and size_b and size_a != size_b:
        return f"the sides have different vocabularies ({size_a} and {size_b} tokens): only the tokenization is compared"
    sample = list(dict.fromkeys(int(i) for i in ids))
    if size_a and size_b and not _remote(a) and not _remote(b):
        sample += range(0, size_a, max(1, size_a // VOCAB_SAMPLE))
    for token in sample:
        if a.engine.token_bytes(token) != b.engine.token_bytes(token):
            return (
                f"the sides have different vocabularies (token {token} is "
                f"{a.engine.token_display(token)!r} on A, {b.engine.token_display(token)!r} "
                "on B): only the tokenization is compared"
            )
    return None


def _vocab_size(side: Side) -> int:
    size = side.model.config.get("vocab_size")
    return int(size) if isinstance(size, int) else 0


def _remote(side: Side) -> bool:
    return side.model.backend == "remote" or side.model.source == "remote"


def _shared_path(
    a: Side,
    prompt_a: list[int],
    path: Sequence[int] | None,
    text: str | None,
    max_new_tokens: int | None,
    report: ProgressFn,
    stop: threading.Event,
) -> list[int]:
    if path is not None:
        return [int(i) for i in path]
    if text is not None:
        if not text:
            raise InvalidParameterError("text", "is empty")
        return a.engine.encode(text)
    budget = max_new_tokens if max_new_tokens is not None else a.params.max_new_tokens
    report(CompareProgress("reply", "A", 0, budget))
    return a.generate(
        prompt_a, budget, stop, lambda n: report(CompareProgress("reply", "A", n, budget))
    )


def _steps(
    a: Side,
    b: Side,
    prompt_a: list[int],
    prompt_b: list[int],
    path: list[int],
    top: int,
    report: ProgressFn,
    stop: threading.Event,
) -> Iterator[CompareStep]:
    total = len(path)
    report(CompareProgress("score", "", 0, total))
    chunks = aligned(a.distributions(prompt_a, path, stop), b.distributions(prompt_b, path, stop))
    for chunk_a, chunk_b in chunks:
        if stop.is_set():
            raise CompareCancelled("the comparison was cancelled")
        tokens = path[chunk_a.first : chunk_a.first + chunk_a.length]
        yield from step_records(chunk_a, chunk_b, tokens, top, a, b)
        report(CompareProgress("score", "", chunk_a.first + chunk_a.length, total))


def aligned(one: Iterator[Chunk], other: Iterator[Chunk]) -> Iterator[tuple[Chunk, Chunk]]:
    """Two chunk streams over the same positions, cut to common spans, in order."""
    left: Chunk | None = None
    right: Chunk | None = None
    while True:
        if left is None or left.length == 0:
            left = next(one, None)
        if right is None or right.length == 0:
            right = next(other, None)
        if left is None or right is None:
            return
        if left.first != right.first:
            raise RuntimeError(f"chunks out of step: {left.first} and {right.first}")
        end = min(left.first + left.length, right.first + right.length)
        yield left.part(left.first, end), right.part(right.first, end)
        left = left.part(end, left.first + left.length)
        right = right.part(end, right.first + right.length)


def step_records(
    chunk_a: Chunk, chunk_b: Chunk, tokens: Sequence[int], top: int, a: Side, b: Side
) -> list[CompareStep]:
    """The records of one aligned span: exact where both sides gave whole rows."""
    from engine.compare.kl import kl_estimate, kl_rows

    if chunk_a.rows is not None and chunk_b.rows is not None:
        if chunk_a.rows.shape[-1] != chunk_b.rows.shape[-1]:
            raise InvalidParameterError(
                "vocabulary",
                f"the sides' distributions have {chunk_a.rows.shape[-1]} and "
                f"{chunk_b.rows.shape[-1]} entries: they do not share a vocabulary",
            )
        kls = kl_rows(chunk_a.rows, chunk_b.rows).tolist()
        exact = True
    else:
        kls = [
            kl_estimate(_known(chunk_a, i, tokens[i]), _known(chunk_b, i, tokens[i]))
            for i in range(len(tokens))
        ]
        exact = False
    side_a, side_b = _numbers(chunk_a, tokens, top, a), _numbers(chunk_b, tokens, top, b)
    records = []
    for i, token in enumerate(tokens):
        (lp_a, _rank_a, top1_a, cands_a), (lp_b, rank_b, top1_b, cands_b) = side_a[i], side_b[i]
        records.append(
            CompareStep(
                step=chunk_a.first + i,
                token_id=int(token),
                token=a.engine.token_display(int(token)),
                logprob_a=lp_a,
                logprob_b=lp_b,
                kl=float(kls[i]),
                exact=exact,
                rank_b=rank_b,
                top1_a=top1_a,
                top1_b=top1_b,
                agree=top1_a == top1_b,
                top_a=cands_a,
                top_b=cands_b,
            )
        )
    return records


Numbers = tuple[float, int, int, tuple[CompareCandidate, ...]]  # logprob, rank, top-1, top-N


def _numbers(chunk: Chunk, tokens: Sequence[int], top: int, side: Side) -> list[Numbers]:
    """Per position: the path token's logprob and rank, the top-1 and the top-N."""
    if chunk.rows is not None:
        return _row_numbers(chunk.rows, tokens, top, side)
    out: list[Numbers] = []
    for score in chunk.scores:
        best = score.top[0].token_id if score.top else (score.token_id if score.rank == 1 else -1)
        candidates = tuple(
            CompareCandidate(c.token_id, side.engine.token_display(c.token_id), c.logprob)
            for c in score.top[:top]
        )
        out.append((score.logprob, score.rank, best, candidates))
    return out


def _row_numbers(rows: torch.Tensor, tokens: Sequence[int], top: int, side: Side) -> list[Numbers]:
    import torch

    target = torch.tensor([int(t) for t in tokens], dtype=torch.long)[:, None]  # [n, 1]
    chosen = rows.gather(1, target)  # [n, 1]
    ranks = ((rows > chosen).sum(dim=-1) + 1).tolist()  # [n]
    k = max(1, min(top, rows.shape[-1]))
    best, best_ids = rows.topk(k, dim=-1)  # [n, k] x 2
    best_l, ids_l, chosen_l = best.tolist(), best_ids.tolist(), chosen[:, 0].tolist()
    out: list[Numbers] = []
    for i in range(len(tokens)):
        candidates = tuple(
            CompareCandidate(t, side.engine.token_display(t), lp)
            for t, lp in zip(ids_l[i][:top], best_l[i][:top], strict=True)
        )
        out.append((chosen_l[i], int(ranks[i]), int(ids_l[i][0]), candidates))
    return out


def _known(chunk: Chunk, i: int, token: int) -> dict[int, float]:
    """The logprobs a side knows at position `i` of the chunk: a whole row, or its
    top-N and the path token."""
    if chunk.rows is not None:
        row = chunk.rows[i]
        return dict(enumerate(row.tolist()))
    score = chunk.scores[i]
    known = {c.token_id: c.logprob for c in score.top}
    known[int(token)] = score.logprob
    return known
