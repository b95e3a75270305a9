"""``CacheManager``: BuildKit's cache manager over layered directories and Peewee.

The manager keeps no authoritative state in memory: every operation is one ``BEGIN
IMMEDIATE`` transaction over the store, so several processes can share one root. Handles
are holder rows naming their process; a holder whose process is gone no longer counts.

Files before rows on create, rows (a tombstone) before files on delete; the snapshot
renames happen inside the transaction that changes the rows, so a crash at any point
leaves a store that ``reconcile`` repairs at the next open.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from cachetui.core import diskusage, prune, reconcile
from cachetui.core import snapshots as snapshots_module
from cachetui.core.crashpoints import crash_point
from cachetui.core.errors import InvalidError, LockedError, NotFoundError, StoreError
from cachetui.core.ids import new_id, validate_id
from cachetui.core.processes import current_process, is_alive
from cachetui.core.refs import ImmutableRef, MutableRef, Ref
from cachetui.core.snapshots import DirectorySnapshotter
from cachetui.core.state import HolderRow, RecordRow, StoreState, load_state
from cachetui.core.store import RECORD_COLUMNS, Holder, Record, Store
from cachetui.core.types import Mount, PruneOptions, RecordType, UsageInfo

__all__ = ["CacheManager"]

Clock = Callable[[], float]


def _check_root(root: object) -> Path:
    if not isinstance(root, str | os.PathLike):
        raise InvalidError(f"invalid root {root!r}: expected a path")
    text = os.fspath(root)
    if isinstance(text, bytes) or not text or "\x00" in text:
        raise InvalidError(f"invalid root {root!r}: expected a non-empty path")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise InvalidError(f"invalid root {text!r}: it exists and is not a directory")
    return path


class CacheManager:
    """The cache manager of one store root. Use ``CacheManager.open(root)``."""

    def __init__(
        self,
        root: Path,
        store: Store,
        snapshots: DirectorySnapshotter,
        *,
        clock: Clock,
        is_shared: Callable[[str], bool] | None,
    ) -> None:
        self.root = root
        self.store = store
        self.snapshots = snapshots
        self.clock = clock
        self.is_shared = is_shared
        self._lock = threading.RLock()
        self._closed = False
        self._my_holders: set[int] = set()
        self.open_findings: list[reconcile.Finding] = []

    # -- lifecycle ----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        *,
        db_url: str | None = None,
        clock: Clock | None = None,
        is_shared: Callable[[str], bool] | None = None,
        read_only: bool = False,
    ) -> CacheManager:
        """Open (creating if missing) the store at ``root`` and reconcile it with the disk."""
        path = _check_root(root)
        if clock is not None and not callable(clock):
            raise InvalidError(f"invalid clock {clock!r}: expected a callable")
        if is_shared is not None and not callable(is_shared):
            raise InvalidError(f"invalid is_shared {is_shared!r}: expected a callable")
        if not read_only:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(f"cannot create store root {path}: {err.strerror}") from err
            if not os.access(path, os.W_OK | os.X_OK):
                raise StoreError(f"store root {path} is not writable (open it read-only)")
        elif not path.is_dir():
            raise NotFoundError(f"store root {path} does not exist")
        db_path = cls._db_path(path, db_url)
        store = Store(db_path, read_only=read_only)
        try:
            if read_only:
                snapshots = DirectorySnapshotter.__new__(DirectorySnapshotter)
                snapshots.dir = path / "snapshots"
                snapshots._identity = (0, 0)
            else:
                snapshots = DirectorySnapshotter(path)
            manager = cls(path, store, snapshots, clock=clock or time.time, is_shared=is_shared)
            if not read_only:
                problems = store.integrity_problems()
                if problems:
                    # E2 / invariant 8: a damaged database never drives a repair that
                    # deletes data. Open degraded: reads work, every write is refused.
                    store.damaged = problems
                    manager.open_findings = [
                        reconcile.Finding(
                            "degraded",
                            "metadata.db",
                            "integrity check failed: opened without repair, writes refused",
                        )
                    ]
                else:
                    manager.open_findings = reconcile.reconcile(manager)
            fstype = snapshots_module.filesystem_type(path)
            if fstype in snapshots_module.NETWORK_FILESYSTEMS:
                # E4: WAL needs every process on one host; locks over NFS/SMB are unreliable.
                manager.open_findings.append(
                    reconcile.Finding(
                        "network-filesystem",
                        str(path),
                        f"the store is on {fstype}: use it from one host only "
                        "(SQLite WAL and locking are not safe across machines)",
                    )
                )
        except BaseException:
            store.close()
            raise
        return manager

    @staticmethod
    def _db_path(root: Path, db_url: str | None) -> Path:
        if db_url is None:
            return root / "metadata.db"
        if not isinstance(db_url, str):
            raise InvalidError(f"invalid db_url {db_url!r}: expected a string")
        prefix = "sqlite:///"  # sqlite:///relative/path or sqlite:////absolute/path
        if db_url.startswith(prefix) and len(db_url) > len(prefix):
            return Path(db_url[len(prefix) :])
        raise InvalidError(
            f"invalid db_url {db_url!r}: this build supports sqlite:///<path> URLs only"
        )

    def close(self) -> None:
        """Close the store. Handles are not released (no use is counted, nothing is
        deleted), but their holder rows go: the records come back free at the next open."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._my_holders and not self.read_only:
                # Only rows still naming this process: an id whose row went (commit moved
                # it, a prune or a force-release removed it) may now be another's (B4).
                me = current_process()
                with self._lock, self.store.write():
                    self.store.db.cursor().executemany(
                        "DELETE FROM holder WHERE id = ? AND pid = ? AND start = ? AND host = ?",
                        [(h, me.pid, me.start, me.host) for h in self._my_holders],
                    )
        except StoreError:
            pass  # the holders die with this process anyway
        finally:
            self._my_holders.clear()
            self.store.close()

    def __enter__(self) -> CacheManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def read_only(self) -> bool:
        """Opened read-only, or degraded because the database failed its integrity check."""
        return self.store.read_only or bool(self.store.damaged)

    def _check_usable(self) -> None:
        if self._closed:
            raise StoreError(f"the cache manager for {self.root} is closed")

    def now(self) -> float:
        return float(self.clock())

    # -- reading helpers (inside a transaction) -----------------------------------------

    def _row(self, record_id: str) -> RecordRow | None:
        found = self.store.rows(f"SELECT {RECORD_COLUMNS} FROM record WHERE id = ?", (record_id,))
        if not found:
            return None
        row = RecordRow(*found[0])
        row.mutable, row.retain = bool(row.mutable), bool(row.retain)
        row.deleted, row.pending_use = bool(row.deleted), bool(row.pending_use)
        return row

    def _live_row(self, record_id: str) -> RecordRow:
        row = self._row(record_id)
        if row is None or row.deleted:
            raise NotFoundError(f"{record_id}: not found")
        return row

    def _holders(self, record_id: str) -> list[HolderRow]:
        result = []
        for hid, pid, start, host, created, counts in self.store.rows(
            "SELECT id, pid, start, host, created_at, counts_use FROM holder WHERE record = ?",
            (record_id,),
        ):
            result.append(
                HolderRow(
                    hid,
                    record_id,
                    pid,
                    start,
                    host,
                    created,
                    bool(counts),
                    is_alive(pid, start, host),
                )
            )
        return result

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
            Holder.insert(
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

    # -- creating and getting -----------------------------------------------------------

    def new(
        self,
        parent: ImmutableRef | None = None,
        *,
        description: str = "",
        record_type: RecordType | str = RecordType.REGULAR,
        retain: bool = False,
    ) -> MutableRef:
        """A new mutable record on top of ``parent`` (finalized first)."""
        self._check_usable()
        kind = RecordType.parse(record_type)
        if not isinstance(description, str):
            raise InvalidError(f"invalid description {description!r}: expected a string")
        if parent is not None:
            if not isinstance(parent, ImmutableRef):
                raise InvalidError(f"invalid parent {parent!r}: expected an ImmutableRef")
            if parent._manager is not self and parent._manager.root != self.root:
                raise InvalidError(f"parent {parent.id} belongs to another store")
            parent.finalize()
        record_id = new_id()
        with self._lock:
            staged: Path | None = None
            final: Path | None = None
            try:
                with self.store.write():
                    # Staged inside the write lock: a reconcile in another process never
                    # sees this new-* directory half made.
                    staged = self.snapshots.stage()
                    crash_point("prepare:staged")
                    if parent is not None:
                        prow = self._live_row(parent.id)
                        if prow.mutable or prow.equal_mutable is not None:
                            raise InvalidError(f"parent {parent.id} is not a finalized record")
                    Record.insert(
                        id=record_id,
                        parent=parent.id if parent is not None else None,
                        mutable=True,
                        retain=bool(retain),
                        description=description,
                        record_type=kind.value,
                        created_at=self.now(),
                    ).execute()
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
        """A handle on a record; a free mutable is lazily committed (BuildKit's ``Get``)."""
        self._check_usable()
        record_id = validate_id(id)
        with self._lock, self.store.write():
            row = self._live_row(record_id)
            if not row.mutable:
                holder_id = self._add_holder(row.id, counts_use=True)
                return self._make_ref(ImmutableRef, row, holder_id)  # type: ignore[return-value]
            if self._live_holders(row.id):
                raise LockedError(row.id)
            partner = self._immutable_of(row.id)
            if partner is not None:
                if self._live_holders(partner.id):
                    raise LockedError(row.id)
                holder_id = self._add_holder(partner.id, counts_use=True)
                return self._make_ref(ImmutableRef, partner, holder_id)  # type: ignore[return-value]
            committed = self._insert_commit(row)
            holder_id = self._add_holder(committed.id, counts_use=True)
            return self._make_ref(ImmutableRef, committed, holder_id)  # type: ignore[return-value]

    def get_mutable(self, id: str) -> MutableRef:
        """The exclusive handle on a mutable record; drops a free equal immutable."""
        self._check_usable()
        record_id = validate_id(id)
        with self._lock, self.store.write():
            row = self._live_row(record_id)
            if not row.mutable:
                raise InvalidError(f"{record_id} is not mutable")
            if self._live_holders(row.id):
                raise LockedError(row.id)
            partner = self._immutable_of(row.id)
            if partner is not None:
                if self._live_holders(partner.id):
                    raise LockedError(row.id)
                self.store.execute("DELETE FROM holder WHERE record = ?", (partner.id,))
                self.store.execute("DELETE FROM record WHERE id = ?", (partner.id,))
            self.store.execute(
                "UPDATE record SET size = -1, pending_use = 0 WHERE id = ?", (row.id,)
            )
            holder_id = self._add_holder(row.id, counts_use=True)
            return self._make_ref(MutableRef, row, holder_id)  # type: ignore[return-value]

    def _insert_commit(self, mutable: RecordRow) -> RecordRow:
        committed_id = new_id()
        now = self.now()
        Record.insert(
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
            row = self._live_row(record_id)
            if row.equal_mutable is None:
                return
            mutable_id = row.equal_mutable
            self.snapshots.rename_layer(mutable_id, row.id)
            try:
                crash_point("finalize:renamed")
                self.store.execute("DELETE FROM holder WHERE record = ?", (mutable_id,))
                self.store.execute("DELETE FROM record WHERE id = ?", (mutable_id,))
                self.store.execute("UPDATE record SET equal_mutable = NULL WHERE id = ?", (row.id,))
            except BaseException:
                self.snapshots.rename_layer(row.id, mutable_id)
                raise
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
            row = self._row(ref.id)
            if row is None or row.deleted:
                return
            counts_use = bool(found and found[0][0])
            others = self._live_holders(row.id)
            if row.mutable:
                doomed = self._release_mutable(row, counts_use and bool(found))
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
        """``_tombstone``, undoing the renames if the enclosing write later fails (F3).

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
            row = self._row(record_id)
            if row is not None and row.equal_mutable is None:
                retired.append((record_id, self.snapshots.retire(record_id)))
            else:
                retired.append((record_id, None))
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
            lowers: list[Path] = []
            parent = row.parent
            seen = {row.id}
            while parent is not None and parent not in seen:
                seen.add(parent)
                lowers.append(self.snapshots.path(parent))
                prow = self._row(parent)
                parent = prow.parent if prow else None
        own = self.snapshots.path(row.layer_id)
        if isinstance(ref, MutableRef):
            return Mount(upper=own, lowers=tuple(lowers))
        return Mount(upper=None, lowers=(own, *lowers))

    def _size(self, ref: Ref) -> int:
        self._check_usable()
        with self._lock, self.store.read():
            row = self._live_row(ref.id)
        if row.mutable:
            return self.snapshots.measure(row.id).size
        if row.size >= 0:
            return row.size
        measured = self.snapshots.measure(row.layer_id)
        if measured.complete and not self.read_only:
            self.store_sizes({row.id: measured.size})
        return measured.size

    def force_release(self, holder_id: int) -> bool:
        """Drop one holder row, whoever owns it (the dashboard's force release).

        The record simply becomes free: no use is counted and nothing is removed.
        Returns whether a holder row was deleted.
        """
        self._check_usable()
        if isinstance(holder_id, bool) or not isinstance(holder_id, int):
            raise InvalidError(f"invalid holder id {holder_id!r}: expected an integer")
        with self._lock, self.store.write():
            return self.store.execute("DELETE FROM holder WHERE id = ?", (holder_id,)) > 0

    def store_sizes(self, sizes: dict[str, int]) -> None:
        """Cache measured sizes (never counts as a use)."""
        if not sizes or self.read_only:
            return
        try:
            with self._lock, self.store.write():
                self.store.db.execute_sql("SELECT 1")
                self.store.db.cursor().executemany(
                    "UPDATE record SET size = ? WHERE id = ? AND deleted = 0",
                    [(size, rid) for rid, size in sizes.items()],
                )
        except StoreError:
            pass  # only a cache: a full disk (F2) or a busy store must not fail a read

    # -- views --------------------------------------------------------------------------

    def state(self) -> StoreState:
        """A consistent picture of every record and holder."""
        self._check_usable()
        return load_state(self.store)

    def disk_usage(
        self, filters: Sequence[str] | str = (), *, age_limit: float | timedelta | None = None
    ) -> list[UsageInfo]:
        """One row per visible record, largest first (see core-api.md)."""
        self._check_usable()
        return diskusage.disk_usage(self, filters, age_limit=age_limit)

    def prune(
        self,
        *policies: PruneOptions,
        dry_run: bool = False,
        on_prune: Callable[[UsageInfo], None] | None = None,
    ) -> list[UsageInfo]:
        """Remove unused records by policy, children before parents (see core-api.md)."""
        self._check_usable()
        return prune.prune(self, policies or (PruneOptions(),), dry_run=dry_run, on_prune=on_prune)

    def gc(self, policies: Iterable[PruneOptions] | None = None) -> list[UsageInfo]:
        """Apply the given policies, or the default tiers modelled on BuildKit's."""
        self._check_usable()
        return prune.gc(self, policies)

    def doctor(self, *, fix: bool = False) -> list[reconcile.Finding]:
        """Check the store against the disk; with ``fix``, repair what is safe."""
        self._check_usable()
        return reconcile.doctor(self, fix=fix)
