"""B. Concurrency: several processes and threads on one store."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cachetui.core import CacheManager, PruneOptions, StoreError
from tests.reliability.conftest import Child


def make_records(cm: CacheManager, chains: int, depth: int) -> list[str]:
    """``chains`` chains of ``depth`` unused finalized records, each with a file."""
    ids = []
    for _ in range(chains):
        parent = None
        for _ in range(depth):
            ref = cm.new(parent)
            (ref.mount().upper / "f").write_bytes(b"c" * 2000)
            imm = ref.commit()
            imm.finalize()
            ids.append(imm.id)
            if parent is not None:
                parent.release()
            parent = imm
        assert parent is not None
        parent.release()
    return ids


def run_stress(root: Path, per_process: int) -> float:
    started = time.monotonic()
    children = [Child("stress", root, str(per_process), str(seed)) for seed in range(4)]
    held = [child.event() for child in children]
    assert all(e["event"] == "holding" for e in held)
    results = [child.event() for child in children]
    for child in children:
        assert child.finish(timeout=600) == 0
    elapsed = time.monotonic() - started
    for result in results:
        assert result["errors"] == [], result["errors"]  # no "database is locked"
        assert result["made"] == per_process
        assert result["held_ok"], "a held record lost its files"
    with CacheManager.open(root) as cm:
        assert [f for f in cm.doctor() if not f.fixed] == []
        cm.prune(PruneOptions(all=True))
        assert cm.disk_usage() == [] and os.listdir(cm.snapshots.dir) == []
        assert [f for f in cm.doctor() if not f.fixed] == []
    return elapsed


def test_four_processes_quick(root: Path) -> None:
    """Quick: 4 processes x 100 refs, creating, committing, holding, pruning at once."""
    run_stress(root, 100)


@pytest.mark.slow
def test_four_processes_ten_thousand_refs(root: Path) -> None:
    """10,000 refs from 4 processes (2,500 each); record the time."""
    elapsed = run_stress(root, 2500)
    print(f"\nB4 stress: 10,000 refs from 4 processes in {elapsed:.1f} s")
    assert elapsed < 300


def test_two_simultaneous_prunes_remove_each_record_once(root: Path) -> None:
    """Barrier start; union of the reports is every candidate, intersection empty."""
    with CacheManager.open(root) as cm:
        make_records(cm, chains=12, depth=4)
        make_records(cm, chains=20, depth=1)
        candidates = {u.id for u in cm.prune(PruneOptions(all=True), dry_run=True)}
        total = sum(u.size for u in cm.disk_usage())
    assert len(candidates) == 68
    children = [Child("prune-once", root) for _ in range(2)]
    assert [c.event()["event"] for c in children] == ["ready", "ready"]
    for child in children:
        child.send("go")
    reports = [set(child.event()["ids"]) for child in children]
    for child in children:
        assert child.finish() == 0
    assert reports[0] | reports[1] == candidates
    assert reports[0] & reports[1] == set()
    with CacheManager.open(root) as cm:
        assert cm.disk_usage() == [] and os.listdir(cm.snapshots.dir) == []
        assert [f for f in cm.doctor() if not f.fixed] == []
    assert total > 0


def test_holder_in_other_process_protects_record_and_ancestors(root: Path) -> None:
    """A child holds X; prune(all) here keeps X and its chain, removes the rest."""
    with CacheManager.open(root) as cm:
        chain = make_records(cm, chains=1, depth=3)
        others = make_records(cm, chains=3, depth=2)
        child = Child("hold", root, chain[-1])
        assert child.event()["event"] == "holding"
        removed = {u.id for u in cm.prune(PruneOptions(all=True))}
        assert removed == set(others)
        assert {u.id for u in cm.disk_usage()} == set(chain)
        assert all(u.in_use for u in cm.disk_usage())
        child.send()
        assert child.event() == {"event": "checked", "ok": True}
        assert child.finish() == 0
        assert {u.id for u in cm.prune(PruneOptions(all=True))} == set(chain)


def test_get_races_prune(root: Path) -> None:
    """Get in a child vs prune here; a held record's layer always exists."""
    with CacheManager.open(root) as cm:
        child = Child("get-loop", root)
        got = missed = 0
        for _ in range(40):
            ref = cm.new()
            (ref.mount().upper / "f").write_bytes(b"r" * 100)
            imm = ref.commit()
            imm.finalize()
            rid = imm.id
            imm.release()
            child.send(rid)
            cm.prune(PruneOptions(all=True))
            event = child.event()
            if event["event"] == "got":
                assert event["ok"], f"{rid} was removed while held"
                got += 1
            else:
                missed += 1
            cm.prune(PruneOptions(all=True))
        child.send("")
        assert child.finish() == 0
        assert got + missed == 40
        assert [f for f in cm.doctor() if not f.fixed] == []


