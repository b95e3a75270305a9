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
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from cachetui.core import chains, diskusage, gcplan, opencheck, prune, reconcile
from cachetui.core.context import Clock, StoreContext
from cachetui.core.errors import InvalidError, NotFoundError, StoreError
from cachetui.core.ids import ID_PATTERN, validate_id
from cachetui.core.metadata import MetadataOperations
from cachetui.core.operations import RecordOperations
from cachetui.core.policy import DiskStat, default_gc_policies, disk_stat
from cachetui.core.records import RecordStates, alive_holders
from cachetui.core.recordstore import HolderRow, RecordStore
from cachetui.core.refs import ImmutableRef, MutableRef
from cachetui.core.snapshots import DirectorySnapshotter, check_own_directories, check_own_files
from cachetui.core.state import StoreState
from cachetui.core.store import Store
from cachetui.core.types import (
    CacheMount,
    GCResult,
    GCRunInfo,
    GCTotals,
    PruneOptions,
    RecordType,
    Sharing,
    TierResult,
    UsageInfo,
)

__all__ = ["CacheManager"]


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


def _size_limit(root: Path) -> int | None:
    """The most bytes a layer can take now: the larger of the space in use on the
    filesystems of the store's root and of ``snapshots/``. A layer's bytes are part of
    that space, so a stored size above it is garbage (or stale: a layer since emptied),
    and is measured again rather than trusted by a prune that frees space by it."""
    totals = []
    for where in (root, root / "snapshots"):
        try:
            st = os.statvfs(where)
        except OSError:
            continue
        totals.append((st.f_blocks - st.f_bfree) * st.f_frsize)
    return max(totals) if totals and max(totals) > 0 else None


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


