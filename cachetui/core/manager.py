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
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from cachetui.core import chains, diskusage, gcplan, opencheck, prune, reconcile
from cachetui.core.crashpoints import crash_point
from cachetui.core.errors import InvalidError, LockedError, NotFoundError, StoreError
from cachetui.core.ids import ID_PATTERN, new_id, validate_id
from cachetui.core.metadata import MetadataOperations, check_new_metadata, write_metadata
from cachetui.core.policy import DiskStat, default_gc_policies, disk_stat
from cachetui.core.processes import current_process
from cachetui.core.records import RecordState, alive_holders, record_states
from cachetui.core.refs import ImmutableRef, MutableRef
from cachetui.core.snapshots import DirectorySnapshotter, check_own_directories
from cachetui.core.state import StoreState, load_state
from cachetui.core.store import Store
from cachetui.core.types import (
    CacheMount,
    GCResult,
    GCRunInfo,
    PruneOptions,
    RecordType,
    TierResult,
    UsageInfo,
)

__all__ = ["CacheManager"]

Clock = Callable[[], float]


def _check_root(root: object) -> Path:
    if not isinstance(root, str | os.PathLike):
        raise InvalidError(f"invalid root {root!r}: expected a path")
    text = os.fspath(root)
    if isinstance(text, bytes) or not text or "\x00" in text:
        raise InvalidError(f"invalid root {root!r}: expected a non-empty path")
    path = Path(text)
    try:
        is_dir: bool | None = stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        is_dir = None  # created by open (a dangling symlink: mkdir reports it)
    except OSError as err:  # ENAMETOOLONG, ELOOP, ENOTDIR, EACCES on a parent, ...
        raise InvalidError(f"invalid root {text!r}: {os.strerror(err.errno or 0)}") from None
    if is_dir is False:
        raise InvalidError(f"invalid root {text!r}: it exists and is not a directory")
    return path


def _empty_metadata(db_path: Path) -> bool:
    """No metadata at all: the file is absent or empty, and no WAL holds any."""
    for candidate in (db_path, Path(f"{db_path}-wal")):
        try:
            if os.path.getsize(candidate) > 0:
                return False
        except OSError:
            continue
    return True


