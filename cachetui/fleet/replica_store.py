"""The fleet database's named operations: every SQL statement the fleet sends is here.

The agent's publisher, the request queue, the reader and the agent call these verbs
(``upsert_records``, ``mark_stopped``, ``claim_request``, ``read_stores``, ...) and never
write SQL themselves. The tables, their migrations and the notification channels are
described in ``cachetui.fleet.schema``.

Connections. Peewee keeps one connection per thread (the dashboard's workers come from a
pool, the agent has a thread per job), and after a server restart every one of them is
dead without knowing it: its next statement is the first to find out. Nothing has been
done on a dead connection, so:

* a read (one statement, autocommit) found on a dead connection is sent again once on a
  fresh one;
* ``transaction()`` opens the connection and sends ``BEGIN`` first; a dead connection
  fails there, before any statement of the transaction, and is replaced once;

so the first read or the first write after a restart is not lost. A failure on a fresh
connection, or inside a transaction once it began, is the caller's (a write is never sent
twice). Every write that others must see sends its ``pg_notify`` inside the same
transaction (``notify``), so a listener never hears of a change before it is committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

import peewee
import psycopg
from psycopg.types.json import Jsonb

from cachetui.core import StoreError, Totals
from cachetui.fleet.schema import SCHEMA_VERSION
from cachetui.fleet.url import drop_connection
from cachetui.fleet.values import FleetHolder, FleetRecord, GcRunInfo, RequestInfo, StoreInfo

__all__ = [
    "DB_ERRORS",
    "RECORD_FIELDS",
    "claim_request",
    "delete_holders",
    "delete_records",
    "expire_requests",
    "finish_request",
    "heartbeat",
    "insert_request",
    "listen",
    "mark_stopped",
    "migrate",
    "notify",
    "read_gc_runs",
    "read_holders",
    "read_published",
    "read_record_rows",
    "read_record_stream",
    "read_records",
    "read_request",
    "read_requests",
    "read_stores",
    "record_gc_run",
    "register_store",
    "schema_version",
    "server_now",
    "set_request_progress",
    "set_store_totals",
    "take_name_lock",
    "transaction",
    "upsert_holders",
    "upsert_records",
]

#: What a lost or refused connection raises, through Peewee or straight from psycopg.
DB_ERRORS: tuple[type[BaseException], ...] = (
    peewee.DatabaseError,
    peewee.InterfaceError,
    psycopg.Error,
)

#: The server's clock in epoch seconds: heartbeats, deadlines and ages all use it, so hosts
#: with skewed clocks still agree on who is online.
_NOW = "extract(epoch from clock_timestamp())::float8"
_MIGRATION_LOCK = 0x6361636865  # "cache": one advisory lock id for migrations

#: A replicated record's columns, in ``FleetRecord``'s order after ``store`` (the
#: publisher's tuples follow it).
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


def _columns(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


_STORE_COLUMNS = ", ".join(c for c in _columns(StoreInfo) if c != "now")
_RECORD_COLUMNS = ", ".join(_columns(FleetRecord))
_HOLDER_COLUMNS = ", ".join(_columns(FleetHolder))
_REQUEST_COLUMNS = ", ".join(_columns(RequestInfo))
_GC_COLUMNS = ", ".join(_columns(GcRunInfo))
assert _columns(FleetRecord) == ["store", *RECORD_FIELDS, "version"]

_RECORD_SET = ", ".join(f"{f} = EXCLUDED.{f}" for f in (*RECORD_FIELDS[1:], "version"))
_RECORD_UPSERT = (
    f"INSERT INTO fleet_record (store, {', '.join(RECORD_FIELDS)}, version) "
    f"VALUES (%s, {', '.join(['%s'] * len(RECORD_FIELDS))}, %s) "
    f"ON CONFLICT (store, id) DO UPDATE SET {_RECORD_SET}"
)
_HOLDER_UPSERT = (
    f"INSERT INTO fleet_holder (store, {', '.join(HOLDER_FIELDS)}) "
    f"VALUES (%s, {', '.join(['%s'] * len(HOLDER_FIELDS))}) "
    "ON CONFLICT (store, id) DO UPDATE SET "
    + ", ".join(f"{f} = EXCLUDED.{f}" for f in HOLDER_FIELDS[1:])
)
#: From this many rows on, records go through COPY into a temporary table and one
#: INSERT ... ON CONFLICT (the initial snapshot of 10,000 records in one round trip).
COPY_FROM = 200
_STAGE = "fleet_record_in"

# -- connections ------------------------------------------------------------------------


def _connection_lost(db: peewee.Database) -> bool:
    """Whether this thread's connection is gone (closed by the server, or broken)."""
    conn = getattr(db._state, "conn", None)  # type: ignore[attr-defined]
    return conn is not None and bool(conn.closed or getattr(conn, "broken", False))


