"""The change feed: which records' files changed, and whether the metadata changed.

Two background threads, no Textual import:

* a ``watchfiles.watch()`` loop over ``<root>/snapshots`` maps each changed path to its
  record id (the first path component under ``snapshots/``; the staging names ``new-*``
  and ``rm-*`` are ignored). It is tuned for latency (``debounce=50``, ``step=10`` ms
  instead of watchfiles' 1600/50), so a write shows on screen within 0.2 s. A directory
  that appears is reported again a little later: inotify installs its watch on a new
  directory only after the directory exists, so files created right after it can be
  missed by the first event;
* a poller reads ``PRAGMA data_version`` on its own read-only SQLite connection every
  ``POLL_INTERVAL`` seconds: it changes whenever another connection (another process,
  or the dashboard's own manager) commits, which covers records created, committed,
  released or pruned elsewhere.

``watch_layers(ids)`` narrows the file watcher to those layers (each watched
recursively) instead of the whole ``snapshots`` tree: inotify needs one watch per
directory, and a host with thousands of committed layers (each a whole filesystem tree)
would spend the user's ``fs.inotify.max_user_watches`` on directories that never change,
after which the kernel silently refuses the watch on a new layer and its writes go
unseen. The fleet agent watches only its mutable layers (the ones builds write); every
layer newly watched is reported once, for the writes made before its watch existed.

Both call ``on_change(ChangeSet(...))`` from their own thread; ``stop()`` sets one stop
event and joins both promptly. When the file watcher fails (inotify limits, the directory
removed or replaced), ``on_status`` hears the reason and the watcher retries, with a
growing delay; ``on_status(None)`` says it runs again. A failure is never silent: inotify
itself says nothing when the watched directory is replaced (it goes on watching the old
one, or nothing), so the watcher checks the directory's identity on every batch.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cachetui.core.ids import ID_PATTERN
from cachetui.core.store import data_version, open_version_reader

__all__ = ["ChangeFeed", "ChangeSet", "records_for_paths"]


class _DirectoryLost(Exception):
    """The watched directory is missing or was replaced: a watch on it sees nothing."""


#: How long after a directory appears it is reported again (seconds).
RESCAN_DELAYS = (0.05, 0.25)
#: watchfiles' debounce and step, in ms: tuned for latency (its defaults are 1600/50),
#: so a write shows on screen within 0.2 s.
DEBOUNCE_MS = 50
STEP_MS = 10
#: How often the metadata poller reads ``PRAGMA data_version`` (seconds).
POLL_INTERVAL = 0.1


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """What changed: the ids whose snapshot files changed, and whether metadata did."""

    records: frozenset[str] = field(default_factory=frozenset)
    metadata: bool = False

    def __bool__(self) -> bool:
        return bool(self.records) or self.metadata

    def merge(self, other: ChangeSet) -> ChangeSet:
        return ChangeSet(self.records | other.records, self.metadata or other.metadata)


def _record_of(snapshots_dir: str, path: str) -> str | None:
    """The record id a changed path belongs to (its first component under snapshots/)."""
    try:
        rel = os.path.relpath(path, snapshots_dir)
    except ValueError:
        return None
    first = rel.split(os.sep)[0]
    if rel.startswith("..") or first.startswith(("new-", "rm-")):
        return None
    return first if ID_PATTERN.fullmatch(first) else None


def records_for_paths(snapshots_dir: str | Path, paths: Iterable[str]) -> frozenset[str]:
    """The record ids of changed paths (helper, also used by tests)."""
    base = str(snapshots_dir)
    found = set()
    for path in paths:
        record = _record_of(base, path)
        if record is not None:
            found.add(record)
    return frozenset(found)


def _identity(directory: str) -> tuple[int, int]:
    """The directory's (device, inode): what a watch is really attached to."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        raise _DirectoryLost("the snapshots directory is missing") from None
    return st.st_dev, st.st_ino


