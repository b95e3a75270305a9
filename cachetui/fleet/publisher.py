"""Writing one store's replica: registration, heartbeats, records, holders, GC runs.

The ``Publisher`` remembers what it last wrote for its store (``published``): each
publish compares the store's current view with it and writes only the difference, in one
transaction that also bumps the store's ``version`` and sends the notification. After a
failure (the server went away) it forgets what it knew; the next publish reads the
replica back from the server and repairs it (compare and repair), so the replica
converges without a restart whatever an outage interrupted. Deletions are published as
deletions.

Bulk writes use ``COPY`` into a temporary table (large batches) or psycopg's pipelined
``executemany`` (small ones), never a row per transaction.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import peewee

from cachetui.core import HolderRow, RecordState, Totals
from cachetui.fleet.schema import CHANNEL, NOW, notify, records_payload

__all__ = ["Publisher", "holder_tuple", "record_tuple"]

RECORD_FIELDS = (
    "id",
    "parent",
    "mutable",
    "in_use",
    "held",
    "retain",
    "pending_commit",
    "record_type",
    "description",
    "size",
    "created_at",
    "last_used_at",
    "usage_count",
    "shared",
    "has_children",
)
HOLDER_FIELDS = ("id", "record", "pid", "host", "created_at", "alive")

RecordTuple = tuple[Any, ...]
HolderTuple = tuple[Any, ...]

_RECORD_UPSERT = (
    f"INSERT INTO fleet_record (store, {', '.join(RECORD_FIELDS)}, version) "
    f"VALUES (%s, {', '.join(['%s'] * len(RECORD_FIELDS))}, %s) "
    "ON CONFLICT (store, id) DO UPDATE SET "
    + ", ".join(f"{f} = EXCLUDED.{f}" for f in (*RECORD_FIELDS[1:], "version"))
)
_HOLDER_UPSERT = (
    f"INSERT INTO fleet_holder (store, {', '.join(HOLDER_FIELDS)}) "
    f"VALUES (%s, {', '.join(['%s'] * len(HOLDER_FIELDS))}) "
    "ON CONFLICT (store, id) DO UPDATE SET "
    + ", ".join(f"{f} = EXCLUDED.{f}" for f in HOLDER_FIELDS[1:])
)


_record_values = attrgetter(*RECORD_FIELDS)
#: From this many rows on, a publish goes through COPY into a temporary table and one
#: INSERT ... ON CONFLICT (the initial snapshot of 10,000 records in one round trip).
COPY_FROM = 200
_STAGE = "fleet_record_in"


def record_tuple(row: RecordState) -> RecordTuple:
    return tuple(_record_values(row))


def holder_tuple(row: HolderRow) -> HolderTuple:
    return (row.id, row.record, row.pid, row.host, row.created_at, row.alive)


@dataclass(frozen=True, slots=True)
class Registration:
    name: str
    host: str
    root: str
    agent_version: str
    agent_pid: int


class Publisher:
    """One store's writer into the fleet database (one thread uses it)."""

    def __init__(self, db: peewee.PostgresqlDatabase, store: str) -> None:
        self.db = db
        self.store = store
        self.published: dict[str, RecordTuple] | None = None
        self.holders: dict[int, HolderTuple] | None = None
        self.totals: Totals | None = None
        self.version = 0

    def forget(self) -> None:
        """After a failure: the next publish re-reads the replica and repairs it."""
        self.published = None
        self.holders = None
        self.totals = None

    # -- registration and liveness ------------------------------------------------------

    def register(self, reg: Registration) -> None:
        with self.db.atomic():
            self.db.execute_sql(
                "INSERT INTO fleet_store (name, host, root, agent_version, agent_pid, "
                "started_at, heartbeat_at, stopped_at) "
                "VALUES (%s, %s, %s, %s, %s, extract(epoch from clock_timestamp())::float8, "
                "extract(epoch from clock_timestamp())::float8, NULL) "
                "ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, root = EXCLUDED.root, "
                "agent_version = EXCLUDED.agent_version, agent_pid = EXCLUDED.agent_pid, "
                "started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, "
                "stopped_at = NULL",
                (reg.name, reg.host, reg.root, reg.agent_version, reg.agent_pid),
            )
            notify(self.db, CHANNEL, {"store": self.store, "kind": "store"})

    def heartbeat(self, disk_total: int, disk_free: int) -> bool:
        """The server's clock stamps it, so hosts with skewed clocks agree on liveness.

        False when the store's row is gone (a database restored or replaced): the agent
        then registers and synchronises again.
        """
        with self.db.atomic():
            row = self.db.execute_sql(
                "SELECT disk_free FROM fleet_store WHERE name = %s FOR UPDATE", (self.store,)
            ).fetchone()
            if row is None:
                return False
            self.db.execute_sql(
                f"UPDATE fleet_store SET heartbeat_at = {NOW}, disk_total = %s, disk_free = %s, "
                "stopped_at = NULL WHERE name = %s",
                (disk_total, disk_free, self.store),
            )
            # Heartbeats alone are not news: listeners time liveness themselves. A change
            # of free space is.
            if row[0] != disk_free:
                notify(self.db, CHANNEL, {"store": self.store, "kind": "store"})
        return True

    def stopped(self) -> None:
        """A clean stop: the store shows offline at once instead of after the limit."""
        with self.db.atomic():
            self.db.execute_sql(
                "UPDATE fleet_store SET stopped_at = extract(epoch from clock_timestamp())::float8 "
                "WHERE name = %s",
                (self.store,),
            )
            notify(self.db, CHANNEL, {"store": self.store, "kind": "store"})

    # -- records and holders ------------------------------------------------------------

    def _load(self) -> None:
        """Read back what the replica holds for this store (compare and repair)."""
        columns = ", ".join(RECORD_FIELDS)
        rows = self.db.execute_sql(
            f"SELECT {columns} FROM fleet_record WHERE store = %s", (self.store,)
        ).fetchall()
        self.published = {row[0]: tuple(row) for row in rows}
        holders = self.db.execute_sql(
            f"SELECT {', '.join(HOLDER_FIELDS)} FROM fleet_holder WHERE store = %s",
            (self.store,),
        ).fetchall()
        self.holders = {int(row[0]): tuple(row) for row in holders}
        version = self.db.execute_sql(
            "SELECT version FROM fleet_store WHERE name = %s", (self.store,)
        ).fetchone()
        self.version = int(version[0]) if version else 0

    def publish(
        self,
        rows: Mapping[str, RecordState],
        totals: Totals,
        holders: Sequence[HolderRow],
        *,
        synced: bool = False,
    ) -> int:
        """Write the difference between ``rows`` and the replica; returns rows written."""
        records = {rid: record_tuple(row) for rid, row in rows.items()}
        holder_rows = {h.id: holder_tuple(h) for h in holders}
        with self.db.atomic():
            if self.published is None or self.holders is None:
                self._load()
            assert self.published is not None and self.holders is not None
            published, known = self.published, self.holders
            changed = [t for rid, t in records.items() if published.get(rid) != t]
            deleted = [rid for rid in published if rid not in records]
            holders_changed = [t for hid, t in holder_rows.items() if known.get(hid) != t]
            holders_gone = [hid for hid in known if hid not in holder_rows]
            news = bool(changed or deleted or holders_changed or holders_gone)
            if not news and totals == self.totals and not synced:
                return 0
            version = self.version + 1
            cursor = self.db.cursor()
            if len(changed) >= COPY_FROM:
                self._copy_records(cursor, changed, version)
            elif changed:
                cursor.executemany(_RECORD_UPSERT, [(self.store, *t, version) for t in changed])
            if deleted:
                self.db.execute_sql(
                    "DELETE FROM fleet_record WHERE store = %s AND id = ANY(%s)",
                    (self.store, deleted),
                )
            if holders_changed:
                cursor.executemany(_HOLDER_UPSERT, [(self.store, *t) for t in holders_changed])
            if holders_gone:
                self.db.execute_sql(
                    "DELETE FROM fleet_holder WHERE store = %s AND id = ANY(%s)",
                    (self.store, holders_gone),
                )
            synced_sql = (
                ", synced_at = extract(epoch from clock_timestamp())::float8" if synced else ""
            )
            self.db.execute_sql(
                "UPDATE fleet_store SET records = %s, total = %s, reclaimable = %s, "
                f"in_use = %s, shared = %s, version = %s{synced_sql} WHERE name = %s",
                (
                    totals.records,
                    totals.total,
                    totals.reclaimable,
                    totals.in_use,
                    totals.shared,
                    version,
                    self.store,
                ),
            )
            if news:
                notify(self.db, CHANNEL, records_payload(self.store, version, deleted))
            notify(self.db, CHANNEL, {"store": self.store, "kind": "store"})
        # Only once committed does the replica hold it.
        self.version = version
        self.published = records
        self.holders = holder_rows
        self.totals = totals
        return len(changed) + len(deleted)

    def _copy_records(self, cursor: Any, rows: list[RecordTuple], version: int) -> None:
        columns = f"store, {', '.join(RECORD_FIELDS)}, version"
        # a temporary table lives as long as the connection: created again after a reconnect
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} "
            "(LIKE fleet_record INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(f"COPY {_STAGE} ({columns}) FROM STDIN") as copy:
            store = self.store
            for row in rows:
                copy.write_row((store, *row, version))
        cursor.execute(
            f"INSERT INTO fleet_record ({columns}) SELECT {columns} FROM {_STAGE} "
            "ON CONFLICT (store, id) DO UPDATE SET "
            + ", ".join(f"{f} = EXCLUDED.{f}" for f in (*RECORD_FIELDS[1:], "version"))
        )

    # -- GC runs --------------------------------------------------------------------------

    def gc_run(
        self,
        trigger: str,
        started_at: float,
        records: int,
        freed: int,
        error: str = "",
    ) -> None:
        finished = time.time()
        with self.db.atomic():
            self.db.execute_sql(
                "INSERT INTO fleet_gc_run (store, trigger, started_at, finished_at, records, "
                "freed, error) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (self.store, trigger, started_at, finished, records, freed, error),
            )
            self.db.execute_sql(
                "UPDATE fleet_store SET last_gc_at = %s, last_gc_freed = %s, "
                "last_gc_records = %s WHERE name = %s",
                (finished, freed, records, self.store),
            )
            notify(self.db, CHANNEL, {"store": self.store, "kind": "gc"})
