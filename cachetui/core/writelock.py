"""Waiting for the store's write lock: visibly, interruptibly, and never for a read.

SQLite's own busy handler sleeps inside C for the whole ``busy_timeout``: a process behind
another's long write waited up to a minute in silence, and Ctrl-C did nothing until the
wait ended. :class:`WaitingSqliteDatabase` takes ``BEGIN IMMEDIATE`` itself instead, in
short slices with a Python sleep between them, so that:

- a ``KeyboardInterrupt`` (SIGINT) ends the wait at once, with nothing changed;
- after :data:`ANNOUNCE_AFTER` seconds it logs, once, on the ``cachetui.core`` logger:
  "waiting for <pid> which holds the store's write lock" (the CLI prints that on stderr).
  The holder is read from ``/proc/locks``: SQLite's WAL write lock is a POSIX lock on
  byte 120 of the ``-shm`` file, owned by the holding process, so the pid is the real
  holder's, not a hint that could be stale;
- after ``BUSY_TIMEOUT`` seconds it gives up with "database is locked" (``StoreError``);
- a caller that must not wait (caching a measured size during a read) sets
  ``wait = False`` and gets ``StoreError`` at once instead.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import peewee

__all__ = ["ANNOUNCE_AFTER", "WaitingSqliteDatabase", "write_lock_holder"]

log = logging.getLogger("cachetui.core")
log.addHandler(logging.NullHandler())  # a library: silent unless the program shows it

#: Seconds of waiting before the wait is announced.
ANNOUNCE_AFTER = 1.0
#: One attempt's own busy timeout (SQLite sleeps in C for at most this long).
_SLICE_MS = 50
#: A pause between attempts (SIGINT is handled as soon as an attempt returns).
_PAUSE = 0.001
#: Byte of the ``-shm`` file that SQLite locks for the WAL write lock
#: (``WALINDEX_LOCK_OFFSET`` + ``WAL_WRITE_LOCK``).
_WAL_WRITE_LOCK_BYTE = 120


def write_lock_holder(db_path: str) -> int | None:
    """The pid of the process holding the WAL write lock on ``db_path``, if one does."""
    try:
        st = os.stat(f"{db_path}-shm")
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        fields = line.split()
        # "18: POSIX  ADVISORY  WRITE 12692 fe:00:5013625 120 120" (a "->" marks waiters)
        if "->" in fields or len(fields) < 8 or fields[1] != "POSIX":
            continue
        if fields[5] == where and fields[6] == str(_WAL_WRITE_LOCK_BYTE):
            try:
                pid = int(fields[4])
            except ValueError:
                return None
            return pid if pid > 0 else None
    return None


def _is_busy(err: Exception) -> bool:
    text = str(err)
    return "locked" in text or "busy" in text


class WaitingSqliteDatabase(peewee.SqliteDatabase):
    """A Peewee SQLite database whose ``BEGIN IMMEDIATE`` waits in Python (see module)."""

    def __init__(self, *args: Any, busy_timeout_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.busy_timeout_ms = busy_timeout_ms
        #: False: fail at once when another process holds the write lock.
        self.wait = True
        #: The file whose ``-shm`` lock names the holder.
        self.lock_path = str(args[0]) if args else ""

    def begin(self, lock_type: str | None = None) -> None:
        lock = (lock_type or getattr(self, "_lock_type", None) or "").upper()
        if lock not in ("IMMEDIATE", "EXCLUSIVE"):
            super().begin(lock_type)
            return
        conn = self.connection()
        conn.execute(f"PRAGMA busy_timeout = {_SLICE_MS if self.wait else 0}")
        try:
            self._begin_waiting(lock_type)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")

    def _begin_waiting(self, lock_type: str | None) -> None:
        started = time.monotonic()
        announced = False
        while True:
            try:
                super().begin(lock_type)
                return
            except peewee.OperationalError as err:
                if not self.wait or not _is_busy(err):
                    raise
                waited = time.monotonic() - started
                if waited * 1000 >= self.busy_timeout_ms:
                    raise
            if not announced and waited >= ANNOUNCE_AFTER:
                announced = True
                holder = write_lock_holder(self.lock_path)
                who = str(holder) if holder is not None else "another process"
                log.warning("waiting for %s which holds the store's write lock", who)
            time.sleep(_PAUSE)
