"""The only seam between the dashboard and a store.

``CacheService`` owns one ``CacheManager``; screens and widgets never touch Peewee, paths
or the manager. Every public method is blocking and thread-safe: the app calls them from
thread workers, never from the UI thread. What it returns are the values in
``cachetui.views``, built from the core's one value per record (``RecordState``), so the
rows, the details pane and every refusal say the same thing. The service keeps no copy
of the core's rules: visibility, in use, shared, sizes, health, totals and the prune
eligibility rule are all the core's.

The contract a second implementation (another store, a fleet) provides:

* ``root``, ``read_only`` (may turn true at ``open`` when the store is not writable:
  ``read_only_reason`` says why), ``now()``, ``view``;
* ``open()``, ``close()``, ``load() -> StoreView``, ``apply(ChangeSet) -> Delta``;
* ``start_watching(on_change, on_status)``, ``stop_watching()``: ``on_change`` gets
  ``ChangeSet`` values, ``on_status`` gets ``None`` (live) or a reason (stopped);
* ``details(id)``, ``matching(text)``, ``check_filter(text)``;
* ``plan_prune(ids)``, ``prune_ids(ids, on_prune)``, ``plan_policy(options)``,
  ``prune_policy(options, on_prune)``; optionally ``plan_chain(ids, descendants)``,
  ``prune_chain(ids, on_prune)`` and ``set_labels(id, changes)`` (the dashboard asks
  ``hasattr`` and says the action is not available otherwise);
* ``commit(id)``, ``hold(id)``, ``release(id)``, ``holds()``,
  ``force_release(record_id, holders) -> ReleaseResult``, ``force_release_holders(ids)``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from cachetui.core import (
    CacheError,
    CacheManager,
    ChangeFeed,
    ChangeSet,
    DiskStat,
    GCResult,
    GCRunInfo,
    HolderInfo,
    ImmutableRef,
    InvalidError,
    NotFoundError,
    PruneOptions,
    PruneRefused,
    RecordRow,
    RecordState,
    RecordStates,
    StoreError,
    UsageInfo,
    disk_stat,
    is_expression,
    matching_ids,
    parse_filters,
    paused_gc,
    resized_totals,
    search_ids,
)
from cachetui.gcpolicy import PolicyList
from cachetui.subtree import Layered, Subtrees
from cachetui.views import (
    Brief,
    Delta,
    DetailsView,
    PlanRow,
    PrunePlan,
    ReleaseResult,
    StoreView,
    plan_row,
)

__all__ = ["CacheService", "GCPreview"]


def _state_row(state: RecordState) -> PlanRow:
    """A plan row from a record's value (a chain that cannot go is listed this way)."""
    return PlanRow(
        state.id,
        state.description,
        state.size,
        state.shared,
        state.mutable,
        state.last_used_at,
    )


Clock = Callable[[], float]
OnStatus = Callable[[str | None], None]

#: How often holders' processes are re-checked (a killed holder stops counting).
LIVENESS_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class GCPreview:
    """A whole GC list as a dry run: the list (where it came from, its warnings) and the
    core's tier-by-tier result, with the reason each remaining record stays."""

    policy: PolicyList
    result: GCResult
    runs: tuple[GCRunInfo, ...] = ()  # the last GC runs recorded in the store, newest first


def _brief_key(brief: Brief) -> tuple[object, ...]:
    return (brief.size, brief.last_used_at, brief.usage_count, brief.description,
            getattr(brief, "in_use", None), getattr(brief, "shared", None))  # fmt: skip


