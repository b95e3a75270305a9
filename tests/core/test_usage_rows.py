"""Disk usage builds its rows in bulk with epoch times made into datetimes on first read:
such a row must be indistinguishable from one built the ordinary way."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cachetui.core import CacheManager, UsageInfo
from cachetui.core.timestamps import UNKNOWN_TIME
from cachetui.core.types import usage_info_from_epochs

EPOCH = 1_700_000_000.5


def _fields(created: float, used: float | None) -> tuple[object, ...]:
    return ("a" * 25, True, False, 4096, ("b" * 25,), created, used, 3, "d", "regular", False,
            (("k", "v"),), None, 100, "ok")  # fmt: skip


def _ordinary(created: datetime, used: datetime | None) -> UsageInfo:
    values = list(_fields(0, None))
    values[5], values[6] = created, used
    return UsageInfo(*values)  # type: ignore[arg-type]


def test_a_bulk_row_equals_an_ordinary_one() -> None:
    bulk = usage_info_from_epochs(*_fields(EPOCH, EPOCH + 1))  # type: ignore[arg-type]
    ordinary = _ordinary(datetime.fromtimestamp(EPOCH, UTC), datetime.fromtimestamp(EPOCH + 1, UTC))
    assert type(bulk) is UsageInfo
    assert bulk == ordinary and ordinary == bulk
    assert hash(bulk) == hash(ordinary)
    assert repr(bulk) == repr(ordinary)
    assert bulk.created_at == datetime.fromtimestamp(EPOCH, UTC)
    assert bulk.created_at.tzinfo is UTC
    assert pickle.loads(pickle.dumps(bulk)) == ordinary
    assert dataclasses.asdict(bulk) == dataclasses.asdict(ordinary)
    assert dataclasses.replace(bulk, size=1) == dataclasses.replace(ordinary, size=1)


def test_a_bulk_row_is_frozen() -> None:
    bulk = usage_info_from_epochs(*_fields(EPOCH, None))  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        bulk.size = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        bulk.created_at = datetime.now(UTC)  # type: ignore[misc]
    assert bulk.last_used_at is None


def test_a_stored_time_that_is_not_one_reads_as_unknown() -> None:
    bulk = usage_info_from_epochs(*_fields(float("inf"), 1e30))  # type: ignore[arg-type]
    assert bulk.created_at == UNKNOWN_TIME and bulk.last_used_at == UNKNOWN_TIME


def test_disk_usage_rows_equal_the_prune_report(tmp_path: Path) -> None:
    """The same record, reported by disk usage (bulk) and by a dry-run prune."""
    with CacheManager.open(tmp_path / "store", clock=lambda: EPOCH) as cm:
        with cm.new(description="one") as ref:
            (ref.mount().upper / "f").write_bytes(b"x" * 10)  # type: ignore[union-attr]
            snapshot = ref.commit()
        snapshot.finalize()
        snapshot.release()
        [row] = cm.disk_usage()
        [reported] = cm.prune(dry_run=True)
        assert row == reported
        assert row.created_at == datetime.fromtimestamp(EPOCH, UTC)
