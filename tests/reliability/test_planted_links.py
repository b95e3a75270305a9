"""Files the store writes beside its database (the GC lock, the disk-full reserve) are
never written through a link planted in their place: a canary outside the store, reached
by a symlink at that name, keeps every byte, through the real CLI."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cachetui.core import CacheManager, reserve
from tests.reliability.workers import child_env

PRECIOUS = b"precious bytes outside the store\n" * 100


def cachetui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cachetui", *args],
        env=child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A small closed store with a free record (something for GC to look at)."""
    root = tmp_path / "store"
    cm = CacheManager.open(root)
    ref = cm.new(description="build")
    upper = ref.mount().upper
    assert upper is not None
    (upper / "out.o").write_bytes(b"x" * 8192)
    ref.commit().release()
    cm.close()
    return root


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(PRECIOUS)
    return outside / "precious"


def test_gc_does_not_empty_a_file_through_a_planted_gc_lock_symlink(
    store: Path, canary: Path
) -> None:
    (store / "gc.lock").unlink(missing_ok=True)
    os.symlink(canary, store / "gc.lock")
    done = cachetui("gc", "--root", str(store))
    assert canary.read_bytes() == PRECIOUS
    assert done.returncode != 0
    assert "gc.lock is a symlink" in done.stderr
    assert "Traceback" not in done.stderr
    # The link is still there (the operator decides), and still points at the canary.
    assert os.readlink(store / "gc.lock") == str(canary)


def test_gc_refuses_a_gc_lock_that_is_not_a_regular_file(store: Path) -> None:
    (store / "gc.lock").unlink(missing_ok=True)
    os.mkfifo(store / "gc.lock")
    done = cachetui("gc", "--root", str(store))
    assert done.returncode != 0
    assert "is not a regular file" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_open_writes_the_reserve_through_a_planted_staging_symlink(
    store: Path, canary: Path
) -> None:
    db = str(store / "metadata.db")
    reserve.release(db)
    staging = Path(reserve.reserve_path(db) + ".new")
    os.symlink(canary, staging)
    kept = Path(reserve.reserve_path(db))
    looked = cachetui("du", "--root", str(store))
    assert looked.returncode == 0, looked.stderr
    assert canary.read_bytes() == PRECIOUS
    assert not kept.exists()  # a look sets nothing aside
    # A writable open (here a prune) sets the reserve aside as a real file of its own,
    # and removes the planted link instead of writing through it.
    pruned = cachetui("prune", "--root", str(store), "--all", "--force")
    assert pruned.returncode == 0, pruned.stderr
    assert canary.read_bytes() == PRECIOUS
    assert not kept.is_symlink() and kept.is_file()
    assert kept.stat().st_blocks * 512 >= reserve.RESERVE_BYTES
    assert not staging.exists() and not staging.is_symlink()


def test_doctor_rebuild_never_writes_through_a_planted_staging_name(
    tmp_path: Path, store: Path
) -> None:
    """The rebuilt database is made under a name nobody could plant a link at: links at
    every name the old predictable scheme would use, pointing at another store's
    metadata, leave that store's file byte for byte as it was."""
    other = tmp_path / "other"
    with CacheManager.open(other) as cm:
        cm.new(description="someone else's").commit().release()
    other_db = other / "metadata.db"
    before = other_db.read_bytes()
    with CacheManager.open(store) as cm:
        parent = cm.new(description="parent").commit()
        parent.finalize()
        child = cm.new(parent, description="child").commit()
        child.finalize()
        child_id = child.id
        child.release()
        parent.release()
    db = sqlite3.connect(store / "metadata.db")
    db.execute("UPDATE record SET parent = parent || ' ' WHERE id = ?", (child_id,))
    db.commit()
    db.close()
    now = int(time.time())
    for second in range(now - 2, now + 60):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
        os.symlink(other_db, store / f"metadata.db.rebuild-{stamp}")
    done = cachetui("doctor", "--root", str(store), "--rebuild")
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr
    assert other_db.read_bytes() == before
    rebuilt = store / "metadata.db"
    assert rebuilt.is_file() and not rebuilt.is_symlink()
    assert sorted(p.name for p in store.glob("metadata.db.rebuild-*") if not p.is_symlink()) == []
    with CacheManager.open(store) as cm:
        assert child_id in {u.id for u in cm.disk_usage()}


