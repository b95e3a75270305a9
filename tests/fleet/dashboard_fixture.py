"""A seeded fleet for the dashboard's tests: replica rows written straight into a fresh
fleet database (the schema is the agents' own, migrated in place), with times fixed
relative to the tests' clock, so screens are the same on every run.

The tests play the agent where they need a given answer (a refusal, a pending request):
they take the request from the real queue with ``take`` and answer with ``finish``,
exactly as an agent does. Heartbeats are written with the server's clock, which decides
who is online.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import peewee

from cachetui.fleet.replica_store import migrate, notify
from cachetui.fleet.schema import CHANNEL
from cachetui.fleet.url import open_database
from tests.ui.store_fixture import DAY, HOUR, MB, T0

GB = 1000 * MB

# (name, host, heartbeat age in seconds or None for "now", disk free, disk total, last GC)
STORES = [
    ("ci-runner-1", "runner1.example", 0, 120 * GB, 500 * GB, T0 - 3 * HOUR),
    ("ci-runner-2", "runner2.example", 0, 35 * GB, 500 * GB, None),
    ("ci-runner-3", "runner3.example", 1500, 410 * GB, 500 * GB, T0 - 2 * DAY),
]


def _rid(store: int, n: int) -> str:
    return f"s{store}rec{n:020d}"[:25].ljust(25, "0")


def records_of(store: int) -> list[dict[str, Any]]:
    """A base layer, two layers on it (one held), a cache mount: ids fixed per store."""
    base, apt, app, cache = (_rid(store, n) for n in range(1, 5))
    scale = 1 + store
    return [
        dict(id=base, parent=None, mutable=False, in_use=True, held=False, retain=False,
             pending_commit=False, record_type="regular", description="FROM debian:bookworm",
             size=80 * MB * scale, created_at=T0 - 9 * DAY, last_used_at=T0 - 2 * HOUR,
             usage_count=12, shared=False, has_children=True),
        dict(id=apt, parent=base, mutable=False, in_use=False, held=False, retain=False,
             pending_commit=False, record_type="regular", description="RUN apt-get install gcc",
             size=310 * MB * scale, created_at=T0 - 8 * DAY, last_used_at=T0 - 5 * DAY,
             usage_count=3, shared=False, has_children=False),
        dict(id=app, parent=base, mutable=False, in_use=True, held=True, retain=False,
             pending_commit=False, record_type="regular", description="RUN make release",
             size=45 * MB * scale, created_at=T0 - HOUR, last_used_at=T0 - 10 * 60,
             usage_count=1, shared=False, has_children=False),
        dict(id=cache, parent=None, mutable=True, in_use=False, held=False, retain=True,
             pending_commit=False, record_type="exec.cachemount", description="go mod cache",
             size=190 * MB * scale, created_at=T0 - 20 * DAY, last_used_at=T0 - DAY,
             usage_count=7, shared=False, has_children=False),
    ]  # fmt: skip


@contextmanager
def database(url: str) -> Iterator[peewee.PostgresqlDatabase]:
    db = open_database(url)
    try:
        yield db
    finally:
        db.close()


def seed(url: str) -> dict[str, list[str]]:
    """Write the stores and their records; returns store name -> record ids."""
    ids: dict[str, list[str]] = {}
    with database(url) as db:
        migrate(db)
        with db.atomic():
            for n, (name, host, age, free, total, gc) in enumerate(STORES):
                rows = records_of(n)
                ids[name] = [r["id"] for r in rows]
                sizes = [r["size"] for r in rows]
                used = sum(r["size"] for r in rows if r["in_use"])
                db.execute_sql(
                    "INSERT INTO fleet_store (name, host, root, agent_version, agent_pid, "
                    "started_at, heartbeat_at, synced_at, disk_total, disk_free, records, "
                    "total, reclaimable, in_use, shared, last_gc_at, last_gc_freed, "
                    "last_gc_records, version) VALUES (%s, %s, %s, '0.1.0', 4242, %s, "
                    "extract(epoch from clock_timestamp())::float8 - %s, %s, %s, %s, %s, %s, "
                    "%s, %s, 0, %s, %s, %s, 1)",
                    (name, host, f"/var/cache/cachetui-{n + 1}", T0 - 30 * DAY, age,
                     T0 - 30 * DAY, total, free, len(rows), sum(sizes), sum(sizes) - used, used,
                     gc, None if gc is None else 2 * GB, None if gc is None else 31),
                )  # fmt: skip
                for r in rows:
                    insert_record(db, name, r, version=1)
                db.execute_sql(
                    "INSERT INTO fleet_holder (store, id, record, pid, host, created_at, alive) "
                    "VALUES (%s, 1, %s, 5151, %s, %s, true)",
                    (name, rows[2]["id"], host, T0 - 12 * 60),
                )
    return ids


def insert_record(db: peewee.Database, store: str, r: dict[str, Any], version: int) -> None:
    cols = ", ".join(["store", *r, "version"])
    marks = ", ".join(["%s"] * (len(r) + 2))
    update = ", ".join(f"{c} = EXCLUDED.{c}" for c in [*r, "version"] if c != "id")
    db.execute_sql(
        f"INSERT INTO fleet_record ({cols}) VALUES ({marks}) "
        f"ON CONFLICT (store, id) DO UPDATE SET {update}",
        (store, *r.values(), version),
    )


def publish_size(url: str, store: str, record_id: str, size: int) -> None:
    """What an agent does when a file is written on its host: a new row version and a
    notification in the same transaction."""
    with database(url) as db, db.atomic():
        version = db.execute_sql(
            "UPDATE fleet_store SET version = version + 1, "
            "heartbeat_at = extract(epoch from clock_timestamp())::float8 "
            "WHERE name = %s RETURNING version",
            (store,),
        ).fetchone()[0]
        db.execute_sql(
            "UPDATE fleet_record SET size = %s, version = %s WHERE store = %s AND id = %s",
            (size, version, store, record_id),
        )
        notify(db, CHANNEL, {"store": store, "kind": "records", "version": version,
                             "deleted": []})  # fmt: skip


def heartbeat(url: str, store: str, age: float = 0.0) -> None:
    with database(url) as db, db.atomic():
        db.execute_sql(
            "UPDATE fleet_store SET heartbeat_at = "
            "extract(epoch from clock_timestamp())::float8 - %s WHERE name = %s",
            (age, store),
        )
        notify(db, CHANNEL, {"store": store, "kind": "store"})
