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
from collections.abc import Callable, Generator, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

import psycopg

from cachetui.core import CacheError
from cachetui.fleet import replica_store as replica
from cachetui.fleet.schema import CHANNEL, SCHEMA_VERSION
from cachetui.fleet.url import check_url, describe_error, open_database
from cachetui.fleet.values import (
    OFFLINE_AFTER,
    FleetHolder,
    FleetRecord,
    GcRunInfo,
    Notification,
    RequestInfo,
    StoreInfo,
    format_age,
)

__all__ = [
    "OFFLINE_AFTER",
    "FleetError",
    "FleetHolder",
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

T = TypeVar("T")


class FleetError(CacheError):
    """The fleet database cannot be reached or used (the message masks any password)."""


class OfflineError(FleetError):
    """An action on a store that is offline; the message says since when."""


class Listener:
    """A LISTEN connection: ``wait(timeout)`` returns the notifications that arrived."""

    def __init__(self, url: str, channels: tuple[str, ...] = (CHANNEL,)) -> None:
        self.url = check_url(url)
        try:
            self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            for channel in channels:
                replica.listen(self.conn, channel)
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


class FleetReader:
    """Read-only queries over the fleet database (one connection per thread; a
    connection a server restart broke is replaced on its first read, see
    ``replica_store``)."""

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

    def _read(self, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A named read, with the schema checked once; database errors as ``FleetError``."""
        try:
            if not self._checked:
                self._check_schema()
            return operation(self.db, *args, **kwargs)
        except replica.DB_ERRORS as err:
            raise FleetError(describe_error(err, self.url)) from None

    def _check_schema(self) -> None:
        version = replica.schema_version(self.db)
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
        return self._read(replica.read_stores)

    def store(self, name: str) -> StoreInfo | None:
        found = self._read(replica.read_stores, name)
        return found[0] if found else None

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
        stores = [store] if store is not None else None
        return self._read(replica.read_records, stores, since_version=since_version)

    def record_rows(self, store: str, *, since_version: int | None = None) -> list[tuple[Any, ...]]:
        """``records(store, ...)`` as raw tuples in ``FleetRecord``'s field order, for a
        caller that turns them into its own values one at a time (no second copy)."""
        return self._read(replica.read_record_rows, [store], since_version=since_version)

    def record_stream(
        self, store: str, *, since_version: int | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """``record_rows``, made into Python values a batch at a time as it is iterated
        (the query runs, and fails as ``FleetError``, when this is called; a failure
        while the rows are fetched is a ``FleetError`` too). Closing the iterator early
        closes the cursor."""
        rows = self._read(replica.read_record_stream, [store], since_version=since_version)
        return self._fetched(rows)

    def _fetched(
        self, rows: Generator[tuple[Any, ...], None, None]
    ) -> Generator[tuple[Any, ...], None, None]:
        # ``yield from`` hands a close() on to ``rows``, whose cursor is then closed.
        try:
            yield from rows
        except replica.DB_ERRORS as err:
            raise FleetError(describe_error(err, self.url)) from None

    def records_of(self, stores: Sequence[str]) -> list[FleetRecord]:
        """Records of these stores, largest first then by id."""
        return self._read(replica.read_records, list(stores))

    def iter_records(self, stores: list[str] | None = None) -> Iterator[tuple[Any, ...]]:
        """Raw tuples in ``FleetRecord`` column order (for 200,000 rows without objects)."""
        yield from self._read(replica.read_record_rows, stores or None)

    def holders(self, store: str) -> list[FleetHolder]:
        return self._read(replica.read_holders, store)

    # -- requests and GC ----------------------------------------------------------------

    def request(self, request_id: int) -> RequestInfo | None:
        return self._read(replica.read_request, request_id)

    def requests(self, store: str | None = None, *, open_only: bool = False) -> list[RequestInfo]:
        return self._read(replica.read_requests, store, open_only=open_only)

    def gc_runs(self, store: str, *, limit: int = 20) -> list[GcRunInfo]:
        return self._read(replica.read_gc_runs, store, limit)

    def server_now(self) -> float:
        """The server's clock (epoch seconds): deadlines and ages are measured by it."""
        return self._read(replica.server_now)

    def listen(self) -> Listener:
        return Listener(self.url)
