"""The public core of cachetui: BuildKit's cache manager over layered directories.

Everything here imports only the standard library, ``peewee`` and ``watchfiles``; never
Textual (a test keeps it that way).
"""

from cachetui.core.chains import ChainPlan
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
from cachetui.core.filters import parse_all as parse_filters
from cachetui.core.manager import CacheManager
from cachetui.core.policy import DiskStat, disk_stat
from cachetui.core.reconcile import Finding
from cachetui.core.records import HolderInfo, RecordState, matching_ids
from cachetui.core.refs import ImmutableRef, MutableRef
from cachetui.core.state import RecordRow
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
from cachetui.core.watch import ChangeFeed, ChangeSet

__all__ = [
    "CacheError",
    "CacheManager",
    "CacheMount",
    "ChainPlan",
    "ChangeFeed",
    "ChangeSet",
    "DiskStat",
    "FilterSyntaxError",
    "Finding",
    "GCResult",
    "GCRunInfo",
    "HolderInfo",
    "ImmutableRef",
    "InvalidError",
    "Kept",
    "LockedError",
    "Mount",
    "MutableRef",
    "NotFoundError",
    "PruneInterrupted",
    "PruneOptions",
    "RecordRow",
    "RecordState",
    "RecordType",
    "Sharing",
    "SnapshotError",
    "StoreError",
    "TierResult",
    "Totals",
    "UsageInfo",
    "disk_stat",
    "matching_ids",
    "parse_filters",
    "totals",
]
