"""A stored size that is garbage (not a non-negative integer, or more than the store's
disks could hold) is never trusted: every read takes it as unknown and measures the
layer again, doctor reports it and ``doctor --fix`` stores the measured size.

Real SQLite files changed with SQL as an outsider would, real layers, and the CLI run as
a real subprocess (no traceback, whatever the value).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cachetui.core import CacheManager, PruneOptions
from tests.reliability.workers import child_env

MB = 1024 * 1024


def _store(root: Path, count: int = 4) -> list[str]:
    """``count`` unused records of 1 MiB each, oldest first."""
    ids = []
    with CacheManager.open(root) as cm:
        for _ in range(count):
            ref = cm.new(retain=True)
            upper = ref.mount().upper
            assert upper is not None
            (upper / "data").write_bytes(b"d" * MB)
            ref.release()
            ids.append(ref.id)
        cm.disk_usage()  # the sizes are measured and stored
    return ids


def _set_size(root: Path, rid: str, value: str) -> None:
    db = sqlite3.connect(root / "metadata.db")
    db.execute(f"UPDATE record SET size = {value} WHERE id = ?", (rid,))
    db.commit()
    db.close()


def _stored(root: Path, rid: str) -> object:
    db = sqlite3.connect(root / "metadata.db")
    try:
        return db.execute("SELECT size FROM record WHERE id = ?", (rid,)).fetchone()[0]
    finally:
        db.close()


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cachetui", *args, "--root", str(root)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )


@pytest.mark.parametrize("value", ["1000000000000000", "'abc'", "X'00'", "2.5e300", "3.5"])
def test_a_garbage_size_is_measured_again_and_reported(root: Path, value: str) -> None:
    ids = _store(root)
    _set_size(root, ids[1], value)
    with CacheManager.open(root, read_only=True) as cm:
        sizes = {u.id: u.size for u in cm.disk_usage()}
        if value == "3.5":  # a fraction reads cut to whole bytes (it keeps its order)
            assert sizes[ids[1]] == 3
        else:
            assert MB <= sizes[ids[1]] < 2 * MB, sizes
        found = [f for f in cm.doctor() if f.kind == "bad-size"]
        assert [(f.subject, f.fixed) for f in found] == [(ids[1], False)]
    with CacheManager.open(root) as cm:
        fixed = [f for f in cm.doctor(fix=True) if f.kind == "bad-size"]
        assert [(f.subject, f.fixed) for f in fixed] == [(ids[1], True)]
        stored = _stored(root, ids[1])
        assert isinstance(stored, int) and MB <= stored < 2 * MB
        assert not [f for f in cm.doctor() if f.kind == "bad-size"]


def test_prune_to_a_limit_frees_only_what_is_needed(root: Path) -> None:
    """A size of a petabyte on one row made a prune to 3.5 MiB remove everything."""
    ids = _store(root)
    _set_size(root, ids[3], "1000000000000000")
    with CacheManager.open(root) as cm:
        removed = cm.prune(PruneOptions(max_used_space=int(3.5 * MB)))
        assert len(removed) == 1, [u.id for u in removed]
        assert len(cm.disk_usage()) == 3


def test_text_size_never_makes_a_traceback(root: Path) -> None:
    ids = _store(root)
    _set_size(root, ids[0], "'abc'")
    for args in (
        ("du",),
        ("doctor",),
        ("prune", "--max-used-space", "3MB", "--force"),
        ("gc",),
    ):
        done = _cli(root, *args)
        assert "Traceback" not in done.stderr, (args, done.stderr)
        assert done.returncode in (0, 1), (args, done.returncode, done.stderr)
    done = _cli(root, "doctor")
    assert "bad-size" not in done.stdout  # the prune measured it again and stored it


def test_a_size_larger_than_the_space_in_use_is_measured_again(root: Path) -> None:
    """Below the disk's capacity but above the bytes in use on it: impossible for a layer
    on that disk, so never trusted (a prune to a limit would free far more than asked)."""
    ids = _store(root)
    st = os.statvfs(root)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    capacity = st.f_blocks * st.f_frsize
    claimed = used + (capacity - used) // 2
    assert used < claimed < capacity
    _set_size(root, ids[3], str(claimed))
    with CacheManager.open(root) as cm:
        assert {u.id: u.size for u in cm.disk_usage()}[ids[3]] < 2 * MB
        removed = cm.prune(PruneOptions(max_used_space=int(3.5 * MB)))
        assert len(removed) == 1, [u.id for u in removed]
