"""The fleet's PostgreSQL schema: tables, versions and in-place migrations, notifications.

Tables (every replica row is keyed by its store's name):

* ``fleet_meta``: ``schema_version``;
* ``fleet_store``: one row per store (host agent): where it runs, its heartbeat (server
  clock, epoch seconds), disk total/free, totals, last GC, ``version`` (bumped by every
  publish: replica rows carry the version that wrote them);
* ``fleet_record``: the store's visible records, as its own dashboard shows them;
* ``fleet_holder``: the holders (pid, host, alive) of the store's records;
* ``fleet_request``: the queue of requests to the agents (see ``requests``);
* ``fleet_gc_run``: each GC run an agent made (when, why, records, bytes freed).

Migrations are ordered steps, each run once in its own transaction under an advisory
lock, so several agents starting together migrate once; a database newer than this code
is refused. Changes are announced with ``pg_notify`` inside the transaction that made
them (listeners never see a change before it is committed):

* channel ``CHANNEL`` (``cachetui_fleet``), payload JSON ``{"store", "kind", ...}`` with
  ``kind`` one of ``records`` (with ``version`` and ``deleted`` ids, or ``"reload": true``
  when the ids would not fit), ``store`` (heartbeat, totals, registration), ``request``
  (with ``id`` and ``state``) and ``gc``;
* channel ``REQUEST_CHANNEL`` (``cachetui_request``), payload the store's name: wakes the
  agent of that store when a request for it is queued.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import peewee

from cachetui.core import StoreError

__all__ = [
    "CHANNEL",
    "NOW",
    "REQUEST_CHANNEL",
    "SCHEMA_VERSION",
    "migrate",
    "notify",
    "schema_version",
]

SCHEMA_VERSION = 1
#: The server's clock in epoch seconds: heartbeats, deadlines and ages all use it, so hosts
#: with skewed clocks still agree on who is online.
NOW = "extract(epoch from clock_timestamp())::float8"
CHANNEL = "cachetui_fleet"
REQUEST_CHANNEL = "cachetui_request"
# pg_notify payloads must stay under 8000 bytes: ids beyond this become "reload".
MAX_NOTIFY_IDS = 200
_MIGRATION_LOCK = 0x6361636865  # "cache": one advisory lock id for migrations

_V1 = [
    """CREATE TABLE IF NOT EXISTS fleet_meta (
        key text PRIMARY KEY,
        value text NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS fleet_store (
        name text PRIMARY KEY,
        host text NOT NULL DEFAULT '',
        root text NOT NULL DEFAULT '',
        agent_version text NOT NULL DEFAULT '',
        agent_pid integer NOT NULL DEFAULT 0,
        started_at double precision,
        heartbeat_at double precision,
        stopped_at double precision,
        synced_at double precision,
        disk_total bigint NOT NULL DEFAULT 0,
        disk_free bigint NOT NULL DEFAULT 0,
        records integer NOT NULL DEFAULT 0,
        total bigint NOT NULL DEFAULT 0,
        reclaimable bigint NOT NULL DEFAULT 0,
        in_use bigint NOT NULL DEFAULT 0,
        shared bigint NOT NULL DEFAULT 0,
        last_gc_at double precision,
        last_gc_freed bigint,
        last_gc_records integer,
        last_error text NOT NULL DEFAULT '',
        version bigint NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS fleet_record (
        store text NOT NULL,
        id text NOT NULL,
        parent text,
        mutable boolean NOT NULL,
        in_use boolean NOT NULL,
        held boolean NOT NULL,
        retain boolean NOT NULL,
        pending_commit boolean NOT NULL,
        record_type text NOT NULL,
        description text NOT NULL,
        size bigint NOT NULL,
        created_at double precision NOT NULL,
        last_used_at double precision,
        usage_count integer NOT NULL,
        shared boolean NOT NULL,
        has_children boolean NOT NULL,
        version bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (store, id))""",
    "CREATE INDEX IF NOT EXISTS fleet_record_version ON fleet_record (store, version)",
    """CREATE TABLE IF NOT EXISTS fleet_holder (
        store text NOT NULL,
        id bigint NOT NULL,
        record text NOT NULL,
        pid integer NOT NULL,
        host text NOT NULL,
        created_at double precision NOT NULL,
        alive boolean NOT NULL,
        PRIMARY KEY (store, id))""",
    """CREATE TABLE IF NOT EXISTS fleet_request (
        id bigserial PRIMARY KEY,
        store text NOT NULL,
        kind text NOT NULL,
        payload jsonb NOT NULL DEFAULT '{}'::jsonb,
        state text NOT NULL DEFAULT 'pending',
        created_at double precision NOT NULL
            DEFAULT extract(epoch from clock_timestamp())::float8,
        expires_at double precision NOT NULL,
        taken_at double precision,
        finished_at double precision,
        attempts integer NOT NULL DEFAULT 0,
        progress jsonb,
        result jsonb,
        error text)""",
    "CREATE INDEX IF NOT EXISTS fleet_request_open ON fleet_request (store, state)",
    """CREATE TABLE IF NOT EXISTS fleet_gc_run (
        id bigserial PRIMARY KEY,
        store text NOT NULL,
        trigger text NOT NULL,
        started_at double precision NOT NULL,
        finished_at double precision NOT NULL,
        records integer NOT NULL,
        freed bigint NOT NULL,
        error text NOT NULL DEFAULT '')""",
    "CREATE INDEX IF NOT EXISTS fleet_gc_run_store ON fleet_gc_run (store, id)",
]


def _run_all(statements: list[str]) -> Callable[[peewee.Database], None]:
    def step(db: peewee.Database) -> None:
        for sql in statements:
            db.execute_sql(sql)

    return step


#: (version reached, step): each step takes the schema from the previous version to its own.
MIGRATIONS: tuple[tuple[int, Callable[[peewee.Database], None]], ...] = ((1, _run_all(_V1)),)


def schema_version(db: peewee.Database) -> int:
    """The version the database is at (0 when it holds no fleet schema)."""
    exists = db.execute_sql("SELECT to_regclass('fleet_meta') IS NOT NULL").fetchone()[0]
    if not exists:
        return 0
    row = db.execute_sql("SELECT value FROM fleet_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(db: peewee.Database) -> int:
    """Bring the schema to ``SCHEMA_VERSION`` in place; returns the version found."""
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        found = schema_version(db)
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"the fleet database has schema version {found}, newer than this cachetui "
                f"understands ({SCHEMA_VERSION}); upgrade cachetui"
            )
        for version, step in MIGRATIONS:
            if version > found:
                step(db)
                db.execute_sql(
                    "INSERT INTO fleet_meta (key, value) VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    (str(version),),
                )
    return found


def notify(db: peewee.Database, channel: str, payload: dict[str, Any] | str) -> None:
    """``pg_notify`` in the current transaction (delivered only if it commits)."""
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    db.execute_sql("SELECT pg_notify(%s, %s)", (channel, text))


def records_payload(store: str, version: int, deleted: list[str]) -> dict[str, Any]:
    """The ``records`` notification: the ids removed, or ``reload`` when too many."""
    payload: dict[str, Any] = {"store": store, "kind": "records", "version": version}
    if len(deleted) > MAX_NOTIFY_IDS:
        payload["reload"] = True
    else:
        payload["deleted"] = deleted
    return payload
