"""BuildKit's semantics: restart, persistence, crash recovery, and usage counting."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cachetui.core import CacheManager, InvalidError, NotFoundError, PruneOptions, StoreError
from tests.conftest import FakeClock, layer_dirs, write_file
from tests.core.helpers import du_counts


def reopen(cm: CacheManager, root: Path, clock: FakeClock) -> CacheManager:
    cm.close()
    return CacheManager.open(root, clock=clock)


# -- E. Restart, persistence and crash recovery -------------------------------------------


def test_restart_with_a_pending_commit(cm, root, clock) -> None:
    a = cm.new(retain=True)
    s = a.commit()
    cm = reopen(cm, root, clock)
    h = cm.get(s.id)
    assert h.id == s.id
    h.release()
    assert cm.get_mutable(a.id).id == a.id
    with pytest.raises(NotFoundError):
        cm.get(s.id)
    cm.close()


def test_restart_then_finalize(cm, root, clock) -> None:
    a = cm.new(retain=True)
    s = a.commit()
    cm = reopen(cm, root, clock)
    h = cm.get(s.id)
    h.finalize()
    h.release()
    with pytest.raises(NotFoundError):
        cm.get_mutable(a.id)
    assert layer_dirs(root) == [s.id]
    cm.close()


def test_metadata_persists(cm, root, clock) -> None:
    a = cm.new(retain=True, description="mount /root/.cache", record_type="exec.cachemount")
    created = cm.state().rows[a.id].created_at
    clock.advance(60)
    a.release()
    before = cm.state().rows[a.id]
    clock.advance(3600)
    cm = reopen(cm, root, clock)
    after = cm.state().rows[a.id]
    assert (after.description, after.record_type, after.retain) == (
        "mount /root/.cache",
        "exec.cachemount",
        True,
    )
    assert after.created_at == created
    assert (after.usage_count, after.last_used_at) == (before.usage_count, before.last_used_at)
    assert after.usage_count == 1
    cm.close()


def test_missing_snapshot_is_listed_never_forgotten(cm, root, clock) -> None:
    """Opening never forgets a record: a missing layer is listed "missing", its child
    "broken"; neither can be taken (the error names the path); prune removes the rows
    and the layer that does exist."""
    keep = cm.new(retain=True)
    keep.commit().release()
    a = cm.new(retain=True)
    s = a.commit()
    s.finalize()
    child = cm.new(s, retain=True)
    child.release()
    s.release()
    shutil.rmtree(root / "snapshots" / s.id)
    cm = reopen(cm, root, clock)
    health = {u.id: (u.health, u.size) for u in cm.disk_usage()}
    assert health[s.id] == ("missing", 0) and health[child.id][0] == "broken"
    assert {u.id for u in cm.disk_usage(["health==missing"])} == {s.id}
    with pytest.raises(NotFoundError, match=str(root / "snapshots" / s.id)):
        cm.get(s.id)
    with pytest.raises(NotFoundError, match="ancestor"):
        cm.get_mutable(child.id)
    assert {u.id for u in cm.disk_usage()} == {keep.id, s.id, child.id}
    assert not [f for f in cm.open_findings if f.kind != "network-filesystem"]
    pruned = {u.id for u in cm.prune(PruneOptions(all=True, filters=("health!=ok",)))}
    assert pruned == {s.id, child.id}
    assert layer_dirs(root) == [keep.id]
    cm.close()


def test_half_finalized_pair_is_repaired(cm, root, clock) -> None:
    a = cm.new(retain=True)
    write_file(a.mount().upper, "data", 100)
    s = a.commit()
    s.release()
    cm.close()
    # The snapshot commit happened (the layer moved), the metadata update did not.
    os.rename(root / "snapshots" / a.id, root / "snapshots" / s.id)
    cm = CacheManager.open(root, clock=clock)
    with pytest.raises(NotFoundError):
        cm.get_mutable(a.id)
    h = cm.get(s.id)
    h.finalize()  # a no-op now
    assert (root / "snapshots" / s.id / "data").exists()
    h.release()
    cm.close()


def test_prune_tombstone_is_finished_at_open(cm, root, clock) -> None:
    a = cm.new(retain=True)
    a.release()
    with cm.store.write():
        cm.store.execute("UPDATE record SET deleted = 1 WHERE id = ?", (a.id,))
    cm = reopen(cm, root, clock)
    with pytest.raises(NotFoundError):
        cm.get(a.id)
    assert cm.state().rows == {}
    assert layer_dirs(root) == []
    cm.close()


def test_broken_parent_does_not_leak(cm, root, clock) -> None:
    """A live child under a tombstoned parent is damage: finishing that removal would
    take the child's lower layer. The store opens read-only; ``rebuild`` keeps both."""
    from cachetui.core.rebuild import rebuild

    a = cm.new(retain=True)
    sa = a.commit()
    sa.finalize()
    b = cm.new(retain=True)
    sb = b.commit()
    sb.finalize()
    child = cm.new(sb, retain=True)
    child.release()
    sa.release()
    sb.release()
    with cm.store.write():
        cm.store.execute("UPDATE record SET deleted = 1 WHERE id = ?", (sb.id,))
    cm = reopen(cm, root, clock)
    assert cm.read_only and du_counts(cm) == (0, 2)
    assert (root / "snapshots" / sb.id).is_dir()
    with pytest.raises(StoreError, match="damaged"):
        cm.get(sa.id)
    cm.close()
    rebuild(root)
    cm = CacheManager.open(root, clock=clock)
    assert not cm.read_only and du_counts(cm) == (0, 3)
    h = cm.get_mutable(child.id)
    assert [holder.record for holder in cm.state().holders] == [child.id]
    assert len(h.mount().lowers) == 1
    h.release()
    cm.close()


