"""A reply as a tree of token paths, and moving a live reply between its paths.

Branching (forcing another candidate, re-sampling from a step, fanning out K
continuations) never throws tokens away: each way a reply went is a `Branch`,
a whole token path from step 0. Paths share prefixes, and the tree's shape is
derived from them: a branch's parent is the earlier branch it shares the most
leading tokens with, and it leaves that parent at the first step where they
differ. Storing whole paths keeps every operation (add, switch, delete) a
tuple edit that can never leave a dangling parent; the structure is recomputed
when asked for, which costs nothing next to a forward pass.

`reposition` moves a live `Reply` from the path in its KV cache to another:
it rewinds to the shared prefix (the cache is cropped, not recomputed) and
forces the tokens that differ, one step each: never a re-prefill of the reply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from engine.decode.protocol import Reply
from engine.errors import InvalidParameterError
from engine.records import Step


@dataclass(frozen=True)
class Branch:
    """One way a reply went: its whole token path and how it ended."""

    steps: tuple[Step, ...]
    finish_reason: str | None = None
    created_at: datetime | None = None
    seed: int | None = None  # the sampling seed of a fanned-out continuation

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.steps if not s.special)

    @property
    def ids(self) -> list[int]:
        return [s.token_id for s in self.steps]


@dataclass(frozen=True)
class BranchStats:
    """The numbers the Branches view shows for one branch."""

    length: int
    logprob: float  # sum of the raw logprobs of its tokens (unknown ones skipped)
    perplexity: float  # exp(-mean logprob); nan without known logprobs


def branch_stats(branch: Branch) -> BranchStats:
    known = [s.logprob for s in branch.steps if not math.isnan(s.logprob)]
    total = math.fsum(known)
    ppl = math.exp(-total / len(known)) if known and total > -math.inf else math.nan
    if known and total == -math.inf:
        ppl = math.inf
    return BranchStats(len(branch.steps), total, ppl)


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids `a` and `b` have in common."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass(frozen=True)
class BranchPoint:
    """Where `child` leaves `parent`: the step and the token each side took there."""

    step: int
    parent: int
    child: int
    parent_token: Step | None  # None: the parent path ends there
    child_token: Step | None  # None: the child path ends there (an empty continuation)


@dataclass(frozen=True)
class ReplyTree:
    """Every path a reply took; `current` is the one the chat and inspector show."""

    branches: tuple[Branch, ...]
    current: int = 0

    def __post_init__(self) -> None:
        if not self.branches:
            raise InvalidParameterError("branches", "a reply tree has at least one branch")
        if not 0 <= self.current < len(self.branches):
            raise InvalidParameterError("current", f"no branch {self.current}")

    @classmethod
    def single(cls, steps: Sequence[Step] = (), finish_reason: str | None = None) -> ReplyTree:
        return cls((Branch(tuple(steps), finish_reason),))

    def __len__(self) -> int:
        return len(self.branches)

    @property
    def branch(self) -> Branch:
        """The current branch."""
        return self.branches[self.current]

    def path(self, index: int, step: int | None = None) -> tuple[Step, ...]:
        """The steps from the root to node (`index`, `step`) inclusive; the whole
        branch when `step` is None."""
        steps = self._get(index).steps
        return steps if step is None else steps[: step + 1]

    def add(
        self,
        steps: Sequence[Step],
        finish_reason: str | None = None,
        *,
        seed: int | None = None,
        created_at: datetime | None = None,
    ) -> tuple[ReplyTree, int]:
        """A new branch with the whole path `steps` (usually an existing prefix plus
        new tokens); the current branch stays current. Returns the tree and its index."""
        branch = Branch(tuple(steps), finish_reason, created_at, seed)
        return replace(self, branches=(*self.branches, branch)), len(self.branches)

    def branch_at(
        self, index: int, at: int, steps: Sequence[Step] = (), finish_reason: str | None = None
    ) -> tuple[ReplyTree, int]:
        """A child of branch `index` leaving it at step `at`: its first `at` steps,
        then `steps`."""
        base = self._get(index).steps
        if not 0 <= at <= len(base):
            raise InvalidParameterError("at", f"branch {index} has no step {at}")
        return self.add((*base[:at], *steps), finish_reason)

    def switch(self, index: int) -> ReplyTree:
        self._get(index)
        return replace(self, current=index)

    def update(self, index: int, branch: Branch) -> ReplyTree:
        """Branch `index` replaced (a streaming branch grows, a finished one ends)."""
        self._get(index)
        branches = list(self.branches)
        branches[index] = branch
        return replace(self, branches=tuple(branches))

    def delete(self, index: int) -> ReplyTree:
        """The tree without branch `index`. Its children keep their tokens: each
        path is whole, so they re-attach to the nearest remaining branch."""
        self._get(index)
        if index == self.current:
            raise InvalidParameterError("branch", "the branch being shown cannot be deleted")
        branches = self.branches[:index] + self.branches[index + 1 :]
        current = self.current - (1 if index < self.current else 0)
        return ReplyTree(branches, current)

    def parent(self, index: int) -> tuple[int | None, int]:
        """(parent branch, step where `index` leaves it): the earlier branch sharing
        the most leading tokens (the first such); the root has (None, 0)."""
        ids = self._get(index).ids
        best: int | None = None
        best_len = -1
        for j in range(index):
            n = shared_prefix(ids, self.branches[j].ids)
            if n > best_len:
                best, best_len = j, n
        return best, max(best_len, 0)

    def repeats(self) -> dict[int, list[int]]:
        """Branches that took the same token path, folded: each group's representative
        (the earliest, or the current branch where it is one of them) -> every branch
        of the group, the representative first. K samples of one continuation read
        as one row counted K times, not K copies."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, branch in enumerate(self.branches):
            groups.setdefault(tuple(branch.ids), []).append(i)
        out: dict[int, list[int]] = {}
        for members in groups.values():
            first = self.current if self.current in members else members[0]
            out[first] = [first, *(m for m in members if m != first)]
        return out

    def children(self, index: int) -> list[int]:
        return [i for i in range(len(self.branches)) if self.parent(i)[0] == index]

    def siblings(self, index: int) -> list[int]:
        """Branches with the same parent at the same step (`index` included), in order;
        the root's siblings are the children of the root that leave it at step 0."""
        parent, at = self.parent(index)
        if parent is None:
            return [index]
        return [i for i in self.children(parent) if self.parent(i)[1] == at]

    def branch_point(self, index: int) -> BranchPoint | None:
        parent, at = self.parent(index)
        if parent is None:
            return None
        p, c = self.branches[parent].steps, self.branches[index].steps
        return BranchPoint(
            at, parent, index, p[at] if at < len(p) else None, c[at] if at < len(c) else None
        )

    def order(self) -> list[tuple[int, int]]:
        """(branch, depth) in depth-first order, children by branch step: the
        order the Branches view lists them in."""
        out: list[tuple[int, int]] = []

        def visit(i: int, depth: int) -> None:
            out.append((i, depth))
            for c in sorted(self.children(i), key=lambda c: (self.parent(c)[1], c)):
                visit(c, depth + 1)

        for root in (i for i in range(len(self.branches)) if self.parent(i)[0] is None):
            visit(root, 0)
        return out

    def _get(self, index: int) -> Branch:
        if not 0 <= index < len(self.branches):
            raise InvalidParameterError("branch", f"no branch {index + 1}")
        return self.branches[index]


def reposition(reply: Reply, live: Sequence[int], target: Sequence[int]) -> list[Step]:
    """Move `reply`, whose KV cache holds reply tokens `live`, onto `target`.

    Rewinds to the prefix the two share (cropping the cache) and forces the
    target's remaining tokens, one step each; returns those forced steps. The
    shared prefix costs no forward at all.
    """
    keep = shared_prefix(live, target)
    if len(live) > keep:
        reply.rewind(len(live) - keep)
    return [reply.step(force=int(t)) for t in target[keep:]]


def reseed(reply: Reply, seed: int) -> bool:
    """Give `reply` a fresh sampling seed where the implementation can (it keeps
    its cache); False where it cannot."""
    fn = getattr(reply, "reseed", None)
    if not callable(fn):
        return False
    fn(seed)
    return True