def _read(db: peewee.Database, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """One read statement; a connection found dead is replaced and the read sent again."""
    return list(_execute(db, sql, params).fetchall())


def _execute(db: peewee.Database, sql: str, params: Sequence[Any] = ()) -> Any:
    """``_read``'s statement, its cursor returned with the whole result received (the
    rows become Python values as they are fetched)."""
    for attempt in (1, 2):
        # inside a transaction a lost connection lost the transaction: the caller's
        retry = not db.is_closed() and not db.in_transaction() and attempt == 1
        try:
            return db.execute_sql(sql, tuple(params))
        except DB_ERRORS:
            lost = _connection_lost(db)
            if not retry:
                raise
            drop_connection(db)
            if not lost:
                raise
    raise AssertionError("unreachable")


@contextmanager
def transaction(db: peewee.Database) -> Iterator[None]:
    """One transaction (nested ones are savepoints). A connection the server dropped
    fails at ``BEGIN``, before anything was done: it is replaced once, then the
    transaction runs; after a failure inside, the connection is forgotten."""
    for attempt in (1, 2):
        reused = not db.is_closed()
        atomic = db.atomic()
        try:
            atomic.__enter__()
        except DB_ERRORS:
            lost = _connection_lost(db)
            drop_connection(db)
            if reused and lost and attempt == 1 and db.transaction_depth() == 0:
                continue
            raise
        break
    try:
        yield
    except BaseException as err:
        try:
            atomic.__exit__(type(err), err, err.__traceback__)
        except DB_ERRORS:
            drop_connection(db)  # the rollback failed too: the connection is gone
        raise
    else:
        try:
            atomic.__exit__(None, None, None)
        except DB_ERRORS:
            drop_connection(db)
            raise


def _write(db: peewee.Database, sql: str, params: Sequence[Any] = ()) -> Any:
    """A statement inside the caller's ``transaction`` (never retried)."""
    return db.execute_sql(sql, tuple(params))


def notify(db: peewee.Database, channel: str, payload: dict[str, Any] | str) -> None:
    """``pg_notify`` in the current transaction (delivered only if it commits)."""
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    _write(db, "SELECT pg_notify(%s, %s)", (channel, text))


def listen(conn: psycopg.Connection[Any], channel: str) -> None:
    """``LISTEN`` on an autocommit psycopg connection (the channel is ours, not input)."""
    conn.execute(f"LISTEN {channel}")


def take_name_lock(conn: psycopg.Connection[Any], key: int) -> bool:
    """The session advisory lock that keeps a second agent off a store name."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


def server_now(db: peewee.Database) -> float:
    """The server's clock (epoch seconds): deadlines and ages are measured by it."""
    return float(_read(db, f"SELECT {_NOW}")[0][0])


# -- schema -----------------------------------------------------------------------------

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
            _write(db, sql)

    return step


#: (version reached, step): each step takes the schema from the previous version to its own.
MIGRATIONS: tuple[tuple[int, Callable[[peewee.Database], None]], ...] = ((1, _run_all(_V1)),)


def schema_version(db: peewee.Database) -> int:
    """The version the database is at (0 when it holds no fleet schema)."""
    exists = _read(db, "SELECT to_regclass('fleet_meta') IS NOT NULL")[0][0]
    if not exists:
        return 0
    rows = _read(db, "SELECT value FROM fleet_meta WHERE key = 'schema_version'")
    return int(rows[0][0]) if rows else 0


def migrate(db: peewee.Database) -> int:
    """Bring the schema to ``SCHEMA_VERSION`` in place; returns the version found."""
    with transaction(db):
        _write(db, "SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        found = schema_version(db)
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"the fleet database has schema version {found}, newer than this cachetui "
                f"understands ({SCHEMA_VERSION}); upgrade cachetui"
            )
        for version, step in MIGRATIONS:
            if version > found:
                step(db)
                _write(
                    db,
                    "INSERT INTO fleet_meta (key, value) VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                    (str(version),),
                )
    return found


# -- a store's registration and liveness (its agent) ------------------------------------


def register_store(
    db: peewee.Database, name: str, host: str, root: str, agent_version: str, agent_pid: int
) -> None:
    """Insert or take over a store's row: started and heard from now, not stopped."""
    _write(
        db,
        "INSERT INTO fleet_store (name, host, root, agent_version, agent_pid, "
        f"started_at, heartbeat_at, stopped_at) VALUES (%s, %s, %s, %s, %s, {_NOW}, {_NOW}, "
        "NULL) ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, root = EXCLUDED.root, "
        "agent_version = EXCLUDED.agent_version, agent_pid = EXCLUDED.agent_pid, "
        "started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, "
        "stopped_at = NULL",
        (name, host, root, agent_version, agent_pid),
    )


def heartbeat(db: peewee.Database, store: str, disk_total: int, disk_free: int) -> int | None:
    """Stamp the store's heartbeat (server clock) and disk; returns the free space it had
    before, or None when the store's row is gone (a database restored or replaced)."""
    rows = _write(
        db, "SELECT disk_free FROM fleet_store WHERE name = %s FOR UPDATE", (store,)
    ).fetchall()
    if not rows:
        return None
    _write(
        db,
        f"UPDATE fleet_store SET heartbeat_at = {_NOW}, disk_total = %s, disk_free = %s, "
        "stopped_at = NULL WHERE name = %s",
        (disk_total, disk_free, store),
    )
    return int(rows[0][0])


def mark_stopped(db: peewee.Database, store: str) -> None:
    _write(db, f"UPDATE fleet_store SET stopped_at = {_NOW} WHERE name = %s", (store,))


def set_store_totals(
    db: peewee.Database, store: str, totals: Totals, version: int, *, synced: bool
) -> None:
    """The store's totals and the version its replica rows are at."""
    synced_sql = f", synced_at = {_NOW}" if synced else ""
    _write(
        db,
        "UPDATE fleet_store SET records = %s, total = %s, reclaimable = %s, "
        f"in_use = %s, shared = %s, version = %s{synced_sql} WHERE name = %s",
        (
            totals.records,
            totals.total,
            totals.reclaimable,
            totals.in_use,
            totals.shared,
            version,
            store,
        ),
    )


def record_gc_run(
    db: peewee.Database,
    store: str,
    trigger: str,
    started_at: float,
    finished_at: float,
    records: int,
    freed: int,
    error: str,
) -> None:
    """A GC run, and the store's last-GC columns."""
    _write(
        db,
        "INSERT INTO fleet_gc_run (store, trigger, started_at, finished_at, records, "
        "freed, error) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (store, trigger, started_at, finished_at, records, freed, error),
    )
    _write(
        db,
        "UPDATE fleet_store SET last_gc_at = %s, last_gc_freed = %s, "
        "last_gc_records = %s WHERE name = %s",
        (finished_at, freed, records, store),
    )


# -- a store's replica (its agent's publisher) ------------------------------------------


def read_published(
    db: peewee.Database, store: str
) -> tuple[dict[str, tuple[Any, ...]], dict[int, tuple[Any, ...]], int]:
    """What the replica holds for a store: record tuples (``RECORD_FIELDS``) by id, holder
    tuples (``HOLDER_FIELDS``) by id, and the store's version (compare and repair)."""
    records = _write(
        db, f"SELECT {', '.join(RECORD_FIELDS)} FROM fleet_record WHERE store = %s", (store,)
    ).fetchall()
    holders = _write(
        db, f"SELECT {', '.join(HOLDER_FIELDS)} FROM fleet_holder WHERE store = %s", (store,)
    ).fetchall()
    version = _write(db, "SELECT version FROM fleet_store WHERE name = %s", (store,)).fetchone()
    return (
        {row[0]: tuple(row) for row in records},
        {int(row[0]): tuple(row) for row in holders},
        int(version[0]) if version else 0,
    )


def upsert_records(
    db: peewee.Database, store: str, rows: Sequence[tuple[Any, ...]], version: int
) -> None:
    """Insert or update record tuples (``RECORD_FIELDS``), stamped with ``version``:
    pipelined for a few, ``COPY`` into a temporary table for many."""
    if not rows:
        return
    cursor = db.cursor()
    if len(rows) < COPY_FROM:
        cursor.executemany(_RECORD_UPSERT, [(store, *t, version) for t in rows])
        return
    columns = f"store, {', '.join(RECORD_FIELDS)}, version"
    # a temporary table lives as long as the connection: created again after a reconnect
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} "
        "(LIKE fleet_record INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    with cursor.copy(f"COPY {_STAGE} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row((store, *row, version))
    cursor.execute(
        f"INSERT INTO fleet_record ({columns}) SELECT {columns} FROM {_STAGE} "
        f"ON CONFLICT (store, id) DO UPDATE SET {_RECORD_SET}"
    )


