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
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from operator import attrgetter
from typing import Protocol

from cachetui.core import filters as filter_language
from cachetui.core.context import StoreContext
from cachetui.core.policy import DiskStat
from cachetui.core.snapshots import TRASH_PREFIX, DirectorySnapshotter, real_directories
from cachetui.core.state import (
    RecordGraph,
    RecordRow,
    StoreState,
    UsagePicture,
    UsageTuple,
    paused_gc,
)
from cachetui.core.types import CacheMount, UsageDraft, UsageInfo, to_seconds

__all__ = [
    "Layers",
    "Totals",
    "build_usage",
    "disk_usage",
    "make_usage_info",
    "measure_missing",
    "resized_totals",
    "totals",
    "totals_of",
]


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
    (info,) = build_usage(
        [_usage_tuple(row)],
        in_use=(row.id,) if in_use else (),
        shared=(row.id,) if shared else (),
        labels=state.labels if state is not None else {},
        cache_mounts=state.cache_mounts if state is not None else {},
        sizes={row.id: size},
        apparent={} if apparent_size is None else {row.id: apparent_size},
        health=None if health == "ok" else lambda _record_id: health,
    )
    return info


def _usage_tuple(row: RecordRow) -> UsageTuple:
    return (
        row.id,
        row.mutable,
        row.size,
        row.parent,
        row.created_at,
        row.last_used_at,
        row.usage_count,
        row.description,
        row.record_type,
        row.apparent_size,
    )


def build_usage(
    rows: Iterable[UsageTuple],
    *,
    in_use: Collection[str],
    shared: Collection[str],
    labels: Mapping[str, tuple[tuple[str, str], ...]],
    cache_mounts: Mapping[str, CacheMount],
    sizes: Mapping[str, int] | None = None,
    apparent: Mapping[str, int] | None = None,
    health: Callable[[str], str] | None = None,
) -> list[UsageInfo]:
    """One ``UsageInfo`` per row, in the rows' order: the one place a record's stored
    values become its usage row.

    ``sizes`` and ``apparent``: sizes measured now, in place of the cached ones (a cached
    apparent size counts only beside a cached size); ``health``: each record's, None when
    every one is "ok". The last use shows only if the record was used; an empty record
    type reads "regular".
    """
    if sizes or apparent:
        measured, measured_apparent = sizes or {}, apparent or {}
        rows = [
            row
            if row[0] not in measured and row[0] not in measured_apparent
            else (
                *row[:2],
                measured.get(row[0], row[2]),
                *row[3:9],
                measured_apparent.get(row[0], row[9] if row[2] >= 0 else -1),
            )
            for row in rows
        ]
    # The hot loop of a 100,000-record store: locals, one cheap constructor per row (a
    # mutable draft that then becomes the frozen class), the two datetimes made only
    # when read (``UsageInfo``'s lazy times).
    # Most records are in none of the four (in use, shared, labelled, a cache mount): one
    # look in their union decides whether the four looks are needed.
    special = {*in_use, *shared, *labels, *cache_mounts}
    draft, become, frozen = UsageDraft, object.__setattr__, UsageInfo
    label_of, mount_of = labels.get, cache_mounts.get
    result: list[UsageInfo] = []
    append = result.append
    with paused_gc():
        for rid, mutable, size, parent, created, last, count, text, kind, apparent_size in rows:
            if rid in special:
                used, is_shared, tags, mount = (
                    rid in in_use,
                    rid in shared,
                    label_of(rid, ()),
                    mount_of(rid),
                )
            else:
                used = is_shared = False
                tags, mount = (), None
            info = draft(
                rid,
                mutable == 1,
                used,
                size,
                (parent,) if parent else (),
                created,
                last if count else None,  # RecordRow.last_use inlined: the hot loop
                count,
                text,
                kind or "regular",
                is_shared,
                tags,
                mount,
                apparent_size if size >= 0 else -1,
                "ok" if health is None else health(rid),
            )
            become(info, "__class__", frozen)
            append(info)
    return result


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
        state: RecordGraph,
        *,
        listing: bool = True,
        names: set[str] | None = None,
    ) -> None:
        self.state = state
        self.directory = context.snapshots.dir
        if listing and names is None:
            try:
                names = real_directories(self.directory)
            except FileNotFoundError:
                names = set()
        self.names: set[str] | None = names if listing else None
        self._health: dict[str, str] = {}
        self._all_ok: bool | None = None

    def locate(self, row: RecordRow) -> str | None:
        return self.locate_id(row.id, row.equal_mutable)

    def locate_id(self, record_id: str, equal_mutable: str | None) -> str | None:
        """The name holding the bytes of the record whose row names ``equal_mutable``."""
        layer = equal_mutable or record_id
        if self.names is not None and layer in self.names:
            return layer  # the first candidate, and almost always the answer
        candidates = [layer]
        if equal_mutable is not None:
            candidates.append(record_id)
        else:
            partner = self.state.immutable_of.get(record_id)
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
            self._all_ok = self.names is not None and self.state.layers_present(self.names)
        return self._all_ok

    def health(self, row: RecordRow) -> str:
        """ "ok", "missing" (its bytes are nowhere) or "broken" (an ancestor's are)."""
        return self.health_of(row.id)

    def health_of(self, record_id: str) -> str:
        """``health`` of a record with a row in the picture."""
        if self._all_ok or (self._all_ok is None and self.all_ok()):
            return "ok"
        known, state = self._health, self.state
        path: list[str] = []
        on_path: set[str] = set()
        current = record_id
        verdict = "ok"
        while True:
            cached = known.get(current)
            if cached is not None:
                verdict = "broken" if cached != "ok" else "ok"
                break
            if self.locate_id(current, state.mutable_of(current)) is None:
                known[current] = "missing"
                verdict = "broken"
                break
            if current in on_path:  # a loop: damage, which opening reports
                break
            path.append(current)
            on_path.add(current)
            parent = state.parent_of(current)
            if parent is None:
                break
            if not state.is_live(parent):
                verdict = "broken"
                break
            current = parent
        for seen in path:
            known[seen] = verdict
        return known[record_id]


