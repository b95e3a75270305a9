"""Disk usage: one ``UsageInfo`` per visible record, and the totals block.

Sizes come from the store's cache; a missing size is measured once and cached, which
never counts as a use and never creates records (our deviation 6 from BuildKit). A held
mutable reports its live size, measured now (deviation 9).

Each row carries its ``health``: "missing" when its bytes are nowhere under
``snapshots/`` (size 0, never measured nor cached), "broken" when an ancestor's are. The
bytes are looked for where another process's crash may have left them too (under the
pair's immutable name after a finalize died, as ``rm-<id>`` after a removal's
transaction died), so an open manager never reports 0 B for a layer that is there.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Protocol

from cachetui.core import filters as filter_language
from cachetui.core.context import StoreContext
from cachetui.core.policy import DiskStat
from cachetui.core.snapshots import TRASH_PREFIX, DirectorySnapshotter, list_entries
from cachetui.core.state import RecordRow, StoreState, paused_gc
from cachetui.core.timestamps import to_datetime
from cachetui.core.types import UsageInfo, to_seconds, usage_info_from_epochs

__all__ = [
    "Layers",
    "Totals",
    "disk_usage",
    "make_usage_info",
    "measure_missing",
    "resized_totals",
    "totals",
    "totals_of",
]

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
    health: str = "ok",
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
        health=health,
    )


def _apparent(row: RecordRow) -> int:
    """The cached apparent size: valid only beside a cached size."""
    return row.apparent_size if row.size >= 0 else -1


def measure_missing(
    context: StoreContext,
    state: StoreState,
    rows: Sequence[RecordRow],
    apparent: dict[str, int] | None = None,
    *,
    listing: bool = False,
    names: set[str] | None = None,
) -> dict[str, int]:
    """Sizes for rows: cached, live for held mutables, measured (and cached) when unknown.

    ``apparent`` receives the apparent sizes measured now (the others are on the rows).
    ``listing``: find the layers from one listing of ``snapshots/`` (many rows) rather
    than by looking at each name (a few rows); ``names``: the real directories of that
    listing, when the caller has just read it.
    """
    found = {} if apparent is None else apparent
    layers = Layers(context, state, listing=listing, names=names)
    return _sizes(context, state, rows, found, layers)[0]


class Layers:
    """Where each record's bytes are: from one listing of ``snapshots/`` (many rows), or
    by looking at each candidate name (a few rows: a prune batch)."""

    def __init__(
        self,
        context: StoreContext,
        state: StoreState,
        *,
        listing: bool = True,
        names: set[str] | None = None,
    ) -> None:
        self.state = state
        self.directory = context.snapshots.dir
        if listing and names is None:
            try:
                names = list_entries(self.directory)[1]
            except FileNotFoundError:
                names = set()
        self.names: set[str] | None = names if listing else None
        self._health: dict[str, str] = {}
        self._all_ok: bool | None = None

    def locate(self, row: RecordRow) -> str | None:
        layer = row.layer_id
        if self.names is not None and layer in self.names:
            return layer  # the first candidate, and almost always the answer
        candidates = [layer]
        if row.equal_mutable is not None:
            candidates.append(row.id)
        else:
            partner = self.state.immutable_of.get(row.id)
            if partner is not None:
                candidates.append(partner)
        if self.names is not None:
            return DirectorySnapshotter.locate(candidates, self.names)
        for name in (*candidates, *(f"{TRASH_PREFIX}{c}" for c in candidates)):
            path = self.directory / name
            if os.path.isdir(path) and not os.path.islink(path):
                return name
        return None

    def all_ok(self) -> bool:
        """Whether every live record's layer is in the listing and every live parent has
        a live row: then every health is "ok" (one pass, instead of a walk per record)."""
        if self._all_ok is None:
            self._all_ok = self._check_all_ok()
        return self._all_ok

    def _check_all_ok(self) -> bool:
        names, rows = self.names, self.state.rows
        if names is None:
            return False
        # Records whose id names no directory: normally only the pending commits (their
        # layer is the mutable's); a set difference finds them without a loop in Python.
        for rid in rows.keys() - names:
            row = rows[rid]
            if not row.deleted and (row.equal_mutable is None or row.equal_mutable not in names):
                return False
        referenced = self.state.parent_ids
        if referenced is not None:
            return referenced <= rows.keys()  # every parent named has a live row
        for row in rows.values():
            parent = row.parent
            if parent is not None and not row.deleted:
                above = rows.get(parent)
                if above is None or above.deleted:
                    return False
        return True

    def health(self, row: RecordRow) -> str:
        """ "ok", "missing" (its bytes are nowhere) or "broken" (an ancestor's are)."""
        if self._all_ok or (self._all_ok is None and self.all_ok()):
            return "ok"
        known = self._health
        path: list[RecordRow] = []
        on_path: set[str] = set()
        current: RecordRow | None = row
        verdict = "ok"
        while current is not None:
            cached = known.get(current.id)
            if cached is not None:
                verdict = "broken" if cached != "ok" else "ok"
                break
            if self.locate(current) is None:
                known[current.id] = "missing"
                verdict = "broken"
                break
            if current.id in on_path:  # a loop: damage, which opening reports
                break
            path.append(current)
            on_path.add(current.id)
            if current.parent is None:
                break
            current = self.state.rows.get(current.parent)
            if current is None or current.deleted:
                verdict = "broken"
                break
        for seen in path:
            known[seen.id] = verdict
        return known[row.id]


def _sizes(
    context: StoreContext,
    state: StoreState,
    rows: Sequence[RecordRow],
    apparent: dict[str, int],
    layers: Layers,
) -> tuple[dict[str, int], bool]:
    """The sizes, and whether any was measured now (rather than read from the cache).

    ``apparent`` receives the apparent sizes measured now; the others are on the rows.
    """
    sizes: dict[str, int] = {}
    to_cache: dict[str, int] = {}
    apparent_to_cache: dict[str, int] = {}
    measured_any = False
    live = state.live
    held = state.node_held
    names = layers.names
    for row in rows:
        if (
            names is not None
            and row.size >= 0
            and (row.equal_mutable or row.id) in names
            and not (row.mutable and live and held(row))
        ):
            # The usual row: its layer listed where its row says, its size cached (a
            # held mutable's is its live size: measured below).
            sizes[row.id] = row.size
            continue
        name = layers.locate(row)
        if name is None:
            sizes[row.id] = apparent[row.id] = 0  # missing: never measured nor cached
            continue
        if row.size >= 0 and not (row.mutable and live and state.node_held(row)):
            sizes[row.id] = row.size
            continue
        measured_any = True
        measured = context.snapshots.measure_name(name)
        sizes[row.id] = measured.size
        apparent[row.id] = measured.apparent_size
        if measured.complete and not (row.mutable and state.node_held(row)):
            to_cache[row.id] = measured.size
            apparent_to_cache[row.id] = measured.apparent_size
            row.size = measured.size
            row.apparent_size = measured.apparent_size
    if to_cache and not context.read_only:
        context.store_sizes(to_cache, apparent_to_cache)
    return sizes, measured_any


def disk_usage(
    context: StoreContext,
    filters: Sequence[str] | str = (),
    *,
    age_limit: float | timedelta | None = None,
    state: StoreState | None = None,
) -> list[UsageInfo]:
    matcher = filter_language.parse_all(filters)
    limit = None if age_limit is None else to_seconds(age_limit, what="age_limit")
    state = state if state is not None else context.state()
    visible = state.visible()
    in_use = state.in_use_ids()
    shared = state.shared_ids(context.is_shared)
    cutoff = context.now() - limit if limit else None
    layers = Layers(context, state)
    labels, mounts = state.labels, state.cache_mounts
    selected: list[RecordRow] = [] if matcher or cutoff is not None else visible
    for row in visible if selected is not visible else ():
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
                health=layers.health(row),
            )
        ):
            continue
        selected.append(row)
    apparent: dict[str, int] = {}
    all_ok = layers.all_ok()
    if all_ok:
        # Every layer is where its row says: only unknown sizes and held mutables (their
        # live size) need a look; every other row's cached size stands.
        live, held = state.live, state.node_held
        unsure = [row for row in selected if row.size < 0 or (row.mutable and live and held(row))]
    else:
        unsure = selected
    sizes, measured_any = _sizes(context, state, unsure, apparent, layers)
    if measured_any:
        # Some sizes were measured just now: the store's (size, id) order no longer holds.
        if selected is visible:
            selected = list(selected)
        selected.sort(key=attrgetter("id"))
        selected.sort(key=lambda row: sizes.get(row.id, row.size), reverse=True)  # stable
    # The hot loop of a 100,000-record store: locals, one cheap constructor per row, the
    # two datetimes made only when read (``usage_info_from_epochs``).
    build, health, size_of = usage_info_from_epochs, layers.health, sizes.get
    result: list[UsageInfo] = []
    append = result.append
    with paused_gc():
        for row in selected:
            rid = row.id
            parent = row.parent
            append(
                build(
                    rid,
                    row.mutable,
                    rid in in_use,
                    size_of(rid, row.size),
                    (parent,) if parent else (),
                    row.created_at,
                    row.last_used_at if row.usage_count else None,
                    row.usage_count,
                    row.description,
                    row.record_type or "regular",
                    rid in shared,
                    labels.get(rid, ()),
                    mounts.get(rid),
                    apparent.get(rid, row.apparent_size if row.size >= 0 else -1),
                    "ok" if all_ok else health(row),
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
    return totals_of(((r.size, r.in_use, r.shared) for r in rows), len(rows), dstat)


def totals_of(
    rows: Iterable[tuple[int, bool, bool]], count: int, dstat: DiskStat | None = None
) -> Totals:
    """``totals`` over ``(size, in_use, shared)`` triples (one pass, no row objects)."""
    total = reclaimable = shared = in_use = 0
    for size, used, is_shared in rows:
        if size > 0:
            total += size
            if used:
                in_use += size
            else:
                reclaimable += size
        if is_shared:
            shared += size
    return Totals(
        total=total,
        reclaimable=reclaimable,
        shared=shared,
        private=total - shared,
        in_use=in_use,
        records=count,
        disk_free=dstat.free if dstat else 0,
        disk_total=dstat.total if dstat else 0,
    )


def totals_of_sizes(
    sizes: Mapping[str, int],
    in_use: Collection[str],
    shared: Collection[str],
    dstat: DiskStat | None = None,
) -> Totals:
    """``totals_of`` over every record of ``sizes`` (in use and shared when their id is
    in those sets), summed at C speed: the same rule, without a Python loop per record
    (the in-use and shared sets are usually small)."""
    total = sum(filter((0).__lt__, sizes.values()))
    in_use_bytes = sum(filter((0).__lt__, (sizes[i] for i in in_use if i in sizes)))
    shared_bytes = sum(sizes[i] for i in shared if i in sizes)
    return Totals(
        total=total,
        reclaimable=total - in_use_bytes,
        shared=shared_bytes,
        private=total - shared_bytes,
        in_use=in_use_bytes,
        records=len(sizes),
        disk_free=dstat.free if dstat else 0,
        disk_total=dstat.total if dstat else 0,
    )


def resized_totals(
    before: Totals,
    changes: Iterable[tuple[Accounted, int]],
    dstat: DiskStat | None = None,
) -> Totals:
    """``totals`` after some rows' sizes changed, without a pass over every row.

    ``changes`` pairs each changed row (its size already the new one) with its old size;
    the result is what ``totals`` would compute over all rows (the same rule, applied to
    the difference). ``dstat`` None keeps the disk figures from before.
    """
    total = before.total
    reclaimable = before.reclaimable
    shared = before.shared
    in_use = before.in_use
    for row, old_size in changes:
        positive = max(row.size, 0) - max(old_size, 0)
        total += positive
        if row.in_use:
            in_use += positive
        else:
            reclaimable += positive
        if row.shared:
            shared += row.size - old_size
    return Totals(
        total=total,
        reclaimable=reclaimable,
        shared=shared,
        private=total - shared,
        in_use=in_use,
        records=before.records,
        disk_free=dstat.free if dstat else before.disk_free,
        disk_total=dstat.total if dstat else before.disk_total,
    )