class CacheManager:
    """The cache manager of one store root. Use ``CacheManager.open(root)``.

    It checks arguments and hands the work to the parts it is made of: the store's
    context (rows, layers, clock), the record operations (which the handles call too)
    and the label and cache-mount operations. It holds no lock of its own: the store's
    write transaction is the one lock, across threads and processes.
    """

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
        self._context = StoreContext(
            root, store, snapshots, clock=clock, is_shared=is_shared, id_factory=id_factory
        )
        self._closed = False
        self._ops = RecordOperations(self._context, self._check_usable)
        self._metadata = MetadataOperations(self._ops)
        self.open_findings: list[reconcile.Finding] = []

    @property
    def clock(self) -> Clock:
        return self._context.clock

    @property
    def is_shared(self) -> Callable[[str], bool] | None:
        return self._context.is_shared

    def now(self) -> float:
        """The clock's time, checked (a bad reading raises ``InvalidError``)."""
        return self._context.now()

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
        keep_picture: bool = False,
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
            repair: False for a look only (``du``, ``doctor`` without ``--fix``, a dry
                run): nothing is written at all (not a repair, not a measured size, not
                a schema upgrade: an older store is read as it is), and the write lock
                is never waited for.
            forget_missing: open even a store that looks unmounted (``doctor --fix
                --forget-missing``), so that its missing records can be dropped.
            keep_picture: the open's check reads every row (not only the tree's shape)
                and keeps them for the first ``records()``, which then reads nothing
                again unless something changed since (a screen about to show the whole
                store: 100,000 records open a few tenths of a second sooner).

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
            for inside in (cls._db_path(path, db_url), path / "snapshots"):
                # SQLite opens a file it may not write read-only without a word, and the
                # first change fails later: say it now, as for the root.
                if inside.exists() and not os.access(inside, os.W_OK):
                    raise StoreError(f"{inside} is not writable (open the store read-only)")
        elif not path.is_dir():
            raise NotFoundError(f"store root {path} does not exist")
        check_own_directories(path)
        db_path = cls._db_path(path, db_url)
        check_own_files(db_path)
        empty = _empty_metadata(db_path)
        layers = _layer_entries(path / "snapshots") if empty else []
        store = Store(db_path, read_only=read_only, in_memory=bool(layers), upgrade=repair)
        try:
            limit = _size_limit(path)
            if limit is not None:
                store.limit_sizes(limit)
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
                manager._context,
                repair=repair,
                forget_missing=forget_missing,
                keep_picture=keep_picture,
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
        records = RecordStore(store)
        seen = opencheck.inspect(records, directory)
        problems = seen.problems()
        if problems:
            store.damaged = problems
            return
        if forget_missing or seen.unmounted_message() is None:
            return
        # Another process's prune may have removed layers between the read and the
        # listing: look once more before calling the disk unmounted.
        message = opencheck.inspect(records, directory).unmounted_message()
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
            if not self.read_only:
                self._ops.drop_own_holders()
        except StoreError:
            pass  # the holders die with this process anyway
        finally:
            self._ops.holder_ids.clear()
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
        """Opened read-only, or opened for a look (``repair=False``), or degraded because
        the database failed its integrity check."""
        return self._context.read_only

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
        return self._ops.new(
            parent,
            description=description,
            record_type=record_type,
            retain=retain,
            labels=labels,
            cache_mount=cache_mount,
        )

    def get(self, id: str) -> ImmutableRef:
        """A handle on a record; a free mutable is lazily committed (BuildKit's ``Get``)."""
        return self._ops.get(id)

    def get_mutable(self, id: str) -> MutableRef:
        """The exclusive handle on a mutable record; drops a free equal immutable."""
        return self._ops.get_mutable(id)

    # -- labels and cache mounts --------------------------------------------------------

    def labels(self, record_id: str) -> dict[str, str]:
        """A record's labels."""
        self._check_usable()
        return self._metadata.labels(record_id)

    def set_labels(
        self, record_id: str, labels: Mapping[str, str | None], *, replace: bool = False
    ) -> dict[str, str]:
        """Add or change labels on a record (and its pair half); a None value removes
        that label; ``replace`` drops every label not given. Returns the labels now.

        Setting labels never counts as a use and needs no handle.
        """
        self._check_usable()
        return self._metadata.set_labels(record_id, labels, replace=replace)

    def get_cache_mount(
        self,
        cache_id: str,
        *,
        target: str = "",
        sharing: Sharing | str = Sharing.SHARED,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> MutableRef:
        """A handle on the cache mount ``cache_id``, acquired as BuildKit does for
        ``--mount=type=cache,id=<cache_id>,sharing=<sharing>`` (see ``metadata``).

        Raises:
            LockedError: ``locked`` and still held by another holder after ``timeout``.
        """
        self._check_usable()
        return self._metadata.get_cache_mount(
            cache_id,
            target=target,
            sharing=sharing,
            description=description,
            labels=labels,
            timeout=timeout,
        )

    # -- holders ------------------------------------------------------------------------

    def holders(self, record_id: str) -> list[HolderRow]:
        """Every holder of a record and of its pair half, with liveness (nothing reaped)."""
        return self._ops.holders(record_id)

    def layer_path(self, record_id: str) -> Path:
        """The directory holding a record's own bytes (a pending commit's is the mutable's)."""
        return self._ops.layer_path(record_id)

    def force_release(self, holder_id: int) -> bool:
        """Drop one holder row, whoever owns it (the dashboard's force release).

        The record simply becomes free: no use is counted and nothing is removed.
        Returns whether a holder row was deleted.
        """
        return self._ops.force_release(holder_id)

    def store_sizes(self, sizes: dict[str, int], apparent: dict[str, int] | None = None) -> None:
        """Cache measured sizes, and their apparent sizes when given (never a use, never
        waiting for the write lock: a read must not block behind another's write)."""
        self._context.store_sizes(sizes, apparent)

    # -- views --------------------------------------------------------------------------

    def state(self) -> StoreState:
        """A consistent picture of every record and holder."""
        self._check_usable()
        return self._context.state()

    def disk_usage(
        self, filters: Sequence[str] | str = (), *, age_limit: float | timedelta | None = None
    ) -> list[UsageInfo]:
        """One row per visible record, largest first (see ``docs/api.md``)."""
        self._check_usable()
        return diskusage.disk_usage(self._context, filters, age_limit=age_limit)

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
        refused: list[tuple[str, str]] | None = None,
    ) -> list[UsageInfo]:
        """Remove unused records by policy, children before parents (see ``docs/api.md``).

        ``ids`` (instead of policies) prunes exactly those records; the ones that stay
        carry their reason in ``records()[id].refusal``. ``recheck`` (an extension: the
        fleet's "used since you confirmed") is called with each chosen record inside the
        transaction that removes it; False keeps it. A record whose layer has a filesystem
        mounted in it stays, and the rest goes on: a real prune then raises
        ``PruneRefused`` (what went, and every record kept with the mount point); a dry
        run adds ``(id, reason)`` of each to ``refused`` when given (an extension).
        """
        self._check_usable()
        return prune.prune(
            self._context,
            policies if ids is not None else (policies or (PruneOptions(),)),
            dry_run=dry_run,
            on_prune=on_prune,
            recheck=recheck,
            ids=ids,
            refused=refused,
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
        return chains.plan_chain(self._context, ids, descendants=descendants)

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
        return chains.prune_chain(self._context, ids, descendants=descendants, on_prune=on_prune)

    def records(self) -> RecordStates:
        """One ``RecordState`` per visible record, by id: the usage row, who holds it,
        retain, pending commit, children, layer path, health and why prune would refuse
        it. Screens build rows, details and refusals from this one value. A read-only
        mapping whose values are built when first read (a screen reads the rows it shows)."""
        self._check_usable()
        return RecordStates(self._context)

    def alive_holders(self) -> frozenset[int]:
        """The holder ids whose process runs now (liveness re-checked on every call)."""
        self._check_usable()
        return alive_holders(self._context.records)

    def measure(self, record_id: str) -> int:
        """The bytes of a record's own layer measured now (``du -s``), caching nothing."""
        self._check_usable()
        validate_id(record_id)
        records = self._context.records
        with records.read():
            layer = records.live_record(record_id).layer_id
        return self.snapshots.measure(layer).size

    def gc(self, policies: Iterable[PruneOptions] | None = None) -> list[UsageInfo]:
        """Apply the given policies, or the default tiers modelled on BuildKit's."""
        self._check_usable()
        return prune.gc(self._context, policies)

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
            self._context,
            chosen,
            dry_run=dry_run,
            explain=explain,
            on_prune=on_prune,
            on_tier=on_tier,
            stop=stop,
            disk=disk,
        )

    def record_gc_run(self, run: GCRunInfo) -> None:
        """Append one GC run to the store's history, dropping the oldest beyond the
        newest 1000 in the same write (their sums stay in ``gc_totals``)."""
        self._check_usable()
        records = self._context.records
        with records.write():
            records.add_gc_run(run)

    def gc_history(self, limit: int | None = 20) -> list[GCRunInfo]:
        """The last ``limit`` GC runs (all that are kept with None), newest first. The
        history keeps the newest ``GC_RUNS_KEPT`` (1000) runs."""
        self._check_usable()
        return self._context.records.gc_runs(limit)

    def gc_totals(self) -> GCTotals:
        """Every GC run ever recorded, summed (those the history dropped too)."""
        self._check_usable()
        return self._context.records.gc_totals()

    def doctor(self, *, fix: bool = False, forget_missing: bool = False) -> list[reconcile.Finding]:
        """Check the store against the disk (changing nothing); with ``fix``, repair what
        is safe: directories no row names move to ``<root>/lost+found/``, records whose
        layer is missing (and their descendants) are forgotten, but not while the layers
        look unmounted unless ``forget_missing``. Nothing is ever deleted."""
        self._check_usable()
        return reconcile.doctor(
            self._context, self.open_findings, fix=fix, forget_missing=forget_missing
        )
