"""Disk usage builds its rows in bulk with epoch times made into datetimes on first read:
such a row (from ``build_usage``, the code disk usage runs) must be indistinguishable from
one built the ordinary way."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cachetui.core import CacheManager, UsageInfo
from cachetui.core.diskusage import build_usage
from cachetui.core.timestamps import UNKNOWN_TIME

EPOCH = 1_700_000_000.5


def _bulk(created: float, used: float | None) -> UsageInfo:
    """A row as disk usage builds it, from the stored values (used three times)."""
    (row,) = build_usage(
        [("a" * 25, 1, 4096, "b" * 25, created, used, 3, "d", "regular", 100)],
        in_use=(),
        shared=(),
        labels={"a" * 25: (("k", "v"),)},
        cache_mounts={},
    )
    return row


def _ordinary(created: datetime, used: datetime | None) -> UsageInfo:
    return UsageInfo("a" * 25, True, False, 4096, ("b" * 25,), created, used, 3, "d", "regular",
                     False, (("k", "v"),), None, 100, "ok")  # fmt: skip


def test_a_bulk_row_equals_an_ordinary_one() -> None:
    bulk = _bulk(EPOCH, EPOCH + 1)
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
    bulk = _bulk(EPOCH, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        bulk.size = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        bulk.created_at = datetime.now(UTC)  # type: ignore[misc]
    assert bulk.last_used_at is None


def test_a_stored_time_that_is_not_one_reads_as_unknown() -> None:
    bulk = _bulk(float("inf"), 1e30)
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
