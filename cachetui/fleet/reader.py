"""Reading the fleet: the API for dashboards and the command line.

Everything a fleet screen or command shows comes from here; none of it writes (sending
requests is ``cachetui.fleet.requests``). Usage::

    from cachetui.fleet.reader import FleetReader

    with FleetReader(url) as fleet:              # url: postgresql://... or a conninfo
        for store in fleet.stores():             # list[StoreInfo], sorted by name
            print(store.name, store.online, store.status, store.records, store.disk_free)
        rows = fleet.records("ci-1")             # list[FleetRecord] of one store
        rows = fleet.records()                   # every store's records
        fresh = fleet.records("ci-1", since_version=41)  # only rows written after v41
        holders = fleet.holders("ci-1")          # list[FleetHolder]
        req = fleet.request(17)                  # RequestInfo | None
        runs = fleet.gc_runs("ci-1", limit=5)    # list[GcRunInfo], newest first
        fleet.check_online("ci-1")               # StoreInfo, or OfflineError with reason

    with fleet.listen() as changes:              # LISTEN on the fleet's channel
        for note in changes.wait(timeout=1.0):   # list[Notification], [] on timeout
            ...                                   # note.store, note.kind, note.payload

Sending requests (``cachetui.fleet.requests``): open the listener first, then submit,
then wait for the outcome (LISTEN; nothing polls)::

    from cachetui.fleet import requests as queue

    fleet.check_online("ci-1")                           # refuse early, with the reason
    with fleet.listen() as listener:
        confirmed = queue.confirmation(rows_on_screen)     # state the operator saw
        rid = queue.submit(fleet.db, "ci-1", "prune_ids",
                           {"ids": ids, "confirmed": confirmed})
        info = queue.wait(fleet, listener, rid, on_progress=show)   # RequestInfo
        info.state, info.result, info.error   # done/failed/expired; see requests.py

Values:

* ``StoreInfo``: a store's row with ``online`` (heartbeat at most ``OFFLINE_AFTER`` = 10 s
  old by the server's clock, and not stopped), ``age`` (seconds since the last
  heartbeat), ``status`` ("online", "offline for 42s", "stopped 3m ago"), totals
  (``records``, ``total``, ``reclaimable``, ``in_use``, ``shared``), ``disk_total``,
  ``disk_free``, last GC (``last_gc_at``, ``last_gc_freed``, ``last_gc_records``) and
  ``version`` (bumped by every publish of that store);
* ``FleetRecord``: ``store`` plus the fields of the core's ``RecordState`` (``view()``
  builds one), and ``version`` (the store version that wrote it);
* ``Notification``: ``kind`` is ``records`` (payload ``version`` and ``deleted`` ids, or
  ``reload``: re-read the store), ``store`` (registration, totals, disk), ``request``
  (``id``, ``state``) or ``gc``. Records changed since the last version seen are read
  with ``records(store, since_version=v)``; nothing needs polling.

A record of an offline store is still listed (its last known state); ``StoreInfo.age``
says how old that state is, and ``check_online`` gives the reason an action is refused.
"""

from __future__ import annotations

import json
import select
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any

import peewee
import psycopg

from cachetui.core import RecordState
from cachetui.core.errors import CacheError
from cachetui.fleet.schema import CHANNEL, SCHEMA_VERSION, schema_version
from cachetui.fleet.url import check_url, describe_error, drop_connection, open_database

__all__ = [
    "OFFLINE_AFTER",
    "FleetError",
    "FleetReader",
    "FleetRecord",
    "GcRunInfo",
    "Listener",
    "Notification",
    "OfflineError",
    "RequestInfo",
    "StoreInfo",
    "format_age",
]

#: A store whose heartbeat is older than this (seconds) is offline.
OFFLINE_AFTER = 10.0


class FleetError(CacheError):
    """The fleet database cannot be reached or used (the message masks any password)."""


class OfflineError(FleetError):
    """An action on a store that is offline; the message says since when."""


def format_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


