"""The agent: one per build host, keeping the fleet's replica of its store current.

``Agent(config).run()`` blocks until ``stop()`` (SIGTERM/SIGINT in ``cachetui agent``).
Four threads, each with its own connection to PostgreSQL:

* **publish**: a full snapshot at start, then every change the core's change feed
  reports (watchfiles for sizes, ``PRAGMA data_version`` for records and holders),
  folded into the same ``CacheService`` view the local dashboard uses and written as a
  difference (``Publisher``);
* **heartbeat**: every ``HEARTBEAT`` seconds, the disk's total and free bytes; expires
  this store's requests nobody took in time;
* **listen**: ``LISTEN cachetui_request`` (wakes the request thread) and the session
  advisory lock that makes this agent the only one serving its store name;
* **requests**: takes this store's requests (``FOR UPDATE SKIP LOCKED``), runs them
  (``executor``), writes progress and results; runs GC on its schedule, and when free
  space falls below the GC list's ``min_free_space``; each run is recorded.

When PostgreSQL is unreachable each thread retries with backoff (``BACKOFF_MAX`` at most)
and the publisher re-reads and repairs the replica once it is back. Builds never wait on
any of this: the store is local, the agent only reads it and runs requests on it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import peewee
import psycopg

from cachetui import __version__
from cachetui.core import (
    CacheError,
    ChangeFeed,
    ChangeSet,
    DiskStat,
    HolderInfo,
    PruneOptions,
    RecordState,
    default_gc_policies,
    disk_stat,
)
from cachetui.fleet import replica_store as replica
from cachetui.fleet import requests as queue
from cachetui.fleet.executor import MalformedRequest, execute
from cachetui.fleet.publisher import Publisher, Registration
from cachetui.fleet.schema import REQUEST_CHANNEL
from cachetui.fleet.url import check_url, describe_error, drop_connection, mask, open_database
from cachetui.service import CacheService

__all__ = ["Agent", "AgentConfig", "AgentError"]

HEARTBEAT = 2.0
LOW_SPACE_PAUSE = 60.0
BACKOFF_START = 0.2
BACKOFF_MAX = 5.0
_DB_ERRORS = (peewee.PeeweeException, psycopg.Error, OSError)


class AgentError(Exception):
    """The agent cannot start (its message says why, with any password masked)."""


@dataclass
class AgentConfig:
    root: Path
    url: str
    name: str = field(default_factory=socket.gethostname)
    gc_interval: float = 300.0  # seconds; 0 turns scheduled GC off
    gc_policies: list[PruneOptions] | None = None  # None: the core's default list
    gc_source: str = "default"
    heartbeat: float = HEARTBEAT


class _Outage:
    """One thread's view of the database's reachability: logs the first failure of an
    outage and the recovery, not every retry; hands out the backoff delays."""

    def __init__(self, agent: Agent, what: str) -> None:
        self.agent = agent
        self.what = what
        self.failing = False
        self.delay = BACKOFF_START

    def failed(self, err: BaseException) -> float:
        _drop(self.agent.db)
        if not self.failing:
            self.agent.log(f"{self.what}: {self.agent._db_error(err)}; retrying with backoff")
        self.failing = True
        delay, self.delay = self.delay, min(self.delay * 2, BACKOFF_MAX)
        return delay

    def ok(self) -> None:
        if self.failing:
            self.agent.log(f"{self.what}: the fleet database is reachable again")
        self.failing = False
        self.delay = BACKOFF_START


_drop = drop_connection


def _holders_of(rows: Iterable[RecordState]) -> list[HolderInfo]:
    """Every holder the view shows, once each (a pair's two halves list the same ones):
    the core's own value, with its liveness, instead of a second read of the store."""
    found: dict[int, HolderInfo] = {}
    for row in rows:
        for holder in row.holders:
            found[holder.id] = holder
    return list(found.values())


class Agent:
    def __init__(self, config: AgentConfig, *, log: TextIO | None = None) -> None:
        self.config = config
        self.url = check_url(config.url)
        self.name = config.name
        self.log_stream = log or sys.stderr
        self.stop_event = threading.Event()
        self.db = open_database(self.url)
        self.service = CacheService(config.root)
        self.publisher = Publisher(self.db, self.name)
        self._changes = ChangeSet()
        self._changes_lock = threading.Lock()
        self._changed = threading.Event()
        self._wake_requests = threading.Event()
        self._resync = threading.Event()  # the replica must be compared and repaired
        self._low_space = threading.Event()  # free space fell below the list's min_free_space
        self._last_low_space_gc = float("-inf")
        self._feed_errors_seen = 0
        self._threads: list[threading.Thread] = []
        self._feed: ChangeFeed | None = None
        self._lock_conn: psycopg.Connection[Any] | None = None
        self.fatal: str | None = None
        self.synced = threading.Event()  # the first full snapshot is in

    # -- logging --------------------------------------------------------------------------

    def log(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        try:
            print(f"{stamp} cachetui agent[{self.name}]: {message}", file=self.log_stream,
                  flush=True)  # fmt: skip
        except (OSError, ValueError):
            pass

    def _db_error(self, err: BaseException) -> str:
        return describe_error(err, self.url)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the store, reach the database once, take the store's name, start threads."""
        try:
            self.service.open()
        except CacheError as err:
            raise AgentError(str(err)) from None
        self._connect_first()
        self._feed = ChangeFeed(
            self.service.manager.root, self._on_change, db_path=self.service.manager.store.path
        )
        # Only the layers builds write (the mutable ones) are watched, set after each
        # read of the store: committed layers never change, and watching every directory
        # of thousands of them exhausts the host's inotify watches (then the kernel
        # silently refuses the watch on a new layer and its sizes go stale).
        self._feed.watch_layers(())
        self._feed.start()
        for target, name in (
            (self._publish_loop, "publish"),
            (self._heartbeat_loop, "heartbeat"),
            (self._listen_loop, "listen"),
            (self._request_loop, "requests"),
        ):
            thread = threading.Thread(target=self._guard(target), name=f"agent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.log(f"serving {self.config.root} as store {self.name!r} on {mask(self.url)}")

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception as err:  # a bug must stop the agent loudly, not silently
                self.fatal = f"{threading.current_thread().name} failed: {err!r}"
                self.log(self.fatal)
                self.stop_event.set()

        return run

    def _connect_first(self) -> None:
        """At start: migrate, take the name's lock, register. A failure here retries."""
        outage = _Outage(self, "connecting")
        while not self.stop_event.is_set():
            try:
                self._take_name()
                self._attach()
                outage.ok()
                return
            except AgentError:
                raise
            except CacheError as err:  # a newer schema: nothing to wait for
                raise AgentError(str(err)) from None
            except _DB_ERRORS as err:
                self.stop_event.wait(outage.failed(err))

    def _attach(self) -> None:
        """Schema and registration, at start and again after every outage: the server
        that comes back may be a restored or a new one."""
        replica.migrate(self.db)
        self.publisher.register(
            Registration(
                self.name, socket.gethostname(), str(self.config.root), __version__, os.getpid()
            )
        )

    def _lock_key(self) -> int:
        return zlib.crc32(f"cachetui-agent:{self.name}".encode())

    def _take_name(self) -> None:
        """The session lock that keeps a second agent off this store name."""
        if self._lock_conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._lock_conn.close()
        conn: psycopg.Connection[Any] = psycopg.connect(self.url, autocommit=True,
                                                         connect_timeout=5)  # fmt: skip
        if not replica.take_name_lock(conn, self._lock_key()):
            conn.close()
            raise AgentError(
                f"another agent is serving store {self.name!r} on this fleet database "
                "(choose another --name)"
            )
        replica.listen(conn, REQUEST_CHANNEL)
        self._lock_conn = conn

    def run(self) -> int:
        self.start()
        try:
            while not self.stop_event.wait(0.5):
                pass
        finally:
            self.shutdown()
        return 1 if self.fatal else 0

    def stop(self) -> None:
        self.stop_event.set()
        self._changed.set()
        self._wake_requests.set()

    def shutdown(self) -> None:
        self.stop()
        if self._feed is not None:
            self._feed.stop()
        for thread in self._threads:
            thread.join(10)
        try:
            self.publisher.stopped()
        except _DB_ERRORS:
            pass
        _drop(self.db)
        if self._lock_conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._lock_conn.close()
        self.service.close()
        self.log("stopped")

    # -- change feed -> publish ---------------------------------------------------------

    def _on_change(self, changes: ChangeSet) -> None:
        with self._changes_lock:
            self._changes = self._changes.merge(changes)
        self._changed.set()

    def _take_changes(self) -> ChangeSet:
        with self._changes_lock:
            changes, self._changes = self._changes, ChangeSet()
            self._changed.clear()
        return changes

    def _publish_loop(self) -> None:
        outage = _Outage(self, "publishing")
        need_sync = False  # start() attached; the first pass is a full snapshot anyway
        first = True
        while not self.stop_event.is_set():
            if not (first or need_sync or self._resync.is_set()):
                self._changed.wait()
                if self.stop_event.is_set():
                    break
            if self._resync.is_set():
                self._resync.clear()
                need_sync = True
            changes = self._take_changes()
            started = time.perf_counter()
            try:
                if need_sync:
                    self._attach()
                if first or need_sync:
                    view = self.service.load()
                elif changes:
                    view = self.service.apply(changes).view
                else:
                    continue
                self._watch_mutable_layers(view.rows.values())
                full = first or need_sync
                written = self.publisher.publish(
                    view.rows, view.totals, _holders_of(view.rows.values()), synced=full
                )
                if full:
                    took = time.perf_counter() - started
                    self.log(f"synchronised {len(view.rows)} records ({written} written) "
                             f"in {took:.3f}s")  # fmt: skip
                    self.synced.set()
                first = need_sync = False
                outage.ok()
            except CacheError as err:  # the local store: log, try again on the next change
                self.log(f"cannot read the store: {err}")
                self.stop_event.wait(1.0)
            except _DB_ERRORS as err:
                self.publisher.forget()
                need_sync = True  # compare and repair once the server is back
                self.stop_event.wait(outage.failed(err))

    def _watch_mutable_layers(self, rows: Iterable[RecordState]) -> None:
        if self._feed is not None:
            self._feed.watch_layers(
                {name for r in rows if r.mutable for name in (r.layer_id, r.id)}
            )

    # -- heartbeat ------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        outage = _Outage(self, "heartbeat")
        while not self.stop_event.is_set():
            self._report_feed_errors()
            try:
                stat = disk_stat(self.config.root)
                total, free = stat.total, stat.free
                self._check_free_space(stat)
            except OSError:
                total = free = 0
            try:
                if not self.publisher.heartbeat(total, free):
                    self._resync.set()  # our row is gone: register and resynchronise
                    self._changed.set()
                queue.expire_due(self.db, self.name)
                outage.ok()
            except _DB_ERRORS as err:
                outage.failed(err)
            self.stop_event.wait(self.config.heartbeat)

    def _report_feed_errors(self) -> None:
        """The change feed's own failures (a watcher that stopped, e.g. on the inotify
        watch limit) must reach the operator: sizes would silently go stale."""
        feed = self._feed
        if feed is None:
            return
        errors = list(feed.errors)
        for message in errors[self._feed_errors_seen :]:
            self.log(f"change feed: {message}")
        self._feed_errors_seen = len(errors)

    def _check_free_space(self, stat: DiskStat) -> None:
        """Wake a GC when free space is below the list's ``min_free_space`` (at most once
        a minute: a GC that cannot free enough must not run back to back)."""
        policies = self.config.gc_policies or default_gc_policies(stat)
        wanted = max((p.min_free_space for p in policies), default=0)
        now = time.monotonic()
        if wanted and stat.free < wanted and now - self._last_low_space_gc >= LOW_SPACE_PAUSE:
            self._last_low_space_gc = now
            self._low_space.set()
            self._wake_requests.set()

    # -- listen ---------------------------------------------------------------------------

    def _listen_loop(self) -> None:
        outage = _Outage(self, "listening")
        while not self.stop_event.is_set():
            conn = self._lock_conn
            try:
                if conn is None or conn.closed:
                    self._take_name()
                    self._wake_requests.set()  # requests queued while we were away
                    conn = self._lock_conn
                assert conn is not None
                for note in conn.notifies(timeout=0.5, stop_after=1):
                    if note.payload == self.name:
                        self._wake_requests.set()
                outage.ok()
            except AgentError as err:
                self.fatal = str(err)
                self.log(self.fatal)
                self.stop_event.set()
                return
            except _DB_ERRORS as err:
                if self._lock_conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        self._lock_conn.close()
                self._lock_conn = None
                self.stop_event.wait(outage.failed(err))

    # -- requests and GC ------------------------------------------------------------------

    def _request_loop(self) -> None:
        self._wake_requests.set()  # at start: requests queued, or taken by a dead agent
        next_gc = time.monotonic() + self.config.gc_interval if self.config.gc_interval else None
        outage = _Outage(self, "requests")
        while not self.stop_event.is_set():
            timeout = 5.0 if next_gc is None else max(0.0, min(5.0, next_gc - time.monotonic()))
            self._wake_requests.wait(timeout)
            if self.stop_event.is_set():
                break
            if self._low_space.is_set():
                self._low_space.clear()
                self.run_gc("low-space")
            if next_gc is not None and time.monotonic() >= next_gc:
                self.run_gc("schedule")
                next_gc = time.monotonic() + self.config.gc_interval
            if not self._wake_requests.is_set():
                continue
            self._wake_requests.clear()
            try:
                while not self.stop_event.is_set():
                    taken = queue.take(self.db, self.name)
                    if taken is None:
                        break
                    self._run_request(taken)
                outage.ok()
            except _DB_ERRORS as err:
                self._wake_requests.set()
                self.stop_event.wait(outage.failed(err))

    def _run_request(self, taken: queue.TakenRequest) -> None:
        what = f"request {taken.id} ({taken.kind})"
        self.log(f"{what}: {'running again after a restart' if taken.rerun else 'running'}")

        def progress(report: dict[str, Any]) -> None:
            try:
                queue.report_progress(self.db, self.name, taken.id, report)
            except _DB_ERRORS:
                _drop(self.db)  # progress is best effort; the result is not

        result: dict[str, Any] | None = None
        error: str | None = None
        try:
            result = execute(self.service, taken.kind, taken.payload, progress=progress)
        except MalformedRequest as err:
            error = f"malformed request: {err}"
        except CacheError as err:
            error = str(err)
        self._changed.set()  # publish what the request changed without waiting on the feed
        self._on_change(ChangeSet(frozenset(), True))
        self._finish(taken.id, result, error)
        self.log(f"{what}: {'failed: ' + error if error else 'done'}")

    def _finish(self, request_id: int, result: dict[str, Any] | None, error: str | None) -> None:
        """The outcome must reach the database: retry until it does (or we stop)."""
        outage = _Outage(self, f"recording request {request_id}'s result")
        while True:
            try:
                queue.finish(self.db, self.name, request_id, result=result, error=error)
                outage.ok()
                return
            except _DB_ERRORS as err:
                delay = outage.failed(err)
                if self.stop_event.is_set():
                    return  # taken, not finished: the next start runs it again
                self.stop_event.wait(delay)

    def run_gc(self, trigger: str) -> None:
        started = time.time()
        records, freed, error = 0, 0, ""
        try:
            removed = self.service.manager.gc(self.config.gc_policies)
            records = len(removed)
            freed = sum(info.size for info in removed if not info.shared)
        except CacheError as err:
            error = str(err)
        self._on_change(ChangeSet(frozenset(), True))
        self.log(f"gc ({trigger}, {self.config.gc_source}): {records} records, {freed} bytes"
                 + (f"; {error}" if error else ""))  # fmt: skip
        try:
            self.publisher.gc_run(trigger, started, records, freed, error)
        except _DB_ERRORS as err:
            _drop(self.db)
            self.log(f"cannot record the gc run: {self._db_error(err)}")