class CacheService:
    """Blocking, thread-safe operations over one store (call them off the UI thread)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        read_only: bool = False,
        clock: Clock | None = None,
        disk_stat_fn: Callable[[Path], DiskStat] | None = None,
        liveness_interval: float = LIVENESS_INTERVAL,
    ) -> None:
        self.root = Path(root)
        self.read_only = read_only
        self.read_only_reason: str | None = "--read-only" if read_only else None
        self.clock = clock or time.time
        self.liveness_interval = liveness_interval
        self._disk_stat = disk_stat_fn or disk_stat
        self._lock = threading.RLock()
        self._manager: CacheManager | None = None
        self._view: StoreView | None = None
        self._layer_of: dict[str, str] = {}  # layer directory id -> visible record id
        self._holds: dict[str, list[ImmutableRef]] = {}
        self._alive: frozenset[int] = frozenset()  # live holders the view was built from
        self._feed: ChangeFeed | None = None
        self._ticker: threading.Thread | None = None
        self._stop_ticker = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def manager(self) -> CacheManager:
        with self._lock:
            if self._manager is None:
                self._manager = self._open_manager()
            return self._manager

    def _open_manager(self) -> CacheManager:
        try:
            # The whole store is shown next: the open's read serves the first load too.
            return CacheManager.open(
                self.root, clock=self.clock, read_only=self.read_only, keep_picture=True
            )
        except StoreError as err:
            # As ``du`` does: a store this user cannot write is still worth reading.
            if self.read_only or "not writable" not in str(err):
                raise
            manager = CacheManager.open(self.root, clock=self.clock, read_only=True)
            self.read_only = True
            self.read_only_reason = f"{self.root} is not writable by this user"
            return manager

    def open(self) -> None:
        self.manager  # noqa: B018 - opens (and reconciles) the store

    def damage(self) -> str | None:
        """Why the store's metadata counts as damaged (it is then read-only), or None."""
        with self._lock:
            return self.manager.store.damage_message()

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

    def start_watching(
        self, on_change: Callable[[ChangeSet], None], on_status: OnStatus | None = None
    ) -> None:
        """Start the change feed and the liveness ticker (callbacks come from threads).

        ``on_status`` hears ``"<reason>"`` when the file watcher stops and ``None`` once
        it runs again (the feed retries on its own).
        """
        self.stop_watching()
        manager = self.manager
        feed = ChangeFeed(manager.root, on_change, db_path=manager.store.path, on_status=on_status)
        feed.start()
        self._feed = feed
        self._stop_ticker.clear()
        ticker = threading.Thread(
            target=self._tick, args=(on_change,), name="cachetui-liveness", daemon=True
        )
        ticker.start()
        self._ticker = ticker

    def _tick(self, on_change: Callable[[ChangeSet], None]) -> None:
        """Re-check holders' processes: one killed changes no file and no row, yet its
        record stops being in use; report it as a metadata change."""
        while not self._stop_ticker.wait(self.liveness_interval):
            try:
                alive = self.manager.alive_holders()
            except CacheError:
                continue
            if alive != self._alive and self._view is not None:
                on_change(ChangeSet(frozenset(), True))

    def stop_watching(self) -> None:
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.stop()
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            self._stop_ticker.set()
            ticker.join(2.0)

    def now(self) -> float:
        return float(self.clock())

    @property
    def view(self) -> StoreView | None:
        return self._view

    # -- loading ------------------------------------------------------------------------

    def load(self) -> StoreView:
        """Read the whole store and build the view: the tree's shape, the totals and the
        subtree totals now, each record's value when it is first read (a screen reads
        the rows it shows; 100,000 records open in a fraction of a second)."""
        # The picture of 100,000 records is as many objects: the cyclic collector would
        # run dozens of full passes over them for nothing.
        with self._lock, paused_gc():
            manager = self.manager
            self._alive = manager.alive_holders()
            rows = manager.records()
            view = self._build(rows)
            self._view = view
            return view

    def _build(self, rows: RecordStates) -> StoreView:
        """The view over ``rows`` from their cheap reads only (no record's value built)."""
        children: dict[str | None, list[str]] = {}
        for rid, parent in rows.parents.items():
            kids = children.get(parent)
            if kids is None:
                children[parent] = [rid]
            else:
                kids.append(rid)
        self._layer_of = rows.other_layers()  # the others' layer is their own id
        shape = MappingProxyType({k: tuple(v) for k, v in children.items()})
        return StoreView(
            rows=rows,
            children=shape,
            totals=rows.totals(self._dstat()),
            read_only=self.read_only,
            pinned=frozenset(self._holds),
            subtrees=Subtrees.lazy(shape, rows.sizes.__getitem__),
        )

    def _dstat(self) -> DiskStat | None:
        """The store's filesystem, or None when it cannot be read right now."""
        try:
            return self._disk_stat(self.root)
        except OSError:
            return None

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
        """Re-measure the records whose files changed. The new view shares the old
        one's rows and carries the changed ones on top; the totals and every ancestor's
        subtree total move by the differences (no pass over all records)."""
        manager = self.manager
        rows = old.rows
        changed: dict[str, RecordState] = {}
        for layer in layer_ids:
            record_id = self._layer_of.get(layer, layer)
            if record_id not in rows or record_id in changed:
                continue
            try:
                size = manager.measure(record_id)
            except (CacheError, OSError):
                continue
            if rows[record_id].size != size:
                changed[record_id] = replace(rows[record_id], size=size)
        if not changed:
            return Delta(old)
        before = {i: rows[i].size for i in changed}
        layered = rows if isinstance(rows, Layered) else Layered(rows)
        view = replace(
            old,
            rows=layered.replaced(changed),
            totals=resized_totals(
                old.totals, [(changed[i], before[i]) for i in changed], self._dstat()
            ),
            subtrees=old.trees.resized(
                {i: max(changed[i].size, 0) - max(before[i], 0) for i in changed},
                old.ancestors,
            ),
        )
        self._view = view
        return Delta(view, changed=tuple(changed))

    @staticmethod
    def _diff(old: StoreView, new: StoreView) -> Delta:
        """What changed between two reads. A record whose value was never read from the
        old view (never on screen) is compared by its cheap fields (place, size, use,
        name): its whole value is built only when it is shown."""
        old_rows, new_rows = old.rows, new.rows
        added = tuple(i for i in new_rows if i not in old_rows)
        removed = tuple(i for i in old_rows if i not in new_rows)
        changed = []
        reparented = []
        pins = old.pinned ^ new.pinned
        was_built = getattr(old_rows, "is_built", None)
        for record_id in new_rows:
            if record_id not in old_rows:
                continue
            if old.parent_of(record_id) != new.parent_of(record_id):
                reparented.append(record_id)
            elif record_id in pins:
                changed.append(record_id)
            elif was_built is None or was_built(record_id):
                if old_rows[record_id] != new_rows[record_id]:
                    changed.append(record_id)
            elif _brief_key(old.brief(record_id)) != _brief_key(new.brief(record_id)):
                changed.append(record_id)
        return Delta(new, tuple(changed), added, removed, tuple(reparented))

    # -- reading details ----------------------------------------------------------------

    def details(self, record_id: str) -> DetailsView:
        with self._lock:
            view = self._view or self.load()
            row = view.rows.get(record_id)
            if row is None:
                raise NotFoundError(f"{record_id}: not found")
            snapshots = Path(row.layer_path).parent
        mine = frozenset(ref.holder_id for refs in self._holds.values() for ref in refs)
        chain = []
        for ancestor in view.ancestors(record_id):
            a = view.rows[ancestor]
            chain.append((a.id, a.description, a.size))
        lowers = tuple(str(snapshots / view.rows[a[0]].layer_id) for a in chain)
        if row.mutable:
            upper, lower_paths = row.layer_path, lowers
        else:
            upper, lower_paths = None, (row.layer_path, *lowers)
        sub_size, sub_count = view.subtree_size(record_id), view.subtree_count(record_id)
        by = row.effective_by
        return DetailsView(
            record=row,
            chain=tuple(chain),
            upper=upper,
            lowers=lower_paths,
            mine=mine,
            pinned=record_id in view.pinned,
            subtree_size=sub_size,
            subtree_count=sub_count,
            effective=view.rows.get(by) if by is not None and by != record_id else None,
        )

    def matching(self, text: str) -> frozenset[str]:
        """The ids a filter expression matches (``FilterSyntaxError`` when it does not
        parse), or, for plain words, the ids whose id or description holds every word
        (the core's ``is_expression`` tells them apart)."""
        view = self._view
        # The rows' own cheap reads when they have them: building every record's value
        # (100,000 of them) would hold the interpreter, and so the screen, for seconds.
        if not is_expression(text):
            if view is None:
                return frozenset()
            search = getattr(view.rows, "search", None)
            return search(text) if search is not None else search_ids(view.rows.values(), text)
        if view is None:
            parse_filters(text)
            return frozenset()
        match = getattr(view.rows, "matching", None)
        return match(text) if match is not None else matching_ids(view.rows.values(), text)

    @staticmethod
    def check_filter(text: str) -> None:
        """Raise ``FilterSyntaxError`` (with ``.position``) when ``text`` is an expression
        that does not parse (plain words are a search: always fine)."""
        if is_expression(text):
            parse_filters(text)

    # -- prune --------------------------------------------------------------------------

    def plan_prune(self, ids: Sequence[str]) -> PrunePlan:
        """Dry run of pruning exactly these records (the marks), against the store now."""
        if not ids:
            return PrunePlan(())
        refused: list[tuple[str, str]] = []
        with self._lock:
            manager = self.manager
            result = manager.prune(ids=ids, dry_run=True, refused=refused)
            return self._plan(result, ids, manager.records, dict(refused))

    def prune_ids(
        self,
        ids: Sequence[str],
        on_prune: Callable[[PlanRow], None] | None = None,
        recheck: Callable[[RecordRow], bool] | None = None,
    ) -> PrunePlan:
        """Prune exactly these records; the plan names what went, what stayed (and why)
        and what was already gone. ``recheck`` may refuse one as it is inside the write
        that would remove it (the fleet's "used since you confirmed")."""
        self._check_writable()
        if not ids:
            return PrunePlan(())

        def report(info: UsageInfo) -> None:
            if on_prune is not None:
                on_prune(plan_row(info))

        with self._lock:
            manager = self.manager
            try:
                result = manager.prune(ids=ids, on_prune=report, recheck=recheck)
                because: dict[str, str] = {}
            except PruneRefused as refused:  # the rest went: say which stayed, and why
                result, because = refused.removed, dict(refused.refusals)
            return self._plan(result, ids, manager.records, because)

    @staticmethod
    def _plan(
        result: Sequence[UsageInfo],
        ids: Sequence[str],
        read_now: Callable[[], Mapping[str, RecordState]],
        because: Mapping[str, str] | None = None,
    ) -> PrunePlan:
        """The plan for ``ids``: what ``result`` chose, and for the rest the core's reason
        (``because``: prune's own, a mount in the layer; else read from the store now,
        only when some id was not chosen: 100,000 records are not re-read to learn
        nothing)."""
        chosen = {info.id for info in result}
        refused = []
        gone = []
        because = because or {}
        left = [record_id for record_id in ids if record_id not in chosen]
        now = read_now() if left else {}
        for record_id in left:
            state = now.get(record_id)
            if state is None:
                gone.append(record_id)
            else:
                reason = because.get(record_id) or state.refusal or "it no longer matches"
                refused.append((record_id, reason))
        return PrunePlan(tuple(plan_row(i) for i in result), tuple(refused), tuple(gone))

    def plan_chain(self, ids: Sequence[str], *, descendants: bool = True) -> PrunePlan:
        """The core's plan for pruning ``ids`` as one chain (with ``descendants``, each
        with everything below it): the records leaves first and the bytes really freed,
        or, in ``refused``, the records that stop it and why (nothing is touched)."""
        with self._lock:
            plan = self.manager.plan_chain(ids, descendants=descendants)
        rows = plan.rows
        if plan.blockers:
            # Nothing goes: list the chain's records (with their sizes) for the reason.
            view = self._view
            listed = [view.rows[i] for i in plan.ids if view is not None and i in view.rows]
            return PrunePlan(
                tuple(_state_row(r) for r in listed),
                plan.blockers,
                plan.missing,
                chains=self._tops(plan.ids),
            )
        return PrunePlan(
            tuple(plan_row(i) for i in rows), (), plan.missing, chains=self._tops(plan.ids)
        )

    def _tops(self, ids: Sequence[str]) -> tuple[str, ...]:
        """The records of ``ids`` with no ancestor among them (the chains' tops)."""
        view = self._view
        chosen = set(ids)
        if view is None:
            return tuple(sorted(chosen))
        return tuple(i for i in ids if not chosen.intersection(view.ancestors(i)))

    def prune_chain(
        self, ids: Sequence[str], on_prune: Callable[[PlanRow], None] | None = None
    ) -> PrunePlan:
        """Prune exactly ``ids`` as one chain, leaves first, or nothing: a record inside
        held by a live process (``LockedError``) or a child left out (``InvalidError``,
        a record created below since the confirmation) stops it before anything goes."""
        self._check_writable()

        def report(info: UsageInfo) -> None:
            if on_prune is not None:
                on_prune(plan_row(info))

        with self._lock:
            manager = self.manager
            result = manager.prune_chain(ids, descendants=False, on_prune=report)
            plan = self._plan(result, ids, manager.records)
        return replace(plan, chains=self._tops(ids))

    def set_labels(self, record_id: str, changes: Mapping[str, str | None]) -> dict[str, str]:
        """Add, change (a value) or remove (None) labels on a record; the labels now."""
        self._check_writable()
        with self._lock:
            return self.manager.set_labels(record_id, changes)

    def plan_policy(self, options: PruneOptions) -> PrunePlan:
        """Dry run of a policy: what would go, and (``refused``) what a filesystem
        mounted in its layer would keep."""
        kept: list[tuple[str, str]] = []
        with self._lock:
            result = self.manager.prune(options, dry_run=True, refused=kept)
        return PrunePlan(tuple(plan_row(i) for i in result), tuple(kept))

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

        def report(info: UsageInfo) -> None:
            if on_prune is not None:
                on_prune(plan_row(info))

        with self._lock:
            try:
                result = self.manager.prune(options, on_prune=report)
            except PruneRefused as refused:  # the rest went: say which stayed, and why
                return PrunePlan(
                    tuple(plan_row(i) for i in refused.removed), tuple(refused.refusals)
                )
        return PrunePlan(tuple(plan_row(i) for i in result))

    # -- commit, hold, release ----------------------------------------------------------

    def _check_writable(self) -> None:
        if self.read_only:
            raise InvalidError(f"the dashboard is read-only ({self.read_only_reason})")

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

    def force_release(self, record_id: str, holders: Sequence[HolderInfo]) -> ReleaseResult:
        """Drop other processes' holds on a record (after the UI confirmed ``holders``).

        The confirmation named processes, not rows: a build that released and took a
        new hold since (the demo's simulated build does, every few seconds) is still the
        process the user chose, so its current holder rows go too. What is left, and
        what had gone already, is said in the result.
        """
        self._check_writable()
        with self._lock:
            manager = self.manager
            mine = {ref.holder_id for refs in self._holds.values() for ref in refs}
            before = manager.records().get(record_id)
            if before is None:
                return ReleaseResult(record_id, (), (), (), record_gone=True)
            processes = {(h.pid, h.host) for h in holders if h.id not in mine}
            current = {h.id for h in before.holders}
            already_gone = tuple(sorted(h.id for h in holders if h.id not in current))
            released = []
            for h in before.holders:
                if h.id in mine or (h.pid, h.host) not in processes:
                    continue
                if manager.force_release(h.id):
                    released.append(h)
                else:
                    already_gone += (h.id,)
            after = manager.records().get(record_id)
            left = tuple(
                h for h in (after.holders if after else ()) if h.alive and h.id not in mine
            )
            return ReleaseResult(record_id, tuple(released), already_gone, left)

    def force_release_holders(self, holder_ids: Sequence[int]) -> int:
        """Drop exactly these holder rows (a request that names rows, not a record, such
        as the fleet's); returns how many were still there."""
        self._check_writable()
        with self._lock:
            return sum(1 for holder_id in holder_ids if self.manager.force_release(holder_id))