@dataclass(frozen=True, slots=True)
class StoreInfo:
    name: str
    host: str
    root: str
    agent_version: str
    agent_pid: int
    started_at: float | None
    heartbeat_at: float | None
    stopped_at: float | None
    synced_at: float | None
    disk_total: int
    disk_free: int
    records: int
    total: int
    reclaimable: int
    in_use: int
    shared: int
    last_gc_at: float | None
    last_gc_freed: int | None
    last_gc_records: int | None
    last_error: str
    version: int
    now: float  # the server's clock when read

    @property
    def age(self) -> float:
        """Seconds since the last heartbeat (how old what is known about the store is)."""
        return self.now - self.heartbeat_at if self.heartbeat_at is not None else float("inf")

    @property
    def online(self) -> bool:
        return self.stopped_at is None and self.age <= OFFLINE_AFTER

    @property
    def status(self) -> str:
        if self.online:
            return "online"
        if self.stopped_at is not None:
            return f"stopped {format_age(self.now - self.stopped_at)} ago"
        if self.heartbeat_at is None:
            return "offline (never heard from)"
        return f"offline for {format_age(self.age)}"

    def offline_reason(self) -> str | None:
        """Why an action on this store is refused now (None when it is online)."""
        if self.online:
            return None
        return (
            f"store {self.name} is {self.status}: its records are as of "
            f"{format_age(self.age)} ago and no action can reach it"
        )


@dataclass(frozen=True, slots=True)
class FleetRecord:
    store: str
    id: str
    parent: str | None
    mutable: bool
    in_use: bool
    held: bool
    retain: bool
    pending_commit: bool
    record_type: str
    description: str
    size: int
    created_at: float
    last_used_at: float | None
    usage_count: int
    shared: bool
    has_children: bool
    version: int

    @property
    def reclaimable(self) -> bool:
        return not self.in_use

    def view(self) -> RecordState:
        """The dashboard's row for this record. The replica carries the core's facts
        (held, children), not the holders or the layer, so the refusal is said from those
        facts and the health is the agent's to report."""
        if self.held:
            refusal: str | None = "it is held by a running process"
        elif self.has_children:
            refusal = "it has child records (prune them first)"
        else:
            refusal = None
        return RecordState(
            id=self.id,
            parent=self.parent,
            mutable=self.mutable,
            in_use=self.in_use,
            size=self.size,
            created_at=self.created_at,
            last_used_at=self.last_used_at,
            usage_count=self.usage_count,
            description=self.description,
            record_type=self.record_type,
            shared=self.shared,
            health="ok",
            held=self.held,
            holders=(),
            in_use_via=None,
            retain=self.retain,
            pending_commit=self.pending_commit,
            has_children=self.has_children,
            layer_id=self.id,
            layer_path="",
            refusal=refusal,
        )


@dataclass(frozen=True, slots=True)
class FleetHolder:
    store: str
    id: int
    record: str
    pid: int
    host: str
    created_at: float
    alive: bool


@dataclass(frozen=True, slots=True)
class RequestInfo:
    id: int
    store: str
    kind: str
    payload: dict[str, Any]
    state: str  # pending, taken, done, failed, expired
    created_at: float
    expires_at: float
    taken_at: float | None
    finished_at: float | None
    attempts: int
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "expired")


@dataclass(frozen=True, slots=True)
class GcRunInfo:
    id: int
    store: str
    trigger: str
    started_at: float
    finished_at: float
    records: int
    freed: int
    error: str


@dataclass(frozen=True, slots=True)
class Notification:
    channel: str
    payload: dict[str, Any]

    @property
    def store(self) -> str:
        return str(self.payload.get("store", ""))

    @property
    def kind(self) -> str:
        return str(self.payload.get("kind", ""))


