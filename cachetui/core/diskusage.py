"""Disk usage: one ``UsageInfo`` per visible record, and the totals block.

Sizes come from the store's cache; a missing size is measured once and cached, which
never counts as a use and never creates records (our deviation 6 from BuildKit). A held
mutable reports its live size, measured now (deviation 9).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import TYPE_CHECKING, Protocol

from cachetui.core import filters as filter_language
from cachetui.core.policy import DiskStat
from cachetui.core.state import RecordRow, StoreState, paused_gc
from cachetui.core.timestamps import to_datetime
from cachetui.core.types import UsageInfo, to_seconds

if TYPE_CHECKING:
    from cachetui.core.manager import CacheManager

__all__ = ["Totals", "disk_usage", "make_usage_info", "measure_missing", "totals"]

_fromtimestamp = datetime.fromtimestamp


def _utc(epoch: float | None) -> datetime | None:
    return None if epoch is None else to_datetime(epoch)


def make_usage_info(
    row: RecordRow,
    *,
    size: int,
    in_use: bool,
    shared: bool,
    state: StoreState | None = None,
    apparent_size: int | None = None,
) -> UsageInfo:
    """One row; labels and cache mount come from ``state`` when given."""
    return UsageInfo(
        id=row.id,
        mutable=row.mutable,
        in_use=in_use,
        size=size,
        parents=(row.parent,) if row.parent else (),
        created_at=to_datetime(row.created_at),
        last_used_at=_utc(row.last_used_at if row.usage_count else None),
        usage_count=row.usage_count,
        description=row.description,
        record_type=row.record_type or "regular",
        shared=shared,
        labels=state.labels.get(row.id, ()) if state is not None else (),
        cache_mount=state.cache_mounts.get(row.id) if state is not None else None,
        apparent_size=_apparent(row) if apparent_size is None else apparent_size,
    )


def _apparent(row: RecordRow) -> int:
    """The cached apparent size: valid only beside a cached size."""
    return row.apparent_size if row.size >= 0 else -1


def measure_missing(
    manager: CacheManager, state: StoreState, rows: Sequence[RecordRow]
) -> dict[str, int]:
    """Sizes for rows: cached, live for held mutables, measured (and cached) when unknown."""
    return _sizes(manager, state, rows, {})[0]


def _sizes(
    manager: CacheManager,
    state: StoreState,
    rows: Sequence[RecordRow],
    apparent: dict[str, int],
) -> tuple[dict[str, int], bool]:
    """The sizes, and whether any was measured now (rather than read from the cache).

    ``apparent`` receives the apparent sizes measured now; the others are on the rows.
    """
    sizes: dict[str, int] = {}
    to_cache: dict[str, int] = {}
    apparent_to_cache: dict[str, int] = {}
    measured_any = False
    live = state.live
    for row in rows:
        if row.size >= 0 and not (row.mutable and live and state.node_held(row)):
            sizes[row.id] = row.size
            continue
        measured_any = True
        if row.mutable and state.node_held(row):
            changing = manager.snapshots.measure(row.id)
            sizes[row.id] = changing.size
            apparent[row.id] = changing.apparent_size
        else:
            measured = manager.snapshots.measure(row.layer_id)
            sizes[row.id] = measured.size
            apparent[row.id] = measured.apparent_size
            if measured.complete:
                to_cache[row.id] = measured.size
                apparent_to_cache[row.id] = measured.apparent_size
                row.size = measured.size
                row.apparent_size = measured.apparent_size
    if to_cache and not manager.read_only:
        manager.store_sizes(to_cache, apparent_to_cache)
    return sizes, measured_any


def disk_usage(
    manager: CacheManager,
    filters: Sequence[str] | str = (),
    *,
    age_limit: float | timedelta | None = None,
    state: StoreState | None = None,
) -> list[UsageInfo]:
    matcher = filter_language.parse_all(filters)
    limit = None if age_limit is None else to_seconds(age_limit, what="age_limit")
    state = state if state is not None else manager.state()
    visible = state.visible()
    in_use = state.in_use_ids()
    shared = state.shared_ids(manager.is_shared)
    cutoff = manager.now() - limit if limit else None
    labels, mounts = state.labels, state.cache_mounts
    selected: list[RecordRow] = []
    for row in visible:
        if cutoff is not None:
            last = row.last_used_at if row.usage_count else None
            if (last if last is not None else row.created_at) > cutoff:
                continue
        if matcher and not matcher.matches(
            filter_language.usage_fields(
                id=row.id,
                parents=(row.parent,) if row.parent else (),
                description=row.description,
                record_type=row.record_type or "regular",
                in_use=row.id in in_use,
                mutable=row.mutable,
                shared=row.id in shared,
                labels=labels.get(row.id, ()),
                cache_mount=mounts.get(row.id),
            )
        ):
            continue
        selected.append(row)
    apparent: dict[str, int] = {}
    sizes, measured_any = _sizes(manager, state, selected, apparent)
    if measured_any:
        # Some sizes were measured just now: the store's (size, id) order no longer holds.
        selected.sort(key=attrgetter("id"))
        selected.sort(key=lambda row: sizes[row.id], reverse=True)  # stable: ids stay sorted
    # The hot loop of a 100,000-record store: locals and one constructor call per row.
    info, stamp, utc = UsageInfo, _fromtimestamp, UTC
    result: list[UsageInfo] = []
    append = result.append
    with paused_gc():
        for row in selected:
            rid = row.id
            last = row.last_used_at if row.usage_count else None
            try:
                created = stamp(row.created_at, utc)
                used = None if last is None else stamp(last, utc)
            except (OverflowError, ValueError, OSError):
                # A stored time that is not one (see timestamps): shown as unknown.
                created, used = to_datetime(row.created_at), _utc(last)
            append(
                info(
                    rid,
                    row.mutable,
                    rid in in_use,
                    sizes[rid],
                    (row.parent,) if row.parent else (),
                    created,
                    used,
                    row.usage_count,
                    row.description,
                    row.record_type or "regular",
                    rid in shared,
                    labels.get(rid, ()),
                    mounts.get(rid),
                    apparent.get(rid, row.apparent_size if row.size >= 0 else -1),
                )
            )
    return result


@dataclass(frozen=True, slots=True)
class Totals:
    """The totals block, as BuildKit's clients compute it, plus the disk's free space."""

    total: int
    reclaimable: int
    shared: int
    private: int
    in_use: int
    records: int
    disk_free: int
    disk_total: int


class Accounted(Protocol):
    """What the totals need of a row: ``UsageInfo``, or a view row with the same fields."""

    @property
    def size(self) -> int: ...
    @property
    def in_use(self) -> bool: ...
    @property
    def shared(self) -> bool: ...


def totals(rows: Sequence[Accounted], dstat: DiskStat | None = None) -> Totals:
    total = sum(r.size for r in rows if r.size > 0)
    reclaimable = sum(r.size for r in rows if r.size > 0 and not r.in_use)
    shared = sum(r.size for r in rows if r.shared)
    in_use = sum(r.size for r in rows if r.size > 0 and r.in_use)
    return Totals(
        total=total,
        reclaimable=reclaimable,
        shared=shared,
        private=total - shared,
        in_use=in_use,
        records=len(rows),
        disk_free=dstat.free if dstat else 0,
        disk_total=dstat.total if dstat else 0,
    )