def test_gc_does_not_empty_a_file_hard_linked_or_bind_mounted_at_gc_lock(
    store: Path, canary: Path
) -> None:
    lock = store / "gc.lock"
    lock.unlink(missing_ok=True)
    os.link(canary, lock)
    done = cachetui("gc", "--root", str(store))
    assert canary.read_bytes() == PRECIOUS
    assert done.returncode != 0 and "hard links" in done.stderr, done.stderr
    lock.unlink()
    lock.touch()
    if subprocess.run(["mount", "--bind", str(canary), str(lock)]).returncode:
        pytest.fail("bind-mounting a file needs root (CI runs as root)")
    try:
        done = cachetui("gc", "--root", str(store))
    finally:
        subprocess.run(["umount", str(lock)], check=True)
    assert canary.read_bytes() == PRECIOUS
    assert done.returncode != 0 and "mounted from elsewhere" in done.stderr, done.stderr
    # Its own lock file again: gc runs.
    assert cachetui("gc", "--root", str(store)).returncode == 0


@pytest.mark.parametrize("name", ["metadata.db-shm", "metadata.db-wal"])
def test_no_command_writes_a_file_hard_linked_or_mounted_at_sqlites_side_files(
    store: Path, canary: Path, name: str
) -> None:
    """SQLite writes its WAL and WAL index beside the database, even for a look: a hard
    link or a bind mount at either name is refused with the name, the canary intact."""
    side = store / name
    side.unlink(missing_ok=True)
    os.link(canary, side)
    for args in (["du"], ["gc"], ["prune", "--all", "--force"]):
        done = cachetui(*args, "--root", str(store))
        assert done.returncode != 0 and "hard links" in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert canary.read_bytes() == PRECIOUS
    side.unlink()
    side.touch()
    if subprocess.run(["mount", "--bind", str(canary), str(side)]).returncode:
        pytest.fail("bind-mounting a file needs root (CI runs as root)")
    try:
        done = cachetui("du", "--root", str(store))
    finally:
        subprocess.run(["umount", str(side)], check=True)
    assert done.returncode != 0 and "mounted from elsewhere" in done.stderr, done.stderr
    assert canary.read_bytes() == PRECIOUS
    side.unlink()
    assert cachetui("du", "--root", str(store)).returncode == 0


def test_a_rebuild_that_cannot_keep_the_damaged_files_leaves_the_store_as_it_was(
    store: Path,
) -> None:
    """A directory where the damaged ``-wal`` is to be kept stops the rebuild part way:
    the database already moved comes back, so the store still has its metadata (before,
    it was left with none, and a second rebuild lost every description)."""
    with CacheManager.open(store) as cm:
        parent = cm.new(description="parent").commit()
        parent.finalize()
        child = cm.new(parent, description="child").commit()
        child.finalize()
        child_id = child.id
        child.release()
        parent.release()
    reader = sqlite3.connect(store / "metadata.db")  # keeps -wal and -shm in place
    try:
        reader.execute("UPDATE record SET parent = parent || ' ' WHERE id = ?", (child_id,))
        reader.commit()
        reader.execute("SELECT count(*) FROM record").fetchall()
        assert (store / "metadata.db-wal").exists()
        before = sorted(os.listdir(store))
        now = int(time.time())
        for second in range(now - 2, now + 60):
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            (store / f"metadata.db.damaged-{stamp}-wal").mkdir()
        done = cachetui("doctor", "--root", str(store), "--rebuild")
        assert done.returncode != 0 and "cannot keep" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        after = sorted(n for n in os.listdir(store) if not n.startswith("metadata.db.damaged-"))
        assert after == before  # metadata.db back in place, no rebuilt orphan left
        rows = reader.execute("SELECT description FROM record ORDER BY description").fetchall()
        assert ("child",) in rows and ("parent",) in rows
    finally:
        reader.close()


def test_a_rebuild_keeps_a_parent_link_stored_as_a_blob(store: Path) -> None:
    with CacheManager.open(store) as cm:
        parent = cm.new(description="parent").commit()
        parent.finalize()
        child = cm.new(parent, description="child").commit()
        child.finalize()
        child_id, parent_id = child.id, parent.id
        child.release()
        parent.release()
    db = sqlite3.connect(store / "metadata.db")
    db.execute("UPDATE record SET parent = CAST(parent AS BLOB) WHERE id = ?", (child_id,))
    db.commit()
    db.close()
    done = cachetui("doctor", "--root", str(store), "--rebuild")
    assert "Traceback" not in done.stderr, done.stderr
    with CacheManager.open(store) as cm:
        assert cm.records()[child_id].parent == parent_id
        assert cm.records()[child_id].description == "child"
