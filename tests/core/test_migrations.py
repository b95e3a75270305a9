"""The local schema upgrades in place: a store written by the first landing opens with
every record, holder and byte kept (the fixture was made by that version's code)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from cachetui.core import CacheManager
from cachetui.core.store import MIGRATIONS, SCHEMA_VERSION

FIXTURES = Path(__file__).parent / "fixtures"


def _copy_v1(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(FIXTURES / "store_v1", root)
    return root


def _table(path: Path, sql: str) -> list[tuple[object, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_migrations_are_ordered_and_end_at_the_current_version() -> None:
    versions = [version for version, _ in MIGRATIONS]
    assert versions == sorted(versions) == list(range(1, SCHEMA_VERSION + 1))


def test_a_first_landing_store_opens_with_nothing_lost(tmp_path: Path) -> None:
    root = _copy_v1(tmp_path)
    db = root / "metadata.db"
    assert _table(db, "SELECT value FROM setting WHERE key = 'schema_version'") == [("1",)]
    old_columns = "id, parent, mutable, equal_mutable, retain, description, record_type, " + (
        "created_at, last_used_at, usage_count, size, deleted, pending_use"
    )
    before = _table(db, f"SELECT {old_columns} FROM record ORDER BY id")
    assert len(before) == 3
    expected = json.loads((FIXTURES / "store_v1_expected.json").read_text())

    with CacheManager.open(root) as cm:
        rows = [
            {
                "id": info.id,
                "size": info.size,
                "mutable": info.mutable,
                "parents": list(info.parents),
                "description": info.description,
                "record_type": info.record_type,
                "usage_count": info.usage_count,
                "last_used_at": info.last_used_at.isoformat() if info.last_used_at else None,
            }
            for info in cm.disk_usage()
        ]
        # the bytes are still there and readable through the refs
        base = cm.get(expected[-1]["id"])
        assert (base.mount().lowers[0] / "os-release").read_bytes() == b"ID=debian\n" * 300
        base.release()
    assert rows == expected
    assert _table(db, "SELECT value FROM setting WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]
    after = _table(db, f"SELECT {old_columns} FROM record ORDER BY id")
    # the base was used once more by the read above; everything else is untouched
    changed = {row[0] for row in before} ^ {row[0] for row in after}
    assert not changed
    for old, new in zip(before, after, strict=True):
        if old[0] != expected[-1]["id"]:
            assert old == new
