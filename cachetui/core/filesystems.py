"""Which filesystem holds the store, and whether it is one SQLite cannot be trusted on.

SQLite's WAL mode needs every process on one host (it shares memory through a mapped
``-shm`` file) and its locks are unreliable over NFS and SMB; reconcile warns at open
when the store lives on such a filesystem. The type comes from ``/proc/self/mountinfo``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["NETWORK_FILESYSTEMS", "filesystem_type", "is_network_filesystem"]

#: Filesystem types where SQLite's WAL and locking cannot be trusted.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "afs", "ceph", "glusterfs"}
)


def filesystem_type(path: Path | str) -> str | None:
    """The type of the filesystem holding ``path`` (from ``/proc/self/mountinfo``)."""
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields, rest = left.split(), right.split()
                if len(fields) < 5 or not rest:
                    continue
                mount_point = fields[4].encode().decode("unicode_escape")
                inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
                if inside and (best is None or len(mount_point) >= best[0]):
                    best = (len(mount_point), rest[0])
    except OSError:
        return None
    return best[1] if best else None


def is_network_filesystem(fstype: str | None) -> bool:
    """Whether ``fstype`` (from :func:`filesystem_type`) is a network filesystem."""
    return fstype in NETWORK_FILESYSTEMS
