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

from cachetui.core import filters as filter_language
from cachetui.core import reserve
from cachetui.core.context import Retired, StoreContext
from cachetui.core.crashpoints import crash_point
from cachetui.core.diskusage import Layers, make_usage_info, measure_missing
from cachetui.core.errors import InvalidError, PruneInterrupted, PruneRefused, StoreError
from cachetui.core.ids import validate_id
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
from cachetui.core.records import prune_refusal
from cachetui.core.snapshots import DirectorySnapshotter, mount_refusal
from cachetui.core.state import RecordRow, StoreState
from cachetui.core.types import Kept, PruneOptions, RecordType, UsageInfo

__all__ = ["MAX_PRUNE_BATCH", "TierDone", "gc", "prune"]

MAX_PRUNE_BATCH = 10
# Batches whose trees may still be deleting while the next one is chosen and tombstoned.
PIPELINE_DEPTH = 8
_PROTECTED_TYPES = frozenset({RecordType.INTERNAL.value, RecordType.FRONTEND.value})

OnPrune = Callable[[UsageInfo], None]
#: Called inside the write transaction with each record as it is now; False keeps it.
Recheck = Callable[[RecordRow], bool]


class _CallbackFailed(Exception):
    """``on_prune`` raised: the records under way were finished; stop the prune."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Pass:
    """One policy applied to one picture of the store."""

    def __init__(
        self,
        context: StoreContext,
        state: StoreState,
        policy: PruneOptions,
        matcher: filter_language.FilterSet,
        only: frozenset[str] | None = None,
        recheck: Recheck | None = None,
    ) -> None:
        self.context = context
        self.only = only  # prune by ids: only these records are candidates
        self.recheck = recheck
        self.state = state
        self.policy = policy
        self.matcher = matcher
        self.shared = state.shared_ids(context.is_shared)
        self.cutoff = context.now() - policy.keep_seconds if policy.keep_seconds else None
        self.skipped: set[str] = set()
        self.layers = Layers(context, state) if matcher else None

    def eligible(self, row: RecordRow) -> bool:
        state = self.state
        if row.id in self.skipped or not state.is_visible(row):
            return False
        if self.only is not None and row.id not in self.only:
            return False
        if prune_refusal(state, row) is not None:
            return False
        return self.matches_policy(row)

    def matches_policy(self, row: RecordRow) -> bool:
        """The policy's own tests: ids, type, shared, keep duration, filters (not holders)."""
        return self.matches_facts(row) and self.matches_filters(row)

    def matches_facts(self, row: RecordRow) -> bool:
        """The cheap part of the policy (ids, type, shared, keep duration): safe to
        re-check inside the write transaction."""
        if self.only is not None and row.id not in self.only:
            return False
        return self._kind_kept(row) is None and self._age_kept(row) is None

    def mismatch(self, row: RecordRow) -> Kept | None:
        """Which of the policy's own tests keeps ``row`` (None: the policy takes it).

        The same tests as ``matches_policy`` (selection asks that, the GC plan's
        explanations ask this, so the two can never disagree), reported in this order:
        type or shared, then the filter, then the keep duration ("this tier never
        targets it" says more than "not yet").
        """
        if self.only is not None and row.id not in self.only:
            return Kept("filter", "not among the records asked for")
        kept = self._kind_kept(row)
        if kept is not None:
            return kept
        if not self.matches_filters(row):
            return Kept("filter", "not matched by the filter")
        return self._age_kept(row)

    def _kind_kept(self, row: RecordRow) -> Kept | None:
        if self.policy.all:
            return None
        if row.record_type in _PROTECTED_TYPES:
            return Kept("type", f"type {row.record_type} is removed only by a tier with all = true")
        if row.id in self.shared:
            return Kept("shared", "shared records are removed only by a tier with all = true")
        return None

    def _age_kept(self, row: RecordRow) -> Kept | None:
        if self.cutoff is None:
            return None
        moment = row.age_from
        if moment <= self.cutoff:
            return None
        verb = "used" if row.last_use is not None else "created (never used)"
        return Kept("keep-duration", f"{verb} within the keep duration", since=moment, by=row.id)

    def matches_filters(self, row: RecordRow) -> bool:
        """The user's filters. Never called inside the write transaction: a regular
        expression's cost is the user's, and every other process's ``new()`` would wait
        for it. What a filter reads of a record never changes once it exists, so the
        write only checks that it is still the same record (``same_filter_fields``)."""
        if not self.matcher:
            return True
        fields = filter_language.usage_fields(
            id=row.id,
            parents=(row.parent,) if row.parent else (),
            description=row.description,
            record_type=row.record_type or "regular",
            in_use=False,
            mutable=row.mutable,
            shared=row.id in self.shared,
            labels=self.state.labels.get(row.id, ()),
            cache_mount=self.state.cache_mounts.get(row.id),
            health=self.layers.health(row) if self.layers is not None else "ok",
        )
        return self.matcher.matches(fields)

    @staticmethod
    def same_filter_fields(chosen: RecordRow, current: RecordRow) -> bool:
        """Whether the row read in the write shows a filter what the chosen one did."""
        return (
            chosen.parent == current.parent
            and chosen.description == current.description
            and chosen.record_type == current.record_type
            and chosen.mutable == current.mutable
        )

    def candidates(self) -> list[RecordRow]:
        rows = [row for row in self.state.visible() if self.eligible(row)]
        order = rank_for_deletion(
            [
                Candidate(
                    id=row.id,
                    last_used_at=row.last_use,
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
        return make_usage_info(
            row, size=size, in_use=False, shared=row.id in self.shared, state=self.state
        )

    def total_size(self) -> int:
        visible = [row for row in self.state.visible() if row.id not in self.shared]
        sizes = measure_missing(self.context, self.state, visible)
        return sum(sizes.values())


def _still_free(
    context: StoreContext,
    work: _Pass,
    batch: Sequence[RecordRow],
    gone: list[RecordRow] | None = None,
) -> tuple[list[RecordRow], list[str]]:
    """Inside the write: the records still free, childless and matching the policy as
    they are *now* (another process may have used one since the selection), and every
    row to remove. Records another process removed meanwhile are appended to ``gone``.
    """
    records = context.records
    chosen: list[RecordRow] = []
    doomed: list[str] = []
    for row in batch:
        current = records.record(row.id)
        if current is None or current.deleted:
            if gone is not None:
                gone.append(row)
            continue
        halves = [current.id]
        if current.equal_mutable is not None:
            halves.append(current.equal_mutable)
        else:
            partner = records.immutable_of(current.id)
            if partner is not None:
                halves.append(partner.id)
        if any(records.live_holders(half) for half in halves):
            continue
        if records.has_live_children(halves):
            continue
        if not (work.matches_facts(current) and work.same_filter_fields(row, current)):
            continue
        if work.recheck is not None and not work.recheck(current):
            continue  # the caller's own condition on the record as it is now
        row.usage_count, row.last_used_at = current.usage_count, current.last_used_at
        chosen.append(row)
        doomed.extend(halves)
    return chosen, doomed


def _tombstone_batch(
    context: StoreContext, work: _Pass, batch: Sequence[RecordRow], gone: list[RecordRow]
) -> tuple[list[RecordRow], list[Retired]]:
    """One write: re-check the batch, tombstone what is still free, retire its layers."""
    with context.records.write():
        chosen, doomed = _still_free(context, work, batch, gone)
        retired = context.tombstone(doomed) if doomed else []
        if doomed:
            crash_point("prune:tombstoned")
    if retired:
        crash_point("prune:committed")
    return chosen, retired


def _retire_again(snapshots: DirectorySnapshotter, record_ids: Sequence[str]) -> None:
    for record_id in record_ids:
        snapshots.retire(record_id)


class _Run:
    """One policy carried out: rounds of selection, tombstoning and reporting."""

    def __init__(
        self,
        context: StoreContext,
        work: _Pass,
        *,
        dry_run: bool,
        on_prune: OnPrune | None,
        removed: list[UsageInfo],
        purger: Purger[RecordRow],
        simulated_free: int,
        disk: DiskStat | None = None,
    ) -> None:
        self.context = context
        self.work = work
        self.dry_run = dry_run
        self.on_prune = on_prune
        self.removed = removed
        self.purger = purger
        self.sizes: dict[str, int] = {}
        self.failure: Exception | None = None  # what on_prune raised: stop choosing
        #: (record id, reason, mount point) of each record refused because a filesystem
        #: is mounted in its layer.
        self.refusals: list[tuple[str, str, str]] = []
        self.gc_mode = work.policy.has_space_limit
        # GC mode needs each removal accounted before choosing the next one.
        self.depth = 0 if self.gc_mode else PIPELINE_DEPTH
        self.total = 0
        self.keep: int | None = None
        if self.gc_mode:
            self.total = work.total_size()
            dstat = None
            if work.policy.min_free_space:
                # In a dry run nothing was freed yet by earlier policies: count it here.
                real = disk if disk is not None else disk_stat(context.root)
                dstat = DiskStat(real.total, real.free + simulated_free)
            self.keep = keep_limit(self.total, dstat, work.policy)

    @property
    def stopped(self) -> bool:
        return self.purger.error is not None or self.failure is not None

    def report(self, row: RecordRow) -> None:
        info = self.work.report(row, self.sizes[row.id])
        self.work.forget(row)
        if not info.shared:
            self.total -= info.size
        self.removed.append(info)
        if self.on_prune is not None and self.failure is None:
            try:
                self.on_prune(info)
            except Exception as err:  # a cancel: finish what is under way, then raise
                self.failure = err

    def finish(self, keep: int) -> None:
        """Report the batches whose trees are gone, leaving at most ``keep`` in flight."""
        done = self.purger.drain_items(keep=keep)
        for row in done:
            self.report(row)
        if done:
            crash_point("prune:batch-done")

    def run(self) -> None:
        while not self.stopped:
            if self.gc_mode and should_stop(self.total, self.keep):
                break
            candidates = self.work.candidates()
            if not candidates:
                break
            for batch in self._batches(candidates):
                self._remove(batch)
                if self.stopped:
                    break
            self.finish(0)  # the round ends: parents freed now become candidates
        self.finish(0)
        if self.failure is not None:
            raise _CallbackFailed(self.failure)

    def _batches(self, candidates: list[RecordRow]) -> list[list[RecordRow]]:
        if self.gc_mode:
            return [candidates[:1]]
        return [
            candidates[i : i + MAX_PRUNE_BATCH] for i in range(0, len(candidates), MAX_PRUNE_BATCH)
        ]

    def _refuse_mounted(self, batch: list[RecordRow]) -> list[RecordRow]:
        """The batch without records whose layer has a mount point inside it.

        Deleting such a layer would empty the mounted directory, which lives outside
        the store (a bind mount has the same ``st_dev``, so the remover's own check could
        only stop half way). The record stays as it is, and ``refusals`` names the mount
        (the rest of the prune goes on).
        """
        mounted = self.context.snapshots.mount_refusals({row.layer_id for row in batch})
        if not mounted:
            return batch
        kept: list[RecordRow] = []
        for row in batch:
            found = mounted.get(row.layer_id)
            if found is None:
                kept.append(row)
                continue
            self.work.skipped.add(row.id)
            point, reason = found
            self.refusals.append((row.id, reason, point))
        return kept

    def _restore_mounted(
        self, chosen: list[RecordRow], retired: list[Retired]
    ) -> tuple[list[RecordRow], list[Retired]]:
        """``chosen`` and ``retired`` without the records whose retired tree now has a
        filesystem mounted in it (one mounted since ``_refuse_mounted`` looked).

        Those records are refused like the others: in one write their rows live again
        and their layers get their names back. When a layer cannot be renamed back (the
        mount is on the ``rm-*`` directory itself) the write rolls back and the records
        stay marked removed; no purge touches a mounted tree, and the next open or
        ``doctor`` reports it as mounted until the operator unmounts it.
        """
        snapshots, records = self.context.snapshots, self.context.records
        by_name = {path.name: rid for rid, path in retired if path is not None}
        mounted = snapshots.mount_refusals(set(by_name))
        if not mounted:
            return chosen, retired
        retired_ids = {rid for rid, _ in retired}
        rows = {rid: records.record(rid) for rid in retired_ids}
        refused: dict[str, tuple[str, str]] = {}  # chosen id -> (point, reason)
        back: set[str] = set()
        for row in chosen:
            group = {row.id} | {
                rid for rid, r in rows.items() if r is not None and r.equal_mutable == row.id
            }
            if row.equal_mutable is not None:
                group.add(row.equal_mutable)
            group &= retired_ids
            hit = [by_name[n] for n in sorted(mounted) if by_name[n] in group]
            if hit:
                point, _ = mounted[snapshots.trash_path(hit[0]).name]
                layer = snapshots.path(row.layer_id)
                shown = point.replace(str(snapshots.trash_path(row.layer_id)), str(layer), 1)
                refused[row.id] = (shown, mount_refusal(str(layer), shown))
                back |= group
        renamed: list[str] = []
        try:
            with records.write():
                # as ``StoreContext.tombstone``, undone: the renames inside the write,
                # reverted if it rolls back
                records.on_rollback(lambda: _retire_again(snapshots, renamed))
                records.untombstone(sorted(back))
                for rid, path in retired:
                    if rid in back and path is not None:
                        snapshots.unretire(rid)
                        renamed.append(rid)
        except OSError:
            pass  # left marked removed: see above
        for row_id, (point, reason) in refused.items():
            self.work.skipped.add(row_id)
            self.refusals.append((row_id, reason, point))
        return (
            [row for row in chosen if row.id not in refused],
            [(rid, path) for rid, path in retired if rid not in back],
        )

    def _remove(self, batch: list[RecordRow]) -> None:
        batch = self._refuse_mounted(batch)
        if not batch:
            return
        self.sizes.update(measure_missing(self.context, self.work.state, batch))
        if self.dry_run:
            for row in batch:
                self.report(row)
            return
        gone: list[RecordRow] = []
        chosen, retired = _tombstone_batch(self.context, self.work, batch, gone)
        for row in gone:
            # Removed by another process (its own prune won the race): forget it so its
            # parent can go.
            self.work.forget(row)
        for row in batch:
            if row not in chosen:
                self.work.skipped.add(row.id)
        if chosen:
            chosen, retired = self._restore_mounted(chosen, retired)
        if chosen:
            self.purger.submit(chosen, retired)
        self.finish(self.depth)


class TierDone:
    """What one policy of a list did, handed to ``prune``'s ``on_tier`` hook.

    ``work`` is the policy's picture of the store *after* its removals, so the hook can
    ask the same rules that chose the records why the others stay.
    """

    def __init__(self, index: int, work: _Pass, run: _Run, removed: Sequence[UsageInfo]) -> None:
        self.index = index
        self.work = work
        self.run = run
        self.removed = removed

    @property
    def limit(self) -> int | None:
        return self.run.keep


OnTier = Callable[[TierDone], None]


def prune(
    context: StoreContext,
    policies: Sequence[PruneOptions],
    *,
    dry_run: bool = False,
    on_prune: OnPrune | None = None,
    ids: Iterable[str] | None = None,
    recheck: Recheck | None = None,
    on_tier: OnTier | None = None,
    disk: DiskStat | None = None,
    refused: list[tuple[str, str]] | None = None,
) -> list[UsageInfo]:
    """Apply ``policies`` in order; returns what was (or would be) removed, in order.

    With ``ids``, exactly those records are the candidates (as with ``all``: any type,
    shared or not), children before parents; a record held or with children that are
    not going too stays (``records.prune_refusal`` says why). ``recheck`` (not in a dry
    run) is asked about each chosen record inside the write transaction that would
    remove it, with the record as it is then: False keeps it.
    ``on_tier`` is called after each policy with a ``TierDone`` (the GC plan uses it).
    ``disk`` stands in for the store's filesystem where ``min_free_space`` reads it (a
    preview for a given disk; tests). ``refused`` (a dry run's caller: a chain's plan)
    gets ``(id, reason)`` of each record kept because a filesystem is mounted in its
    layer; a real prune goes on with the rest and then raises ``PruneRefused`` (what
    went, and every record kept with its reason).
    """
    only: frozenset[str] | None = None
    if ids is not None:
        if isinstance(ids, str):
            raise InvalidError(f"invalid ids {ids!r}: expected a collection of record ids")
        if policies:
            raise InvalidError("prune by ids takes no policy")
        only = frozenset(validate_id(i) for i in ids)
        policies = (PruneOptions(all=True),)
    for policy in policies:
        if not isinstance(policy, PruneOptions):
            raise InvalidError(f"invalid prune policy {policy!r}: expected PruneOptions")
    # Every filter is parsed before anything is selected: a typo deletes nothing.
    matchers = [filter_language.parse_all(policy.filters) for policy in policies]
    if not dry_run and context.read_only:
        # Damaged metadata says so: "read-only" alone reads like a flag the user passed.
        damage = context.store.damage_message()
        raise StoreError(
            f"cannot prune {context.root}: "
            + (
                f"the store is open read-only because {damage}; nothing can be removed "
                "until `cachetui doctor --rebuild` repairs it"
                if damage is not None
                else "the store is open read-only"
            )
        )
    removed: list[UsageInfo] = []
    refusals: dict[str, tuple[str, str]] = {}  # id -> (reason, mount point), in order
    shared_state = context.state() if dry_run else None
    purger: Purger[RecordRow] = Purger(context.snapshots, context.records)
    if not dry_run and reserve.is_low(context.store.path):
        # A nearly full disk: give SQLite the space set aside for this, so the prune
        # can record its removals (and so free the disk). Set aside again below.
        reserve.release(context.store.path)
    run: _Run | None = None

    def note_refusals() -> None:
        # The current pass's kept records, and the purger's: taken when the pass ends,
        # and when it is stopped (a stopped run still says what a mount kept).
        kept = [*(run.refusals if run is not None else ()), *purger.refused]
        for record_id, reason, point in kept:
            refusals.setdefault(record_id, (reason, point))
        purger.refused.clear()

    try:
        for index, (policy, matcher) in enumerate(zip(policies, matchers, strict=True)):
            state = shared_state if shared_state is not None else context.state()
            work = _Pass(context, state, policy, matcher, only, recheck)
            freed = sum(info.size for info in removed if not info.shared) if dry_run else 0
            start = len(removed)
            run = _Run(
                context,
                work,
                dry_run=dry_run,
                on_prune=on_prune,
                removed=removed,
                purger=purger,
                simulated_free=freed,
                disk=disk,
            )
            run.run()
            if purger.error is not None:
                raise purger.error
            note_refusals()
            if on_tier is not None:
                on_tier(TierDone(index, work, run, removed[start:]))
    except _CallbackFailed as stop:
        purger.close()  # the batches in flight finish, and say what a mount kept
        note_refusals()
        stopped = [(record_id, reason) for record_id, (reason, _) in refusals.items()]
        if refused is not None:
            refused.extend(stopped)
        raise PruneInterrupted(removed, stopped) from stop.cause
    finally:
        purger.close()
        if not dry_run:
            reserve.ensure(context.store.path)
    reasons = [(record_id, reason) for record_id, (reason, _) in refusals.items()]
    if refused is not None:
        refused.extend(reasons)
    if reasons and not dry_run:
        # Everything else went: say so, with every record kept and why.
        raise PruneRefused(removed, reasons, path=next(iter(refusals.values()))[1])
    return removed


def gc(context: StoreContext, policies: Iterable[PruneOptions] | None) -> list[UsageInfo]:
    chosen = (
        list(policies) if policies is not None else default_gc_policies(disk_stat(context.root))
    )
    if not chosen:
        return []
    return prune(context, chosen)
