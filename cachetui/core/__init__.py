"""The public core of cachetui: BuildKit's cache manager over layered directories.

Everything here imports only the standard library, ``peewee`` and ``watchfiles``; never
Textual (a test keeps it that way).
"""

from cachetui.core.diskusage import Totals, totals
from cachetui.core.errors import (
    CacheError,
    FilterSyntaxError,
    InvalidError,
    LockedError,
    NotFoundError,
    PruneInterrupted,
    SnapshotError,
    StoreError,
)
from cachetui.core.manager import CacheManager
from cachetui.core.reconcile import Finding
from cachetui.core.refs import ImmutableRef, MutableRef
from cachetui.core.types import (
    CacheMount,
    GCResult,
    GCRunInfo,
    Kept,
    Mount,
    PruneOptions,
    RecordType,
    Sharing,
    TierResult,
    UsageInfo,
)

__all__ = [
    "CacheError",
    "CacheManager",
    "CacheMount",
    "FilterSyntaxError",
    "Finding",
    "GCResult",
    "GCRunInfo",
    "ImmutableRef",
    "InvalidError",
    "Kept",
    "LockedError",
    "Mount",
    "MutableRef",
    "NotFoundError",
    "PruneInterrupted",
    "PruneOptions",
    "RecordType",
    "Sharing",
    "SnapshotError",
    "StoreError",
    "TierResult",
    "Totals",
    "UsageInfo",
    "totals",
]
