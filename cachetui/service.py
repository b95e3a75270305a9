"""The only seam between the dashboard and the core.

The service owns the ``CacheManager``; widgets never touch Peewee, paths or the manager.
Every public method is blocking and thread-safe: the app calls them from thread workers,
never from the UI thread. Results are immutable view rows (frozen dataclasses):

* ``StoreView``: every visible record as a ``RecordView``, the children of each record
  (the tree's shape) and the totals; built in one read of the store;
* ``Delta``: what a change (``ChangeSet`` from ``cachetui.core.watch``) did to the view:
  rows changed, added and removed, so the tree is patched in place;
* ``DetailsView``: the parent chain, mount paths, holders (pid, host, since, alive),
  which descendant makes a record in use, and what a prune of it would free;
* ``PrunePlan``: the dry-run result of pruning marked records or a policy;
* ``GCPreview``: a whole GC list as a dry run, tier by tier (``plan_gc``).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from cachetui.core import CacheManager, GCResult, GCRunInfo, PruneOptions, UsageInfo
from cachetui.core import filters as filter_language
from cachetui.core.diskusage import measure_missing, totals
from cachetui.core.errors import CacheError, InvalidError, NotFoundError
from cachetui.core.policy import DiskStat, disk_stat
from cachetui.core.refs import ImmutableRef
from cachetui.core.state import RecordRow, StoreState
from cachetui.core.watch import ChangeFeed, ChangeSet
from cachetui.gcpolicy import PolicyList
from cachetui.views import (
    Delta,
    DetailsView,
    HolderView,
    PlanRow,
    PrunePlan,
    RecordView,
    StoreView,
    TotalsView,
    plan_row,
)

__all__ = [
    "CacheService",
    "Delta",
    "DetailsView",
    "GCPreview",
    "HolderView",
    "PlanRow",
    "PrunePlan",
    "RecordView",
    "StoreView",
    "TotalsView",
    "plan_row",
]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class GCPreview:
    """A whole GC list as a dry run: the list (where it came from, its warnings) and the
    core's tier-by-tier result, with the reason each remaining record stays."""

    policy: PolicyList
    result: GCResult
    runs: tuple[GCRunInfo, ...] = ()  # the last GC runs recorded in the store, newest first


