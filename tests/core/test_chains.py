"""Whole chains: the effective age (newest use anywhere below a record), and a record
pruned with its whole subtree in one call, leaves first, refused as a whole when a
record inside is held by another real process. Real stores, real processes, and a
canary outside the store that a prune must never reach."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cachetui.core import CacheManager, ImmutableRef, InvalidError, LockedError, NotFoundError

WORKERS = Path(__file__).parents[1] / "reliability" / "workers.py"
HOUR = 3600.0
DAY = 24 * HOUR
CANARY = b"canary bytes outside the store\n" * 100


class Clock:
    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _layer(cm: CacheManager, parent: ImmutableRef | None, name: str, size: int) -> ImmutableRef:
    ref = cm.new(parent, description=name)
    (ref.mount().upper / name).write_bytes(b"x" * size)
    committed = ref.commit()
    committed.finalize()
    return committed


def _use(cm: CacheManager, record_id: str) -> None:
    cm.get(record_id).release()


def _chain_store(root: Path, clock: Clock) -> dict[str, str]:
    """base > mid > (leaf_a, leaf_b > deep), and a separate record "other".

    base used 40 days ago, mid 30 days ago, leaf_a 1 hour ago, deep never (created 2
    days ago), other 10 days ago. A symbolic link in leaf_a's layer points at a canary
    directory outside the store.
    """
    ids: dict[str, str] = {}
    with CacheManager.open(root, clock=clock) as cm:
        clock.now -= 41 * DAY
        base = _layer(cm, None, "base", 40_000)
        mid = _layer(cm, base, "mid", 30_000)
        leaf_a = _layer(cm, mid, "leaf_a", 20_000)
        leaf_b = _layer(cm, mid, "leaf_b", 10_000)
        other = _layer(cm, None, "other", 5_000)
        for ref in (base, mid, leaf_a, leaf_b, other):
            ids[ref.description] = ref.id
            ref.release()
        clock.now += DAY
        _use(cm, ids["base"])
        clock.now += 10 * DAY
        _use(cm, ids["mid"])
        clock.now += 20 * DAY
        _use(cm, ids["other"])
        clock.now += 8 * DAY
        deep = _layer(cm, cm.get(ids["leaf_b"]), "deep", 7_000)
        ids["deep"] = deep.id
        deep.release()
        clock.now += 2 * DAY - HOUR
        _use(cm, ids["leaf_a"])
        clock.now += HOUR
    canary = root.parent / "canary"
    canary.mkdir()
    (canary / "keep").write_bytes(CANARY)
    with CacheManager.open(root, clock=clock) as cm:
        layer = Path(cm.records()[ids["leaf_a"]].layer_path)
    os.symlink(canary, layer / "link-to-canary")
    os.symlink(canary / "keep", layer / "link-to-file")
    return ids


@pytest.fixture
def chain(tmp_path: Path) -> tuple[Path, dict[str, str], Clock]:
    clock = Clock()
    root = tmp_path / "store"
    return root, _chain_store(root, clock), clock


def _canary_intact(root: Path) -> None:
    assert (root.parent / "canary" / "keep").read_bytes() == CANARY


# -- effective age ----------------------------------------------------------------------


def test_effective_age_is_the_newest_use_anywhere_below(chain) -> None:
    root, ids, clock = chain
    with CacheManager.open(root, clock=clock) as cm:
        states = cm.records()
        # base and mid were used weeks ago, but leaf_a (below both) an hour ago.
        for name in ("base", "mid", "leaf_a"):
            assert states[ids[name]].effective_by == ids["leaf_a"]
            assert states[ids[name]].effective_at == pytest.approx(clock.now - HOUR)
        # leaf_b's newest moment is deep's creation (never used: created 2 days ago).
        assert states[ids["leaf_b"]].effective_by == ids["deep"]
        assert states[ids["leaf_b"]].effective_at == pytest.approx(clock.now - 2 * DAY)
        # a record with nothing below is its own effective age
        assert states[ids["other"]].effective_by == ids["other"]
        assert states[ids["other"]].effective_at == pytest.approx(clock.now - 10 * DAY)
        # its own last use is still its own
        assert states[ids["base"]].last_used_at == pytest.approx(clock.now - 40 * DAY)


def test_gc_why_text_for_a_parent_names_the_effective_age(chain) -> None:
    from cachetui.core import PruneOptions

    root, ids, clock = chain
    with CacheManager.open(root, clock=clock) as cm:
        result = cm.gc_plan([PruneOptions(keep_duration=7 * DAY)])
        kept = result.tiers[0].kept[ids["base"]]
        state = cm.records()[ids["base"]]
        assert kept.kind == "parent"
        assert (kept.since, kept.by) == (state.effective_at, state.effective_by)


# -- the chain plan ---------------------------------------------------------------------


def _leaves_first(order: list[str], ids: dict[str, str]) -> None:
    parent_of = {"mid": "base", "leaf_a": "mid", "leaf_b": "mid", "deep": "leaf_b"}
    pos = {rid: i for i, rid in enumerate(order)}
    for child, parent in parent_of.items():
        assert pos[ids[child]] < pos[ids[parent]], f"{child} must go before {parent}"


def test_plan_lists_the_whole_subtree_leaves_first_with_the_bytes_that_go(chain) -> None:
    root, ids, clock = chain
    with CacheManager.open(root, clock=clock) as cm:
        before = {r.id for r in cm.disk_usage()}
        plan = cm.plan_chain([ids["base"]])
        names = {v: k for k, v in ids.items()}
        assert {names[i] for i in plan.ids} == {"base", "mid", "leaf_a", "leaf_b", "deep"}
        _leaves_first(list(plan.ids), ids)
        assert [r.id for r in plan.rows] == list(plan.ids)
        sizes = {r.id: r.size for r in cm.disk_usage()}
        assert plan.freed == sum(sizes[i] for i in plan.ids) > 100_000
        assert plan.refusal is None and plan.blockers == () and plan.missing == ()
        # a plan changes nothing
        assert {r.id for r in cm.disk_usage()} == before


def test_shared_records_in_a_chain_go_but_free_nothing(tmp_path: Path) -> None:
    clock = Clock()
    root = tmp_path / "store"
    ids = _chain_store(root, clock)
    with CacheManager.open(root, clock=clock, is_shared=lambda rid: rid == ids["deep"]) as cm:
        plan = cm.plan_chain([ids["leaf_b"]])
        sizes = {r.id: r.size for r in cm.disk_usage()}
        # deep is shared, and so its ancestors are (as BuildKit marks them)
        assert plan.shared_bytes == sizes[ids["deep"]] + sizes[ids["leaf_b"]]
        assert plan.freed == 0


def test_prune_chain_removes_it_leaves_first_and_nothing_else(chain) -> None:
    root, ids, clock = chain
    with CacheManager.open(root, clock=clock) as cm:
        seen: list[str] = []
        removed = cm.prune_chain([ids["mid"]], on_prune=lambda info: seen.append(info.id))
        order = [info.id for info in removed]
        assert order == seen
        names = {v: k for k, v in ids.items()}
        assert sorted(names[i] for i in order) == ["deep", "leaf_a", "leaf_b", "mid"]
        pos = {rid: i for i, rid in enumerate(order)}
        assert pos[ids["deep"]] < pos[ids["leaf_b"]] < pos[ids["mid"]]
        assert pos[ids["leaf_a"]] < pos[ids["mid"]]
        left = {r.id for r in cm.disk_usage()}
        assert left == {ids["base"], ids["other"]}
        for rid in order:
            assert not (root / "snapshots" / rid).exists()
    _canary_intact(root)


def test_a_record_held_by_another_process_stops_the_whole_chain(chain) -> None:
    root, ids, clock = chain
    holder = subprocess.Popen(
        [sys.executable, str(WORKERS), "hold", str(root), ids["deep"]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        event = json.loads(holder.stdout.readline())
        assert event["event"] == "holding" and event["id"] == ids["deep"]
        with CacheManager.open(root, clock=clock) as cm:
            plan = cm.plan_chain([ids["base"]])
            assert plan.rows == () and plan.freed == 0
            assert [b[0] for b in plan.blockers] == [ids["deep"]]
            assert plan.refusal is not None
            assert f"pid {holder.pid}" in plan.refusal and ids["deep"] in plan.refusal
            before = {r.id for r in cm.disk_usage()}
            with pytest.raises(LockedError) as caught:
                cm.prune_chain([ids["base"]])
            assert caught.value.id == ids["deep"]
            assert f"pid {holder.pid}" in str(caught.value)
            assert "nothing was removed" in str(caught.value)
            # nothing went: not even leaf_a, which nobody holds
            assert {r.id for r in cm.disk_usage()} == before
            # a chain beside the held record still goes
            assert [i.id for i in cm.prune_chain([ids["leaf_a"]])] == [ids["leaf_a"]]
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert json.loads(holder.stdout.readline()) == {"event": "checked", "ok": True}
        assert holder.wait(timeout=30) == 0
        with CacheManager.open(root, clock=clock) as cm:
            removed = cm.prune_chain([ids["base"]])
            assert len(removed) == 4
            assert {r.id for r in cm.disk_usage()} == {ids["other"]}
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    _canary_intact(root)


def test_an_exact_set_with_a_child_left_out_is_refused(chain) -> None:
    root, ids, clock = chain
    with CacheManager.open(root, clock=clock) as cm:
        asked = [ids["mid"], ids["leaf_a"], ids["leaf_b"]]  # deep left out
        plan = cm.plan_chain(asked, descendants=False)
        assert plan.blockers == (
            (ids["leaf_b"], f"its child {ids['deep']} is not part of the chain"),
        )
        with pytest.raises(InvalidError, match="nothing was removed"):
            cm.prune_chain(asked, descendants=False)
        assert len(cm.disk_usage()) == 6
        # with deep, the exact set goes
        removed = cm.prune_chain([*asked, ids["deep"]], descendants=False)
        assert len(removed) == 4


def test_gone_ids_are_reported_and_bad_ids_refused(chain) -> None:
    root, ids, clock = chain
    with CacheManager.open(root, clock=clock) as cm:
        cm.prune_chain([ids["leaf_a"]])
        plan = cm.plan_chain([ids["leaf_a"], ids["other"]])
        assert plan.missing == (ids["leaf_a"],)
        assert plan.ids == (ids["other"],)
        with pytest.raises(InvalidError, match="invalid ids"):
            cm.plan_chain(ids["other"])
        with pytest.raises(InvalidError):
            cm.plan_chain(["../../etc"])
        assert cm.prune_chain([]) == []
        with pytest.raises(NotFoundError):
            cm.get(ids["leaf_a"])
