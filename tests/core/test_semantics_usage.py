"""BuildKit's semantics: disk usage numbers and filters, and prune."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cachetui.core import CacheManager, FilterSyntaxError, PruneOptions
from cachetui.core.diskusage import totals
from tests.conftest import FakeClock, write_file

DAY = 86400.0


def _record(cm: CacheManager, size: int = 0, *, retain: bool = True, **kwargs) -> str:
    """A finalized, released record whose layer holds ``size`` bytes of file data."""
    m = cm.new(retain=retain, **kwargs)
    if size:
        write_file(m.mount().upper, "data", size)
    s = m.commit()
    s.finalize()
    s.release()
    return s.id


def _used(cm: CacheManager, clock: FakeClock, record_id: str, at: float, times: int = 1) -> None:
    saved = clock.now
    clock.now = at
    for _ in range(times):
        cm.get(record_id).release()
    clock.now = saved


# -- C. Disk usage -------------------------------------------------------------------------


def test_one_row_per_pair(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    s = a.commit()
    assert {r.id for r in cm.disk_usage()} == {s.id}
    s.release()
    assert {r.id for r in cm.disk_usage()} == {a.id}
    h = cm.get(a.id)
    assert {r.id for r in cm.disk_usage()} == {s.id}
    h.release()
    assert {r.id for r in cm.disk_usage()} == {a.id}


def test_held_mutable_reports_its_live_size(cm: CacheManager) -> None:
    """Deviation 9: BuildKit reports 0 for a held mutable; we measure it now."""
    a = cm.new(retain=True)
    empty = cm.disk_usage()[0].size
    write_file(a.mount().upper, "data", 100_000)
    grown = cm.disk_usage()[0].size
    assert grown >= empty + 100_000
    a.release()
    assert cm.disk_usage()[0].size == grown


def test_size_is_cached_and_persisted(cm: CacheManager, root, clock) -> None:
    rid = _record(cm, 5000)
    first = cm.disk_usage()[0].size
    assert cm.state().rows[rid].size == first
    cm.close()
    reopened = CacheManager.open(root, clock=clock)
    # Grow the layer behind the manager's back: a cached size is not re-measured.
    write_file(reopened.snapshots.path(rid), "more", 50_000)
    assert reopened.disk_usage()[0].size == first
    reopened.close()


def test_totals(root, clock) -> None:
    shared_ids: set[str] = set()
    cm = CacheManager.open(root, clock=clock, is_shared=lambda rid: rid in shared_ids)
    held = cm.new(retain=True)
    write_file(held.mount().upper, "data", 100 * 4096 - 4096)
    shared = _record(cm, 50 * 4096 - 4096)
    shared_ids.add(shared)
    _record(cm, 25 * 4096 - 4096)
    rows = cm.disk_usage()
    sums = totals(rows)
    assert sums.total == 175 * 4096
    assert sums.reclaimable == 75 * 4096
    assert sums.shared == 50 * 4096
    assert sums.private == 125 * 4096
    assert sums.in_use == 100 * 4096
    shared_ids.clear()
    assert totals(cm.disk_usage()).shared == 0
    cm.close()


def test_filter_semantics(cm: CacheManager) -> None:
    regular = _record(cm, description="golang build")
    local = _record(cm, record_type="source.local")
    mount = _record(cm, record_type="exec.cachemount")
    mutable = cm.new(retain=True, record_type="source.local")
    mutable.release()
    held = cm.get(regular)

    def ids(*filters: str) -> set[str]:
        return {r.id for r in cm.disk_usage(list(filters))}

    assert ids(f"id=={local}") == {local}
    assert ids("inuse") == {regular}
    assert ids("mutable") == {mutable.id}
    assert ids("type==exec.cachemount") == {mount}
    assert ids("description~=olang") == {regular}
    assert ids("type==source.local", "type==regular") == {local, mutable.id, regular}
    assert ids("type==source.local,mutable") == {mutable.id}
    assert ids("type!=regular") == {local, mount, mutable.id}
    with pytest.raises(FilterSyntaxError, match="never match"):
        cm.disk_usage(["type==regular,type==internal"])
    with pytest.raises(FilterSyntaxError) as caught:
        cm.disk_usage(["type!==x"])
    assert caught.value.position == 6
    held.release()


def test_age_limit(cm: CacheManager, clock: FakeClock) -> None:
    recent = _record(cm)
    old = _record(cm)
    never = cm.new(retain=True)
    never_id = never.id
    # release without counting: close the handle as a dead process would leave it
    with cm.store.write():
        cm.store.execute("DELETE FROM holder WHERE record = ?", (never_id,))
    with cm.store.write():
        cm.store.execute("UPDATE record SET usage_count = 0, last_used_at = NULL")
    _used(cm, clock, recent, clock.now - 3600)
    _used(cm, clock, old, clock.now - 10 * DAY)
    with cm.store.write():
        cm.store.execute(
            "UPDATE record SET created_at = ? WHERE id = ?", (clock.now - 20 * DAY, never_id)
        )
    got = {r.id for r in cm.disk_usage(age_limit=timedelta(days=2))}
    assert got == {old, never_id}


def test_id_prefix_filter_is_a_regex(cm: CacheManager) -> None:
    first = _record(cm)
    _record(cm)
    prefix = first[:6]
    assert first in {r.id for r in cm.disk_usage([f"id~=^{prefix}"])}


# -- D. Prune selection, ordering and space options ---------------------------------------


def test_internal_frontend_and_shared_are_skipped_without_all(root, clock) -> None:
    shared_ids: set[str] = set()
    cm = CacheManager.open(root, clock=clock, is_shared=lambda rid: rid in shared_ids)
    internal = _record(cm, record_type="internal")
    frontend = _record(cm, record_type="frontend")
    regular = _record(cm)
    shared = _record(cm)
    shared_ids.add(shared)
    assert [r.id for r in cm.prune()] == [regular]
    assert {r.id for r in cm.prune(PruneOptions(all=True))} == {internal, frontend, shared}
    cm.close()


def test_type_filter(cm: CacheManager) -> None:
    local = {_record(cm, record_type="source.local") for _ in range(2)}
    _record(cm)
    removed = cm.prune(PruneOptions(filters=("type==source.local",)))
    assert {r.id for r in removed} == local
    assert len(cm.disk_usage()) == 1


def test_keep_duration(cm: CacheManager, clock: FakeClock) -> None:
    recent, old = _record(cm), _record(cm)
    with cm.store.write():
        cm.store.execute("UPDATE record SET usage_count = 0, last_used_at = NULL")
    never = _record(cm)
    with cm.store.write():
        cm.store.execute("UPDATE record SET usage_count = 0, last_used_at = NULL")
        cm.store.execute(
            "UPDATE record SET created_at = ? WHERE id = ?", (clock.now - 5 * DAY, never)
        )
    _used(cm, clock, recent, clock.now - 3600)
    _used(cm, clock, old, clock.now - 3 * DAY)
    removed = {r.id for r in cm.prune(PruneOptions(keep_duration=2 * DAY))}
    assert removed == {old, never}


def test_keep_duration_protects_a_never_used_young_record(cm: CacheManager) -> None:
    """Deviation 2: keep_duration also protects never-used records by creation time."""
    young = cm.new(retain=True)
    with cm.store.write():
        cm.store.execute("DELETE FROM holder")
    assert cm.prune(PruneOptions(keep_duration=3600)) == []
    assert [r.id for r in cm.prune()] == [young.id]


def _sized_records(
    cm: CacheManager, clock: FakeClock, spec: list[tuple[str, int, float | None, int]]
):
    """Records of exact sizes (cached) and usage, by name."""
    ids = {}
    for name, size, used_at, count in spec:
        rid = _record(cm, description=name)
        ids[name] = rid
        with cm.store.write():
            cm.store.execute(
                "UPDATE record SET size = ?, usage_count = ?, last_used_at = ? WHERE id = ?",
                (size, count, used_at, rid),
            )
    return ids


def test_gc_ranking(cm: CacheManager, clock: FakeClock) -> None:
    t = clock.now
    _sized_records(
        cm,
        clock,
        [("A", 10, None, 0), ("B", 10, t - 300, 3), ("C", 10, t - 200, 1), ("D", 10, t - 100, 1)],
    )
    removed = cm.prune(PruneOptions(max_used_space=25))
    assert [r.description for r in removed] == ["A", "C"]
    assert {r.description for r in cm.disk_usage()} == {"B", "D"}


def test_gc_one_per_round_recomputed(cm: CacheManager, clock: FakeClock) -> None:
    t = clock.now
    _sized_records(cm, clock, [("X", 10, t - 300, 1), ("Y", 20, t - 200, 1), ("Z", 30, t - 100, 1)])
    removed = cm.prune(PruneOptions(max_used_space=35))
    assert [r.description for r in removed] == ["X", "Y"]


def test_space_boundary_is_at_or_below(cm: CacheManager, clock: FakeClock) -> None:
    """Deviation 1: BuildKit removes Z too (30 is not < 30); we stop at or below the limit."""
    t = clock.now
    _sized_records(cm, clock, [("X", 10, t - 300, 1), ("Y", 20, t - 200, 1), ("Z", 30, t - 100, 1)])
    removed = cm.prune(PruneOptions(max_used_space=30))
    assert [r.description for r in removed] == ["X", "Y"]


def test_shared_records_are_left_out_of_the_total(root, clock) -> None:
    shared_ids: set[str] = set()
    cm = CacheManager.open(root, clock=clock, is_shared=lambda rid: rid in shared_ids)
    t = clock.now
    ids = _sized_records(
        cm, clock, [("S", 1000, t - 500, 1), ("a", 10, t - 300, 1), ("b", 10, t - 200, 1)]
    )
    shared_ids.add(ids["S"])
    removed = cm.prune(PruneOptions(max_used_space=15))
    assert [r.description for r in removed] == ["a"]
    cm.close()


def test_policy_list_applied_in_order(cm: CacheManager) -> None:
    local = _record(cm, record_type="source.local")
    internal = _record(cm, record_type="internal")
    regular = _record(cm)
    removed = cm.prune(PruneOptions(filters=("type==source.local",)), PruneOptions(all=True))
    assert next(r.id for r in removed) == local
    assert {r.id for r in removed[1:]} == {internal, regular}


def test_batching_reports_every_record(cm: CacheManager) -> None:
    ids = {_record(cm) for _ in range(25)}
    seen: list[str] = []
    removed = cm.prune(on_prune=lambda info: seen.append(info.id))
    assert {r.id for r in removed} == ids
    assert seen == [r.id for r in removed]


def test_held_records_are_never_pruned(cm: CacheManager) -> None:
    rid = _record(cm)
    held = cm.get(rid)
    assert cm.prune(PruneOptions(all=True, filters=(f"id=={rid}",))) == []
    held.release()


def test_report_contents(cm: CacheManager) -> None:
    rid = _record(cm, 3000, description="layer")
    cm.get(rid).release()
    (info,) = cm.prune()
    assert info.id == rid and info.size > 0 and not info.mutable and not info.in_use
    assert info.usage_count >= 1 and info.last_used_at is not None
    assert info.record_type == "regular" and info.shared is False


def test_min_free_only_with_enough_space_removes_nothing(cm: CacheManager) -> None:
    _record(cm, 1000)
    assert cm.prune(PruneOptions(min_free_space=1)) == []


def test_dry_run_matches_the_real_prune(cm: CacheManager) -> None:
    parent = cm.new(retain=True)
    p = parent.commit()
    p.finalize()
    child = cm.new(p, retain=True)
    child.commit().release()
    p.release()
    for _ in range(3):
        _record(cm, 100)
    planned = [r.id for r in cm.prune(dry_run=True)]
    assert len(cm.disk_usage()) == 5
    assert [r.id for r in cm.prune()] == planned
    assert planned.index(p.id) > planned.index(child.id)


def test_gc_default_policies_on_a_small_store_keep_recent_records(cm: CacheManager) -> None:
    _record(cm, 100)
    assert cm.gc() == []


def test_manager_totals_include_the_disk(cm: CacheManager) -> None:
    _record(cm, 4096)
    sums = cm.totals()
    assert sums.total == sums.reclaimable == cm.disk_usage()[0].size
    assert sums.records == 1
    assert 0 < sums.disk_free <= sums.disk_total


def test_prune_rechecks_the_policy_when_it_removes(cm: CacheManager, root, clock) -> None:
    """A record used by another process after selection is inside keep_duration: kept."""
    ids = []
    for _ in range(3):
        m = cm.new(retain=True)
        write_file(m.mount().upper, "f", 4096)
        m.release()
        ids.append(m.id)
    clock.advance(7200)
    other = CacheManager.open(root, clock=clock)
    used: list[str] = []

    def use_the_others(info) -> None:
        if not used:
            for rid in ids:
                if rid != info.id:
                    other.get_mutable(rid).release()
                    used.append(rid)

    removed = cm.prune(PruneOptions(keep_duration=3600, max_used_space=1), on_prune=use_the_others)
    assert len(removed) == 1
    assert {r.id for r in cm.disk_usage()} == set(used)
    other.close()


def test_dry_run_accounts_for_space_freed_by_earlier_policies(
    cm: CacheManager, monkeypatch
) -> None:
    from cachetui.core import prune as prune_module
    from cachetui.core.policy import DiskStat
    from cachetui.core.usage import measure

    disk = 10 * 2**20

    def small_disk(root) -> DiskStat:  # a dedicated 10 MiB filesystem for the store
        return DiskStat(disk, disk - measure(cm.snapshots.dir).size)

    monkeypatch.setattr(prune_module, "disk_stat", small_disk)
    for _ in range(6):
        m = cm.new(retain=True)
        write_file(m.mount().upper, "f", 2**20)
        m.release()
    policy = PruneOptions(min_free_space=small_disk(None).free + 2**20 + 2**19)
    planned = cm.prune(policy, policy, dry_run=True)
    removed = cm.prune(policy, policy)
    assert [r.id for r in planned] == [r.id for r in removed]
    assert len(removed) == 2
