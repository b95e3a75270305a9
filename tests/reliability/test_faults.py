"""Disk full and permission errors.

These run as root, so ``EACCES`` cannot be caused for real: the ``os`` calls are
monkeypatched. The database-full case is real: ``PRAGMA max_page_count`` caps the file.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

from cachetui.core import CacheManager, PruneOptions, SnapshotError, StoreError, fsops, usage
from cachetui.core import snapshots as snapshots_module


def full(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def rows(cm: CacheManager) -> list[tuple]:
    with cm.store.read():
        return cm.store.rows("SELECT id, deleted FROM record ORDER BY id")


def finalized(cm: CacheManager, files: int = 1) -> str:
    ref = cm.new()
    for i in range(files):
        (ref.mount().upper / f"f{i}").write_bytes(b"q" * 3000)
    imm = ref.commit()
    imm.finalize()
    imm.release()
    return imm.id


@pytest.mark.parametrize("call", ["mkdir", "rename"])
def test_enospc_while_creating_a_snapshot(
    cm: CacheManager, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """SnapshotError naming ENOSPC, no row, no staging directory left."""
    keep = finalized(cm)
    before = rows(cm)
    monkeypatch.setattr(snapshots_module.os, call, full)
    with pytest.raises(SnapshotError, match="no space left"):
        cm.new()
    monkeypatch.undo()
    assert rows(cm) == before
    assert os.listdir(cm.snapshots.dir) == [keep]
    assert [f for f in cm.doctor() if not f.fixed] == []


def fill_until_full(cm: CacheManager) -> tuple[int, list[tuple]]:
    """Cap the database at its current size, then create records until SQLite is full."""
    (pages,) = cm.store.db.execute_sql("PRAGMA page_count").fetchone()
    cm.store.db.execute_sql(f"PRAGMA max_page_count = {pages}")
    for made in range(10_000):
        before = rows(cm)
        try:
            ref = cm.new()
        except StoreError as err:
            assert "full" in str(err)
            return made, before
        ref.set_retain(True)
        ref.release()
    raise AssertionError("the database never filled up")


def test_database_full_while_creating(cm: CacheManager) -> None:
    """StoreError; no half-made record, no orphan directory;
    reads still work; after the cap is lifted, writes work again."""
    made, before = fill_until_full(cm)
    assert rows(cm) == before
    assert sorted(os.listdir(cm.snapshots.dir)) == sorted(rid for rid, _ in before)
    assert len(cm.disk_usage()) == made
    cm.store.db.execute_sql("PRAGMA max_page_count = 1073741823")
    cm.new().release()
    assert [f for f in cm.doctor() if not f.fixed] == []


def failing_commit(cm: CacheManager, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next COMMIT fail as a full disk does (then the real commit again)."""
    db = cm.store.db
    real = db.commit

    def commit() -> None:
        monkeypatch.setattr(db, "commit", real)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(db, "commit", commit)