def _layer_entries(directory: Path) -> list[str]:
    """Layer-named directories under ``snapshots/`` (empty when it does not exist)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [name for name in names if ID_PATTERN.fullmatch(name)]


class CacheManager(MetadataOperations):
    """The cache manager of one store root. Use ``CacheManager.open(root)``."""

    def __init__(
        self,
        root: Path,
        store: Store,
        snapshots: DirectorySnapshotter,
        *,
        clock: Clock,
        is_shared: Callable[[str], bool] | None,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self.root = root
        self.store = store
        self.snapshots = snapshots
        self.clock = clock
        self.is_shared = is_shared
        self._lock = threading.RLock()
        self._closed = False
        self._my_holders: set[int] = set()
        self._id_factory = id_factory
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
        id_factory: Callable[[], str] | None = None,
        repair: bool = True,
        forget_missing: bool = False,
    ) -> CacheManager:
        """Open (creating if missing) the store at ``root`` and reconcile it with the disk.

        Opening never forgets a record (core-api.md, "Reopening after trouble"): a record
        whose layer is missing stays listed (health "missing"). A writable open only
        finishes what a crash left half done.

        Args:
            root: the store directory (``metadata.db`` and ``snapshots/`` inside).
            db_url: ``sqlite:///<path>`` to keep the metadata elsewhere.
            clock: returns Unix epoch seconds; every timestamp written comes from it.
            is_shared: BuildKit's PruneRefChecker; a record it reports, and its ancestors,
                are shared.
            read_only: never write (reconcile is skipped; writes raise ``StoreError``).
            id_factory: returns new record ids (tests and screenshots make them stable).
            repair: False for a look only (``du``, ``doctor`` without ``--fix``): nothing
                is finished or cleaned at open, no record, holder or snapshot byte
                changes, and the write lock is never waited for (a measured size is
                cached only when the lock is free).
            forget_missing: open even a store that looks unmounted (``doctor --fix
                --forget-missing``), so that its missing records can be dropped.

        Raises:
            InvalidError: a bad argument (a root that is a file, a malformed ``db_url``).
            StoreError: the metadata cannot be used (corrupt, newer schema, not writable),
                ``snapshots/`` is a symbolic link, or the layers look unmounted.
        """
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
        check_own_directories(path)
        db_path = cls._db_path(path, db_url)
        empty = _empty_metadata(db_path)
        layers = _layer_entries(path / "snapshots") if empty else []
        store = Store(db_path, read_only=read_only, in_memory=bool(layers))
        try:
            if layers:
                store.damaged = [
                    f"metadata {db_path} is empty or missing while {len(layers)} layer "
                    f"directories exist under {path / 'snapshots'}: opened read-only; "
                    "`cachetui doctor --rebuild` rebuilds the records from the layers"
                ]
            elif read_only or not repair or not (path / "snapshots").is_dir():
                cls._inspect(store, path / "snapshots", forget_missing=forget_missing)
            # else: the repair at open makes the same checks inside its write (one read)
            snapshots = DirectorySnapshotter(path, read_only=read_only or bool(layers))
            manager = cls(
                path,
                store,
                snapshots,
                clock=clock or time.time,
                is_shared=is_shared,
                id_factory=id_factory,
            )
            manager.open_findings = reconcile.at_open(
                manager, repair=repair, forget_missing=forget_missing
            )
        except BaseException:
            store.close()
            raise
        return manager

    @staticmethod
    def _inspect(store: Store, directory: Path, *, forget_missing: bool) -> None:
        """The checks before anything trusts the rows: damage makes the store degraded
        (read-only), a store that looks unmounted is refused."""
        problems = store.integrity_problems(full=False)
        if problems:
            store.damaged = problems
            return
        seen = opencheck.inspect(store, directory)
        problems = seen.problems()
        if problems:
            store.damaged = problems
            return
        if forget_missing or seen.unmounted_message() is None:
            return
        # Another process's prune may have removed layers between the read and the
        # listing: look once more before calling the disk unmounted.
        message = opencheck.inspect(store, directory).unmounted_message()
        if message is not None:
            raise StoreError(message)

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
                # it, a prune or a force-release removed it) may now be another's.
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
        """A new mutable record on top of ``parent`` (finalized first).

        Extensions beyond BuildKit's options: ``labels`` (``key=value`` pairs) and, for an
        ``exec.cachemount`` record, ``cache_mount`` (its cache id, target and sharing).
        """
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
            if parent._manager is not self and parent._manager.root != self.root:
                raise InvalidError(f"parent {parent.id} belongs to another store")
            parent.finalize()
        record_id = self._new_id()
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
                        self._require_layers(prow)
                    self.store.Record.insert(
                        id=record_id,
                        parent=parent.id if parent is not None else None,
                        mutable=True,
                        retain=bool(retain),
                        description=description,
                        record_type=kind.value,
                        created_at=self.now(),
                    ).execute()
                    write_metadata(self.store, record_id, label_map, identity)
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
            row = self._heal(self._live_row(record_id))
            if row is None:
                raise NotFoundError(f"{record_id}: not found")
            self._require_layers(row)
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
            row = self._heal(self._live_row(record_id))
            if row is None or not row.mutable:
                if row is not None and row.id != record_id:
                    raise NotFoundError(f"{record_id}: finalized as {row.id}")
                raise InvalidError(f"{record_id} is not mutable")
            self._require_layers(row)
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

    def _new_id(self) -> str:
        """A fresh record id: from ``id_factory`` when one was injected (deterministic
        tests and screenshots), validated like any id from outside."""
        factory = self._id_factory or new_id
        return validate_id(factory(), what="generated record id")

    # -- views --------------------------------------------------------------------------

    def state(self) -> StoreState:
        """A consistent picture of every record and holder."""
        self._check_usable()
        return load_state(self.store)

    def disk_usage(
        self, filters: Sequence[str] | str = (), *, age_limit: float | timedelta | None = None
    ) -> list[UsageInfo]:
        """One row per visible record, largest first (see ``docs/api.md``)."""
        self._check_usable()
        return diskusage.disk_usage(self, filters, age_limit=age_limit)

    def totals(self, rows: Sequence[UsageInfo] | None = None) -> diskusage.Totals:
        """The totals block over ``rows`` (default: all of disk usage), with the free and
        total bytes of the filesystem holding the store."""
        self._check_usable()
        return diskusage.totals(self.disk_usage() if rows is None else rows, disk_stat(self.root))

    def prune(
        self,
        *policies: PruneOptions,
        dry_run: bool = False,
        on_prune: Callable[[UsageInfo], None] | None = None,
        ids: Iterable[str] | None = None,
        recheck: prune.Recheck | None = None,
    ) -> list[UsageInfo]:
        """Remove unused records by policy, children before parents (see ``docs/api.md``).

        ``ids`` (instead of policies) prunes exactly those records; the ones that stay
        carry their reason in ``records()[id].refusal``. ``recheck`` (an extension: the
        fleet's "used since you confirmed") is called with each chosen record inside the
        transaction that removes it; False keeps it.
        """
        self._check_usable()
        return prune.prune(
            self,
            policies if ids is not None else (policies or (PruneOptions(),)),
            dry_run=dry_run,
            on_prune=on_prune,
            recheck=recheck,
            ids=ids,
        )

    def plan_chain(self, ids: Iterable[str], *, descendants: bool = True) -> chains.ChainPlan:
        """Plan pruning ``ids`` as one chain, changing nothing (an extension).

        With ``descendants`` (the default) every record below them belongs to the chain
        too; without it the chain is exactly ``ids``, and a record with a child outside
        them stops it. The plan lists the records leaves first (prune's own order), what
        would go and the bytes really freed (shared records free nothing), or the
        records that stop it and why (a live holder inside, a child left out).
        """
        self._check_usable()
        return chains.plan_chain(self, ids, descendants=descendants)

    def prune_chain(
        self,
        ids: Iterable[str],
        *,
        descendants: bool = True,
        on_prune: Callable[[UsageInfo], None] | None = None,
    ) -> list[UsageInfo]:
        """Prune ``ids`` (and with ``descendants`` everything below them) as one chain,
        leaves first; returns what was removed, in order (an extension).

        Planned first (``plan_chain``): a record inside held by a live process raises
        ``LockedError``, a child left out ``InvalidError``, and nothing is removed. A
        holder that appears while it runs still wins: that record and the records
        above it stay (they are then missing from the result).
        """
        self._check_usable()
        return chains.prune_chain(self, ids, descendants=descendants, on_prune=on_prune)

    def records(self) -> dict[str, RecordState]:
        """One ``RecordState`` per visible record, by id: the usage row, who holds it,
        retain, pending commit, children, layer path, health and why prune would refuse
        it. Screens build rows, details and refusals from this one value."""
        self._check_usable()
        return record_states(self)

    def alive_holders(self) -> frozenset[int]:
        """The holder ids whose process runs now (liveness re-checked on every call)."""
        self._check_usable()
        with self._lock:
            return alive_holders(self)

    def measure(self, record_id: str) -> int:
        """The bytes of a record's own layer measured now (``du -s``), caching nothing."""
        self._check_usable()
        validate_id(record_id)
        with self._lock, self.store.read():
            layer = self._live_row(record_id).layer_id
        return self.snapshots.measure(layer).size

    def gc(self, policies: Iterable[PruneOptions] | None = None) -> list[UsageInfo]:
        """Apply the given policies, or the default tiers modelled on BuildKit's."""
        self._check_usable()
        return prune.gc(self, policies)

    def gc_plan(
        self,
        policies: Iterable[PruneOptions] | None = None,
        *,
        dry_run: bool = True,
        explain: bool = True,
        on_prune: Callable[[UsageInfo], None] | None = None,
        on_tier: Callable[[TierResult], None] | None = None,
        stop: Callable[[], bool] | None = None,
        disk: DiskStat | None = None,
    ) -> GCResult:
        """Apply a GC list tier by tier (a dry run unless ``dry_run=False``), with the
        reason every remaining record stays after each tier (see ``gcplan.run_gc``).
        ``policies=None`` is the default list for the disk holding the store; ``disk``
        stands in for that disk (its size and free space)."""
        self._check_usable()
        chosen = (
            list(policies) if policies is not None else default_gc_policies(disk_stat(self.root))
        )
        return gcplan.run_gc(
            self,
            chosen,
            dry_run=dry_run,
            explain=explain,
            on_prune=on_prune,
            on_tier=on_tier,
            stop=stop,
            disk=disk,
        )

    def record_gc_run(self, run: GCRunInfo) -> None:
        """Append one GC run to the store's history."""
        self._check_usable()
        model = self.store.GCRun
        with self.store.write():
            model.create(
                started_at=run.started_at,
                duration=run.duration,
                policy=run.policy,
                trigger=run.trigger,
                tiers=run.tiers,
                records=run.records,
                bytes=run.bytes,
                interrupted=run.interrupted,
                pid=run.pid,
                host=run.host,
            )

    def gc_history(self, limit: int | None = 20) -> list[GCRunInfo]:
        """The last ``limit`` GC runs (all with None), newest first."""
        self._check_usable()
        if not self.store.has_table("gc_run"):
            return []  # an older store opened read-only: no run was ever recorded
        sql = (
            "SELECT started_at, duration, policy, trigger, tiers, records, bytes, "
            "interrupted, pid, host FROM gc_run ORDER BY started_at DESC, id DESC"
        )
        params: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (limit,)
        with self.store.read():
            rows = self.store.rows(sql, params)
        return [
            GCRunInfo(
                started_at=r[0],
                duration=r[1],
                policy=r[2],
                trigger=r[3],
                tiers=r[4],
                records=r[5],
                bytes=r[6],
                interrupted=bool(r[7]),
                pid=r[8],
                host=r[9],
            )
            for r in rows
        ]

    def doctor(self, *, fix: bool = False, forget_missing: bool = False) -> list[reconcile.Finding]:
        """Check the store against the disk (changing nothing); with ``fix``, repair what
        is safe: directories no row names move to ``<root>/lost+found/``, records whose
        layer is missing (and their descendants) are forgotten, but not while the layers
        look unmounted unless ``forget_missing``. Nothing is ever deleted."""
        self._check_usable()
        return reconcile.doctor(self, fix=fix, forget_missing=forget_missing)