def _columns(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


_STORE_COLUMNS = [c for c in _columns(StoreInfo) if c != "now"]
_RECORD_COLUMNS = _columns(FleetRecord)
_HOLDER_COLUMNS = _columns(FleetHolder)
_REQUEST_COLUMNS = _columns(RequestInfo)
_GC_COLUMNS = _columns(GcRunInfo)


class Listener:
    """A LISTEN connection: ``wait(timeout)`` returns the notifications that arrived."""

    def __init__(self, url: str, channels: tuple[str, ...] = (CHANNEL,)) -> None:
        self.url = check_url(url)
        try:
            self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            for channel in channels:
                self.conn.execute(f"LISTEN {channel}")
        except psycopg.Error as err:
            raise FleetError(describe_error(err, url)) from None

    def wait(self, timeout: float) -> list[Notification]:
        """Block until a notification comes or ``timeout`` passes (select on the socket)."""
        found = self._drain()
        if found:
            return found
        try:
            ready, _, _ = select.select([self.conn.fileno()], [], [], max(0.0, timeout))
        except (OSError, ValueError, psycopg.Error) as err:
            raise FleetError(describe_error(err, self.url)) from None
        return self._drain() if ready else []

    def _drain(self) -> list[Notification]:
        out: list[Notification] = []
        try:
            for note in self.conn.notifies(timeout=0, stop_after=0):
                try:
                    payload = json.loads(note.payload)
                except ValueError:
                    payload = {"raw": note.payload}
                if not isinstance(payload, dict):
                    payload = {"raw": payload}
                out.append(Notification(note.channel, payload))
        except psycopg.Error as err:
            raise FleetError(describe_error(err, self.url)) from None
        return out

    def close(self) -> None:
        try:
            self.conn.close()
        except psycopg.Error:
            pass

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connection_lost(db: peewee.Database) -> bool:
    """Whether this thread's connection is gone (closed by the server, or broken)."""
    conn = getattr(db._state, "conn", None)  # type: ignore[attr-defined]
    return conn is not None and bool(conn.closed or getattr(conn, "broken", False))


class FleetReader:
    """Read-only queries over the fleet database (one connection per thread)."""

    def __init__(self, url: str) -> None:
        self.url = check_url(url)
        self.db = open_database(self.url)
        self._checked = False

    def __enter__(self) -> FleetReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        # Each thread has its own connection (Peewee keeps them per thread, and the
        # dashboard's workers come from a pool), so after a server restart every one of
        # them is dead without knowing it: its next statement is the first to find out.
        # A read changes nothing, so a connection found dead is replaced and the read
        # sent once more; only a failure on a fresh connection is the caller's.
        for attempt in (1, 2):
            reused = not self.db.is_closed()
            try:
                if not self._checked:
                    self._check_schema()
                return list(self.db.execute_sql(sql, params).fetchall())
            except (peewee.DatabaseError, peewee.InterfaceError, psycopg.Error) as err:
                lost = _connection_lost(self.db)
                drop_connection(self.db)
                if reused and lost and attempt == 1:
                    continue
                raise FleetError(describe_error(err, self.url)) from None
        raise AssertionError("unreachable")

    def _check_schema(self) -> None:
        version = schema_version(self.db)
        if version == 0:
            raise FleetError(
                "the fleet database has no fleet schema yet: start an agent "
                "(cachetui agent --fleet-url ...) first"
            )
        if version > SCHEMA_VERSION:
            raise FleetError(
                f"the fleet database has schema version {version}, newer than this cachetui "
                f"understands ({SCHEMA_VERSION}); upgrade cachetui"
            )
        self._checked = True

    # -- stores ---------------------------------------------------------------------------

    def stores(self) -> list[StoreInfo]:
        rows = self._rows(
            f"SELECT {', '.join(_STORE_COLUMNS)}, extract(epoch from clock_timestamp())::float8 "
            "FROM fleet_store ORDER BY name"
        )
        return [StoreInfo(*row) for row in rows]

    def store(self, name: str) -> StoreInfo | None:
        rows = self._rows(
            f"SELECT {', '.join(_STORE_COLUMNS)}, extract(epoch from clock_timestamp())::float8 "
            "FROM fleet_store WHERE name = %s",
            (name,),
        )
        return StoreInfo(*rows[0]) if rows else None

    def check_online(self, name: str) -> StoreInfo:
        """The store, or ``OfflineError`` (unknown, stopped or silent past the limit)."""
        info = self.store(name)
        if info is None:
            known = ", ".join(s.name for s in self.stores()) or "none"
            raise FleetError(f"no store named {name!r} in the fleet (known: {known})")
        reason = info.offline_reason()
        if reason is not None:
            raise OfflineError(reason)
        return info

    # -- records, holders ---------------------------------------------------------------

    def records(
        self, store: str | None = None, *, since_version: int | None = None
    ) -> list[FleetRecord]:
        """Records of one store (or all, by store), largest first then by id."""
        where: list[str] = []
        params: list[Any] = []
        if store is not None:
            where.append("store = %s")
            params.append(store)
        if since_version is not None:
            where.append("version > %s")
            params.append(since_version)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._rows(
            f"SELECT {', '.join(_RECORD_COLUMNS)} FROM fleet_record {clause} "
            "ORDER BY size DESC, id, store",
            tuple(params),
        )
        return [FleetRecord(*row) for row in rows]

    def record_rows(self, store: str, *, since_version: int | None = None) -> list[tuple[Any, ...]]:
        """``records(store, ...)`` as raw tuples in ``FleetRecord``'s field order, for a
        caller that turns them into its own values one at a time (no second copy)."""
        where = "store = %s"
        params: list[Any] = [store]
        if since_version is not None:
            where += " AND version > %s"
            params.append(since_version)
        return self._rows(
            f"SELECT {', '.join(_RECORD_COLUMNS)} FROM fleet_record WHERE {where} "
            "ORDER BY size DESC, id",
            tuple(params),
        )

    def records_of(self, stores: Sequence[str]) -> list[FleetRecord]:
        """Records of these stores, largest first then by id."""
        rows = self._rows(
            f"SELECT {', '.join(_RECORD_COLUMNS)} FROM fleet_record WHERE store = ANY(%s) "
            "ORDER BY size DESC, id, store",
            (list(stores),),
        )
        return [FleetRecord(*row) for row in rows]

    def iter_records(self, stores: list[str] | None = None) -> Iterator[tuple[Any, ...]]:
        """Raw tuples in ``FleetRecord`` column order (for 200,000 rows without objects)."""
        clause, params = "", tuple[Any, ...]()
        if stores:
            clause, params = "WHERE store = ANY(%s)", (stores,)
        yield from self._rows(
            f"SELECT {', '.join(_RECORD_COLUMNS)} FROM fleet_record {clause} "
            "ORDER BY size DESC, id, store",
            params,
        )

    def holders(self, store: str) -> list[FleetHolder]:
        rows = self._rows(
            f"SELECT {', '.join(_HOLDER_COLUMNS)} FROM fleet_holder WHERE store = %s ORDER BY id",
            (store,),
        )
        return [FleetHolder(*row) for row in rows]

    # -- requests and GC ----------------------------------------------------------------

    def request(self, request_id: int) -> RequestInfo | None:
        rows = self._rows(
            f"SELECT {', '.join(_REQUEST_COLUMNS)} FROM fleet_request WHERE id = %s",
            (request_id,),
        )
        return RequestInfo(*rows[0]) if rows else None

    def requests(self, store: str | None = None, *, open_only: bool = False) -> list[RequestInfo]:
        where, params = [], []
        if store is not None:
            where.append("store = %s")
            params.append(store)
        if open_only:
            where.append("state IN ('pending', 'taken')")
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._rows(
            f"SELECT {', '.join(_REQUEST_COLUMNS)} FROM fleet_request {clause} ORDER BY id",
            tuple(params),
        )
        return [RequestInfo(*row) for row in rows]

    def gc_runs(self, store: str, *, limit: int = 20) -> list[GcRunInfo]:
        rows = self._rows(
            f"SELECT {', '.join(_GC_COLUMNS)} FROM fleet_gc_run WHERE store = %s "
            "ORDER BY id DESC LIMIT %s",
            (store, limit),
        )
        return [GcRunInfo(*row) for row in rows]

    def server_now(self) -> float:
        """The server's clock (epoch seconds): deadlines and ages are measured by it."""
        return float(self._rows("SELECT extract(epoch from clock_timestamp())::float8")[0][0])

    def listen(self) -> Listener:
        return Listener(self.url)
