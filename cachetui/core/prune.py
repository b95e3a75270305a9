"""Prune and GC: choosing what to remove, then removing it safely.

One selection routine serves both the real prune and the dry run, over an in-memory
picture of the store. The real prune re-checks every chosen record inside the write
transaction that tombstones it (at most ``MAX_PRUNE_BATCH`` per transaction), so a
holder taken by another process between selection and removal always wins.

Rounds follow BuildKit: only leaves with no live holder are candidates, so a parent freed
by removing its last child goes in a later round of the same call. With a space limit
(GC mode) records go one at a time, re-ranked each round, until the total is at or below
the limit; without one, every candidate goes, least recently and least frequently used
first, ties by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cachetui.core import filters as filter_language
from cachetui.core.crashpoints import crash_point
from cachetui.core.diskusage import make_usage_info, measure_missing
from cachetui.core.errors import InvalidError
from cachetui.core.policy import (
    Candidate,
    DiskStat,
    default_gc_policies,
    disk_stat,
    keep_limit,
    rank_for_deletion,
    should_stop,
)
from cachetui.core.purger import Purger
from cachetui.core.state import RecordRow, StoreState
from cachetui.core.types import PruneOptions, RecordType, UsageInfo

if TYPE_CHECKING:
    from cachetui.core.manager import CacheManager

__all__ = ["MAX_PRUNE_BATCH", "gc", "prune"]

MAX_PRUNE_BATCH = 10
# Batches whose trees may still be deleting while the next one is chosen and tombstoned.
PIPELINE_DEPTH = 8
_PROTECTED_TYPES = frozenset({RecordType.INTERNAL.value, RecordType.FRONTEND.value})

OnPrune = Callable[[UsageInfo], None]


class _Pass:
    """One policy applied to one picture of the store."""

    def __init__(
        self,
        manager: CacheManager,
        state: StoreState,
        policy: PruneOptions,
        matcher: filter_language.FilterSet,
    ) -> None:
        self.manager = manager
        self.state = state
        self.policy = policy
        self.matcher = matcher
        self.shared = state.shared_ids(manager.is_shared)
        self.cutoff = manager.now() - policy.keep_seconds if policy.keep_seconds else None
        self.skipped: set[str] = set()

    def eligible(self, row: RecordRow) -> bool:
        state = self.state
        if row.id in self.skipped or not state.is_visible(row):
            return False
        if state.node_held(row) or state.has_children(row):
            return False
        return self.matches_policy(row)

    def matches_policy(self, row: RecordRow) -> bool:
        """The policy's own tests: type, shared, keep duration, filters (not holders)."""
        shared = row.id in self.shared
        if not self.policy.all and (row.record_type in _PROTECTED_TYPES or shared):
            return False
        if self.cutoff is not None:
            last = row.last_used_at if row.usage_count else None
            if (last if last is not None else row.created_at) > self.cutoff:
                return False
        if self.matcher:
            fields = filter_language.usage_fields(
                id=row.id,
                parents=(row.parent,) if row.parent else (),
                description=row.description,
                record_type=row.record_type or "regular",
                in_use=False,
                mutable=row.mutable,
                shared=shared,
            )
            if not self.matcher.matches(fields):
                return False
        return True

    def candidates(self) -> list[RecordRow]:
        rows = [row for row in self.state.visible() if self.eligible(row)]
        order = rank_for_deletion(
            [
                Candidate(
                    id=row.id,
                    last_used_at=row.last_used_at if row.usage_count else None,
                    usage_count=row.usage_count,
                    size=max(row.size, 0),
                )
                for row in rows
            ]
        )
        by_id = {row.id: row for row in rows}
        return [by_id[c.id] for c in order]

    def forget(self, row: RecordRow) -> None:
        """Apply a removal to the picture: the row, its pair half, its parent link."""
        for gone in (row, self.state.partner(row)):
            if gone is None:
                continue
            gone.deleted = True
            if gone.parent is not None:
                siblings = self.state.children.get(gone.parent)
                if siblings and gone.id in siblings:
                    siblings.remove(gone.id)
        self.state.immutable_of.pop(row.id, None)

    def report(self, row: RecordRow, size: int) -> UsageInfo:
        return make_usage_info(row, size=size, in_use=False, shared=row.id in self.shared)

    def total_size(self) -> int:
        visible = [row for row in self.state.visible() if row.id not in self.shared]
        sizes = measure_missing(self.manager, self.state, visible)
        return sum(sizes.values())


def _still_free(
    manager: CacheManager,
    work: _Pass,
    batch: Sequence[RecordRow],
    gone: list[RecordRow] | None = None,
) -> tuple[list[RecordRow], list[str]]:
    """Inside the write: the records still free, childless and matching the policy as
    they are *now* (another process may have used one since the selection), and every
    row to remove. Records another process removed meanwhile are appended to ``gone``.
    """
    store = manager.store
    chosen: list[RecordRow] = []
    doomed: list[str] = []
    for row in batch:
        current = manager._row(row.id)
        if current is None or current.deleted:
            if gone is not None:
                gone.append(row)
            continue
        halves = [current.id]
        if current.equal_mutable is not None:
            halves.append(current.equal_mutable)
        else:
            partner = manager._immutable_of(current.id)
            if partner is not None:
                halves.append(partner.id)
        if any(manager._live_holders(half) for half in halves):
            continue
        marks = ",".join("?" * len(halves))
        if store.rows(
            f"SELECT 1 FROM record WHERE parent IN ({marks}) AND deleted = 0 LIMIT 1",
            tuple(halves),
        ):
            continue
        if not work.matches_policy(current):
            continue
        row.usage_count, row.last_used_at = current.usage_count, current.last_used_at
        chosen.append(row)
        doomed.extend(halves)
    return chosen, doomed


