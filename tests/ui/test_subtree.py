"""Subtree totals and the copy-on-write mapping under them (plain values, no screen)."""

from __future__ import annotations

import random

from cachetui.core.diskusage import Totals, resized_totals, totals
from cachetui.subtree import FLATTEN_AT, Layered, Subtrees


def _tree(seed: int, count: int = 300) -> tuple[dict[str | None, list[str]], dict[str, str | None]]:
    rng = random.Random(seed)
    parent: dict[str, str | None] = {}
    children: dict[str | None, list[str]] = {}
    for n in range(count):
        rid = f"r{n:04d}"
        above = rng.choice([None, *parent]) if parent else None
        parent[rid] = above
        children.setdefault(above, []).append(rid)
    return children, parent


def _ancestors(parent: dict[str, str | None]):
    def up(record_id: str) -> list[str]:
        chain = []
        current = parent[record_id]
        while current is not None:
            chain.append(current)
            current = parent[current]
        return chain

    return up


def test_subtrees_sum_every_level_and_follow_deltas_exactly():
    rng = random.Random(7)
    children, parent = _tree(7)
    sizes = {rid: rng.choice([-1, 0, 10, 4096, 10**9]) for rid in parent}
    trees = Subtrees.build(children, sizes.__getitem__)
    up = _ancestors(parent)
    for rid in parent:
        below = [r for r in parent if rid in up(r)]
        assert trees.count(rid) == 1 + len(below)
        assert trees.size(rid) == sum(max(sizes[r], 0) for r in (rid, *below))
    # many rounds of size changes, each applied as deltas, equal a rebuild every time
    for _ in range(50):
        deltas = {}
        for rid in rng.sample(sorted(parent), 3):
            new = rng.choice([-1, 0, 1, 5000, 3 * 10**9])
            deltas[rid] = max(new, 0) - max(sizes[rid], 0)
            sizes[rid] = new
        before = trees
        trees = trees.resized(deltas, up)
        fresh = Subtrees.build(children, sizes.__getitem__)
        assert all(trees.size(r) == fresh.size(r) for r in parent)
        assert before is not trees or not any(deltas.values())


def test_lazy_totals_asked_in_any_order_across_resizes_equal_a_rebuild():
    """Summed when first asked for: some totals known, some not, when sizes change;
    every value answers what its own sizes say, whenever it is asked."""
    rng = random.Random(5)
    children, parent = _tree(5, 400)
    sizes = {rid: rng.choice([-1, 0, 10, 4096, 10**9]) for rid in parent}
    up = _ancestors(parent)
    trees = Subtrees.lazy(children, dict(sizes).__getitem__)
    history: list[tuple[Subtrees, dict[str, int]]] = []
    for _ in range(40):
        for rid in rng.sample(sorted(parent), 15):  # a few rows on screen
            fresh = Subtrees.build(children, sizes.__getitem__)
            assert trees.size(rid) == fresh.size(rid) and trees.count(rid) == fresh.count(rid)
        history.append((trees, dict(sizes)))
        deltas = {}
        for rid in rng.sample(sorted(parent), 4):
            new = rng.choice([-1, 0, 1, 5000, 3 * 10**9])
            deltas[rid] = max(new, 0) - max(sizes[rid], 0)
            sizes[rid] = new
        trees = trees.resized(deltas, up)
    # every earlier value, asked now about anything, still answers its own sizes
    for old, then in rng.sample(history, 10):
        fresh = Subtrees.build(children, then.__getitem__)
        assert all(old.size(r) == fresh.size(r) for r in parent)
        assert all(old.count(r) == fresh.count(r) for r in parent)


def test_lazy_totals_sum_only_what_is_asked():
    children = {None: ["a", "b"], "a": ["a1"], "a1": ["a2"], "b": ["b1"]}
    read: list[str] = []
    sizes = {"a": 1, "a1": 2, "a2": 3, "b": 10, "b1": 20}

    def size_of(rid: str) -> int:
        read.append(rid)
        return sizes[rid]

    trees = Subtrees.lazy(children, size_of)
    assert trees.size("a") == 6 and trees.count("a") == 3
    assert sorted(read) == ["a", "a1", "a2"]  # b's subtree was never read
    assert trees.size("a1") == 5 and len(read) == 3  # known since a was summed


def test_a_parent_loop_is_summed_without_hanging():
    children = {None: ["r"], "x": ["y"], "y": ["x"]}  # x and y: damage no root reaches
    trees = Subtrees.lazy(children, lambda rid: 1)
    assert trees.size("r") == 1 and trees.count("r") == 1
    assert trees.size("x") in (1, 2) and trees.count("y") in (1, 2)


def test_resized_leaves_the_old_value_as_it_was():
    children, parent = _tree(3, 20)
    sizes = dict.fromkeys(parent, 100)
    trees = Subtrees.build(children, sizes.__getitem__)
    root = children[None][0]
    old = trees.size(root)
    leaf = next(r for r in parent if r not in children and root in _ancestors(parent)(r))
    after = trees.resized({leaf: 50}, _ancestors(parent))
    assert trees.size(root) == old and after.size(root) == old + 50


def test_layered_replaces_without_copying_the_base_and_flattens_late():
    base = {f"k{i}": i for i in range(10)}
    one = Layered(base)
    two = one.replaced({"k1": 100, "missing": 5})
    assert two["k1"] == 100 and one["k1"] == 1 and base["k1"] == 1
    assert "missing" not in two and len(two) == 10 and list(two) == list(base)
    assert two.get("k2") == 2 and two.get("nope") is None
    assert two.base is base
    big = Layered({i: 0 for i in range(FLATTEN_AT * 2)})
    grown = big.replaced({i: 1 for i in range(FLATTEN_AT + 1)})
    assert grown.base is not big.base and grown[0] == 1 and len(grown) == FLATTEN_AT * 2


class _Row:
    def __init__(self, size: int, in_use: bool, shared: bool) -> None:
        self.size, self.in_use, self.shared = size, in_use, shared


def test_resized_totals_equal_totals_summed_afresh():
    rng = random.Random(11)
    rows = [_Row(rng.choice([-1, 0, 7, 10**6]), rng.random() < 0.3, rng.random() < 0.2)
            for _ in range(200)]  # fmt: skip
    current: Totals = totals(rows)
    for _ in range(100):
        row = rng.choice(rows)
        old = row.size
        row.size = rng.choice([-1, 0, 3, 10**7])
        current = resized_totals(current, [(row, old)])
        assert current == totals(rows)


def test_totals_of_sizes_equal_totals_row_by_row():
    from cachetui.core.diskusage import totals_of, totals_of_sizes

    rng = random.Random(13)
    for _ in range(50):
        sizes = {f"r{n}": rng.choice([-1, 0, 7, 10**6, 3 * 10**9]) for n in range(80)}
        in_use = {r for r in sizes if rng.random() < 0.3} | {"hidden-half"}
        shared = {r for r in sizes if rng.random() < 0.2} | {"another-half"}
        by_rows = totals_of(
            ((size, r in in_use, r in shared) for r, size in sizes.items()), len(sizes)
        )
        assert totals_of_sizes(sizes, in_use, shared) == by_rows
