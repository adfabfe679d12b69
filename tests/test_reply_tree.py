"""The reply tree (add, switch, delete, paths, branch points) and moving a live
reply between its paths by rewinding the KV cache."""

from __future__ import annotations

import math
from typing import Any

import pytest

from engine.decode import ReplyTree, branch_stats, reposition, reseed
from engine.errors import InvalidParameterError
from engine.model.spec import ModelSpec
from engine.params import SamplingParams
from engine.records import Step


def st(index: int, token_id: int, logprob: float = -0.5) -> Step:
    return Step(
        index, token_id, f"t{token_id}", f"t{token_id}", False, logprob, 1, 0.0, 0.0, 1, 0.0
    )


def path(*ids: int) -> tuple[Step, ...]:
    return tuple(st(i, t) for i, t in enumerate(ids))


def test_add_a_branch_at_a_step_and_the_path_to_a_node() -> None:
    tree = ReplyTree.single(path(1, 2, 3, 4), "stop")
    tree, b = tree.branch_at(0, 2, [st(2, 9), st(3, 8)], "length")
    assert b == 1 and tree.current == 0
    assert [s.token_id for s in tree.path(1)] == [1, 2, 9, 8]
    assert [s.token_id for s in tree.path(1, 2)] == [1, 2, 9]
    assert tree.parent(1) == (0, 2) and tree.parent(0) == (None, 0)
    point = tree.branch_point(1)
    assert point is not None and point.step == 2
    assert point.parent_token is not None and point.parent_token.token_id == 3
    assert point.child_token is not None and point.child_token.token_id == 9
    with pytest.raises(InvalidParameterError):
        tree.branch_at(0, 7)


def test_switch_siblings_order_and_grandchildren() -> None:
    tree = ReplyTree.single(path(1, 2, 3, 4))
    tree, a = tree.branch_at(0, 1, [st(1, 7)])
    tree, b = tree.branch_at(0, 1, [st(1, 6)])
    tree, c = tree.branch_at(a, 2, [st(2, 5)])  # a child of a, not of the root
    assert tree.parent(c) == (a, 2)
    assert tree.siblings(a) == [a, b]
    assert tree.order() == [(0, 0), (a, 1), (c, 2), (b, 1)]
    tree = tree.switch(c)
    assert tree.branch.ids == [1, 7, 5]
    with pytest.raises(InvalidParameterError):
        tree.switch(9)


def test_delete_keeps_children_whole_and_the_current_index_right() -> None:
    tree = ReplyTree.single(path(1, 2, 3))
    tree, a = tree.branch_at(0, 1, [st(1, 7), st(2, 8)])
    tree, c = tree.branch_at(a, 2, [st(2, 5)])
    tree = tree.switch(c)
    with pytest.raises(InvalidParameterError, match="being shown"):
        tree.delete(c)
    tree = tree.delete(a)
    assert len(tree) == 2 and tree.current == 1 and tree.branch.ids == [1, 7, 5]
    assert tree.parent(1) == (0, 1)  # re-attached to the root where it leaves it


def test_branch_stats() -> None:
    stats = branch_stats(ReplyTree.single(path(1, 2)).branch)
    assert stats.length == 2 and stats.logprob == pytest.approx(-1.0)
    assert stats.perplexity == pytest.approx(math.exp(0.5))


class CountingReply:
    """A stand-in reply that counts tokens re-decoded (forced) and rewound."""

    def __init__(self, ids: list[int]) -> None:
        self.ids, self.rewound, self.forced, self.seed = list(ids), 0, 0, None

    def rewind(self, n: int) -> None:
        del self.ids[len(self.ids) - n :]
        self.rewound += n

    def step(self, force: int | None = None) -> Step:
        assert force is not None
        self.ids.append(force)
        self.forced += 1
        return st(len(self.ids) - 1, force)


def test_reposition_rewinds_to_the_shared_prefix_and_forces_the_rest() -> None:
    reply = CountingReply([1, 2, 3, 4])
    forced = reposition(reply, [1, 2, 3, 4], [1, 2, 9])  # type: ignore[arg-type]
    assert reply.ids == [1, 2, 9] and reply.rewound == 2 and reply.forced == 1
    assert [s.token_id for s in forced] == [9]
    assert not reseed(reply, 3)  # type: ignore[arg-type]


def test_switching_branches_on_the_real_loop_reuses_the_cache(tiny_model: Any) -> None:
    """A switch costs one forward per new token (plus the one re-forward of the last
    kept token a rewind needs), never a forward over the shared prefix."""
    from engine.decode import LocalEngine

    engine = LocalEngine(tiny_model)
    engine.load(ModelSpec())
    reply = engine.start_ids([1, 42, 43, 44, 45], SamplingParams(temperature=0, max_new_tokens=12))
    reply.prefill()
    first = [reply.step().token_id for _ in range(8)]
    decoder = reply.decoder
    calls: list[int] = []
    runner = decoder._runner
    real = runner.forward

    def counting(ids: list[int]) -> Any:
        calls.append(len(ids))
        return real(ids)

    runner.forward = counting  # type: ignore[method-assign]
    other = [*first[:5], (first[5] + 1) % 100 + 3, first[6]]
    reposition(reply, first, other)
    reply.propose()  # the last forced token's forward
    assert all(n == 1 for n in calls), "no multi-token (prefill) forward on a switch"
    assert len(calls) <= len(other) - 5 + 1
    assert list(decoder.generated_ids) == other
    assert reseed(reply, 11)
    reply.step()
    assert all(n == 1 for n in calls)
