"""The metadata store's named operations: every SQL statement the core runs on its rows.

``Store`` (``store.py``) owns the connection, the schema and the transactions;
``RecordStore`` gives the record, holder, label, cache-mount and GC-history tables their
verbs (read a record, its live holders, tombstone, drop tombstoned, reap holders, insert
a record, set labels, ...), as containerd's ``snapshots/storage`` package does for its
metadata. Nothing else in the core writes SQL.

Every verb runs inside the caller's ``write()`` or ``read()`` transaction (one ``BEGIN
IMMEDIATE`` decides and changes together), except ``drop_tombstoned``, which is the
after-commit step of a removal and takes its own write. The store's write transaction is
the only lock: it serialises this process's threads (the store's lock) and other
processes (SQLite's write lock) at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peewee

from cachetui.core.errors import NotFoundError
from cachetui.core.processes import ProcessIdentity, is_alive
from cachetui.core.store import RECORD_COLUMNS, Store
from cachetui.core.timestamps import MAX_EPOCH, UNREADABLE, is_valid
from cachetui.core.types import CacheMount, GCRunInfo, GCTotals

__all__ = [
    "GC_RUNS_KEPT",
    "HOLDER_COLUMNS",
    "PENDING_COMMITS_SQL",
    "USAGE_ROWS_SQL",
    "HolderRow",
    "RecordRow",
    "RecordStore",
    "Salvage",
    "fill_rebuilt",
    "holder_rows_alive",
    "salvage",
]

HOLDER_COLUMNS = "id, record, pid, start, host, created_at, counts_use"

#: How many GC runs the history keeps (the newest); recording one drops the oldest.
GC_RUNS_KEPT = 1000
#: The ``setting`` row summing the runs dropped from the history.
GC_TRIMMED_KEY = "gc_runs_trimmed"

Labels = dict[str, tuple[tuple[str, str], ...]]


@dataclass(slots=True)
class RecordRow:
    """One row of the record table, as read (0/1 become bools, bad times unknown)."""

    id: str
    parent: str | None
    mutable: bool
    equal_mutable: str | None
    retain: bool
    description: str
    record_type: str
    created_at: float
    last_used_at: float | None
    usage_count: int
    size: int
    deleted: bool
    pending_use: bool
    apparent_size: int = -1

    @property
    def last_use(self) -> float | None:
        """When it was last used, or None when it never was: BuildKit keeps a use time
        only beside a use count, so a time without a count means nothing. The one home
        of that rule (disk usage's hot loop inlines it, saying so)."""
        return self.last_used_at if self.usage_count else None

    @property
    def age_from(self) -> float:
        """The moment its age counts from: its last use, else its creation."""
        last = self.last_use
        return last if last is not None else self.created_at

    @classmethod
    def from_values(cls, values: tuple[Any, ...]) -> RecordRow:
        """A row from the ``RECORD_COLUMNS`` tuple SQLite returns (its 0/1 become bools)."""
        (rid, parent, mutable, equal, retain, text, kind, created, last, count, size, deleted,
         pending, apparent) = values  # fmt: skip
        row = cls(
            rid,
            parent,
            mutable == 1,
            equal,
            retain == 1,
            text,
            kind,
            created,
            last,
            count,
            size,
            deleted == 1,
            pending == 1,
            apparent,
        )
        if not (
            type(created) is float
            and 0.0 <= created <= MAX_EPOCH
            and (last is None or (type(last) is float and 0.0 <= last <= MAX_EPOCH))
        ):
            row.make_times_readable()
        return row

    def make_times_readable(self) -> None:
        """Put ``UNREADABLE`` in place of a stored time that is not one.

        Never a crash, never "very old" (which keep_duration would prune): the time is
        unknown, shown as such, and doctor reports the row."""
        if not is_valid(self.created_at):
            self.created_at = UNREADABLE
        if self.last_used_at is not None and not is_valid(self.last_used_at):
            self.last_used_at = UNREADABLE

    @property
    def layer_id(self) -> str:
        """The directory that holds this record's bytes (a pending commit uses the mutable's)."""
        return self.equal_mutable or self.id


@dataclass(frozen=True, slots=True)
class HolderRow:
    id: int
    record: str
    pid: int
    start: str
    host: str
    created_at: float
    counts_use: bool
    alive: bool


def holder_rows_alive(values: Iterable[tuple[Any, ...]]) -> list[HolderRow]:
    """Holder rows (``HOLDER_COLUMNS`` tuples) with their liveness, checked once per process."""
    alive_cache: dict[tuple[int, str, str], bool] = {}
    holders = []
    for hid, record, pid, start, host, created, counts in values:
        key = (pid, start, host)
        if key not in alive_cache:
            alive_cache[key] = is_alive(pid, start, host)
        holders.append(
            HolderRow(hid, record, pid, start, host, created, bool(counts), alive_cache[key])
        )
    return holders


_BAD_TIMES_SQL = """
SELECT id, 'created_at', created_at FROM record
 WHERE deleted = 0 AND (typeof(created_at) NOT IN ('real', 'integer')
                        OR NOT created_at BETWEEN 0 AND ?)
UNION ALL
SELECT id, 'last_used_at', last_used_at FROM record
 WHERE deleted = 0 AND last_used_at IS NOT NULL
   AND (typeof(last_used_at) NOT IN ('real', 'integer') OR NOT last_used_at BETWEEN 0 AND ?)
ORDER BY 1, 2
"""

#: ``UsagePicture``'s row (``state.UsageTuple``), values as stored, but for two: a
#: creation time that is NULL comes as ``UNREADABLE`` (SQLite's 1e999 is infinity), as
#: ``RecordRow`` reads it (a NULL last use means "never used"); the record type
#: "regular" comes as NULL, so that 100,000 rows share one string.
_USAGE_COLUMNS = (
    "id, mutable, size, parent, IFNULL(created_at, 1e999), last_used_at, usage_count, "
    "description, NULLIF(record_type, 'regular'), apparent_size"
)
#: Every live record, largest first, then by id: one walk of the ``record_usage`` index.
USAGE_ROWS_SQL = f"SELECT {_USAGE_COLUMNS} FROM record WHERE deleted = 0 ORDER BY size DESC, id"
#: The live pending commits, in the same order. "IS NOT NULL" as two ranges, "+deleted"
#: and "+size" (no index's condition nor order): SQLite then reads the few from the
#: equal_mutable index, not every row through disk usage's.
PENDING_COMMITS_SQL = (
    "SELECT id, equal_mutable FROM record "
    "WHERE (equal_mutable >= '' OR equal_mutable < '') AND +deleted = 0 ORDER BY +size DESC, id"
)


def _marks(count: int) -> str:
    return ",".join("?" * count)


class RecordStore:
    """The named operations over one ``Store`` (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- transactions -------------------------------------------------------------------

    def write(self, *, wait: bool = True) -> AbstractContextManager[peewee.SqliteDatabase]:
        """The store's ``BEGIN IMMEDIATE`` transaction: the one lock of every change."""
        return self.store.write(wait=wait)

    def read(self) -> AbstractContextManager[peewee.SqliteDatabase]:
        """A consistent read (one WAL snapshot)."""
        return self.store.read()

    def on_rollback(self, hook: Callable[[], None]) -> None:
        """Inside ``write``: call ``hook`` if the transaction fails (COMMIT included)."""
        self.store.on_rollback(hook)

    def in_transaction(self) -> bool:
        return bool(self.store.db.in_transaction())

    def _many(self, sql: str, params: Sequence[tuple[Any, ...]]) -> None:
        # Raw errors on purpose: the enclosing ``write`` names them (and finds the real
        # cause when a full disk also makes its ROLLBACK fail).
        self.store.db.cursor().executemany(sql, params)

    # -- reading records ----------------------------------------------------------------

    def record(self, record_id: str) -> RecordRow | None:
        """The record's row (tombstoned or not), or None."""
        found = self.store.rows(
            f"SELECT {self.store.record_columns} FROM record WHERE id = ?", (record_id,)
        )
        return RecordRow.from_values(found[0]) if found else None

    def live_record(self, record_id: str) -> RecordRow:
        """The record's row; ``NotFoundError`` when it has none or is tombstoned."""
        row = self.record(record_id)
        if row is None or row.deleted:
            raise NotFoundError(f"{record_id}: not found")
        return row

    def immutable_of(self, mutable_id: str) -> RecordRow | None:
        """The live pending-commit immutable paired with ``mutable_id``, if any."""
        found = self.store.rows(
            "SELECT id FROM record WHERE equal_mutable = ? AND deleted = 0", (mutable_id,)
        )
        return self.record(found[0][0]) if found else None

    def has_live_children(self, record_ids: Sequence[str]) -> bool:
        """Whether a live record stands on any of ``record_ids``."""
        return bool(
            self.store.rows(
                f"SELECT 1 FROM record WHERE parent IN ({_marks(len(record_ids))}) "
                "AND deleted = 0 LIMIT 1",
                tuple(record_ids),
            )
        )

    def all_records(self, *, ordered: bool = True) -> list[tuple[Any, ...]]:
        """Every record row as ``record_columns`` tuples, largest first, then by id (disk
        usage's order, so it rarely needs to sort); without ``ordered``, in the table's
        own order (sorting 100,000 rows is a third of reading them)."""
        order = " ORDER BY size DESC, id" if ordered else ""
        return self.store.rows(f"SELECT {self.store.record_columns} FROM record{order}")

    def usage_rows(self) -> list[tuple[Any, ...]]:
        """Every live record as ``state.UsageTuple``, largest first, then by id (disk
        usage's order)."""
        sql = USAGE_ROWS_SQL
        if not self.store.record_columns.endswith("apparent_size"):  # an older store
            sql = sql.replace("apparent_size", "-1")
        if self.store.size_limit is not None:  # garbage reads as unknown (Store.limit_sizes)
            sql = sql.replace("mutable, size, parent", f"mutable, {self.store.size_column}, parent")
        return self.store.rows(sql)

    def pending_commits(self) -> list[tuple[str, str]]:
        """``(immutable, mutable)`` of every live pending commit, in disk usage's order."""
        return [(rid, mutable) for rid, mutable in self.store.rows(PENDING_COMMITS_SQL)]

    def records_by_id(self, record_ids: Iterable[str]) -> list[RecordRow]:
        """The live rows among ``record_ids`` (a handful: one statement)."""
        wanted = tuple(record_ids)
        if not wanted:
            return []
        return [
            RecordRow.from_values(values)
            for values in self.store.rows(
                f"SELECT {self.store.record_columns} FROM record "
                f"WHERE id IN ({_marks(len(wanted))}) AND deleted = 0",
                wanted,
            )
        ]

    def unsized_records(self) -> list[RecordRow]:
        """The live rows with no cached size."""
        return [
            RecordRow.from_values(values)
            for values in self.store.rows(
                f"SELECT {self.store.record_columns} FROM record "
                f"WHERE {self.store.unknown_size} AND deleted = 0"
            )
        ]

    def shapes(self) -> list[tuple[Any, ...]]:
        """``(id, parent, equal_mutable, mutable, deleted)`` of every row (the open check)."""
        return self.store.rows("SELECT id, parent, equal_mutable, mutable, deleted FROM record")

    def bad_sizes(self) -> list[tuple[str, Any]]:
        """``(record id, stored value)`` of each live row whose stored size is not a
        non-negative integer within ``Store.size_limit`` (reads take it as unknown)."""
        limit = self.store.size_limit
        bound = "" if limit is None else f" AND size <= {int(limit)}"
        sql = (
            "SELECT id, size FROM record WHERE deleted = 0 "
            f"AND NOT (typeof(size) = 'integer'{bound}) ORDER BY id"
        )
        return [(str(rid), value) for rid, value in self.store.rows(sql)]

    def untombstone(self, record_ids: Sequence[str]) -> None:
        """Inside a write: records marked removed are live again (a removal refused
        after its mark committed)."""
        self._many(
            "UPDATE record SET deleted = 0 WHERE id = ? AND deleted = 1",
            [(r,) for r in record_ids],
        )

    def tombstoned_ids(self) -> list[str]:
        return [rid for (rid,) in self.store.rows("SELECT id FROM record WHERE deleted = 1")]

    def bad_timestamps(self) -> list[tuple[str, str, Any]]:
        """``(record id, column, stored value)`` for each stored time that is not one."""
        found = self.store.rows(_BAD_TIMES_SQL, (MAX_EPOCH, MAX_EPOCH))
        return [(str(r[0]), str(r[1]), r[2]) for r in found]

    # -- changing records ---------------------------------------------------------------

    def insert_record(
        self,
        record_id: str,
        *,
        parent: str | None,
        mutable: bool,
        description: str,
        record_type: str,
        created_at: float,
        retain: bool = False,
        equal_mutable: str | None = None,
    ) -> None:
        self.store.Record.insert(
            id=record_id,
            parent=parent,
            mutable=mutable,
            equal_mutable=equal_mutable,
            retain=retain,
            description=description,
            record_type=record_type,
            created_at=created_at,
        ).execute()

    def set_retain(self, record_id: str, value: bool) -> None:
        self.store.execute("UPDATE record SET retain = ? WHERE id = ?", (bool(value), record_id))

    def count_use(self, record_id: str, now: float) -> None:
        """One use: the count goes up, the last use is ``now``."""
        self.store.execute(
            "UPDATE record SET usage_count = usage_count + 1, last_used_at = ? WHERE id = ?",
            (now, record_id),
        )

    def set_pending_use(self, record_id: str, value: bool) -> None:
        self.store.execute(
            "UPDATE record SET pending_use = ? WHERE id = ?", (int(bool(value)), record_id)
        )

    def forget_size(self, record_id: str) -> None:
        """The cached size no longer holds (a mutable handed out again)."""
        self.store.execute("UPDATE record SET size = -1 WHERE id = ?", (record_id,))

    def reopen_mutable(self, record_id: str) -> None:
        """A mutable handed out for writing: no cached size, no use pending."""
        self.store.execute(
            "UPDATE record SET size = -1, pending_use = 0 WHERE id = ?", (record_id,)
        )

    def unpair(self, immutable_id: str) -> None:
        """The immutable owns its bytes from now on (a finished finalize)."""
        self.store.execute("UPDATE record SET equal_mutable = NULL WHERE id = ?", (immutable_id,))

    def drop_record(self, record_id: str) -> None:
        """The row and its holders go at once (no tombstone: no layer of its own goes)."""
        self.store.execute("DELETE FROM holder WHERE record = ?", (record_id,))
        self.store.execute("DELETE FROM record WHERE id = ?", (record_id,))

    def tombstone(self, record_ids: Iterable[str]) -> None:
        """Mark records removed (their layers go next) and drop their holders."""
        for record_id in record_ids:
            self.store.execute("UPDATE record SET deleted = 1 WHERE id = ?", (record_id,))
            self.store.execute("DELETE FROM holder WHERE record = ?", (record_id,))

    def drop_tombstoned(self, record_ids: Sequence[str]) -> None:
        """In a write of its own, after the layers went: delete the tombstoned rows."""
        if not record_ids:
            return
        with self.write():
            self._many(
                "DELETE FROM record WHERE id = ? AND deleted = 1", [(r,) for r in record_ids]
            )

    def store_sizes(self, sizes: Mapping[str, int], apparent: Mapping[str, int]) -> None:
        """Cache measured sizes (and apparent sizes, -1 when not given) on live rows."""
        self.store.db.execute_sql("SELECT 1")  # take the lock before building anything
        self._many(
            "UPDATE record SET size = ?, apparent_size = ? WHERE id = ? AND deleted = 0",
            [(size, apparent.get(rid, -1), rid) for rid, size in sizes.items()],
        )

    # -- holders ------------------------------------------------------------------------

    def holders(self, record_id: str) -> list[HolderRow]:
        """Every holder row of a record, with its liveness (nothing reaped)."""
        return holder_rows_alive(
            self.store.rows(f"SELECT {HOLDER_COLUMNS} FROM holder WHERE record = ?", (record_id,))
        )

    def live_holders(self, record_id: str) -> list[HolderRow]:
        """The record's holders whose process runs; the others are reaped on the way."""
        live = []
        for holder in self.holders(record_id):
            if holder.alive:
                live.append(holder)
            else:
                self.store.execute("DELETE FROM holder WHERE id = ?", (holder.id,))
        return live

    def all_holders(self) -> list[HolderRow]:
        """Every holder row, with its liveness."""
        return holder_rows_alive(self.store.rows(f"SELECT {HOLDER_COLUMNS} FROM holder"))

    def add_holder(
        self, record_id: str, process: ProcessIdentity, now: float, *, counts_use: bool
    ) -> int:
        """A new holder row for ``process``; returns its id (never handed out twice)."""
        return int(
            self.store.Holder.insert(
                record=record_id,
                pid=process.pid,
                start=process.start,
                host=process.host,
                created_at=now,
                counts_use=counts_use,
            ).execute()
        )

    def holder_counts_use(self, holder_id: int, record_id: str) -> bool | None:
        """Whether the holder counts a use; None when no such row holds that record.

        Holder ids never come back, but the record is matched too: a handle whose row
        already went must never be mistaken for another's."""
        found = self.store.rows(
            "SELECT counts_use FROM holder WHERE id = ? AND record = ?", (holder_id, record_id)
        )
        return bool(found[0][0]) if found else None

    def drop_holder(self, holder_id: int, record_id: str | None = None) -> bool:
        """Delete one holder row (of ``record_id`` when given); whether one went."""
        if record_id is None:
            return self.store.execute("DELETE FROM holder WHERE id = ?", (holder_id,)) > 0
        changed = self.store.execute(
            "DELETE FROM holder WHERE id = ? AND record = ?", (holder_id, record_id)
        )
        return changed > 0

    def drop_holders_of(self, record_id: str) -> None:
        self.store.execute("DELETE FROM holder WHERE record = ?", (record_id,))

    def drop_own_holders(self, holder_ids: Iterable[int], process: ProcessIdentity) -> None:
        """Delete the given holder rows that still name ``process`` (a closing manager)."""
        self._many(
            "DELETE FROM holder WHERE id = ? AND pid = ? AND start = ? AND host = ?",
            [(h, process.pid, process.start, process.host) for h in holder_ids],
        )

    def reap_dead_holders(self) -> int:
        """Delete every holder whose process is gone; returns how many."""
        dead = [
            (hid,)
            for hid, pid, start, host in self.store.rows("SELECT id, pid, start, host FROM holder")
            if not is_alive(pid, start, host)
        ]
        if dead:
            self._many("DELETE FROM holder WHERE id = ?", dead)
        return len(dead)

    # -- labels and cache mounts ----------------------------------------------------------

    def write_metadata(
        self, record_id: str, labels: Mapping[str, str | None], cache_mount: CacheMount | None
    ) -> None:
        """A new record's labels and cache-mount identity."""
        for key, value in labels.items():
            if value is not None:
                self._put_label(record_id, key, value)
        if cache_mount is not None:
            self.store.execute(
                "INSERT OR REPLACE INTO cache_mount (record, cache_id, target, sharing) "
                "VALUES (?, ?, ?, ?)",
                (record_id, cache_mount.cache_id, cache_mount.target, str(cache_mount.sharing)),
            )

    def _put_label(self, record_id: str, key: str, value: str) -> None:
        self.store.execute(
            "INSERT OR REPLACE INTO record_label (record, key, value) VALUES (?, ?, ?)",
            (record_id, key, value),
        )

    def change_labels(
        self, record_id: str, changes: Mapping[str, str | None], *, replace: bool
    ) -> None:
        """Set labels (a None value removes that label); ``replace`` drops the others."""
        if replace:
            self.store.execute("DELETE FROM record_label WHERE record = ?", (record_id,))
        for key, value in changes.items():
            if value is None:
                self.store.execute(
                    "DELETE FROM record_label WHERE record = ? AND key = ?", (record_id, key)
                )
            else:
                self._put_label(record_id, key, value)

    def metadata(
        self, record_ids: Iterable[str] | None = None
    ) -> tuple[Labels, dict[str, CacheMount]]:
        """Labels (sorted by key) and cache-mount identities of ``record_ids``, or of every
        record. An older store opened read-only has none."""
        store = self.store
        if not store.has_metadata_tables:
            return {}, {}
        where = ""
        params: tuple[str, ...] = ()
        if record_ids is not None:
            params = tuple(record_ids)
            where = f" WHERE record IN ({_marks(len(params))})"
        grouped: dict[str, list[tuple[str, str]]] = {}
        for record, key, value in store.rows(
            f"SELECT record, key, value FROM record_label{where} ORDER BY record, key", params
        ):
            grouped.setdefault(record, []).append((key, value))
        mounts = {
            record: CacheMount(cache_id, target, sharing)
            for record, cache_id, target, sharing in store.rows(
                f"SELECT record, cache_id, target, sharing FROM cache_mount{where}", params
            )
        }
        return {record: tuple(pairs) for record, pairs in grouped.items()}, mounts

    def cache_mount_records(self, cache_id: str) -> list[tuple[str, str]]:
        """``(record id, sharing)`` of the live mutables of a cache id, oldest first."""
        return [
            (str(rid), str(mode))
            for rid, mode in self.store.rows(
                "SELECT r.id, c.sharing FROM cache_mount c JOIN record r ON r.id = c.record "
                "WHERE c.cache_id = ? AND r.mutable = 1 AND r.deleted = 0 "
                "ORDER BY r.created_at, r.id",
                (cache_id,),
            )
        ]

    # -- GC history ---------------------------------------------------------------------

    def add_gc_run(self, run: GCRunInfo, keep: int = GC_RUNS_KEPT) -> None:
        """Record one GC run and drop all but the newest ``keep`` (in the caller's write:
        a ``gc --watch`` running for months must not grow the table without end)."""
        self.store.GCRun.create(
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
        older = (
            "FROM gc_run WHERE id NOT IN "
            "(SELECT id FROM gc_run ORDER BY started_at DESC, id DESC LIMIT ?)"
        )
        ((count, records, size, duration),) = self.store.rows(
            f"SELECT count(*), total(records), total(bytes), total(duration) {older}", (keep,)
        )
        if not count:
            return
        # What goes from the history stays in the totals (metrics' counters never drop).
        before = self._trimmed()
        trimmed = (
            before.runs + count,
            before.records + int(records),
            before.bytes + int(size),
            before.duration + duration,
        )
        self.store.execute(
            "INSERT OR REPLACE INTO setting (key, value) VALUES (?, ?)",
            (GC_TRIMMED_KEY, " ".join(str(v) for v in trimmed)),
        )
        self.store.execute(f"DELETE {older}", (keep,))

    def _trimmed(self) -> GCTotals:
        """The runs already dropped from the history, summed (zeros when none)."""
        found = self.store.rows("SELECT value FROM setting WHERE key = ?", (GC_TRIMMED_KEY,))
        if not found:
            return GCTotals()
        try:
            runs, records, size, duration = found[0][0].split()
            return GCTotals(int(runs), int(records), int(size), float(duration))
        except ValueError:  # a damaged value counts as nothing dropped
            return GCTotals()

    def gc_totals(self) -> GCTotals:
        """Every run ever recorded, summed: the history's and those it dropped."""
        if not self.store.has_table("gc_run"):
            return GCTotals()
        with self.read():
            ((count, records, size, duration, last),) = self.store.rows(
                "SELECT count(*), total(records), total(bytes), total(duration), "
                "max(started_at) FROM gc_run"
            )
            trimmed = self._trimmed()
        return GCTotals(
            runs=trimmed.runs + count,
            records=trimmed.records + int(records),
            bytes=trimmed.bytes + int(size),
            duration=trimmed.duration + duration,
            last_started_at=last or 0.0,
        )

    def gc_runs(self, limit: int | None) -> list[GCRunInfo]:
        """The last ``limit`` GC runs (all with None), newest first."""
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
        with self.read():
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


# -- doctor --rebuild: reading a damaged file, filling a fresh one ---------------------

#: The side tables of schema version 2 (absent from a version 1 store).
SIDE_TABLES = {
    "record_label": "record, key, value",
    "cache_mount": "record, cache_id, target, sharing",
}


def _read_rows(
    con: sqlite3.Connection, table: str, columns: str
) -> tuple[list[tuple[Any, ...]], int]:
    """Every readable row of ``table``: all at once, or row by row around damaged pages.
    Returns the rows and how many rowids could not be read."""
    try:
        return con.execute(f"SELECT {columns} FROM {table}").fetchall(), 0
    except sqlite3.DatabaseError as err:
        if "no such" in str(err):  # an older schema (or a lost table): nothing to read
            return [], 0
    try:
        (top,) = con.execute(f"SELECT max(rowid) FROM {table}").fetchone()
        top = int(top or 0)
    except (sqlite3.DatabaseError, TypeError, ValueError):
        try:
            (pages,) = con.execute("PRAGMA page_count").fetchone()
            top = int(pages) * 64
        except (sqlite3.DatabaseError, TypeError, ValueError):
            return [], 1
    rows: list[tuple[Any, ...]] = []
    unreadable = 0
    for rowid in range(1, top + 1):
        try:
            found = con.execute(
                f"SELECT {columns} FROM {table} WHERE rowid = ?", (rowid,)
            ).fetchall()
        except sqlite3.DatabaseError:
            unreadable += 1
            continue
        rows.extend(found)
    return rows, unreadable


def _lacks_column(con: sqlite3.Connection) -> bool:
    try:
        con.execute("SELECT apparent_size FROM record LIMIT 0")
    except sqlite3.DatabaseError as err:
        return "no such column" in str(err)
    return False


@dataclass
class Salvage:
    """What could be read of a damaged metadata file (raw tuples, unchecked)."""

    records: list[tuple[Any, ...]]  # RECORD_COLUMNS tuples
    unreadable: int  # record rowids that sat in damaged pages
    holders: list[tuple[Any, ...]]  # HOLDER_COLUMNS tuples
    side: dict[str, list[tuple[Any, ...]]]  # SIDE_TABLES rows by table


def salvage(db: Path) -> Salvage:
    """Read what can be read of the file at ``db`` (read-only; ``sqlite3.Error`` when it
    cannot even be opened)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        raw, unreadable = _read_rows(con, "record", RECORD_COLUMNS)
        if not raw and _lacks_column(con):  # a version 1 store: no apparent size yet
            raw, unreadable = _read_rows(
                con, "record", RECORD_COLUMNS.replace("apparent_size", "-1")
            )
        holders, _ = _read_rows(con, "holder", HOLDER_COLUMNS)
        side = {table: _read_rows(con, table, columns)[0] for table, columns in SIDE_TABLES.items()}
    finally:
        con.close()
    return Salvage(raw, unreadable, holders, side)


def fill_rebuilt(
    store: Store,
    records: Iterator[tuple[Any, ...]] | Sequence[tuple[Any, ...]],
    side: Mapping[str, Sequence[tuple[Any, ...]]],
    holders: Sequence[tuple[Any, ...]],
) -> None:
    """Write checked rows into a fresh store, in one transaction."""
    ops = RecordStore(store)
    with store.write():
        width = len(RECORD_COLUMNS.split(","))
        ops._many(f"INSERT INTO record ({RECORD_COLUMNS}) VALUES ({_marks(width)})", list(records))
        for table, columns in SIDE_TABLES.items():
            count = columns.count(",") + 1
            ops._many(
                f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({_marks(count)})",
                list(side.get(table, ())),
            )
        ops._many(f"INSERT INTO holder ({HOLDER_COLUMNS}) VALUES ({_marks(7)})", list(holders))
