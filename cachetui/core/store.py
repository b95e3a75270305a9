"""The metadata store: Peewee models, the SQLite connection and its transactions.

One ``Store`` per open manager. SQLite runs in WAL mode with a busy timeout; every
transaction is ``BEGIN IMMEDIATE`` so that reading a record and changing it can never race
another process. The store owns the schema version and refuses a newer one.

Rows are read with plain tuples on the hot paths (disk usage over 100,000 records) and
written through the models.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import peewee
from playhouse.sqlite_ext import AutoIncrementField

from cachetui.core import reserve
from cachetui.core.crashpoints import crash_point
from cachetui.core.errors import StoreError
from cachetui.core.writelock import WaitingSqliteDatabase

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "GCRun", "Store", "data_version", "open_version_reader"]

SCHEMA_VERSION = 4
"""1: records, holders, settings. 2: labels, cache mounts, apparent sizes. 3: ``gc_run``
(one row per GC run). 4: the ``record_usage`` index (disk usage's order and columns)."""
BUSY_TIMEOUT_MS = 60_000

_PRAGMAS = {
    # busy_timeout first: switching to WAL takes a lock another opener may hold.
    "busy_timeout": BUSY_TIMEOUT_MS,
    "journal_mode": "wal",
    # WAL + NORMAL is consistent across application crashes; a power loss may roll back
    # the last commits, which reconcile treats as "directory without a row" (reported).
    "synchronous": "normal",
    "foreign_keys": 0,
}


class _Base(peewee.Model):
    class Meta:
        legacy_table_names = False


_M = TypeVar("_M", bound=_Base)


class Record(_Base):
    """One cache record: a mutable or immutable layer, or the immutable half of a pair."""

    id = peewee.CharField(primary_key=True, max_length=25)
    parent = peewee.CharField(null=True, index=True, max_length=25)
    mutable = peewee.BooleanField()
    # On an immutable made by a lazy commit: the mutable record whose layer holds the bytes.
    equal_mutable = peewee.CharField(null=True, index=True, max_length=25)
    retain = peewee.BooleanField(default=False)
    description = peewee.TextField(default="")
    record_type = peewee.CharField(default="regular")
    created_at = peewee.FloatField()
    last_used_at = peewee.FloatField(null=True)
    usage_count = peewee.IntegerField(default=0)
    size = peewee.IntegerField(default=-1)
    deleted = peewee.BooleanField(default=False)
    # On a mutable: count one use when its equal immutable's last handle goes.
    pending_use = peewee.BooleanField(default=False)
    # The sum of the files' lengths, measured with ``size`` (valid while size >= 0).
    apparent_size = peewee.IntegerField(default=-1)


class RecordLabel(_Base):
    """One ``key=value`` label of a record (few records have any: a table of its own)."""

    record = peewee.CharField(max_length=25)
    key = peewee.TextField()
    value = peewee.TextField()

    class Meta:
        primary_key = peewee.CompositeKey("record", "key")


class CacheMountRow(_Base):
    """The identity of an ``exec.cachemount`` record: cache id, target, sharing mode."""

    record = peewee.CharField(primary_key=True, max_length=25)
    cache_id = peewee.TextField(index=True)
    target = peewee.TextField(default="")
    sharing = peewee.CharField(default="shared")

    class Meta:
        table_name = "cache_mount"


class Holder(_Base):
    """One handle on a record, owned by a process (pid, start token, host)."""

    # AUTOINCREMENT: a holder id is never handed out twice, so a stale handle (its row
    # force-released or reaped) can never match the row of whoever holds the record now.
    id = AutoIncrementField()
    record = peewee.CharField(index=True, max_length=25)
    pid = peewee.IntegerField()
    start = peewee.CharField()
    host = peewee.CharField()
    created_at = peewee.FloatField()
    counts_use = peewee.BooleanField(default=True)


class GCRun(_Base):
    """One GC run: when, by which list, what it removed, how long it took (``gc --history``)."""

    id = AutoIncrementField()
    started_at = peewee.FloatField(index=True)
    duration = peewee.FloatField()
    policy = peewee.TextField()  # where the list came from: a file path or "default"
    trigger = peewee.CharField(default="manual")  # manual, interval, low-space
    tiers = peewee.IntegerField(default=0)
    records = peewee.IntegerField(default=0)
    bytes = peewee.IntegerField(default=0)
    interrupted = peewee.BooleanField(default=False)
    pid = peewee.IntegerField(default=0)
    host = peewee.CharField(default="")


class Setting(_Base):
    """Store-wide values: the schema version."""

    key = peewee.CharField(primary_key=True)
    value = peewee.TextField()


def _bound(model: type[_M], database: peewee.SqliteDatabase) -> type[_M]:
    """A subclass of ``model`` bound to one database.

    Peewee binds models per class: ``Model.bind``/``bind_ctx`` would re-point the shared
    classes for the whole process, so two stores used from two threads would write into
    each other's database. Each store gets its own bound classes instead.
    """
    meta = type("Meta", (), {"database": database, "table_name": model._meta.table_name})
    return type(model.__name__, (model,), {"Meta": meta, "__module__": __name__})


RECORD_COLUMNS = (
    "id, parent, mutable, equal_mutable, retain, description, record_type, "
    "created_at, last_used_at, usage_count, size, deleted, pending_use, apparent_size"
)
#: The same columns read from a version 1 store opened read-only (never upgraded).
_RECORD_COLUMNS_V1 = RECORD_COLUMNS.replace("apparent_size", "-1")


def text_of(column: str) -> str:
    """``column`` as text whatever is stored: in damaged metadata a blob or a number
    where an id belongs reads as its SQL literal (``X'00FF'``, ``42``), which names no
    record, so the listing of a damaged store shows it instead of failing on it."""
    return f"CASE WHEN typeof({column}) IN ('text', 'null') THEN {column} ELSE quote({column}) END"


#: The id columns at the head of ``RECORD_COLUMNS`` and disk usage's row.
_ID_HEAD = "id, parent, mutable, equal_mutable, "
_USAGE_HEAD = "SELECT id, mutable, size, parent, "


def checked_size(limit: int) -> str:
    """The ``size`` column as every read takes it: a stored size is trusted only when it
    is a non-negative number no larger than ``limit`` (what the disks holding the store
    could hold), else it reads as -1, "unknown", and is measured again. A fraction is
    cut to whole bytes. Negative integers are already "unknown" and pass as they are.

    Every value turned into -1 sorts at an end of ``ORDER BY size DESC`` (text, blobs
    and numbers over ``limit`` first, NULL and negatives last), so a reader of rows in
    that order finds them by looking at the first and the last row."""
    # one comparison and a cast per row: as fast as reading the column (measured on
    # 100,000 rows); text and blobs compare above every number, NULL compares to nothing
    return f"CASE WHEN size <= {int(limit)} THEN CAST(size AS INTEGER) ELSE -1 END"


def _create_v1(store: Store) -> None:
    """Version 1 (the first landing): records, holders, settings."""
    store.db.create_tables([store.Record, store.Holder, store.Setting], safe=True)


#: Record metadata kept in side tables follows its record: a lazy commit's immutable
#: starts with its mutable's labels and cache-mount identity (both halves describe the
#: same bytes), and deleting a record row, on whatever path, deletes its metadata.
_METADATA_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS record_metadata_copied AFTER INSERT ON record
    WHEN NEW.equal_mutable IS NOT NULL BEGIN
        INSERT OR IGNORE INTO record_label (record, key, value)
            SELECT NEW.id, key, value FROM record_label WHERE record = NEW.equal_mutable;
        INSERT OR IGNORE INTO cache_mount (record, cache_id, target, sharing)
            SELECT NEW.id, cache_id, target, sharing FROM cache_mount
            WHERE record = NEW.equal_mutable;
    END""",
    """CREATE TRIGGER IF NOT EXISTS record_metadata_dropped AFTER DELETE ON record BEGIN
        DELETE FROM record_label WHERE record = OLD.id;
        DELETE FROM cache_mount WHERE record = OLD.id;
    END""",
)


def _add_labels_cache_mounts_apparent(store: Store) -> None:
    """Version 2: labels, cache-mount identity, and the apparent size beside the size."""
    db = store.db
    columns = {column.name for column in db.get_columns("record")}
    if "apparent_size" not in columns:  # a store made fresh has it from the model
        db.execute_sql("ALTER TABLE record ADD COLUMN apparent_size INTEGER NOT NULL DEFAULT -1")
    db.create_tables([store.RecordLabel, store.CacheMountRow], safe=True)
    for trigger in _METADATA_TRIGGERS:
        db.execute_sql(trigger)


def _add_gc_runs(store: Store) -> None:
    """Version 3: the ``gc_run`` history table (added; nothing else changes)."""
    store.db.create_tables([store.GCRun], safe=True)


#: Disk usage reads every live record largest first (``RecordStore.usage_rows``). This
#: index holds those rows in that order with every column the read takes (``deleted``
#: too, or SQLite would visit the table for it), so the read walks the index once
#: instead of sorting 100,000 rows (a third of the read's time). Partial (live rows
#: only): the full-table reads that take tombstones too never pick it. The price: each
#: write of a live row also writes its entry (10-20 us), and the file grows by about 70%.
_USAGE_INDEX = (
    "CREATE INDEX IF NOT EXISTS record_usage ON record (size DESC, id, mutable, parent, "
    "created_at, last_used_at, usage_count, description, record_type, apparent_size, "
    "deleted) WHERE deleted = 0"
)


def _add_usage_index(store: Store) -> None:
    """Version 4: the ``record_usage`` index (nothing else changes)."""
    store.db.execute_sql(_USAGE_INDEX)


#: (version reached, step), in order. A step takes the schema from the version before it
#: to its own, in place, keeping every row; the steps a store needs run in one transaction
#: at open, so a crash leaves it at the old version, never half-upgraded. Add a step (and
#: bump ``SCHEMA_VERSION``) for every change of a table.
MIGRATIONS: tuple[tuple[int, Callable[[Store], None]], ...] = (
    (1, _create_v1),
    (2, _add_labels_cache_mounts_apparent),
    (3, _add_gc_runs),
    (4, _add_usage_index),
)


def _translate(err: Exception, path: str) -> StoreError:
    text = str(err)
    if "locked" in text or "busy" in text:
        return StoreError(f"metadata store {path} is busy: {text}")
    if "readonly" in text or "read-only" in text:
        return StoreError(f"metadata store {path} is read-only: {text}")
    if "disk is full" in text or ("disk I/O" in text and reserve.is_low(path)):
        return StoreError(reserve.disk_full_message(path, text))
    if "disk I/O" in text:
        return StoreError(f"metadata store {path}: {text}")
    hint = ""
    if "malformed" in text or "not a database" in text:
        hint = "; `cachetui doctor --rebuild` rebuilds it from the layers on disk"
    return StoreError(f"metadata store {path} cannot be used: {text}{hint}")


class Store:
    """The SQLite database of one cache root, safe across threads, forks and processes."""

    def __init__(
        self,
        path: Path | str,
        *,
        read_only: bool = False,
        in_memory: bool = False,
        upgrade: bool = True,
    ) -> None:
        self.path = str(path)
        self.read_only = read_only
        #: False for a look only (``du``, ``doctor``, a dry run): nothing is written, not
        #: a measured size, not the disk-full reserve, and not a schema upgrade (a look
        #: must never make a store that an older cachetui can no longer open). The
        #: connection stays a writable one so that a look waits for no writer.
        self.upgrade = upgrade
        #: An empty schema in memory instead of the file: how a store whose metadata is
        #: empty or absent while layers exist is opened (degraded), so the file is never
        #: given a fresh schema that would make every layer look unknown.
        self.in_memory = in_memory
        self._pid = os.getpid()
        #: The one lock in the process: the threads share one SQLite connection, whose
        #: transaction is not per thread, so ``write``/``read`` take this lock around it
        #: (SQLite's own write lock then orders the processes). Reentrant: a write may
        #: read inside itself. Nothing above the store takes a lock of its own.
        self._lock = threading.RLock()
        self._rollback_hooks: list[Callable[[], None]] = []
        #: What the manager found wrong with the metadata at open (integrity check
        #: messages, rows inconsistent with each other, an empty file while layers
        #: exist): every write is then refused until ``doctor --rebuild``.
        self._damaged: list[str] = []
        #: Whether reads take the id columns as text whatever is stored (damaged).
        self.ids_as_text = False
        self.schema_version = 0
        self._tolerant = False
        #: The record columns to select: an older store opened read-only lacks some.
        self.record_columns = RECORD_COLUMNS
        #: The ``size`` column as reads select it (``limit_sizes``), and the condition
        #: that finds the rows whose size is unknown (to measure them).
        self.size_column = "size"
        self.unknown_size = "size < 0"
        #: The largest size a row may claim (``limit_sizes``), None when not limited.
        self.size_limit: int | None = None
        #: Whether the label and cache-mount tables exist (not in an older read-only store).
        self.has_metadata_tables = True
        self._db = self._connect()
        self._bind_models()
        try:
            self._check_schema()
        except BaseException:
            self._db.close()  # a refused store (a newer schema) keeps no connection open
            raise
        if not upgrade:
            self.read_only = True
        if not self.read_only:
            reserve.ensure(self.path)

    # -- connection -------------------------------------------------------------------

    def _connect(self) -> peewee.SqliteDatabase:
        try:
            return self._connect_once(immutable=False)
        except StoreError as err:
            if reserve.is_low(self.path):
                # A full disk, not a damaged file: SQLite could not create its WAL
                # index. The space set aside for this moment makes room to open (and
                # so to prune).
                if not self.read_only and reserve.release(self.path):
                    try:
                        return self._connect_once(immutable=False)
                    except StoreError:
                        pass
                if self.read_only and not os.path.exists(f"{self.path}-wal"):
                    return self._connect_once(immutable=True)  # the file is the whole truth
                detail = str(err.__cause__ or err)  # SQLite's words, not "unreadable"
                raise StoreError(reserve.disk_full_message(self.path, detail)) from err
            # A WAL database on read-only media cannot create its -shm file. When no
            # -wal is left (a clean close), the file alone is the whole truth: read it as
            # immutable. With a -wal present, the error stands (immutable would lose it).
            if not self.read_only or os.path.exists(f"{self.path}-wal"):
                raise
            if not os.path.exists(self.path) or os.access(os.path.dirname(self.path), os.W_OK):
                raise
            return self._connect_once(immutable=True)

    def _connect_once(self, *, immutable: bool) -> peewee.SqliteDatabase:
        if self.in_memory:
            database = peewee.SqliteDatabase(
                ":memory:", lock_type="IMMEDIATE", check_same_thread=False
            )
        elif self.read_only:
            flags = "mode=ro&immutable=1" if immutable else "mode=ro"
            database = peewee.SqliteDatabase(
                f"file:{quote(os.path.abspath(self.path))}?{flags}",
                uri=True,
                pragmas={"busy_timeout": BUSY_TIMEOUT_MS},
                lock_type="IMMEDIATE",
                check_same_thread=False,
            )
        else:
            database = WaitingSqliteDatabase(
                self.path,
                pragmas=_PRAGMAS,
                lock_type="IMMEDIATE",
                check_same_thread=False,
                busy_timeout_ms=BUSY_TIMEOUT_MS,
            )
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                database.connect(reuse_if_open=True)
                database.execute_sql("SELECT count(*) FROM sqlite_master").fetchone()
                return database
            except (peewee.DatabaseError, sqlite3.DatabaseError) as err:
                database.close()
                # SQLite answers "locked" without calling the busy handler while another
                # process opens or closes the WAL (its last close checkpoints and removes
                # it): that is a moment to wait out, not a damaged store.
                if "database is locked" in str(err) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                hint = ""
                if "not a database" in str(err) or "malformed" in str(err):
                    hint = "; `cachetui doctor --rebuild` rebuilds it from the layers on disk"
                raise StoreError(f"metadata store {self.path} is unreadable: {err}{hint}") from err

    @property
    def db(self) -> peewee.SqliteDatabase:
        """The connection, reopened in a forked child (never reuse a parent's connection)."""
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._lock = threading.RLock()
            self._db = self._connect()
            self._bind_models()
        return self._db

    def _bind_models(self) -> None:
        self.Record = _bound(Record, self._db)
        self.Holder = _bound(Holder, self._db)
        self.Setting = _bound(Setting, self._db)
        self.RecordLabel = _bound(RecordLabel, self._db)
        self.CacheMountRow = _bound(CacheMountRow, self._db)
        self.GCRun = _bound(GCRun, self._db)

    def close(self) -> None:
        if os.getpid() == self._pid and not self._db.is_closed():
            self._db.close()

    def _check_schema(self) -> None:
        db, setting = self.db, self.Setting
        try:
            version = 0
            if "setting" in set(db.get_tables()):
                row = setting.get_or_none(setting.key == "schema_version")
                version = int(row.value) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"metadata store {self.path} has schema version {version}, newer "
                    f"than this cachetui understands ({SCHEMA_VERSION}); upgrade cachetui"
                )
            self.schema_version = version
            if version == SCHEMA_VERSION:
                return
            looking = self.read_only or (not self.upgrade and version >= 1)
            if looking and not self.in_memory:
                if version >= 1:
                    # A read never upgrades: an older store reads as it is, and what it
                    # lacks (labels, cache mounts, apparent sizes, an index) reads as
                    # empty or slower.
                    self._read_older(version)
                    return
                raise StoreError(f"metadata store {self.path} is not initialised (read-only)")
            self._migrate(version)
            self.schema_version = SCHEMA_VERSION
        except (peewee.DatabaseError, sqlite3.DatabaseError, ValueError) as err:
            raise _translate(err, self.path) from err

    def limit_sizes(self, limit: int) -> None:
        """Read a stored size larger than ``limit``, or that is not a number, as unknown
        (see ``checked_size``): garbage there must never be trusted (a prune would free
        far more than asked) nor crash a reader."""
        limit = int(limit)
        self.size_limit = limit
        self.size_column = checked_size(limit)
        self.record_columns = self.record_columns.replace(", size, ", f", {self.size_column}, ", 1)
        # index ranges only: text and blobs sort above every number, NULL below
        self.unknown_size = f"(size < 0 OR size > {limit} OR size IS NULL)"

    def _read_older(self, version: int) -> None:
        if version < 2:
            self.record_columns = _RECORD_COLUMNS_V1
            self.has_metadata_tables = False

    def _migrate(self, found: int) -> None:
        """Run every step above ``found`` in one transaction: all of them, or none."""
        db = self.db
        with db.atomic():
            for version, step in MIGRATIONS:
                if version <= found:
                    continue
                step(self)
                crash_point("migrate:after_ddl")
                self.Setting.replace(key="schema_version", value=str(version)).execute()

    def has_table(self, name: str) -> bool:
        """Whether the table exists (an older store opened read-only may lack newer ones)."""
        return name in set(self.db.get_tables())

    # -- transactions -----------------------------------------------------------------

    def damage_message(self) -> str | None:
        """``metadata store <path> is damaged (<first problem>)``, or None when it is not."""
        if not self.damaged:
            return None
        first = self.damaged[0].splitlines()[-1][:200]
        return f"metadata store {self.path} is damaged ({first})"

    @contextmanager
    def write(self, *, wait: bool = True) -> Iterator[peewee.SqliteDatabase]:
        """An ``IMMEDIATE`` transaction, models bound; SQLite errors become ``StoreError``.

        Waiting for another process's write lock is announced after a second and ends on
        Ctrl-C (``writelock``); with ``wait=False`` a held lock is ``StoreError`` at once.
        """
        if self.read_only:
            raise StoreError(f"metadata store {self.path} is open read-only")
        damage = self.damage_message()
        if damage is not None:
            raise StoreError(f"{damage}: writes are refused; run doctor")
        with self._lock:
            db = self.db
            outer, self._rollback_hooks = self._rollback_hooks, []
            waiting = db if isinstance(db, WaitingSqliteDatabase) else None
            try:
                if waiting is not None and not wait:
                    waiting.wait = False
                with db.atomic():
                    if waiting is not None:
                        waiting.wait = True
                    yield db
            except BaseException as exc:
                if waiting is not None:
                    waiting.wait = True
                hooks, self._rollback_hooks = self._rollback_hooks, outer
                for hook in reversed(hooks):
                    hook()
                if isinstance(exc, peewee.DatabaseError | sqlite3.DatabaseError):
                    # SQLITE_FULL (and friends) roll the transaction back themselves; the
                    # ROLLBACK that follows fails: report the real error instead
                    # (the disk is full, not "no transaction").
                    cause: BaseException = exc
                    while "no transaction is active" in str(cause) and isinstance(
                        cause.__context__, peewee.DatabaseError | sqlite3.DatabaseError
                    ):
                        cause = cause.__context__
                    raise _translate(cause, self.path) from exc  # type: ignore[arg-type]
                raise
            self._rollback_hooks = outer

    def on_rollback(self, hook: Callable[[], None]) -> None:
        """Inside ``write``: call ``hook`` if the transaction fails (COMMIT included)."""
        self._rollback_hooks.append(hook)

    @contextmanager
    def read(self) -> Iterator[peewee.SqliteDatabase]:
        """A consistent read (a deferred transaction: one WAL snapshot)."""
        with self._lock:
            db = self.db
            try:
                with db.atomic("DEFERRED"):
                    yield db
            except (peewee.DatabaseError, sqlite3.DatabaseError) as err:
                raise _translate(err, self.path) from err

    # SQLite errors never reach callers raw (a deleted -wal, a full disk): each of these
    # turns them into ``StoreError`` naming the store, also outside ``read``/``write``.

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a query inside the current transaction and return plain tuples.

        Text that is not UTF-8 can only be damage (random bytes over the rows): the
        store goes degraded (read-only) and reads it with replacement characters, so
        what is left can still be listed and ``doctor --rebuild`` can be run.
        """
        try:
            return self.db.execute_sql(sql, params).fetchall()
        except (peewee.OperationalError, sqlite3.OperationalError) as err:
            if "decode" not in str(err) or self._tolerant:
                raise _translate(err, self.path) from err
            self._tolerate_bad_text(str(err))
            return self.rows(sql, params)
        except (peewee.DatabaseError, sqlite3.DatabaseError) as err:
            raise _translate(err, self.path) from err

    @property
    def damaged(self) -> list[str]:
        """What was found wrong with the metadata (see ``__init__``)."""
        return self._damaged

    @damaged.setter
    def damaged(self, problems: list[str]) -> None:
        self._damaged = problems
        if problems:
            self._read_ids_as_text()

    def _read_ids_as_text(self) -> None:
        """Damaged rows may hold a blob or a number where an id belongs: from now on
        reads take those columns as text (one ``CASE`` each, only for a damaged store)."""
        if self.ids_as_text or not self.record_columns.startswith(_ID_HEAD):
            return
        self.ids_as_text = True
        head = f"{text_of('id')}, {text_of('parent')}, mutable, {text_of('equal_mutable')}, "
        self.record_columns = head + self.record_columns[len(_ID_HEAD) :]

    def usage_head(self) -> str:
        """The head of disk usage's row select, ids as text when damaged."""
        if not self.ids_as_text:
            return _USAGE_HEAD
        return f"SELECT {text_of('id')}, mutable, size, {text_of('parent')}, "

    def _tolerate_bad_text(self, problem: str) -> None:
        self._tolerant = True
        self.damaged = [*self.damaged, f"text that is not UTF-8 in the metadata ({problem})"]
        self.db.connection().text_factory = lambda raw: raw.decode("utf-8", "replace")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run a statement inside the current transaction; returns the rows changed."""
        try:
            return self.db.execute_sql(sql, params).rowcount
        except (peewee.DatabaseError, sqlite3.DatabaseError) as err:
            raise _translate(err, self.path) from err

    def integrity_problems(self, *, full: bool = True) -> list[str]:
        """SQLite's check messages; empty when the database is well-formed.

        ``full`` runs ``PRAGMA integrity_check``, which also compares every index with its
        table: one flipped byte in a stored parent id passes ``quick_check`` but not this.
        Run before any repair. A database too damaged to run the check is one message.
        """
        pragma = "integrity_check" if full else "quick_check"
        try:
            with self._lock:
                rows = self.db.execute_sql(f"PRAGMA {pragma}(100)").fetchall()
        except (peewee.DatabaseError, sqlite3.DatabaseError) as err:
            return [f"{pragma} failed: {err}"]
        messages = [str(row[0]) for row in rows]
        return [] if messages == ["ok"] else messages


# -- watching for other connections' commits ---------------------------------------------


def open_version_reader(path: Path | str) -> sqlite3.Connection:
    """A read-only connection of its own for ``data_version`` (``sqlite3.Error`` when
    the file cannot be read)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=1.0)
    data_version(conn)
    return conn


def data_version(conn: sqlite3.Connection) -> int:
    """SQLite's ``PRAGMA data_version``: it changes whenever another connection commits."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])