def test_database_full_at_commit_of_a_prepare(
    cm: CacheManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at COMMIT: rolled back; the renamed directory is removed in the except path."""
    keep = finalized(cm)
    failing_commit(cm, monkeypatch)
    with pytest.raises(StoreError, match="full"):
        cm.new()
    assert [rid for rid, _ in rows(cm)] == [keep]
    assert os.listdir(cm.snapshots.dir) == [keep]


def test_database_full_at_the_commit_of_a_finalize(
    cm: CacheManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at a finalize's COMMIT: the layer goes back to its mutable, the pair is whole."""
    mutable = cm.new(retain=True)
    (mutable.mount().upper / "data").write_bytes(b"d" * 50_000)
    pending = mutable.commit()
    failing_commit(cm, monkeypatch)
    with pytest.raises(StoreError, match="full"):
        pending.finalize()
    monkeypatch.undo()
    assert os.listdir(cm.snapshots.dir) == [mutable.id]
    assert pending.mount().lowers[0] == cm.snapshots.path(mutable.id)
    assert pending.size() > 50_000
    pending.finalize()
    assert os.listdir(cm.snapshots.dir) == [pending.id]


def test_database_full_at_the_tombstone_write(
    cm: CacheManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tombstone COMMIT fails: the error says so, nothing is removed half way
    (the rm-* rename is undone), and the next prune works."""
    rid = finalized(cm, files=3)
    reported: list[str] = []
    failing_commit(cm, monkeypatch)
    with pytest.raises(StoreError, match="full"):
        cm.prune(PruneOptions(all=True), on_prune=lambda info: reported.append(info.id))
    assert reported == []
    assert rows(cm) == [(rid, 0)]
    assert sorted(os.listdir(cm.snapshots.path(rid))) == ["f0", "f1", "f2"]
    assert os.listdir(cm.snapshots.dir) == [rid]
    assert [u.id for u in cm.prune(PruneOptions(all=True))] == [rid]


def test_permission_denied_while_measuring(
    cm: CacheManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partial size plus an ``unreadable`` finding; no exception; not cached."""
    ref = cm.new()
    upper = ref.mount().upper
    (upper / "visible").write_bytes(b"v" * 8192)
    (upper / "secret").mkdir()
    (upper / "secret" / "big").write_bytes(b"s" * (1 << 20))
    imm = ref.commit()
    imm.finalize()
    imm.release()
    full_size = cm.snapshots.measure(imm.id).size
    secret = os.stat(cm.snapshots.path(imm.id) / "secret")
    real_scandir = os.scandir

    def scandir(target):  # type: ignore[no-untyped-def]
        if isinstance(target, int):
            st = os.fstat(target)
            if (st.st_dev, st.st_ino) == (secret.st_dev, secret.st_ino):
                raise PermissionError(errno.EACCES, "Permission denied")
        return real_scandir(target)

    monkeypatch.setattr(usage.os, "scandir", scandir)
    measured = cm.snapshots.measure(imm.id)
    assert not measured.complete
    assert [f.kind for f in measured.findings] == ["unreadable"]
    assert measured.findings[0].path.endswith("secret")
    assert 0 < measured.size < full_size
    [info] = cm.disk_usage()
    assert info.size == measured.size
    assert rows(cm) == [(imm.id, 0)]
    with cm.store.read():
        assert cm.store.rows("SELECT size FROM record") == [(-1,)]  # a partial size is not kept


def test_permission_denied_while_deleting(
    cm: CacheManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chmod-and-retry once, then SnapshotError with the path; the record stays
    tombstoned (nothing reported as freed) and the next open finishes the removal."""
    rid = finalized(cm, files=3)
    other = finalized(cm)
    real_unlink = os.unlink
    attempts: list[str] = []

    def unlink(name, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fsdecode(name) == "f1":
            attempts.append("f1")
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_unlink(name, *args, **kwargs)

    monkeypatch.setattr(fsops.os, "unlink", unlink)
    reported: list[str] = []
    with pytest.raises(SnapshotError, match="f1"):
        cm.prune(
            PruneOptions(all=True, filters=(f"id=={rid}",)),
            on_prune=lambda info: reported.append(info.id),
        )
    monkeypatch.undo()
    assert attempts == ["f1", "f1"]  # retried once after the chmod
    assert reported == []
    assert (rid, 1) in rows(cm)  # tombstoned
    assert {u.id for u in cm.disk_usage()} == {other}
    assert "tombstone" in {f.kind for f in cm.doctor()}
    root = cm.root
    cm.close()
    with CacheManager.open(root) as again:
        assert rows(again) == [(other, 0)]
        assert os.listdir(again.snapshots.dir) == [other]
        assert [f for f in again.doctor() if not f.fixed] == []


def test_enospc_while_staging_in_a_child_layer(tmp_path: Path) -> None:
    """A full disk with a parent: nothing is copied from the parent (layered), so the only disk
    writes of prepare are the mkdir and the rename covered above."""
    with CacheManager.open(tmp_path / "s") as cm:
        base = finalized(cm)
        with cm.get(base) as parent:
            child = cm.new(parent)
            assert os.listdir(child.mount().upper) == []
            child.release()


# -- G. Time -----------------------------------------------------------------------------


def test_clock_going_backwards(root: Path) -> None:
    """``last_used_at`` in the future: ages clamp, the record counts as recent and stays
    under keep_duration, nothing crashes."""
    from cachetui.units import format_duration_ago
    from tests.conftest import FakeClock

    clock = FakeClock()
    with CacheManager.open(root, clock=clock) as cm:
        rid = finalized(cm)
        with cm.get(rid):
            pass  # a use at T0
        clock.advance(-3600)
        [info] = cm.disk_usage()
        age = clock.now - info.last_used_at.timestamp()
        assert age < 0 and format_duration_ago(age) == "Less than a second"
        assert cm.prune(PruneOptions(keep_duration=60)) == []
        assert cm.disk_usage(age_limit=60) == []
        assert [u.id for u in cm.prune()] == [rid]  # without keep_duration it still goes


def test_clock_jumping_forward_a_year(root: Path) -> None:
    """Everything is old; a dry run lists it; live holders still protect (pid
    liveness, not wall-time expiry)."""
    from tests.conftest import FakeClock

    clock = FakeClock()
    with CacheManager.open(root, clock=clock) as cm:
        old = finalized(cm)
        held = cm.get(finalized(cm))
        clock.advance(365 * 86400)
        plan = cm.prune(PruneOptions(keep_duration=86400), dry_run=True)
        assert [u.id for u in plan] == [old]
        assert [u.id for u in cm.prune(PruneOptions(all=True, keep_duration=86400))] == [old]
        assert [u.id for u in cm.disk_usage()] == [held.id]
        held.release()


def test_timezone_has_no_effect(root: Path) -> None:
    """Stored as UTC epoch values: another TZ sees the same instants."""
    from tests.reliability.conftest import run_worker

    with CacheManager.open(root) as cm:
        finalized(cm)
        mine = {u.id: u.created_at for u in cm.disk_usage()}
    _, events = run_worker("dump-times", root, env={"TZ": "Asia/Kathmandu"})
    assert {e["id"]: e["ts"] for e in events} == {k: v.timestamp() for k, v in mine.items()}
    assert all(e["created"].endswith("+00:00") for e in events)
