"""The exception tree of ``cachetui.core``.

```
CacheError(Exception)
├─ NotFoundError         unknown id, removed record, missing snapshot
├─ LockedError           held elsewhere (BuildKit ErrLocked); .id
├─ InvalidError          wrong kind of record, bad argument, bad id
│   └─ FilterSyntaxError malformed filter; .position
├─ PruneInterrupted      on_prune raised; .removed lists what did go, .refusals what a mount kept
├─ StoreError            metadata store cannot be used (corrupt, newer schema, busy)
└─ SnapshotError         a snapshot directory cannot be written, measured or removed; .path
    └─ PruneRefused      a prune kept records with a mount in their layer; .removed, .refusals
```

Every message names the record id or the bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "CacheError",
    "FilterSyntaxError",
    "InvalidError",
    "LockedError",
    "NotFoundError",
    "PruneInterrupted",
    "PruneRefused",
    "SnapshotError",
    "StoreError",
]


class CacheError(Exception):
    """Base of everything the core raises on purpose."""


class NotFoundError(CacheError, KeyError):
    """No such record (unknown id, removed record, or its snapshot is missing)."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0]) if self.args else ""


class LockedError(CacheError):
    """The record is held elsewhere (BuildKit's ErrLocked)."""

    def __init__(self, record_id: str, message: str | None = None) -> None:
        super().__init__(message or f"{record_id} is locked")
        self.id = record_id


class InvalidError(CacheError, ValueError):
    """Wrong kind of record, a bad argument or a malformed id."""


class FilterSyntaxError(InvalidError):
    """A filter string that does not parse; ``position`` is the 0-based offset of the fault."""

    def __init__(self, message: str, *, filter_text: str = "", position: int = 0) -> None:
        super().__init__(message)
        self.filter_text = filter_text
        self.position = position


class StoreError(CacheError):
    """The metadata store cannot be used: corrupt, written by a newer version, or busy."""


class SnapshotError(CacheError):
    """A snapshot directory could not be written, measured or removed safely.

    Raised for disk full, permission denied, or an unsafe tree (a symlinked snapshot
    directory, another filesystem mounted inside). ``path`` names the offending path.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class PruneInterrupted(CacheError):
    """The ``on_prune`` callback raised (a user cancelled): the prune stopped choosing
    records. Batches already tombstoned were still removed; ``removed`` lists every record
    that went, reported or not. The callback's exception is the ``__cause__``."""

    def __init__(self, removed: Sequence[Any], refusals: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"prune interrupted after removing {len(removed)} record(s)")
        self.removed = list(removed)
        #: ``(id, reason)`` of each record a mount kept before the stop.
        self.refusals = list(refusals)


class PruneRefused(SnapshotError):
    """A prune went through and kept some records it must not remove: a filesystem is
    mounted in their layer (removing it would delete files outside the store). BuildKit
    skips what it cannot release and goes on; so does prune, and raises this at the end.
    ``removed`` lists every record that went; ``refusals`` is ``(id, reason)`` for each
    record kept, in order; ``path`` is the first one's mount point."""

    def __init__(
        self, removed: Sequence[Any], refusals: Sequence[tuple[str, str]], *, path: str
    ) -> None:
        record_id, reason = refusals[0]
        more = len(refusals) - 1
        also = f" (and {more} more record{'s' if more != 1 else ''})" if more else ""
        super().__init__(f"refusing to prune {record_id}: {reason}{also}", path=path)
        self.removed = list(removed)
        self.refusals = list(refusals)