class CacheService:
    """Blocking, thread-safe operations over one store (call them off the UI thread)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        read_only: bool = False,
        clock: Clock | None = None,
        disk_stat_fn: Callable[[Path], DiskStat] | None = None,
    ) -> None:
        self.root = Path(root)
        self.read_only = read_only
        self.clock = clock or time.time
        self._disk_stat = disk_stat_fn or disk_stat
        self._lock = threading.RLock()
        self._manager: CacheManager | None = None
        self._view: StoreView | None = None
        self._layer_of: dict[str, str] = {}  # layer directory id -> visible record id
        self._holds: dict[str, list[ImmutableRef]] = {}
        self._feed: ChangeFeed | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def manager(self) -> CacheManager:
        with self._lock:
            if self._manager is None:
                self._manager = CacheManager.open(
                    self.root, clock=self.clock, read_only=self.read_only
                )
            return self._manager

    def open(self) -> None:
        self.manager  # noqa: B018 - opens (and reconciles) the store

    def close(self) -> None:
        self.stop_watching()
        with self._lock:
            for refs in self._holds.values():
                for ref in refs:
                    try:
                        ref.release()
                    except CacheError:
                        pass
            self._holds.clear()
            if self._manager is not None:
                self._manager.close()
                self._manager = None

    def start_watching(self, on_change: Callable[[ChangeSet], None]) -> ChangeFeed:
        """Start the change feed; ``on_change`` is called from background threads."""
        self.stop_watching()
        manager = self.manager
        feed = ChangeFeed(manager.root, on_change, db_path=manager.store.path)
        feed.start()
        self._feed = feed
        return feed

    def stop_watching(self) -> None:
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.stop()

    def now(self) -> float:
        return float(self.clock())

    @property
    def view(self) -> StoreView | None:
        return self._view

    # -- loading ------------------------------------------------------------------------

    def load(self) -> StoreView:
        """Read the whole store and build the view (a few hundred ms for 100k records)."""
        with self._lock:
            manager = self.manager
            state = manager.state()
            visible = state.visible()
            sizes = measure_missing(manager, state, visible)
            view = self._build(state, visible, sizes)
            self._view = view
            return view

    def _build(
        self, state: StoreState, visible: Sequence[RecordRow], sizes: Mapping[str, int]
    ) -> StoreView:
        manager = self.manager
        in_use = state.in_use_ids()
        shared = state.shared_ids(manager.is_shared)
        visible_ids = {row.id for row in visible}
        mine = set(self._holds)
        rows: dict[str, RecordView] = {}
        children: dict[str | None, list[str]] = {}
        layer_of: dict[str, str] = {}
        parents: list[str | None] = []
        for row in visible:  # first pass: the tree's shape
            parent = row.parent if row.parent in visible_ids else None
            parents.append(parent)
            children.setdefault(parent, []).append(row.id)
        for row, parent in zip(visible, parents, strict=True):
            rid = row.id
            partner = state.partner(row)
            size = sizes.get(rid, max(row.size, 0))
            rows[rid] = RecordView(
                rid,
                parent,
                row.mutable,
                rid in in_use,
                state.node_held(row),
                row.retain or bool(partner and partner.retain),
                partner is not None,
                row.record_type or "regular",
                row.description,
                size,
                row.created_at,
                row.last_used_at if row.usage_count else None,
                row.usage_count,
                rid in shared,
                rid in children,
                rid in mine or bool(partner and partner.id in mine),
            )
            layer_of[row.layer_id] = rid
            layer_of[rid] = rid
        self._layer_of = layer_of
        totals = self._totals(list(rows.values()))
        return StoreView(
            rows=MappingProxyType(rows),
            children=MappingProxyType({k: tuple(v) for k, v in children.items()}),
            totals=totals,
            read_only=self.read_only,
        )

    def _dstat(self) -> DiskStat | None:
        """The store's filesystem, or None when it cannot be read right now."""
        try:
            return self._disk_stat(self.root)
        except OSError:
            return None

    def _totals(self, rows: Sequence[RecordView]) -> TotalsView:
        sums = totals(
            rows, self._dstat() or DiskStat(0, 0)
        )  # the core's arithmetic, as BuildKit's clients
        return TotalsView(
            sums.total,
            sums.reclaimable,
            sums.in_use,
            sums.shared,
            sums.records,
            sums.disk_free,
            sums.disk_total,
        )

    # -- live updates -------------------------------------------------------------------

    def apply(self, changes: ChangeSet) -> Delta:
        """Fold a change into the view: re-read metadata, or re-measure only the records."""
        with self._lock:
            old = self._view
            if old is None or changes.metadata:
                new = self.load()
                if old is None:
                    return Delta(new, added=tuple(new.rows))
                return self._diff(old, new)
            return self._remeasure(old, changes.records)

    def _remeasure(self, old: StoreView, layer_ids: Iterable[str]) -> Delta:
        manager = self.manager
        rows = dict(old.rows)
        changed = []
        for layer in layer_ids:
            record_id = self._layer_of.get(layer)
            if record_id is None or record_id not in rows:
                continue
            try:
                size = manager.snapshots.measure(layer).size
            except (CacheError, OSError):
                continue
            if rows[record_id].size != size:
                rows[record_id] = replace(rows[record_id], size=size)
                changed.append(record_id)
        if not changed:
            return Delta(old)
        totals = old.totals
        for record_id in changed:
            before, after = max(old.rows[record_id].size, 0), max(rows[record_id].size, 0)
            row = rows[record_id]
            grow = after - before
            totals = replace(
                totals,
                total=totals.total + grow,
                reclaimable=totals.reclaimable + (0 if row.in_use else grow),
                in_use=totals.in_use + (grow if row.in_use else 0),
                shared=totals.shared + (grow if row.shared else 0),
            )
        dstat = self._dstat()
        if dstat is not None:  # otherwise keep the last figures
            totals = replace(totals, disk_free=dstat.free, disk_total=dstat.total)
        view = StoreView(
            rows=MappingProxyType(rows),
            children=old.children,
            totals=totals,
            read_only=old.read_only,
        )
        self._view = view
        return Delta(view, changed=tuple(changed))

    @staticmethod
    def _diff(old: StoreView, new: StoreView) -> Delta:
        added = tuple(i for i in new.rows if i not in old.rows)
        removed = tuple(i for i in old.rows if i not in new.rows)
        changed = []
        reparented = []
        for record_id, row in new.rows.items():
            before = old.rows.get(record_id)
            if before is None or before == row:
                continue
            if before.parent != row.parent:
                reparented.append(record_id)
            else:
                changed.append(record_id)
        return Delta(new, tuple(changed), added, removed, tuple(reparented))

    # -- reading details ----------------------------------------------------------------

    def details(self, record_id: str) -> DetailsView:
        with self._lock:
            view = self._view or self.load()
            row = view.rows.get(record_id)
            if row is None:
                raise NotFoundError(f"{record_id}: not found")
            manager = self.manager
            holder_rows = manager.holders(record_id)
            own = str(manager.layer_path(record_id))
        my_holders = {ref.holder_id for refs in self._holds.values() for ref in refs}
        holders = tuple(
            HolderView(
                id=h.id,
                record=h.record,
                pid=h.pid,
                host=h.host,
                since=h.created_at,
                alive=h.alive,
                mine=h.id in my_holders,
                counts_use=h.counts_use,
            )
            for h in holder_rows
        )
        chain = []
        for ancestor in view.ancestors(record_id):
            a = view.rows[ancestor]
            chain.append((a.id, a.description, a.size))
        lowers = tuple(str(manager.snapshots.dir / a[0]) for a in chain)
        if row.mutable:
            upper, lower_paths = own, lowers
        else:
            upper, lower_paths = None, (own, *lowers)
        because = None
        if row.in_use and not row.held:
            because = self._held_descendant(view, record_id)
        refused = row.unmarkable_reason()
        sub_size, sub_count = self._subtree(view, record_id)
        return DetailsView(
            record=row,
            chain=tuple(chain),
            upper=upper,
            lowers=lower_paths,
            holders=holders,
            in_use_because=because,
            prune_frees=0 if refused else (0 if row.shared else row.size),
            prune_refused=refused,
            subtree_size=sub_size,
            subtree_count=sub_count,
        )

    @staticmethod
    def _held_descendant(view: StoreView, record_id: str) -> str | None:
        queue = deque(view.child_ids(record_id))
        while queue:
            child = queue.popleft()
            row = view.rows.get(child)
            if row is None:
                continue
            if row.held:
                return child
            queue.extend(view.child_ids(child))
        return None

    @staticmethod
    def _subtree(view: StoreView, record_id: str) -> tuple[int, int]:
        size = count = 0
        stack = [record_id]
        while stack:
            current = stack.pop()
            row = view.rows.get(current)
            if row is None:
                continue
            size += max(row.size, 0)
            count += 1
            stack.extend(view.child_ids(current))
        return size, count

    def matching(self, text: str) -> frozenset[str]:
        """The ids a filter matches (``FilterSyntaxError`` when it does not parse)."""
        matcher = filter_language.parse_all(text) if text.strip() else None
        view = self._view
        if view is None:
            return frozenset()
        if not matcher:
            return frozenset(view.rows)
        found = set()
        for row in view.rows.values():
            fields = filter_language.usage_fields(
                id=row.id,
                parents=(row.parent,) if row.parent else (),
                description=row.description,
                record_type=row.record_type,
                in_use=row.in_use,
                mutable=row.mutable,
                shared=row.shared,
            )
            if matcher.matches(fields):
                found.add(row.id)
        return frozenset(found)

    @staticmethod
    def check_filter(text: str) -> None:
        """Raise ``FilterSyntaxError`` (with ``.position``) when ``text`` does not parse."""
        if text.strip():
            filter_language.parse_all(text)

    # -- prune --------------------------------------------------------------------------

    def plan_prune(self, ids: Sequence[str]) -> PrunePlan:
        """Dry run of pruning exactly these records (the marks)."""
        if not ids:
            return PrunePlan(())
        with self._lock:
            result = self.manager.prune(self._id_policy(ids), dry_run=True)
        chosen = {info.id for info in result}
        refused = []
        view = self._view
        for record_id in ids:
            if record_id in chosen:
                continue
            row = view.rows.get(record_id) if view else None
            reason = (row.unmarkable_reason() if row else None) or "it cannot be pruned now"
            refused.append((record_id, reason))
        return PrunePlan(tuple(plan_row(i) for i in result), tuple(refused))

    @staticmethod
    def _id_policy(ids: Sequence[str]) -> PruneOptions:
        return PruneOptions(all=True, filters=tuple(f"id=={i}" for i in ids))

    def prune_ids(
        self,
        ids: Sequence[str],
        on_prune: Callable[[PlanRow], None] | None = None,
        recheck: Callable[[RecordRow], bool] | None = None,
    ) -> PrunePlan:
        """Prune exactly these records; ``recheck`` may refuse one as it is inside the
        write that would remove it (the fleet's "used since you confirmed")."""
        self._check_writable()
        if not ids:
            return PrunePlan(())
        return self._prune((self._id_policy(ids),), on_prune, recheck)

    def plan_policy(self, options: PruneOptions) -> PrunePlan:
        with self._lock:
            result = self.manager.prune(options, dry_run=True)
        return PrunePlan(tuple(plan_row(i) for i in result))

    def plan_gc(self, policy_file: str | None = None) -> GCPreview:
        """Dry run of a whole GC list: the file's, else BuildKit's defaults for this disk.

        ``PolicyError`` (an ``InvalidError``) when the file is refused.
        """
        from cachetui.gcpolicy import default_policy, load_policy

        dstat = self._dstat()
        policy = load_policy(policy_file, dstat) if policy_file else default_policy(dstat)
        with self._lock:
            result = self.manager.gc_plan(policy.policies, dry_run=True, disk=dstat)
            runs = tuple(self.manager.gc_history(5))
        return GCPreview(policy, result, runs)

    def prune_policy(
        self, options: PruneOptions, on_prune: Callable[[PlanRow], None] | None = None
    ) -> PrunePlan:
        self._check_writable()
        return self._prune((options,), on_prune)

    def _prune(
        self,
        policies: Sequence[PruneOptions],
        on_prune: Callable[[PlanRow], None] | None,
        recheck: Callable[[RecordRow], bool] | None = None,
    ) -> PrunePlan:
        def report(info: UsageInfo) -> None:
            if on_prune is not None:
                on_prune(plan_row(info))

        with self._lock:
            result = self.manager.prune(*policies, on_prune=report, recheck=recheck)
        return PrunePlan(tuple(plan_row(i) for i in result))

    # -- commit, hold, release ----------------------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise InvalidError("the dashboard is read-only")

    def commit(self, record_id: str) -> str:
        """Commit a free mutable into an immutable: get_mutable, commit, finalize, release."""
        self._check_writable()
        with self._lock:
            manager = self.manager
            mutable = manager.get_mutable(record_id)
            try:
                immutable = mutable.commit()
            except BaseException:
                mutable.release()
                raise
            try:
                immutable.finalize()
            finally:
                immutable.release()
            return immutable.id

    def hold(self, record_id: str) -> str:
        """Pin a record against prune: the service keeps an ``ImmutableRef`` on it."""
        self._check_writable()
        with self._lock:
            ref = self.manager.get(record_id)
            self._holds.setdefault(ref.id, []).append(ref)
            return ref.id

    def holds(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._holds)

    def release(self, record_id: str) -> int:
        """Release what the dashboard holds on a record; returns how many handles went."""
        self._check_writable()
        with self._lock:
            # a hold is kept under the id of the record it pins: the one shown while held
            released = 0
            for ref in self._holds.pop(record_id, []):
                ref.release()
                released += 1
            return released

    def force_release(self, holder_ids: Sequence[int]) -> int:
        """Drop other processes' holder rows (after the UI confirmed)."""
        self._check_writable()
        with self._lock:
            done = 0
            for holder_id in holder_ids:
                if self.manager.force_release(holder_id):
                    done += 1
            return done
