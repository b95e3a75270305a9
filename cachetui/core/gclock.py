"""The store's GC lock: at most one GC run at a time, visible to every process.

An exclusive ``flock`` on ``<root>/gc.lock``. The kernel drops it when its process dies
(a SIGKILL mid-run leaves no stale lock), and the file names the holder (pid, host, when)
so a refusal can say who runs GC. ``prune`` takes no lock: it is safe beside a GC run
(every removal re-checks its record in the write that tombstones it); the lock only keeps
two GC runs from racing each other over the same limits.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from cachetui.core import fsops
from cachetui.core.errors import LockedError, StoreError

__all__ = ["LOCK_NAME", "GCLock"]

LOCK_NAME = "gc.lock"


class GCLock:
    """``with GCLock(root):`` runs GC alone or raises ``LockedError`` naming the holder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root) / LOCK_NAME
        self._fd: int | None = None

    def holder(self) -> str:
        """Who holds the lock, as written in the file ("" when unknown)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return ""
        if not isinstance(info, dict) or "pid" not in info:
            return ""
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(info.get("since", 0))))
        return f"pid {info['pid']} on {info.get('host', '?')} since {since}"

    def acquire(self) -> None:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = self.holder()
            raise LockedError(
                "gc", f"another GC run holds {self.path}" + (f" ({who})" if who else "")
            ) from None
        except BaseException:
            os.close(fd)
            raise
        note = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, note.encode(), 0)
        self._fd = fd

    def _open(self) -> int:
        """The lock file, opened for writing: ours, a plain file inside the store.

        Acquiring truncates and rewrites it, so a symlink planted at ``gc.lock`` would
        empty whatever it points at (outside the store, even): the open never follows
        one, and anything but a regular file (a FIFO, a device) is refused too.
        """
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(
                    f"{self.path} is a symlink, not the store's GC lock file; "
                    "refusing to write through it (remove it and run again)"
                ) from None
            raise
        problem = self._foreign(fd)
        if problem is not None:
            os.close(fd)
            raise StoreError(
                f"{self.path} {problem}; refusing to use it as the GC lock "
                "(remove it and run again)"
            )
        return fd

    def _foreign(self, fd: int) -> str | None:
        """Why the open lock file may be someone else's (None: it is ours): acquiring
        and releasing truncate it, which would empty a file outside the store."""
        return fsops.foreign_file(fd, self.path.parent)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> GCLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