def _sizes(
    context: StoreContext,
    state: RecordGraph,
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
    if names is not None:
        # The usual rows, in one comprehension: the layer listed where the row says,
        # the size cached (a held mutable's is its live size: measured below).
        sizes = {
            row.id: row.size
            for row in rows
            if row.size >= 0
            and (row.equal_mutable or row.id) in names
            and not (row.mutable and live and held(row))
        }
        if len(sizes) == len(rows):
            return sizes, False
        unusual = [row for row in rows if row.id not in sizes]
    else:
        unusual = list(rows)
    for row in unusual:
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
    if state is None and not matcher and not limit:
        # The cyclic collector waits until the picture's 100,000 tuples are gone: run
        # in between, it would walk every one of them for nothing.
        with paused_gc():
            every = _every_usage(context, context.usage_picture())
        if every is not None:
            return every
    state = state if state is not None else context.state()
    visible = state.visible()
    in_use = state.in_use_ids()
    shared = state.shared_ids(context.is_shared)
    cutoff = context.now() - limit if limit else None
    layers = Layers(context, state)
    labels, mounts = state.labels, state.cache_mounts
    selected: list[RecordRow] = [] if matcher or cutoff is not None else visible
    for row in visible if selected is not visible else ():
        if cutoff is not None and row.age_from > cutoff:
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
    result = build_usage(
        [_usage_tuple(row) for row in selected],
        in_use=in_use,
        shared=shared,
        labels=labels,
        cache_mounts=mounts,
        sizes=sizes,
        apparent=apparent,
        health=None if all_ok else layers.health_of,
    )
    return _largest_first(result) if measured_any else result


def _every_usage(context: StoreContext, picture: UsagePicture) -> list[UsageInfo] | None:
    """Disk usage of every record from disk usage's row tuples (one object per record);
    None when a layer is missing (the full picture then works out each row's health)."""
    layers = Layers(context, picture)
    if not layers.all_ok():
        return None
    in_use = picture.in_use_ids()
    shared = picture.shared_ids(context.is_shared)
    hidden = picture.hidden_ids()
    rows = picture.rows if not hidden else [row for row in picture.rows if row[0] not in hidden]
    apparent: dict[str, int] = {}
    sizes, measured_any = _sizes(
        context, picture, [row for row in picture.unsure if row.id not in hidden], apparent, layers
    )
    result = build_usage(
        rows,
        in_use=in_use,
        shared=shared,
        labels=picture.labels,
        cache_mounts=picture.cache_mounts,
        sizes=sizes,
        apparent=apparent,
    )
    return _largest_first(result) if measured_any else result


def _largest_first(rows: list[UsageInfo]) -> list[UsageInfo]:
    """Some sizes were measured just now: the store's (size, id) order no longer holds."""
    rows.sort(key=attrgetter("id"))
    rows.sort(key=attrgetter("size"), reverse=True)  # stable: ties stay by id
    return rows


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
