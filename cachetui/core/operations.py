"""Record operations behind the handles: reading rows, holders, commit, finalize, release.

``RecordOperations`` is the half of ``CacheManager`` that refs call into. Every method
runs inside one ``BEGIN IMMEDIATE`` write (or is a helper used inside one): the store is
the only state, so other processes always see a consistent picture.

Release follows BuildKit: a non-retained mutable goes at once; a pair goes
when its immutable's last handle does, unless either half is retained; overlapping uses
count once. Removal writes the tombstone and renames the layer to ``rm-*`` inside the
write, then deletes the tree, then the row.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from cachetui.core.crashpoints import crash_point
from cachetui.core.errors import InvalidError, LockedError, NotFoundError, StoreError
from cachetui.core.ids import validate_id
from cachetui.core.processes import current_process
from cachetui.core.refs import ImmutableRef, MutableRef, Ref
from cachetui.core.snapshots import TRASH_PREFIX, DirectorySnapshotter
from cachetui.core.state import HOLDER_COLUMNS, HolderRow, RecordRow, holder_rows_alive
from cachetui.core.store import Store
from cachetui.core.timestamps import checked_clock_value
from cachetui.core.types import Mount

__all__ = ["RecordOperations"]


class RecordOperations:
    """Row-level operations shared by the manager's methods and its handles."""

    root: Path
    store: Store
    snapshots: DirectorySnapshotter
    clock: Callable[[], float]
    _lock: threading.RLock
    _my_holders: set[int]

    @property
    def read_only(self) -> bool:
        raise NotImplementedError

    def _check_usable(self) -> None:
        raise NotImplementedError

    def now(self) -> float:
        """The clock's time, checked: a bad reading raises ``InvalidError``, never a
        timestamp stored that no later read could turn into a date."""
        return checked_clock_value(self.clock())

    def _new_id(self) -> str:
        raise NotImplementedError

    # -- reading helpers (inside a transaction) -----------------------------------------

    def _row(self, record_id: str) -> RecordRow | None:
        columns = self.store.record_columns
        found = self.store.rows(f"SELECT {columns} FROM record WHERE id = ?", (record_id,))
        return RecordRow.from_values(found[0]) if found else None

    def _live_row(self, record_id: str) -> RecordRow:
        row = self._row(record_id)
        if row is None or row.deleted:
            raise NotFoundError(f"{record_id}: not found")
        return row

    def _holders(self, record_id: str) -> list[HolderRow]:
        return holder_rows_alive(
            self.store.rows(f"SELECT {HOLDER_COLUMNS} FROM holder WHERE record = ?", (record_id,))
        )

    def _live_holders(self, record_id: str) -> list[HolderRow]:
        live = []
        for holder in self._holders(record_id):
            if holder.alive:
                live.append(holder)
            else:  # its process is gone: reap it
                self.store.execute("DELETE FROM holder WHERE id = ?", (holder.id,))
        return live

    def _immutable_of(self, mutable_id: str) -> RecordRow | None:
        found = self.store.rows(
            "SELECT id FROM record WHERE equal_mutable = ? AND deleted = 0", (mutable_id,)
        )
        return self._row(found[0][0]) if found else None

    def _add_holder(self, record_id: str, *, counts_use: bool) -> int:
        me = current_process()
        holder_id = int(
            self.store.Holder.insert(
                record=record_id,
                pid=me.pid,
                start=me.start,
                host=me.host,
                created_at=self.now(),
                counts_use=counts_use,
            ).execute()
        )
        self._my_holders.add(holder_id)
        return holder_id

    def _mark_used(self, record_id: str) -> None:
        self.store.execute(
            "UPDATE record SET usage_count = usage_count + 1, last_used_at = ? WHERE id = ?",
            (self.now(), record_id),
        )

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
        committed_id = self._new_id()
        now = self.now()
        self.store.Record.insert(
            id=committed_id,
            parent=mutable.parent,
            mutable=False,
            equal_mutable=mutable.id,
            retain=False,
            description=mutable.description,
            record_type=mutable.record_type,
            created_at=now,
        ).execute()
        crash_point("commit:inserted")
        row = self._row(committed_id)
        assert row is not None
        return row

    # -- where the bytes are: crash shapes of other processes ----------------------------

    def _locate(self, row: RecordRow) -> str | None:
        """The name under ``snapshots/`` holding ``row``'s bytes, inside a transaction.

        Normally its layer (a pending commit's is the mutable's). Another process that
        died mid-finalize leaves them under the immutable's name; one that died inside a
        removal's transaction leaves them as ``rm-<id>`` while the row is live. None when
        they are nowhere: the record is "missing".
        """
        candidates = [row.layer_id]
        if row.equal_mutable is not None:
            candidates.append(row.id)
        elif row.mutable:
            partner = self._immutable_of(row.id)
            if partner is not None:
                candidates.append(partner.id)
        directory = self.snapshots.dir
        for name in (*candidates, *(f"{TRASH_PREFIX}{c}" for c in candidates)):
            path = directory / name
            if os.path.isdir(path) and not os.path.islink(path):
                return name
        return None

    def _heal(self, row: RecordRow) -> RecordRow | None:
        """Inside a write: finish or undo what a dead process left on ``row``'s layer.

        Holding the write lock means no other process is inside a finalize or a removal
        transaction, so these shapes can only be a crash's: a half-finalized pair is
        finished (the mutable row goes: returns the immutable), a removal that never
        committed is rolled back (its layer gets its name again). Returns the row as it
        is now (None if it went).
        """
        name = self._locate(row)
        if name is None or name == row.layer_id:
            return row
        if name.startswith(TRASH_PREFIX):
            self.snapshots.unretire(name[len(TRASH_PREFIX) :])
            return row
        # The bytes sit under the immutable's name: finalize renamed, then died.
        immutable = row if row.equal_mutable is not None else self._row(name)
        if immutable is None or immutable.equal_mutable is None:
            return row
        mutable_id = immutable.equal_mutable
        self.store.execute("UPDATE record SET equal_mutable = NULL WHERE id = ?", (immutable.id,))
        self.store.execute("DELETE FROM holder WHERE record = ?", (mutable_id,))
        self.store.execute("DELETE FROM record WHERE id = ?", (mutable_id,))
        return self._row(immutable.id)

    def _require_layers(self, row: RecordRow) -> None:
        """Inside a write: NotFoundError naming the first missing layer of the chain
        (the record's own, then its ancestors'), healing crash shapes on the way."""
        current: RecordRow | None = row
        seen: set[str] = set()
        while current is not None and current.id not in seen:
            seen.add(current.id)
            healed = self._heal(current)
            if healed is None or self._locate(healed) is None:
                path = self.snapshots.dir / current.layer_id
                if current is row:
                    raise NotFoundError(f"{row.id}: its layer directory {path} is missing")
                raise NotFoundError(
                    f"{row.id}: the layer directory {path} of its ancestor {current.id} is missing"
                )
            if healed.parent is None:
                return
            current = self._row(healed.parent)
            if current is None or current.deleted:
                raise NotFoundError(f"{row.id}: its ancestor {healed.parent} has no record")

    # -- handle operations (called by refs) ---------------------------------------------

    def _owns(self, ref: Ref) -> bool:
        return bool(
            self.store.rows(
                "SELECT 1 FROM holder WHERE id = ? AND record = ?", (ref.holder_id, ref.id)
            )
        )

    def _commit(self, ref: MutableRef) -> ImmutableRef:
        self._check_usable()
        with self._lock, self.store.write():
            row = self._live_row(ref.id)
            if not row.mutable:
                raise InvalidError(f"cannot commit {ref.id}: it is not mutable")
            if not self._owns(ref):
                raise InvalidError(f"cannot commit {ref.id}: its handle is no longer held")
            if len(self._live_holders(row.id)) > 1:  # a shared cache mount's other users
                raise LockedError(
                    row.id, f"cannot commit {ref.id}: other holders share it (a shared cache mount)"
                )
            if self._immutable_of(row.id) is not None:
                raise InvalidError(f"cannot commit {ref.id}: it already has a pending commit")
            committed = self._insert_commit(row)
            # The immutable owns the mutable from now on: "held" moves to it.
            self.store.execute(
                "DELETE FROM holder WHERE id = ? AND record = ?", (ref.holder_id, ref.id)
            )
            self._my_holders.discard(ref.holder_id)
            holder_id = self._add_holder(committed.id, counts_use=True)
            made = self._make_ref(ImmutableRef, committed, holder_id)
        crash_point("commit:committed")
        return made  # type: ignore[return-value]

    def _finalize(self, record_id: str) -> None:
        self._check_usable()
        with self._lock, self.store.write():
            row = self._heal(self._live_row(record_id))
            if row is None or row.equal_mutable is None:
                return
            mutable_id = row.equal_mutable
            self.snapshots.rename_layer(mutable_id, row.id)
            # If anything below fails, COMMIT included, the layer goes back to its mutable.
            self.store.on_rollback(lambda: self.snapshots.rename_layer(row.id, mutable_id))
            crash_point("finalize:renamed")
            self.store.execute("DELETE FROM holder WHERE record = ?", (mutable_id,))
            self.store.execute("DELETE FROM record WHERE id = ?", (mutable_id,))
            self.store.execute("UPDATE record SET equal_mutable = NULL WHERE id = ?", (row.id,))
        crash_point("finalize:committed")

    def _clone(self, ref: ImmutableRef) -> ImmutableRef:
        self._check_usable()
        with self._lock, self.store.write():
            row = self._live_row(ref.id)
            holder_id = self._add_holder(row.id, counts_use=False)
            return self._make_ref(ImmutableRef, row, holder_id)  # type: ignore[return-value]

    def _set_retain(self, record_id: str, value: bool) -> None:
        self._check_usable()
        with self._lock, self.store.write():
            self._live_row(record_id)
            self.store.execute(
                "UPDATE record SET retain = ? WHERE id = ?", (bool(value), record_id)
            )

    def _release(self, ref: Ref) -> None:
        self._check_usable()
        doomed: list[str] = []
        with self._lock, self.store.write():
            # Holder ids are SQLite rowids and get reused once deleted: match the record
            # too, so a handle whose row already went never releases someone else's.
            mine = (ref.holder_id, ref.id)
            found = self.store.rows(
                "SELECT counts_use FROM holder WHERE id = ? AND record = ?", mine
            )
            self.store.execute("DELETE FROM holder WHERE id = ? AND record = ?", mine)
            self._my_holders.discard(ref.holder_id)
            if not found:
                # The holder was force-released or reaped: the record may be someone
                # else's now. A stale handle never counts a use nor deletes anything.
                return
            row = self._row(ref.id)
            if row is not None and not row.deleted:
                row = self._heal(row)
            if row is None or row.deleted:
                return
            counts_use = bool(found[0][0])
            others = self._live_holders(row.id)
            if row.mutable:
                if not others:  # a mutable has one holder; never delete under another's
                    doomed = self._release_mutable(row, counts_use)
            else:
                if counts_use and not any(h.counts_use for h in others):
                    self._mark_used(row.id)
                    if row.equal_mutable is not None:
                        self.store.execute(
                            "UPDATE record SET pending_use = 1 WHERE id = ?",
                            (row.equal_mutable,),
                        )
                if not others and row.equal_mutable is not None:
                    doomed = self._release_pair(row)
            if doomed:
                retired = self._tombstone_or_undo(doomed)
                crash_point("release:tombstoned")
        if doomed:
            crash_point("release:committed")
            self._purge(retired)
            crash_point("release:removed")

    def _release_mutable(self, row: RecordRow, counted: bool) -> list[str]:
        if not row.retain:
            return [row.id]
        self.store.execute("UPDATE record SET size = -1 WHERE id = ?", (row.id,))
        if counted:
            self._mark_used(row.id)
        return []

    def _release_pair(self, immutable: RecordRow) -> list[str]:
        """The immutable's last handle went: let go of the mutable it owns (BuildKit 2.8)."""
        mutable = self._row(immutable.equal_mutable or "")
        if mutable is None or mutable.deleted:
            return []
        if not mutable.retain and not immutable.retain:
            return [immutable.id, mutable.id]
        if mutable.pending_use:
            self._mark_used(mutable.id)
            self.store.execute("UPDATE record SET pending_use = 0 WHERE id = ?", (mutable.id,))
        return []

    def _tombstone_or_undo(self, record_ids: Sequence[str]) -> list[tuple[str, Path | None]]:
        """``_tombstone``, undoing the renames if the enclosing write later fails (a
        failed COMMIT must not leave live records without their layers).

        The renames to ``rm-*`` happen inside the write; when the transaction rolls back
        (SQLITE_FULL at COMMIT, an error on a later record) the layers are moved back, so
        a failed removal never leaves a live row without its directory.
        """
        retired: list[tuple[str, Path | None]] = []
        self.store.on_rollback(lambda: self._unretire(retired))
        return self._tombstone(record_ids, retired)

    def _unretire(self, retired: Sequence[tuple[str, Path | None]]) -> None:
        for record_id, path in retired:
            if path is not None:
                self.snapshots.unretire(record_id)

    def _tombstone(
        self, record_ids: Sequence[str], retired: list[tuple[str, Path | None]] | None = None
    ) -> list[tuple[str, Path | None]]:
        """Inside a write: mark records deleted and move their layers to ``rm-*``."""
        if retired is None:
            retired = []
        for record_id in record_ids:
            self.store.execute("UPDATE record SET deleted = 1 WHERE id = ?", (record_id,))
            self.store.execute("DELETE FROM holder WHERE record = ?", (record_id,))
        for record_id in record_ids:
            # A pending commit's own name is normally empty; after another process died
            # mid-finalize it holds the bytes, which go with the record as asked.
            retired.append((record_id, self.snapshots.retire(record_id)))
        return retired

    def _purge(self, retired: Sequence[tuple[str, Path | None]]) -> list[str]:
        """After the tombstones committed: delete the trees, then the rows. Returns failures."""
        paths = [path for _, path in retired if path is not None]
        failures = self.snapshots.purge(paths)
        failed_paths = {str(path) for path, _ in failures}
        done = [rid for rid, path in retired if path is None or str(path) not in failed_paths]
        if done:
            with self._lock, self.store.write():
                for record_id in done:
                    self.store.execute(
                        "DELETE FROM record WHERE id = ? AND deleted = 1", (record_id,)
                    )
        if failures:
            raise failures[0][1]
        return done

    def _mount(self, ref: Ref) -> Mount:
        self._check_usable()
        with self._lock, self.store.read():
            row = self._live_row(ref.id)
            chain = [row]
            parent = row.parent
            seen = {row.id}
            while parent is not None and parent not in seen:
                seen.add(parent)
                prow = self._row(parent)
                if prow is None or prow.deleted:
                    raise NotFoundError(f"{row.id}: its ancestor {parent} has no record")
                chain.append(prow)
                parent = prow.parent
            healthy = all(self._locate(r) == r.layer_id for r in chain)
        if not healthy and not self.read_only:
            with self._lock, self.store.write():  # a crash shape: finish it, or say what
                self._require_layers(self._live_row(ref.id))
        elif not healthy:
            with self._lock, self.store.read():
                for r in chain:
                    if self._locate(r) is None:
                        path = self.snapshots.dir / r.layer_id
                        raise NotFoundError(f"{row.id}: layer directory {path} is missing")
        lowers = [self.snapshots.path(r.layer_id) for r in chain[1:]]
        own = self.snapshots.path(row.layer_id)
        if isinstance(ref, MutableRef):
            return Mount(upper=own, lowers=tuple(lowers))
        return Mount(upper=None, lowers=(own, *lowers))

    def _size(self, ref: Ref) -> int:
        self._check_usable()
        with self._lock, self.store.read():
            row = self._live_row(ref.id)
            name = self._locate(row)
        if name is None:
            return 0  # missing: nothing to measure, and never cached as empty
        if row.mutable:
            return self.snapshots.measure_name(name).size
        if row.size >= 0:
            return row.size
        measured = self.snapshots.measure_name(name)
        if measured.complete and not self.read_only:
            self.store_sizes({row.id: measured.size}, {row.id: measured.apparent_size})
        return measured.size

    def holders(self, record_id: str) -> list[HolderRow]:
        """Every holder of a record and of its pair half, with liveness (nothing reaped)."""
        self._check_usable()
        validate_id(record_id)
        with self._lock, self.store.read():
            row = self._live_row(record_id)
            partner = row.equal_mutable or (
                found.id if (found := self._immutable_of(row.id)) else None
            )
            result = self._holders(row.id)
            if partner is not None:
                result += self._holders(partner)
        return result

    def layer_path(self, record_id: str) -> Path:
        """The directory holding a record's own bytes (a pending commit's is the mutable's)."""
        self._check_usable()
        validate_id(record_id)
        with self._lock, self.store.read():
            return self.snapshots.path(self._live_row(record_id).layer_id)

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
        with self._lock, self.store.write():
            return self.store.execute("DELETE FROM holder WHERE id = ?", (holder_id,)) > 0

    def store_sizes(self, sizes: dict[str, int], apparent: dict[str, int] | None = None) -> None:
        """Cache measured sizes, and their apparent sizes when given (never a use, never
        waiting for the write lock: a read must not block behind another's write)."""
        if not sizes or self.read_only:
            return
        try:
            # Only a cache: never wait behind another process's write for it.
            with self._lock, self.store.write(wait=False):
                self.store.db.execute_sql("SELECT 1")
                lengths = apparent or {}
                self.store.db.cursor().executemany(
                    "UPDATE record SET size = ?, apparent_size = ? WHERE id = ? AND deleted = 0",
                    [(size, lengths.get(rid, -1), rid) for rid, size in sizes.items()],
                )
        except StoreError:
            pass  # only a cache: a full disk or a busy store must not fail a read
