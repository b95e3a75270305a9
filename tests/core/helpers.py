"""Small assertions shared by the semantics tests (BuildKit's checkDiskUsage and friends)."""

from __future__ import annotations

from cachetui.core import CacheManager


def du_counts(cm: CacheManager) -> tuple[int, int]:
    """``(in_use, unused)`` over disk usage rows, as BuildKit's ``checkDiskUsage``."""
    rows = cm.disk_usage()
    in_use = sum(1 for r in rows if r.in_use)
    return in_use, len(rows) - in_use
