"""The open's picture handed on: the first ``records()`` after a writable open with
``keep_picture`` takes the rows the open read (no second read of the record table), and
only while it is exactly what a read now would give: a commit by another process or by
this one, a holder that died, or layers the open moved all make it read again. An open
without it reads only the rows' shape, as before."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachetui.core import CacheManager
from cachetui.core.snapshots import TRASH_PREFIX
from tests.core.test_processes import HOLDER_SCRIPT


def _whole_table(statement: str) -> bool:
    """A read of every row with every column (not the shape, not one record)."""
    return "record_type" in statement and "FROM record" in statement and "WHERE" not in statement


def _store(root: Path, count: int = 5) -> list[str]:
    ids = []
    with CacheManager.open(root) as cm:
        parent = None
        for n in range(count):
            ref = cm.new(parent, description=f"layer {n}")
            (ref.mount().upper / "f").write_bytes(b"x" * (n + 1) * 1000)
            done = ref.commit()
            done.finalize()
            if parent is not None:
                parent.release()
            parent = done
            ids.append(done.id)
        assert parent is not None
        parent.release()
    return ids


class Reads:
    """Counts the whole-table reads on the manager's connection (SQLite's trace)."""

    def __init__(self, cm: CacheManager) -> None:
        self.statements: list[str] = []
        conn = cm.store.db.connection()
        assert isinstance(conn, sqlite3.Connection)
        conn.set_trace_callback(self.statements.append)

    @property
    def table_reads(self) -> int:
        return sum(1 for s in self.statements if _whole_table(s))


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "store"
    return root, _store(root)


def _values(cm: CacheManager) -> dict[str, object]:
    records = cm.records()
    return {rid: records[rid] for rid in records}


def test_the_first_read_takes_the_opens_picture_and_agrees_with_a_fresh_one(store) -> None:
    root, ids = store
    with CacheManager.open(root, keep_picture=True) as cm:
        reads = Reads(cm)
        first = _values(cm)
        assert reads.table_reads == 0  # the open's rows, not read again
        again = _values(cm)
        assert reads.table_reads == 1  # handed on once only
    assert first == again
    assert set(first) == set(ids)
    assert all(state.health == "ok" for state in first.values())  # type: ignore[attr-defined]


def test_an_open_without_it_reads_only_the_shape_and_keeps_nothing(store) -> None:
    root, ids = store
    statements: list[str] = []
    with CacheManager.open(root) as cm:
        conn = cm.store.db.connection()
        assert isinstance(conn, sqlite3.Connection)
        conn.set_trace_callback(statements.append)
        assert set(_values(cm)) == set(ids)
    assert sum(1 for s in statements if _whole_table(s)) == 1  # read by records() itself


def test_a_commit_by_another_process_makes_it_read_again(store) -> None:
    root, ids = store
    with CacheManager.open(root, keep_picture=True) as cm:
        with CacheManager.open(root) as other:  # another connection: data_version moves
            added = other.new(description="made meanwhile", retain=True)
            added.release()
        reads = Reads(cm)
        seen = _values(cm)
        assert reads.table_reads == 1
        assert added.id in seen and set(ids) <= set(seen)


def test_a_change_by_this_manager_makes_it_read_again(store) -> None:
    root, ids = store
    with CacheManager.open(root, keep_picture=True) as cm:
        cm.set_labels(ids[0], {"team": "infra"})
        reads = Reads(cm)
        seen = _values(cm)
        assert reads.table_reads == 1
        assert seen[ids[0]].labels == (("team", "infra"),)  # type: ignore[attr-defined]


@pytest.fixture
def held(store) -> Iterator[tuple[Path, str, subprocess.Popen[str]]]:
    root, _ids = store
    with CacheManager.open(root) as cm:
        record = cm.new(description="held elsewhere", retain=True)
        record.release()
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(root), record.id],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    yield root, record.id, child
    if child.poll() is None:
        child.kill()
    child.wait()


def test_a_holder_dead_since_the_open_makes_it_read_again(held) -> None:
    root, record_id, child = held
    with CacheManager.open(root, keep_picture=True) as cm:  # the holder is alive: kept
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        reads = Reads(cm)
        state = cm.records()[record_id]
        assert reads.table_reads == 1
        assert not state.in_use and not state.held


def test_layers_moved_by_the_open_are_listed_again(store) -> None:
    root, ids = store
    # a removal whose transaction never committed: the row is live, its layer rm-*
    layer = root / "snapshots" / ids[-1]
    layer.rename(root / "snapshots" / f"{TRASH_PREFIX}{ids[-1]}")
    shutil.copytree(root / "snapshots" / ids[0], root / "snapshots" / "new-leftover")
    with CacheManager.open(root, keep_picture=True) as cm:  # rolls back, removes new-*
        assert layer.is_dir()
        seen = _values(cm)
    assert seen[ids[-1]].health == "ok"  # type: ignore[attr-defined]
    assert not (root / "snapshots" / "new-leftover").exists()


DAMAGE = {
    "bad id": "INSERT INTO record SELECT 'Not-An-Id', parent, mutable, equal_mutable, retain, "
    "description, record_type, created_at, last_used_at, usage_count, size, deleted, "
    "pending_use, apparent_size FROM record LIMIT 1",
    "id with a newline": "UPDATE record SET id = substr(id, 1, 12) || char(10) || "
    "substr(id, 14) WHERE parent IS NULL",
    "blob id": "UPDATE record SET id = x'00ff' WHERE parent IS NULL",
    "dangling parent": "DELETE FROM record WHERE parent IS NULL",
    "tombstoned parent": "UPDATE record SET deleted = 1 WHERE parent IS NULL",
    "mutable parent": "UPDATE record SET mutable = 1 WHERE parent IS NULL",
    "loop": "UPDATE record SET parent = (SELECT id FROM record ORDER BY created_at DESC "
    "LIMIT 1) WHERE parent IS NULL",
    "lost pair half": "UPDATE record SET equal_mutable = 'aaaaaaaaaaaaaaaaaaaaaaaaa' "
    "WHERE parent IS NULL",
}


def _said(problems: list[str]) -> list[str]:
    return sorted("a parent chain loops" if "loops at" in p else p for p in problems)


@pytest.mark.parametrize("damage", [None, *DAMAGE])
def test_the_checks_on_the_picture_say_what_the_narrow_read_says(
    tmp_path: Path, damage: str | None
) -> None:
    """The open checks its whole picture with set operations; every damage reads the
    same as through the narrow read and the walk over every row."""
    from cachetui.core import opencheck
    from cachetui.core.recordstore import RecordStore
    from cachetui.core.state import load_state
    from cachetui.core.store import Store

    root = tmp_path / "store"
    _store(root, 6)
    if damage is not None:
        db = sqlite3.connect(root / "metadata.db")
        db.execute(DAMAGE[damage])
        db.commit()
        db.close()
    store = Store(root / "metadata.db")
    try:
        records = RecordStore(store)
        narrow = opencheck.inspect(records, root / "snapshots")
        with records.read():
            whole = opencheck.inspect_state(
                load_state(records, include_deleted=True), root / "snapshots"
            )
        assert whole.parent_of == narrow.parent_of and whole.pair_of == narrow.pair_of
        # the same problems (rows are read in another order: a loop is named from
        # another of its records)
        assert _said(whole.problems()) == _said(narrow.problems())
        assert (whole.problems() == []) == (damage is None)
        assert whole.unmounted_message() == narrow.unmounted_message()
    finally:
        store.close()
