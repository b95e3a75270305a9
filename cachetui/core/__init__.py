"""The public core of cachetui: BuildKit's cache manager over layered directories.

This package is the core's one public namespace: the command line, the dashboard, the
fleet and outside tools import from ``cachetui.core`` only, never from a module below it
(those are internal and may change; ``tests/test_public_api.py`` and an import-linter
contract keep it so). docs/api.md documents every name listed in ``__all__``.

Everything here imports only the standard library, ``peewee`` and ``watchfiles``; never
Textual (a test keeps it that way).
"""

from cachetui.core.chains import ChainPlan
from cachetui.core.diskusage import Totals, resized_totals, totals, totals_of
from cachetui.core.errors import (
    CacheError,
    FilterSyntaxError,
    InvalidError,
    LockedError,
    NotFoundError,
    PruneInterrupted,
    PruneRefused,
    SnapshotError,
    StoreError,
)
from cachetui.core.filters import Selector, usage_fields
from cachetui.core.filters import parse_all as parse_filters
from cachetui.core.fsops import remove_tree
from cachetui.core.gclock import GCLock
from cachetui.core.ids import ID_PATTERN, new_id
from cachetui.core.manager import CacheManager
from cachetui.core.policy import (
    DiskStat,
    default_gc_policies,
    disk_stat,
    keep_limit,
    percent_of_disk,
)
from cachetui.core.rebuild import rebuild as rebuild_store
from cachetui.core.reconcile import Finding
from cachetui.core.records import HolderInfo, RecordBrief, RecordState, RecordStates, matching_ids
from cachetui.core.refs import ImmutableRef, MutableRef
from cachetui.core.search import is_expression, search_ids, search_words
from cachetui.core.state import HolderRow, RecordRow, holder_rows_alive, paused_gc
from cachetui.core.timestamps import UNKNOWN_TIME
from cachetui.core.timestamps import is_valid as is_valid_time
from cachetui.core.types import (
    CacheMount,
    GCResult,
    GCRunInfo,
    GCTotals,
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
    "ID_PATTERN",
    "UNKNOWN_TIME",
    "CacheError",
    "CacheManager",
    "CacheMount",
    "ChainPlan",
    "ChangeFeed",
    "ChangeSet",
    "DiskStat",
    "FilterSyntaxError",
    "Finding",
    "GCLock",
    "GCResult",
    "GCRunInfo",
    "GCTotals",
    "HolderInfo",
    "HolderRow",
    "ImmutableRef",
    "InvalidError",
    "Kept",
    "LockedError",
    "Mount",
    "MutableRef",
    "NotFoundError",
    "PruneInterrupted",
    "PruneOptions",
    "PruneRefused",
    "RecordBrief",
    "RecordRow",
    "RecordState",
    "RecordStates",
    "RecordType",
    "Selector",
    "Sharing",
    "SnapshotError",
    "StoreError",
    "TierResult",
    "Totals",
    "UsageInfo",
    "default_gc_policies",
    "disk_stat",
    "holder_rows_alive",
    "is_expression",
    "is_valid_time",
    "keep_limit",
    "matching_ids",
    "new_id",
    "parse_filters",
    "paused_gc",
    "percent_of_disk",
    "rebuild_store",
    "remove_tree",
    "resized_totals",
    "search_ids",
    "search_words",
    "totals",
    "totals_of",
    "usage_fields",
]