def _tombstone_batch(
    manager: CacheManager, work: _Pass, batch: Sequence[RecordRow], gone: list[RecordRow]
) -> tuple[list[RecordRow], list[tuple[str, Path | None]]]:
    """One write: re-check the batch, tombstone what is still free, retire its layers."""
    with manager._lock, manager.store.write():
        chosen, doomed = _still_free(manager, work, batch, gone)
        retired = manager._tombstone_or_undo(doomed) if doomed else []
        if doomed:
            crash_point("prune:tombstoned")
    if retired:
        crash_point("prune:committed")
    return chosen, retired


def _run_pass(
    manager: CacheManager,
    work: _Pass,
    *,
    dry_run: bool,
    on_prune: OnPrune | None,
    removed: list[UsageInfo],
    purger: Purger[RecordRow],
    simulated_free: int = 0,
) -> None:
    """Apply one policy. ``simulated_free``: bytes an earlier policy of the same dry run
    would have freed, which the disk does not show yet."""
    policy = work.policy
    gc_mode = policy.has_space_limit
    total = 0
    keep: int | None = None
    if gc_mode:
        total = work.total_size()
        dstat = None
        if policy.min_free_space:
            real = disk_stat(manager.root)
            dstat = DiskStat(real.total, real.free + simulated_free)
        keep = keep_limit(total, dstat, policy)
    sizes: dict[str, int] = {}

    def report(row: RecordRow) -> None:
        nonlocal total
        info = work.report(row, sizes[row.id])
        work.forget(row)
        if not info.shared:
            total -= info.size
        removed.append(info)
        if on_prune is not None:
            on_prune(info)

    def finish(keep: int) -> None:
        """Report the batches whose trees are gone, leaving at most ``keep`` in flight."""
        finished = 0
        for row in purger.drain(keep=keep):
            report(row)
            finished += 1
        if finished:
            crash_point("prune:batch-done")

    # GC mode needs each removal accounted before choosing the next one.
    depth = 0 if gc_mode else PIPELINE_DEPTH
    while purger.error is None:
        if gc_mode and should_stop(total, keep):
            return
        candidates = work.candidates()
        if not candidates:
            return
        if gc_mode:
            batches = [candidates[:1]]
        else:
            batches = [
                candidates[i : i + MAX_PRUNE_BATCH]
                for i in range(0, len(candidates), MAX_PRUNE_BATCH)
            ]
        for batch in batches:
            sizes.update(measure_missing(manager, work.state, batch))
            if dry_run:
                for row in batch:
                    report(row)
                continue
            gone: list[RecordRow] = []
            chosen, retired = _tombstone_batch(manager, work, batch, gone)
            for row in gone:
                # Removed by another process (B1): forget it so its parent can go.
                work.forget(row)
            for row in batch:
                if row not in chosen:
                    work.skipped.add(row.id)
            if chosen:
                purger.submit(chosen, retired)
            finish(keep=depth)
            if purger.error is not None:
                break
        finish(keep=0)  # the round ends: parents freed now become candidates


def prune(
    manager: CacheManager,
    policies: Sequence[PruneOptions],
    *,
    dry_run: bool = False,
    on_prune: OnPrune | None = None,
) -> list[UsageInfo]:
    """Apply ``policies`` in order; returns what was (or would be) removed, in order."""
    for policy in policies:
        if not isinstance(policy, PruneOptions):
            raise InvalidError(f"invalid prune policy {policy!r}: expected PruneOptions")
    # Every filter is parsed before anything is selected: a typo deletes nothing.
    matchers = [filter_language.parse_all(policy.filters) for policy in policies]
    if not dry_run and manager.read_only:
        from cachetui.core.errors import StoreError

        raise StoreError(f"cannot prune {manager.root}: the store is open read-only")
    removed: list[UsageInfo] = []
    shared_state = manager.state() if dry_run else None
    purger: Purger[RecordRow] = Purger(manager)
    try:
        for policy, matcher in zip(policies, matchers, strict=True):
            state = shared_state if shared_state is not None else manager.state()
            work = _Pass(manager, state, policy, matcher)
            freed = sum(info.size for info in removed if not info.shared) if dry_run else 0
            _run_pass(
                manager,
                work,
                dry_run=dry_run,
                on_prune=on_prune,
                removed=removed,
                purger=purger,
                simulated_free=freed,
            )
            if purger.error is not None:
                raise purger.error
    finally:
        purger.close()
    return removed


def gc(manager: CacheManager, policies: Iterable[PruneOptions] | None) -> list[UsageInfo]:
    chosen = (
        list(policies) if policies is not None else default_gc_policies(disk_stat(manager.root))
    )
    if not chosen:
        return []
    return prune(manager, chosen)