class _Either:
    """Set when either event is (what ``watchfiles.watch`` polls to stop)."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self.first, self.second = first, second

    def is_set(self) -> bool:
        return self.first.is_set() or self.second.is_set()


class ChangeFeed:
    """Watch a store root and report changed records and metadata."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        on_change: Callable[[ChangeSet], None],
        *,
        db_path: str | os.PathLike[str] | None = None,
        on_status: Callable[[str | None], None] | None = None,
        retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0),
    ) -> None:
        self.root = Path(root)
        self.snapshots_dir = self.root / "snapshots"
        self.db_path = Path(db_path) if db_path is not None else self.root / "metadata.db"
        self.on_change = on_change
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rescans: list[tuple[float, str]] = []
        self._rescan_lock = threading.Lock()
        self.errors: list[str] = []
        self.on_status = on_status
        self.retry_delays = retry_delays
        self.stopped_reason: str | None = None  # why the file watcher is not running now
        self._layers: frozenset[str] | None = None  # None: the whole snapshots tree
        self._unreported: frozenset[str] = frozenset()  # watched from the next batch on
        self._rewatch = threading.Event()

    def watch_layers(self, layer_ids: Iterable[str]) -> None:
        """Watch only these layers' directories from now on (see the module's notes)."""
        wanted = frozenset(layer_ids)
        with self._rescan_lock:
            if wanted == self._layers:
                return
            self._unreported |= wanted - (self._layers or frozenset())
            self._layers = wanted
        self._rewatch.set()

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        # Even when snapshots/ is missing: the watcher says so, and waits for it.
        self._spawn(self._watch_loop, "cachetui-watch-files")
        self._spawn(self._poll_loop, "cachetui-watch-metadata")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def __enter__(self) -> ChangeFeed:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- emitting -----------------------------------------------------------------------

    def _emit(self, changes: ChangeSet) -> None:
        if not changes or self._stop.is_set():
            return
        try:
            self.on_change(changes)
        except Exception as err:  # a broken consumer must not kill the feed
            self.errors.append(f"on_change failed: {err!r}")

    # -- files --------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        """Watch until stopped; when the watcher fails, say why and start it again."""
        failures = 0
        while not self._stop.is_set():
            try:
                self._watch_once()
                if self._stop.is_set():
                    return
                continue  # the layers to watch changed
            except Exception as err:  # the directory vanished, or the watcher failed
                if self._stop.is_set():
                    return
                reason = f"file watcher: {err}"
                self.errors.append(reason)
                if self.stopped_reason is None:
                    failures = 0  # it had run again since the last failure: retry soon
                self._status(reason)
                delay = self.retry_delays[min(failures, len(self.retry_delays) - 1)]
                failures += 1
                if self._stop.wait(delay):
                    return

    def _status(self, reason: str | None) -> None:
        if reason == self.stopped_reason:
            return
        self.stopped_reason = reason
        if self.on_status is not None:
            try:
                self.on_status(reason)
            except Exception as err:  # a broken consumer must not kill the feed
                self.errors.append(f"on_status failed: {err!r}")

    def _watch_once(self) -> None:
        import watchfiles

        base = str(self.snapshots_dir)
        watched = _identity(base)
        with self._rescan_lock:
            self._rewatch.clear()
            layers = self._layers
        if layers is None:
            paths = [base]
        else:
            paths = [p for p in (os.path.join(base, i) for i in sorted(layers)) if os.path.isdir(p)]
        if not paths:  # nothing to watch until the layers change
            while not (self._stop.is_set() or self._rewatch.wait(0.2)):
                pass
            return
        batches = watchfiles.watch(
            *paths,
            watch_filter=None,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=_Either(self._stop, self._rewatch),
            rust_timeout=200,
            yield_on_timeout=True,  # an empty batch: the watcher runs (after a retry)
            raise_interrupt=False,
            ignore_permission_denied=True,
        )
        # Closed here, not whenever the garbage collector reaches a failed generator:
        # the old inotify watch is gone before a retry starts the next one.
        with contextlib.closing(batches):
            for batch in batches:
                self._take(base, watched, batch)

    def _take(self, base: str, watched: tuple[int, int], batch: set[tuple[Any, str]]) -> None:
        import watchfiles

        # Every batch, empty ones too (one each 200 ms): a removed or replaced
        # directory gives at most one event for the directory itself, then silence.
        if _identity(base) != watched:
            raise _DirectoryLost("the snapshots directory was replaced")
        if self.stopped_reason is not None:
            self._status(None)
        # the watches are in place once the first batch (or timeout) comes
        self._report_new_layers()
        records: set[str] = set()
        now = time.monotonic()
        for change, path in batch:
            record = _record_of(base, path)
            if record is None:
                continue
            records.add(record)
            if change == watchfiles.Change.added and os.path.isdir(path):
                with self._rescan_lock:
                    for delay in RESCAN_DELAYS:
                        self._rescans.append((now + delay, record))
        if records:
            self._emit(ChangeSet(frozenset(records), False))

    def _report_new_layers(self) -> None:
        """Layers watched from now on may have been written before: report them once."""
        with self._rescan_lock:
            fresh, self._unreported = self._unreported, frozenset()
        if fresh:
            self._emit(ChangeSet(fresh, False))

    # -- metadata and delayed rescans ---------------------------------------------------

    def _connect(self) -> sqlite3.Connection | None:
        if not self.db_path.exists():
            return None
        try:
            return open_version_reader(self.db_path)
        except sqlite3.Error as err:
            self.errors.append(f"metadata watcher cannot open {self.db_path}: {err}")
            return None

    def _poll_loop(self) -> None:
        conn = self._connect()
        last: int | None = None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                last = data_version(conn)
        try:
            while not self._stop.wait(self._next_wait()):
                self._due_rescans()
                if conn is None:
                    conn = self._connect()
                    if conn is None:
                        continue
                try:
                    version = data_version(conn)
                except sqlite3.Error:
                    continue  # busy or being rebuilt: try again next tick
                if version != last:
                    last = version
                    self._emit(ChangeSet(frozenset(), True))
        finally:
            if conn is not None:
                conn.close()

    def _next_wait(self) -> float:
        with self._rescan_lock:
            if not self._rescans:
                return POLL_INTERVAL
            soonest = min(due for due, _ in self._rescans) - time.monotonic()
        return max(0.005, min(POLL_INTERVAL, soonest))

    def _due_rescans(self) -> None:
        now = time.monotonic()
        with self._rescan_lock:
            due = {record for when, record in self._rescans if when <= now}
            self._rescans = [(w, r) for w, r in self._rescans if w > now]
        if due:
            self._emit(ChangeSet(frozenset(due), False))