def delete_records(db: peewee.Database, store: str, ids: Sequence[str]) -> None:
    if ids:
        _write(db, "DELETE FROM fleet_record WHERE store = %s AND id = ANY(%s)", (store, list(ids)))


def upsert_holders(db: peewee.Database, store: str, rows: Sequence[tuple[Any, ...]]) -> None:
    if rows:
        db.cursor().executemany(_HOLDER_UPSERT, [(store, *t) for t in rows])


def delete_holders(db: peewee.Database, store: str, ids: Sequence[int]) -> None:
    if ids:
        _write(db, "DELETE FROM fleet_holder WHERE store = %s AND id = ANY(%s)", (store, list(ids)))


# -- the request queue ------------------------------------------------------------------


def insert_request(
    db: peewee.Database, store: str, kind: str, payload: dict[str, Any], ttl: float
) -> int:
    """Queue a request, expiring ``ttl`` seconds from now by the server's clock."""
    row = _write(
        db,
        "INSERT INTO fleet_request (store, kind, payload, expires_at) "
        f"VALUES (%s, %s, %s, {_NOW} + %s) RETURNING id",
        (store, kind, Jsonb(payload), ttl),
    ).fetchone()
    return int(row[0])


def expire_requests(db: peewee.Database, store: str | None = None) -> list[tuple[int, str]]:
    """Mark pending requests past their deadline expired: their (id, store)."""
    where = "AND store = %s" if store is not None else ""
    params: tuple[Any, ...] = (store,) if store is not None else ()
    rows = _write(
        db,
        f"UPDATE fleet_request SET state = 'expired', finished_at = {_NOW}, "
        "error = 'expired: no agent took it in time' "
        f"WHERE state = 'pending' AND expires_at <= {_NOW} {where} RETURNING id, store",
        params,
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def claim_request(db: peewee.Database, store: str) -> tuple[int, str, Any, str, int] | None:
    """The oldest request of ``store`` that can run now (taken by a dead agent, or
    pending and not expired), marked taken: (id, kind, payload, state before, attempts
    before). Rows another transaction holds are skipped (``SKIP LOCKED``)."""
    row = _write(
        db,
        "SELECT id, kind, payload, state, attempts FROM fleet_request "
        "WHERE store = %s AND (state = 'taken' OR (state = 'pending' AND "
        f"expires_at > {_NOW})) ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        (store,),
    ).fetchone()
    if row is None:
        return None
    request_id, kind, payload, state, attempts = row
    _write(
        db,
        "UPDATE fleet_request SET state = 'taken', attempts = attempts + 1, "
        f"taken_at = {_NOW} WHERE id = %s",
        (request_id,),
    )
    return int(request_id), str(kind), payload, str(state), int(attempts)


def set_request_progress(db: peewee.Database, request_id: int, progress: dict[str, Any]) -> None:
    _write(
        db,
        "UPDATE fleet_request SET progress = %s WHERE id = %s AND state = 'taken'",
        (Jsonb(progress), request_id),
    )


def finish_request(
    db: peewee.Database,
    request_id: int,
    state: str,
    result: dict[str, Any] | None,
    error: str | None,
) -> None:
    """The outcome of a taken request: ``done`` with a result or ``failed``."""
    _write(
        db,
        f"UPDATE fleet_request SET state = %s, result = %s, error = %s, finished_at = {_NOW} "
        "WHERE id = %s AND state = 'taken'",
        (state, Jsonb(result) if result is not None else None, error, request_id),
    )


# -- reading (dashboards and the command line) ------------------------------------------


def read_stores(db: peewee.Database, name: str | None = None) -> list[StoreInfo]:
    """Every store (by name), or the one named; each with the server's clock."""
    where, params = ("WHERE name = %s", (name,)) if name is not None else ("", ())
    rows = _read(
        db, f"SELECT {_STORE_COLUMNS}, {_NOW} FROM fleet_store {where} ORDER BY name", params
    )
    return [StoreInfo(*row) for row in rows]


def read_record_rows(
    db: peewee.Database,
    stores: Sequence[str] | None = None,
    *,
    since_version: int | None = None,
) -> list[tuple[Any, ...]]:
    """Record rows in ``FleetRecord``'s field order, largest first then by id: of these
    stores (all when None), written after ``since_version`` when given."""
    sql, params = _record_query(stores, since_version)
    return _read(db, sql, params)


#: How many rows ``read_record_stream`` turns into Python values at a time.
STREAM_BATCH = 500


def read_record_stream(
    db: peewee.Database,
    stores: Sequence[str] | None = None,
    *,
    since_version: int | None = None,
) -> Generator[tuple[Any, ...], None, None]:
    """``read_record_rows``, a batch of rows at a time: a reader that keeps its own
    packed values never holds the whole result as Python tuples (10,000 per store).
    The statement runs (and fails) here; the rows come as they are iterated."""
    sql, params = _record_query(stores, since_version)
    cursor = _execute(db, sql, params)

    def rows() -> Generator[tuple[Any, ...], None, None]:
        try:
            while batch := cursor.fetchmany(STREAM_BATCH):
                yield from batch
        finally:  # also when the reader stops early (close() on this generator)
            cursor.close()

    return rows()


def _record_query(stores: Sequence[str] | None, since_version: int | None) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if stores is not None:
        if len(stores) == 1:
            where.append("store = %s")
            params.append(stores[0])
        else:
            where.append("store = ANY(%s)")
            params.append(list(stores))
    if since_version is not None:
        where.append("version > %s")
        params.append(since_version)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {_RECORD_COLUMNS} FROM fleet_record {clause} ORDER BY size DESC, id, store"
    return sql, params


def read_records(
    db: peewee.Database, stores: Sequence[str] | None = None, *, since_version: int | None = None
) -> list[FleetRecord]:
    rows = read_record_rows(db, stores, since_version=since_version)
    return [FleetRecord(*row) for row in rows]


def read_holders(db: peewee.Database, store: str) -> list[FleetHolder]:
    rows = _read(
        db, f"SELECT {_HOLDER_COLUMNS} FROM fleet_holder WHERE store = %s ORDER BY id", (store,)
    )
    return [FleetHolder(*row) for row in rows]


def read_request(db: peewee.Database, request_id: int) -> RequestInfo | None:
    rows = _read(db, f"SELECT {_REQUEST_COLUMNS} FROM fleet_request WHERE id = %s", (request_id,))
    return RequestInfo(*rows[0]) if rows else None


def read_requests(
    db: peewee.Database, store: str | None = None, *, open_only: bool = False
) -> list[RequestInfo]:
    where: list[str] = []
    params: list[Any] = []
    if store is not None:
        where.append("store = %s")
        params.append(store)
    if open_only:
        where.append("state IN ('pending', 'taken')")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = _read(db, f"SELECT {_REQUEST_COLUMNS} FROM fleet_request {clause} ORDER BY id", params)
    return [RequestInfo(*row) for row in rows]


def read_gc_runs(db: peewee.Database, store: str, limit: int) -> list[GcRunInfo]:
    rows = _read(
        db,
        f"SELECT {_GC_COLUMNS} FROM fleet_gc_run WHERE store = %s ORDER BY id DESC LIMIT %s",
        (store, limit),
    )
    return [GcRunInfo(*row) for row in rows]