def test_prune_then_close_leaves_no_directories(cm, root, clock) -> None:
    for _ in range(3):
        m = cm.new(retain=True)
        write_file(m.mount().upper, "f", 10)
        m.commit().release()
    cm.prune()
    cm.close()
    assert layer_dirs(root) == []


def test_non_retained_mutable_held_at_close(cm, root, clock) -> None:
    a = cm.new()
    cm = reopen(cm, root, clock)  # the handle was never released
    assert du_counts(cm) == (0, 1)
    assert [r.id for r in cm.prune()] == [a.id]
    cm.close()


# -- F. Usage accounting ---------------------------------------------------------------


def _finalized(cm: CacheManager):
    m = cm.new(retain=True)
    s = m.commit()
    s.finalize()
    s.release()
    return s


def test_one_get_release_counts_one_use(cm, clock) -> None:
    s = _finalized(cm)
    before = cm.state().rows[s.id].usage_count
    clock.advance(100)
    cm.get(s.id).release()
    row = cm.state().rows[s.id]
    assert row.usage_count == before + 1
    assert row.last_used_at == clock.now


def test_overlapping_handles_count_once(cm) -> None:
    s = _finalized(cm)
    base = cm.state().rows[s.id].usage_count
    h1, h2 = cm.get(s.id), cm.get(s.id)
    h1.release()
    h2.release()
    assert cm.state().rows[s.id].usage_count == base + 1
    cm.get(s.id).release()
    cm.get(s.id).release()
    assert cm.state().rows[s.id].usage_count == base + 3


def test_internal_handles_do_not_count(cm, clock) -> None:
    s = _finalized(cm)
    before = cm.state().rows[s.id]
    clock.advance(100)
    h = cm.get(s.id)
    clone = h.clone()
    child = cm.new(h, retain=True)
    clone.release()
    child.release()
    cm.disk_usage()
    cm.prune()
    after = cm.state().rows[s.id]
    # Only h is a use, and it is still held.
    assert (after.usage_count, after.last_used_at) == (before.usage_count, before.last_used_at)
    h.release()
    assert cm.state().rows[s.id].usage_count == before.usage_count + 1


def test_pair_usage_moves_both_records(cm, clock) -> None:
    a = cm.new(retain=True)
    a_before = cm.state().rows[a.id].usage_count
    s = a.commit()
    clock.advance(50)
    s.release()
    rows = cm.state().rows
    assert rows[s.id].usage_count == 1
    assert rows[a.id].usage_count == a_before + 1
    assert rows[a.id].last_used_at == clock.now


def test_disk_usage_and_size_never_count_a_use(cm) -> None:
    a = cm.new(retain=True)
    write_file(a.mount().upper, "f", 5000)
    a.release()
    before = cm.state().rows[a.id]
    cm.disk_usage()
    cm.disk_usage()
    after = cm.state().rows
    assert list(after) == [a.id]  # no hidden commit was created
    assert after[a.id].usage_count == before.usage_count


def test_get_mutable_on_an_immutable_is_invalid_even_when_held(cm) -> None:
    s = _finalized(cm)
    held = cm.get(s.id)
    with pytest.raises(InvalidError):
        cm.get_mutable(s.id)
    held.release()
