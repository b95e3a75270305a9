"""Record operations: creating, getting, committing, finalizing and releasing records.

``RecordOperations`` does the work behind the manager's ``new``/``get``/``get_mutable``
and behind every handle (``refs``): the handles call it, not the manager. Each method is
one ``BEGIN IMMEDIATE`` write over the store's named operations (``recordstore``): the
store is the only state, so other processes always see a consistent picture.

Release follows BuildKit: a non-retained mutable goes at once; a pair goes
when its immutable's last handle does, unless either half is retained; overlapping uses
count once. Removal writes the tombstone and renames the layer to ``rm-*`` inside the
write, then deletes the tree, then the row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from cachetui.core.context import StoreContext
from cachetui.core.crashpoints import crash_point
from cachetui.core.errors import InvalidError, LockedError, NotFoundError, SnapshotError
from cachetui.core.ids import validate_id
from cachetui.core.processes import current_process
from cachetui.core.recordstore import HolderRow, RecordRow
from cachetui.core.refs import ImmutableRef, MutableRef, Ref
from cachetui.core.types import CacheMount, Mount, RecordType, check_new_metadata

__all__ = ["RecordOperations"]


class RecordOperations:
    """The row-and-layer work of one open store (the manager and its handles call it).

    ``check_usable`` raises when the manager was closed; ``holders`` are the holder ids
    this process handed out (their rows go when the manager closes).
    """

    def __init__(self, context: StoreContext, check_usable: Callable[[], None]) -> None:
        self.context = context
        self.records = context.records
        self.snapshots = context.snapshots
        self.root = context.root
        self._check_usable = check_usable
        self.holder_ids: set[int] = set()

    @property
    def read_only(self) -> bool:
        return self.context.read_only

    # -- helpers inside a write -----------------------------------------------------------

    def _add_holder(self, record_id: str, *, counts_use: bool) -> int:
        holder_id = self.records.add_holder(
            record_id, current_process(), self.context.now(), counts_use=counts_use
        )
        self.holder_ids.add(holder_id)
        return holder_id

    def _make_ref(self, cls: type[Ref], row: RecordRow, holder_id: int) -> Ref:
        return cls(
            self,
            row.id,
            holder_id,
            parent_id=row.parent,
            description=row.description,
            record_type=row.record_type,
        )

    def _insert_commit(self, mutable: RecordRow) -> RecordRow:
        committed_id = self.context.new_id()
        self.records.insert_record(
            committed_id,
            parent=mutable.parent,
            mutable=False,
            equal_mutable=mutable.id,
            description=mutable.description,
            record_type=mutable.record_type,
            created_at=self.context.now(),
        )
        crash_point("commit:inserted")
        row = self.records.record(committed_id)
        assert row is not None
        return row

    # -- creating and getting -----------------------------------------------------------

    def new(
        self,
        parent: ImmutableRef | None = None,
        *,
        description: str = "",
        record_type: RecordType | str = RecordType.REGULAR,
        retain: bool = False,
        labels: Mapping[str, str] | None = None,
        cache_mount: CacheMount | None = None,
    ) -> MutableRef:
        """``CacheManager.new`` (see there)."""
        self._check_usable()
        kind = RecordType.parse(record_type)
        label_map, identity = check_new_metadata(kind, labels, cache_mount)
        if not isinstance(description, str):
            raise InvalidError(f"invalid description {description!r}: expected a string")
        try:
            description.encode("utf-8")
        except UnicodeEncodeError as err:
            # A lone surrogate (from undecodable bytes): SQLite stores UTF-8 only.
            raise InvalidError(
                f"invalid description {description!r}: not valid Unicode at position "
                f"{err.start} ({err.reason})"
            ) from None
        if parent is not None:
            if not isinstance(parent, ImmutableRef):
                raise InvalidError(f"invalid parent {parent!r}: expected an ImmutableRef")
            if parent._ops is not self and parent._ops.root != self.root:
                raise InvalidError(f"parent {parent.id} belongs to another store")
            parent.finalize()
        record_id = self.context.new_id()
        records = self.records
        staged: Path | None = None
        final: Path | None = None
        try:
            with records.write():
                # Staged inside the write lock: a reconcile in another process never
                # sees this new-* directory half made.
                staged = self.snapshots.stage()
                crash_point("prepare:staged")
                if parent is not None:
                    prow = records.live_record(parent.id)
                    if prow.mutable or prow.equal_mutable is not None:
                        raise InvalidError(f"parent {parent.id} is not a finalized record")
                    self.context.require_layers(prow)
                records.insert_record(
                    record_id,
                    parent=parent.id if parent is not None else None,
                    mutable=True,
                    retain=bool(retain),
                    description=description,
                    record_type=kind.value,
                    created_at=self.context.now(),
                )
                records.write_metadata(record_id, label_map, identity)
                holder_id = self._add_holder(record_id, counts_use=True)
                final = self.snapshots.activate(staged, record_id)
                crash_point("prepare:renamed")
            crash_point("prepare:committed")
        except BaseException:
            if final is not None or staged is not None:
                self.snapshots.discard(final or staged)  # type: ignore[arg-type]
            raise
        return MutableRef(
            self,
            record_id,
            holder_id,
            parent_id=parent.id if parent is not None else None,
            description=description,
            record_type=kind.value,
        )

    def get(self, id: str) -> ImmutableRef:
        """``CacheManager.get`` (see there)."""
        self._check_usable()
        record_id = validate_id(id)
        records = self.records
        with records.write():
            row = self.context.heal(records.live_record(record_id))
            if row is None:
                raise NotFoundError(f"{record_id}: not found")
            self.context.require_layers(row)
            if not row.mutable:
                holder_id = self._add_holder(row.id, counts_use=True)
                return self._make_ref(ImmutableRef, row, holder_id)  # type: ignore[return-value]
            if records.live_holders(row.id):
                raise LockedError(row.id)
            partner = records.immutable_of(row.id)
            if partner is not None:
                if records.live_holders(partner.id):
                    raise LockedError(row.id)
                holder_id = self._add_holder(partner.id, counts_use=True)
                return self._make_ref(ImmutableRef, partner, holder_id)  # type: ignore[return-value]
            committed = self._insert_commit(row)
            holder_id = self._add_holder(committed.id, counts_use=True)
            return self._make_ref(ImmutableRef, committed, holder_id)  # type: ignore[return-value]

    def get_mutable(self, id: str) -> MutableRef:
        """``CacheManager.get_mutable`` (see there)."""
        self._check_usable()
        record_id = validate_id(id)
        with self.records.write():
            return self.take_mutable(record_id)

    def take_mutable(self, record_id: str) -> MutableRef:
        """Inside a write: the exclusive handle on a mutable; drops a free equal immutable."""
        records = self.records
        row = self.context.heal(records.live_record(record_id))
        if row is None or not row.mutable:
            if row is not None and row.id != record_id:
                raise NotFoundError(f"{record_id}: finalized as {row.id}")
            raise InvalidError(f"{record_id} is not mutable")
        self.context.require_layers(row)
        if records.live_holders(row.id):
            raise LockedError(row.id)
        partner = records.immutable_of(row.id)
        if partner is not None:
            if records.live_holders(partner.id):
                raise LockedError(row.id)
            records.drop_record(partner.id)
        records.reopen_mutable(row.id)
        holder_id = self._add_holder(row.id, counts_use=True)
        return self._make_ref(MutableRef, row, holder_id)  # type: ignore[return-value]

    def share_mutable(self, record_id: str) -> MutableRef:
        """Inside a write: one more handle on a shared cache mount's mutable."""
        row = self.records.live_record(record_id)
        holder_id = self._add_holder(record_id, counts_use=True)
        return self._make_ref(MutableRef, row, holder_id)  # type: ignore[return-value]

    # -- handle operations (called by refs) ---------------------------------------------

    def commit(self, ref: MutableRef) -> ImmutableRef:
        self._check_usable()
        records = self.records
        with records.write():
            row = records.live_record(ref.id)
            if not row.mutable:
                raise InvalidError(f"cannot commit {ref.id}: it is not mutable")
            if records.holder_counts_use(ref.holder_id, ref.id) is None:
                raise InvalidError(f"cannot commit {ref.id}: its handle is no longer held")
            if len(records.live_holders(row.id)) > 1:  # a shared cache mount's other users
                raise LockedError(
                    row.id, f"cannot commit {ref.id}: other holders share it (a shared cache mount)"
                )
            if records.immutable_of(row.id) is not None:
                raise InvalidError(f"cannot commit {ref.id}: it already has a pending commit")
            committed = self._insert_commit(row)
            # The immutable owns the mutable from now on: "held" moves to it.
            records.drop_holder(ref.holder_id, ref.id)
            self.holder_ids.discard(ref.holder_id)
            holder_id = self._add_holder(committed.id, counts_use=True)
            made = self._make_ref(ImmutableRef, committed, holder_id)
        crash_point("commit:committed")
        return made  # type: ignore[return-value]

    def finalize(self, record_id: str) -> None:
        self._check_usable()
        records = self.records
        with records.write():
            row = self.context.heal(records.live_record(record_id))
            if row is None or row.equal_mutable is None:
                return
            mutable_id = row.equal_mutable
            self.snapshots.rename_layer(mutable_id, row.id)
            # If anything below fails, COMMIT included, the layer goes back to its mutable.
            records.on_rollback(lambda: self.snapshots.rename_layer(row.id, mutable_id))
            crash_point("finalize:renamed")
            records.drop_record(mutable_id)
            records.unpair(row.id)
        crash_point("finalize:committed")

    def clone(self, ref: ImmutableRef) -> ImmutableRef:
        self._check_usable()
        with self.records.write():
            row = self.records.live_record(ref.id)
            holder_id = self._add_holder(row.id, counts_use=False)
            return self._make_ref(ImmutableRef, row, holder_id)  # type: ignore[return-value]

    def set_retain(self, record_id: str, value: bool) -> None:
        self._check_usable()
        with self.records.write():
            self.records.live_record(record_id)
            self.records.set_retain(record_id, value)

    def release(self, ref: Ref) -> None:
        self._check_usable()
        records = self.records
        doomed: list[str] = []
        with records.write():
            counts_use = records.holder_counts_use(ref.holder_id, ref.id)
            records.drop_holder(ref.holder_id, ref.id)
            self.holder_ids.discard(ref.holder_id)
            if counts_use is None:
                # The holder was force-released or reaped: the record may be someone
                # else's now. A stale handle never counts a use nor deletes anything.
                return
            row = records.record(ref.id)
            if row is not None and not row.deleted:
                row = self.context.heal(row)
            if row is None or row.deleted:
                return
            others = records.live_holders(row.id)
            if row.mutable:
                if not others:  # a mutable has one holder; never delete under another's
                    doomed = self._release_mutable(row, counts_use)
            else:
                if counts_use and not any(h.counts_use for h in others):
                    records.count_use(row.id, self.context.now())
                    if row.equal_mutable is not None:
                        records.set_pending_use(row.equal_mutable, True)
                if not others and row.equal_mutable is not None:
                    doomed = self._release_pair(row)
            if doomed:
                refused = self.context.snapshots.mount_refusals(set(doomed))
                if refused:
                    # Nothing is marked nor deleted: the write rolls back (the handle
                    # stays held) and the operator unmounts, then releases again.
                    self.holder_ids.add(ref.holder_id)
                    _layer, (point, reason) = min(refused.items())
                    raise SnapshotError(
                        f"refusing to remove {row.id} on release: {reason}", path=point
                    )
                retired = self.context.tombstone(doomed)
                crash_point("release:tombstoned")
        if doomed:
            crash_point("release:committed")
            self.context.purge(retired)
            crash_point("release:removed")

    def _release_mutable(self, row: RecordRow, counted: bool) -> list[str]:
        if not row.retain:
            return [row.id]
        self.records.forget_size(row.id)
        if counted:
            self.records.count_use(row.id, self.context.now())
        return []

    def _release_pair(self, immutable: RecordRow) -> list[str]:
        """The immutable's last handle went: let go of the mutable it owns (BuildKit 2.8)."""
        mutable = self.records.record(immutable.equal_mutable or "")
        if mutable is None or mutable.deleted:
            return []
        if not mutable.retain and not immutable.retain:
            return [immutable.id, mutable.id]
        if mutable.pending_use:
            self.records.count_use(mutable.id, self.context.now())
            self.records.set_pending_use(mutable.id, False)
        return []

    def mount(self, ref: Ref) -> Mount:
        self._check_usable()
        records, context = self.records, self.context
        with records.read():
            row = records.live_record(ref.id)
            chain = [row]
            parent = row.parent
            seen = {row.id}
            while parent is not None and parent not in seen:
                seen.add(parent)
                prow = records.record(parent)
                if prow is None or prow.deleted:
                    raise NotFoundError(f"{row.id}: its ancestor {parent} has no record")
                chain.append(prow)
                parent = prow.parent
            healthy = all(context.locate(r) == r.layer_id for r in chain)
        if not healthy and not self.read_only:
            with records.write():  # a crash shape: finish it, or say what
                context.require_layers(records.live_record(ref.id))
        elif not healthy:
            with records.read():
                for r in chain:
                    if context.locate(r) is None:
                        path = self.snapshots.dir / r.layer_id
                        raise NotFoundError(f"{row.id}: layer directory {path} is missing")
        lowers = [self.snapshots.path(r.layer_id) for r in chain[1:]]
        own = self.snapshots.path(row.layer_id)
        if isinstance(ref, MutableRef):
            return Mount(upper=own, lowers=tuple(lowers))
        return Mount(upper=None, lowers=(own, *lowers))

    def size(self, ref: Ref) -> int:
        self._check_usable()
        with self.records.read():
            row = self.records.live_record(ref.id)
            name = self.context.locate(row)
        if name is None:
            return 0  # missing: nothing to measure, and never cached as empty
        if row.mutable:
            return self.snapshots.measure_name(name).size
        if row.size >= 0:
            return row.size
        measured = self.snapshots.measure_name(name)
        if measured.complete and not self.read_only:
            self.context.store_sizes({row.id: measured.size}, {row.id: measured.apparent_size})
        return measured.size

    # -- reads and the dashboard's force release -----------------------------------------

    def holders(self, record_id: str) -> list[HolderRow]:
        """Every holder of a record and of its pair half, with liveness (nothing reaped)."""
        self._check_usable()
        validate_id(record_id)
        records = self.records
        with records.read():
            row = records.live_record(record_id)
            partner = row.equal_mutable or (
                found.id if (found := records.immutable_of(row.id)) else None
            )
            result = records.holders(row.id)
            if partner is not None:
                result += records.holders(partner)
        return result

    def layer_path(self, record_id: str) -> Path:
        """The directory holding a record's own bytes (a pending commit's is the mutable's)."""
        self._check_usable()
        validate_id(record_id)
        with self.records.read():
            return self.snapshots.path(self.records.live_record(record_id).layer_id)

    def force_release(self, holder_id: int) -> bool:
        """Drop one holder row, whoever owns it (the dashboard's force release).

        The record simply becomes free: no use is counted and nothing is removed.
        Returns whether a holder row was deleted.
        """
        self._check_usable()
        if isinstance(holder_id, bool) or not isinstance(holder_id, int):
            raise InvalidError(f"invalid holder id {holder_id!r}: expected an integer")
        if not 0 < holder_id < 2**63:  # SQLite integers are 64-bit; ids start at 1
            raise InvalidError(f"invalid holder id {holder_id!r}: out of range")
        with self.records.write():
            return self.records.drop_holder(holder_id)

    def drop_own_holders(self) -> None:
        """The holder rows this process handed out (a closing manager): only rows still
        naming this process, since an id whose row went may now be another's."""
        if self.holder_ids:
            with self.records.write():
                self.records.drop_own_holders(self.holder_ids, current_process())
        self.holder_ids.clear()
