"""Space set aside so that a store on a full disk can still be opened and pruned.

A full disk is exactly when prune is needed, yet SQLite needs a little space to open a
WAL database (its ``-shm`` index and ``-wal`` log) and to record a removal before the
layer goes. Each writable store keeps ``metadata.db-reserve`` (:data:`RESERVE_BYTES`,
allocated, not sparse) beside its database, on the same filesystem. Opening a store on a
full disk, or starting a real prune with little space left, deletes the reserve, which
gives SQLite the room it needs; once there is space again (after the prune), it is set
aside anew. A full disk is reported as "disk full", never as a damaged database.
"""

from __future__ import annotations

import os

__all__ = [
    "LOW_SPACE",
    "RESERVE_BYTES",
    "disk_full_message",
    "ensure",
    "free_bytes",
    "is_low",
    "release",
    "reserve_path",
]

#: The space set aside: a WAL index (32 KiB) and a few hundred pages of log.
RESERVE_BYTES = 1 << 20
#: Below this much free space the disk counts as full (too little for the WAL index).
LOW_SPACE = 2 * RESERVE_BYTES


def reserve_path(db_path: str) -> str:
    return f"{db_path}-reserve"


def free_bytes(path: str) -> int | None:
    """Bytes available to this user on the filesystem holding ``path`` (None: unknown)."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)) or ".")
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def is_low(path: str) -> bool:
    free = free_bytes(path)
    return free is not None and free < LOW_SPACE


def ensure(db_path: str) -> None:
    """Set the reserve aside if it is missing and the disk can spare it (never fails)."""
    target = reserve_path(db_path)
    if os.path.exists(target):
        return
    free = free_bytes(db_path)
    if free is None or free < LOW_SPACE + RESERVE_BYTES:
        return  # taking it now would only bring the full disk closer
    staging = f"{target}.new"
    try:
        # The staging name is ours: whatever sits there (a crashed run's half reserve, or a
        # symlink that would have the allocation written through it to a file outside the
        # store) is removed, never opened, and the new file must be created here afresh.
        _remove_name(staging)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(staging, flags, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        finally:
            os.close(fd)
        os.rename(staging, target)  # all or nothing: never a half-size reserve
    except OSError:
        _remove_name(staging)


def _remove_name(path: str) -> None:
    """Unlink ``path`` itself (a link is removed, not followed); a directory stays."""
    try:
        os.unlink(path)
    except OSError:
        pass


def release(db_path: str) -> bool:
    """Give the reserve back to the disk; True when there was one."""
    try:
        os.unlink(reserve_path(db_path))
    except OSError:
        return False
    return True


def disk_full_message(db_path: str, detail: str) -> str:
    free = free_bytes(db_path)
    left = f"{free} bytes free" if free is not None else "no space left"
    return f"metadata store {db_path}: disk full ({left}; SQLite: {detail}): free some space"
