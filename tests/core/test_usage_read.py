"""Disk usage's read of every record: one walk of the ``record_usage`` index (no sort of
the rows, no scan for the pairs), one object per record, and the same rows the full
picture gives, in every shape a store can be in."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from cachetui.core import CacheManager, CacheMount
from cachetui.core.recordstore import PENDING_COMMITS_SQL, USAGE_ROWS_SQL
from tests.conftest import FakeClock, write_file

#: A filter every record passes: disk usage then takes the full picture's path.
EVERY = ["id!=nothing"]


def _plan(root: Path, sql: str) -> str:
    con = sqlite3.connect(root / "metadata.db")
    try:
        return " | ".join(str(step[3]) for step in con.execute(f"EXPLAIN QUERY PLAN {sql}"))
    finally:
        con.close()


def _has_usage_index(root: Path) -> bool:
    con = sqlite3.connect(root / "metadata.db")
    try:
        found = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'record_usage'")
        return found.fetchone() is not None
    finally:
        con.close()


def test_every_record_is_read_from_one_walk_of_the_usage_index(cm: CacheManager) -> None:
    plan = _plan(cm.root, USAGE_ROWS_SQL)
    assert "COVERING INDEX record_usage" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # no sort of 100,000 rows


def test_the_pairs_are_read_from_their_index(cm: CacheManager) -> None:
    plan = _plan(cm.root, PENDING_COMMITS_SQL)
    assert "record_equal_mutable" in plan and "SCAN" not in plan, plan


def test_an_upgraded_store_gets_the_usage_index(tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(Path(__file__).parent / "fixtures" / "store_v1", root)
    assert not _has_usage_index(root)
    with CacheManager.open(root) as cm:
        rows = cm.disk_usage()
        assert rows and rows == cm.disk_usage(EVERY)
    assert "COVERING INDEX record_usage" in _plan(root, USAGE_ROWS_SQL)


def test_an_older_store_read_without_the_index_reads_the_same(tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(Path(__file__).parent / "fixtures" / "store_v1", root)
    with CacheManager.open(root, read_only=True) as cm:  # a read never upgrades
        rows = cm.disk_usage()
        assert rows and rows == cm.disk_usage(EVERY)
    assert not _has_usage_index(root)


def _record(cm: CacheManager, size: int, parent: str | None = None, **kwargs: object) -> str:
    ref = cm.new(parent=cm.get(parent) if parent else None, retain=True, **kwargs)  # type: ignore[arg-type]
    write_file(ref.mount().upper, "data", size)
    snapshot = ref.commit()
    snapshot.finalize()
    snapshot.release()
    return snapshot.id


def test_every_shape_of_store_reads_as_the_full_picture_does(root: Path, clock: FakeClock) -> None:
    """Chains, both halves of pending pairs, holders (in use up the chain), a held
    mutable's live size, sizes never measured, uses, labels, cache mounts and shared
    records: the one-object-per-record read equals the full picture's, row for row."""
    shared: set[str] = set()
    cm = CacheManager.open(root, clock=clock, is_shared=lambda rid: rid in shared)
    base = _record(cm, 40_000, description="base")
    middle = _record(cm, 8_000, base, labels={"team": "infra"})
    _record(cm, 8_000, middle)  # the same size: ties go by id
    _record(cm, 12_000, base, record_type="exec.cachemount",
            cache_mount=CacheMount("m2", "/root/.m2", "locked"))  # fmt: skip
    clock.now += 60
    cm.get(middle).release()  # a use
    shared.add(base)
    # a pending pair, released: the mutable shows
    released = cm.new(retain=True)
    write_file(released.mount().upper, "data", 3_000)
    released.commit().release()
    # a pending pair whose immutable is held: the immutable shows, in use
    held_pair = cm.new(retain=True)
    held_immutable = held_pair.commit()
    # a held mutable on the chain: in use up to the base, its size measured live
    growing = cm.new(parent=cm.get(middle), retain=True)
    write_file(growing.mount().upper, "data", 20_000)
    with CacheManager.open(root, clock=clock, is_shared=lambda rid: rid in shared) as other:
        first = other.disk_usage()  # sizes never measured: measured now, and cached
        assert first == other.disk_usage(EVERY)
    write_file(growing.mount().upper, "more", 20_000)
    rows = cm.disk_usage()
    assert rows == cm.disk_usage(EVERY)
    assert [(r.size, r.id) for r in rows] == sorted(((r.size, r.id) for r in rows),
                                                    key=lambda p: (-p[0], p[1]))  # fmt: skip
    by_id = {r.id: r for r in rows}
    assert by_id[growing.id].size > next(r for r in first if r.id == growing.id).size
    assert by_id[base].in_use and by_id[base].shared and by_id[held_immutable.id].in_use
    assert by_id[middle].labels == (("team", "infra"),) and by_id[middle].usage_count == 1
    assert held_pair.id not in by_id and released.id in by_id
    assert {r.health for r in rows} == {"ok"}
    held_immutable.release()
    growing.release()
    cm.close()


def test_a_missing_layer_reads_as_the_full_picture_does(cm: CacheManager) -> None:
    base = _record(cm, 4_000)
    child = _record(cm, 4_000, base)
    shutil.rmtree(cm.root / "snapshots" / base)
    rows = cm.disk_usage()
    assert rows == cm.disk_usage(EVERY)
    assert {r.id: r.health for r in rows} == {base: "missing", child: "broken"}