def test_threads_share_one_manager(cm: CacheManager) -> None:
    """8 threads hammering new/commit/get/release/prune on one manager."""
    base = make_records(cm, chains=1, depth=1)[0]

    def work(n: int) -> int:
        done = 0
        for i in range(15):
            with cm.get(base) as parent:
                ref = cm.new(parent)
            (ref.mount().upper / "f").write_bytes(b"t")
            imm = ref.commit()
            imm.release()
            if i % 5 == n % 5:
                cm.prune(PruneOptions(all=True, filters=(f"id!={base}",)))
            cm.disk_usage()
            done += 1
        return done

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(work, range(8))) == 120
    cm.prune(PruneOptions(all=True))
    assert [f for f in cm.doctor() if not f.fixed] == []


def _forked_child(manager: CacheManager, queue: multiprocessing.Queue) -> None:
    try:
        ids = [u.id for u in manager.disk_usage()]
        ref = manager.new()
        ref.release()
        queue.put(("ok", ids, manager.store.db is not None))
    except BaseException as err:  # pragma: no cover - reported to the parent
        queue.put(("error", repr(err), False))


def test_fork_child_opens_its_own_connection(cm: CacheManager) -> None:
    """A forked child uses the manager it inherited through a new connection."""
    rid = make_records(cm, chains=1, depth=1)[0]
    parent_conn = cm.store.db.connection()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_forked_child, args=(cm, queue))
    proc.start()
    status, ids, _ = queue.get(timeout=60)
    proc.join(timeout=60)
    assert (status, ids, proc.exitcode) == ("ok", [rid], 0)
    assert cm.store.db.connection() is parent_conn  # the parent's connection is intact
    assert [u.id for u in cm.disk_usage()] == [rid]
    assert [f for f in cm.doctor() if not f.fixed] == []


def test_busy_beyond_budget_is_store_error_without_partial_write(cm: CacheManager) -> None:
    """Another connection holds the write lock longer than the budget."""
    cm.store.db.execute_sql("PRAGMA busy_timeout = 300")
    other = sqlite3.connect(cm.root / "metadata.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match=r"busy|locked"):
            cm.new()
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert cm.disk_usage() == [] and os.listdir(cm.snapshots.dir) == []
    ref = cm.new()  # works again once the lock is gone
    ref.release()


def test_change_feed_sees_another_process_commit(root: Path) -> None:
    """The change feed reports a metadata change when another process commits."""
    from cachetui.core.watch import ChangeFeed, ChangeSet

    CacheManager.open(root).close()
    seen: list[ChangeSet] = []
    with ChangeFeed(root, seen.append):
        time.sleep(0.3)  # the poller has read the first data_version
        seen.clear()
        child = Child("new-held", root)
        try:
            child.event()
            deadline = time.monotonic() + 10
            while not any(change.metadata for change in seen):
                assert time.monotonic() < deadline, "no metadata change reported"
                time.sleep(0.02)
        finally:
            child.kill()
