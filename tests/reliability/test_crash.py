"""A. Crashes: a real child process dies at every step, the parent reopens and checks.

The child dies through ``CACHETUI_CRASH_AT`` (``os._exit(137)``: no cleanup, no
rollback on our side) or through a real SIGKILL sent while it is blocked. After each
crash ``check_consistent`` proves: every record whole or gone, no orphan rows, no lost
committed data (the parent's finalized record keeps its file), leftovers cleaned at open
or reported by doctor, and the next prune completes.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from cachetui.core import CacheManager, PruneInterrupted, PruneOptions
from cachetui.core.crashpoints import CRASH_POINTS
from cachetui.core.prune import MAX_PRUNE_BATCH, PIPELINE_DEPTH
from cachetui.core.store import SCHEMA_VERSION
from tests.reliability.conftest import Child, check_consistent, run_worker

OPERATION_POINTS = [p for p in CRASH_POINTS if not p.startswith("migrate:")]


def make_keeper(cm: CacheManager):
    """A finalized record with a file, committed before any crash and held by this test."""
    ref = cm.new(description="keeper")
    (ref.mount().upper / "precious").write_bytes(b"p" * 10000)
    keeper = ref.commit()
    keeper.finalize()
    return keeper


def make_unused(cm: CacheManager, count: int) -> list[str]:
    """``count`` unused records: a chain of 5 plus leaves, each with a file."""
    ids = []
    parent = None
    for i in range(count):
        ref = cm.new(parent if i < 5 else None, description=f"unused-{i}")
        (ref.mount().upper / "f").write_bytes(b"u" * 3000)
        imm = ref.commit()
        imm.finalize()
        ids.append(imm.id)
        if i < 5:
            if parent is not None:
                parent.release()
            parent = imm
        else:
            imm.release()
    if parent is not None:
        parent.release()
    return ids


def test_every_operation_has_crash_points() -> None:
    for operation in ("prepare", "commit", "finalize", "release", "prune", "migrate"):
        assert any(p.startswith(f"{operation}:") for p in CRASH_POINTS), operation
    assert all(p.count(":") == 1 for p in CRASH_POINTS)


@pytest.mark.parametrize("point", OPERATION_POINTS)
def test_crash_point(root: Path, point: str) -> None:
    operation = point.split(":")[0]
    cm = CacheManager.open(root)
    try:
        keeper = make_keeper(cm)
        unused = make_unused(cm, 25) if operation == "prune" else []
        args = [keeper.id] if operation == "prepare" else []
        code, events = run_worker(operation, root, *args, crash_at=point)
        assert code == 137, f"{point} was never reached: {events}"
        made = {e["event"]: e for e in events}
        unfixed = check_consistent(root, keep=[(keeper.id, "precious")])
        with CacheManager.open(root) as after:
            rows = after.state().rows
            if point == "prepare:staged":
                assert not unfixed
            elif point == "prepare:renamed":  # the row rolled back, the dir is an orphan
                assert [f.kind for f in unfixed] == ["unknown-dir"]
                assert not (after.snapshots.dir / unfixed[0].subject).exists()  # fixed
            elif operation in ("commit", "finalize"):  # whole, nothing left over
                assert unfixed == []
            elif operation == "release":
                assert made["made"]["id"] not in rows  # released after the check's prune
            if operation == "prune":
                assert not set(unused) & set(rows)  # the next prune completed
            assert keeper.id in rows
    finally:
        cm.close()


@pytest.mark.parametrize("point", ["commit:inserted", "commit:committed"])
def test_crash_during_commit_leaves_one_kind(root: Path, point: str) -> None:
    """Still ``active`` (mutable only) or committed (a pair), same directory, its file."""
    code, events = run_worker("commit", root, crash_at=point)
    assert code == 137
    mutable_id = events[0]["id"]
    with CacheManager.open(root) as cm:
        rows = cm.state().rows
        assert mutable_id in rows and rows[mutable_id].mutable
        pair = [r for r in rows.values() if r.equal_mutable == mutable_id]
        assert len(pair) == (1 if point == "commit:committed" else 0)
        assert (cm.snapshots.path(mutable_id) / "data").is_file()
        info = cm.disk_usage()
        assert [u.id for u in info] == [mutable_id]
        assert info[0].mutable and not info[0].in_use and info[0].reclaimable


@pytest.mark.parametrize("point", ["finalize:renamed", "finalize:committed"])
def test_crash_during_finalize_keeps_the_immutable(root: Path, point: str) -> None:
    code, events = run_worker("finalize", root, crash_at=point)
    assert code == 137
    committed = events[0]["id"]
    with CacheManager.open(root) as cm:
        rows = cm.state().rows
        assert list(rows) == [committed] and rows[committed].equal_mutable is None
        assert (cm.snapshots.path(committed) / "data").is_file()
        if point == "finalize:renamed":
            assert "half-finalized" in [f.kind for f in cm.open_findings]


@pytest.mark.parametrize(
    ("point", "survives"),
    [("release:tombstoned", True), ("release:committed", False), ("release:removed", False)],
)
def test_crash_during_release(root: Path, point: str, survives: bool) -> None:
    code, events = run_worker("release", root, crash_at=point)
    assert code == 137
    rid = events[0]["id"]
    with CacheManager.open(root) as cm:
        rows = cm.state().rows
        assert (rid in rows) is survives
        if survives:  # the tombstone rolled back: whole again (rm-* renamed back)
            assert (cm.snapshots.path(rid) / "data").is_file()
            assert "rolled-back-removal" in {f.kind for f in cm.open_findings}
        else:
            with pytest.raises(KeyError):
                cm.get(rid)
        assert os.listdir(cm.snapshots.dir) == ([rid] if survives else [])


def test_crash_midway_through_prune_batches(root: Path) -> None:
    """50 records, crash after the first batch; reopen, prune again, totals add up."""
    with CacheManager.open(root) as cm:
        ids = make_unused(cm, 50)
        total = sum(u.size for u in cm.disk_usage())
    code, events = run_worker("prune", root, crash_at="prune:batch-done")
    assert code == 137
    first = [e["id"] for e in events if e["event"] == "pruned"]
    assert 0 < len(first) < 50
    with CacheManager.open(root) as cm:
        rest = cm.prune(PruneOptions(all=True))
        second = [u.id for u in rest]
        # Reported once at most. Batches tombstoned but still deleting when the process
        # died were finished by the reopen: removed as asked, never announced, and never
        # more than the prune pipeline holds.
        assert not set(first) & set(second)
        assert set(first) | set(second) <= set(ids)
        unannounced = set(ids) - set(first) - set(second)
        assert len(unannounced) <= PIPELINE_DEPTH * MAX_PRUNE_BATCH
        assert sum(u.size for u in rest) <= total
        assert cm.disk_usage() == [] and os.listdir(cm.snapshots.dir) == []
        assert [f for f in cm.doctor() if not f.fixed] == []


def test_sigkill_while_blocked_in_prune(root: Path) -> None:
    """A real SIGKILL from the parent, the child blocked between two prune batches."""
    cm = CacheManager.open(root)
    try:
        keeper = make_keeper(cm)
        make_unused(cm, 30)
        child = Child("prune-blocking", root)
        assert child.event()["event"] == "pruned"
        child.kill()
        check_consistent(root, keep=[(keeper.id, "precious")])
    finally:
        cm.close()


def test_sigkill_mid_rmtree(root: Path) -> None:
    """Killed half way through deleting a tombstoned layer's files."""
    with CacheManager.open(root) as cm:
        ref = cm.new()
        for i in range(40):
            (ref.mount().upper / f"f{i}").write_bytes(b"z" * 100)
        imm = ref.commit()
        imm.finalize()
        rid = imm.id
        imm.release()
    child = Child("prune-mid-rmtree", root, "20")
    assert child.event()["event"] == "mid-rmtree"
    trash = root / "snapshots" / f"rm-{rid}"
    assert trash.is_dir() and 0 < len(os.listdir(trash)) < 40  # really half removed
    child.kill()
    with CacheManager.open(root) as cm:
        assert not trash.exists() and os.listdir(cm.snapshots.dir) == []
        with pytest.raises(KeyError):
            cm.get(rid)
        assert [f for f in cm.doctor() if not f.fixed] == []


