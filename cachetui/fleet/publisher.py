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

from cachetui.core import HolderInfo, RecordState, Totals
from cachetui.fleet import replica_store as replica
from cachetui.fleet.replica_store import RECORD_FIELDS
from cachetui.fleet.schema import CHANNEL, records_payload

__all__ = ["Publisher", "holder_tuple", "record_tuple"]

RecordTuple = tuple[Any, ...]
HolderTuple = tuple[Any, ...]

_record_values = attrgetter(*RECORD_FIELDS)


def record_tuple(row: RecordState) -> RecordTuple:
    return tuple(_record_values(row))


def holder_tuple(holder: HolderInfo) -> HolderTuple:
    return (holder.id, holder.record, holder.pid, holder.host, holder.since, holder.alive)


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
        with replica.transaction(self.db):
            replica.register_store(
                self.db, reg.name, reg.host, reg.root, reg.agent_version, reg.agent_pid
            )
            replica.notify(self.db, CHANNEL, {"store": self.store, "kind": "store"})

    def heartbeat(self, disk_total: int, disk_free: int) -> bool:
        """The server's clock stamps it, so hosts with skewed clocks agree on liveness.

        False when the store's row is gone (a database restored or replaced): the agent
        then registers and synchronises again.
        """
        with replica.transaction(self.db):
            before = replica.heartbeat(self.db, self.store, disk_total, disk_free)
            if before is None:
                return False
            # Heartbeats alone are not news: listeners time liveness themselves. A change
            # of free space is.
            if before != disk_free:
                replica.notify(self.db, CHANNEL, {"store": self.store, "kind": "store"})
        return True

    def stopped(self) -> None:
        """A clean stop: the store shows offline at once instead of after the limit."""
        with replica.transaction(self.db):
            replica.mark_stopped(self.db, self.store)
            replica.notify(self.db, CHANNEL, {"store": self.store, "kind": "store"})

    # -- records and holders ------------------------------------------------------------

    def publish(
        self,
        rows: Mapping[str, RecordState],
        totals: Totals,
        holders: Sequence[HolderInfo],
        *,
        synced: bool = False,
    ) -> int:
        """Write the difference between ``rows`` and the replica; returns rows written."""
        records = {rid: record_tuple(row) for rid, row in rows.items()}
        holder_rows = {h.id: holder_tuple(h) for h in holders}
        with replica.transaction(self.db):
            if self.published is None or self.holders is None:
                # compare and repair: what the replica really holds
                self.published, self.holders, self.version = replica.read_published(
                    self.db, self.store
                )
            published, known = self.published, self.holders
            changed = [t for rid, t in records.items() if published.get(rid) != t]
            deleted = [rid for rid in published if rid not in records]
            holders_changed = [t for hid, t in holder_rows.items() if known.get(hid) != t]
            holders_gone = [hid for hid in known if hid not in holder_rows]
            news = bool(changed or deleted or holders_changed or holders_gone)
            if not news and totals == self.totals and not synced:
                return 0
            version = self.version + 1
            replica.upsert_records(self.db, self.store, changed, version)
            replica.delete_records(self.db, self.store, deleted)
            replica.upsert_holders(self.db, self.store, holders_changed)
            replica.delete_holders(self.db, self.store, holders_gone)
            replica.set_store_totals(self.db, self.store, totals, version, synced=synced)
            if news:
                payload = records_payload(
                    self.store, version, deleted, holders=bool(holders_changed or holders_gone)
                )
                replica.notify(self.db, CHANNEL, payload)
            replica.notify(self.db, CHANNEL, {"store": self.store, "kind": "store"})
        # Only once committed does the replica hold it.
        self.version = version
        self.published = records
        self.holders = holder_rows
        self.totals = totals
        return len(changed) + len(deleted)

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
        with replica.transaction(self.db):
            replica.record_gc_run(
                self.db, self.store, trigger, started_at, finished, records, freed, error
            )
            replica.notify(self.db, CHANNEL, {"store": self.store, "kind": "gc"})