def test_crash_in_schema_creation(root: Path) -> None:
    """DDL and the version row are one transaction: reopen sees no half schema."""
    code, _ = run_worker("prune", root, crash_at="migrate:after_ddl")
    assert code == 137
    db = sqlite3.connect(root / "metadata.db")
    try:
        assert db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall() == []
    finally:
        db.close()
    with CacheManager.open(root) as cm:
        assert cm.store.rows("SELECT value FROM setting") == [(str(SCHEMA_VERSION),)]
        assert cm.doctor() == []


def test_power_loss_keeps_directory_without_row(root: Path, tmp_path: Path) -> None:
    """The metadata of before the last commit, the disk of after: an unknown
    directory is reported, nothing deleted."""
    with CacheManager.open(root) as cm:
        backup = sqlite3.connect(tmp_path / "before.db")
        cm.store.db.connection().backup(backup)
        backup.close()
        ref = cm.new()
        (ref.mount().upper / "late").write_bytes(b"l" * 100)
        imm = ref.commit()
        imm.finalize()
        rid = imm.id
        imm.release()
    for suffix in ("", "-wal", "-shm"):
        (root / f"metadata.db{suffix}").unlink(missing_ok=True)
    os.replace(tmp_path / "before.db", root / "metadata.db")
    with CacheManager.open(root) as cm:
        assert cm.disk_usage() == []
        assert (cm.snapshots.path(rid) / "late").is_file()  # not auto-deleted
        assert [(f.kind, f.subject) for f in cm.doctor()] == [("unknown-dir", rid)]


def test_dead_holder_frees_its_record(root: Path) -> None:
    """A killed holder no longer protects; a live one always does."""
    with CacheManager.open(root) as cm:
        ref = cm.new()
        imm = ref.commit()
        imm.finalize()
        rid = imm.id
        imm.release()
        child = Child("hold", root, rid)
        assert child.event()["event"] == "holding"
        assert cm.prune(PruneOptions(all=True)) == []
        assert [u.in_use for u in cm.disk_usage()] == [True]
        child.kill()
        assert [u.in_use for u in cm.disk_usage()] == [False]
        assert [u.id for u in cm.prune(PruneOptions(all=True))] == [rid]


def test_leftover_mutables_after_crash(root: Path) -> None:
    """A dead process's mutables show as unused, reclaimable and go at the next prune."""
    child = Child("new-held", root)
    made = child.event()
    child.kill()
    with CacheManager.open(root) as cm:
        info = {u.id: u for u in cm.disk_usage()}
        assert set(info) == {made["retained"], made["dropped"]}
        assert all(u.mutable and not u.in_use and u.reclaimable for u in info.values())
        # Without ``all`` only internal/frontend and shared records are kept (BuildKit's
        # prune never looks at retain), so a retained record is not kept until
        # --all: the default prune reclaims both leftovers.
        assert {u.id for u in cm.prune()} == {made["retained"], made["dropped"]}
        assert os.listdir(cm.snapshots.dir) == []


def test_prune_cancelled_between_records(root: Path) -> None:
    """A cancel raised from on_prune stops the prune between batches; the
    store is consistent and the next prune finishes. The Pilot part is the dashboard's."""
    with CacheManager.open(root) as cm:
        ids = make_unused(cm, 30)
        seen: list[str] = []

        def cancel(info) -> None:  # type: ignore[no-untyped-def]
            seen.append(info.id)
            if len(seen) == 3:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            cm.prune(PruneOptions(all=True), on_prune=cancel)
        left = {u.id for u in cm.disk_usage()}
        assert not set(seen) & left and 0 < len(left) < 30
    check_consistent(root)
    with CacheManager.open(root) as cm:
        assert cm.disk_usage() == [] and len(ids) == 30


def test_prune_interrupted_lists_everything_that_went(root: Path) -> None:
    """A callback that raises stops the prune; PruneInterrupted.removed is the truth."""
    with CacheManager.open(root) as cm:
        ids = make_unused(cm, 60)

        class Stop(Exception):
            pass

        def stop_at_first(info) -> None:  # type: ignore[no-untyped-def]
            raise Stop

        with pytest.raises(PruneInterrupted) as caught:
            cm.prune(PruneOptions(all=True), on_prune=stop_at_first)
        assert isinstance(caught.value.__cause__, Stop)
        gone = {info.id for info in caught.value.removed}
        left = {u.id for u in cm.disk_usage()}
        assert gone and left and gone | left == set(ids) and not gone & left
    check_consistent(root)
