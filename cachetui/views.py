"""The dashboard's view rows: immutable values the service hands to the widgets.

* ``StoreView``: every visible record as a ``RecordView``, the children of each record
  (the tree's shape) and the totals;
* ``Delta``: what a change did to the view (rows changed, added, removed, reparented);
* ``DetailsView`` and ``HolderView``: one record's chain, mounts, holders and prune effect;
* ``PrunePlan`` and ``PlanRow``: a dry run, or what a prune removed.

Plain frozen dataclasses: safe to pass from a worker thread to the UI thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cachetui.core import UsageInfo

__all__ = [
    "Delta",
    "DetailsView",
    "HolderView",
    "PlanRow",
    "PrunePlan",
    "RecordView",
    "StoreView",
    "TotalsView",
    "plan_row",
]


@dataclass(frozen=True, slots=True)
class RecordView:
    """One visible record, as the tree shows it."""

    id: str
    parent: str | None
    mutable: bool
    in_use: bool  # held by a live process, directly or through a descendant
    held: bool  # held directly (either half of its pair)
    retain: bool
    pending_commit: bool  # a lazily committed pair, not finalized yet
    record_type: str
    description: str
    size: int
    created_at: float
    last_used_at: float | None
    usage_count: int
    shared: bool
    has_children: bool
    held_by_me: bool  # the dashboard holds it (``h``)

    @property
    def states(self) -> tuple[str, ...]:
        """The state words shown in the tree (never colour only)."""
        words = []
        if self.in_use:
            words.append("in use")
        if self.mutable:
            words.append("mutable")
        if self.retain:
            words.append("retained")
        if self.pending_commit:
            words.append("pending")
        if self.held_by_me:
            words.append("pinned")
        return tuple(words)

    @property
    def prunable(self) -> bool:
        return not self.in_use and not self.has_children

    def unmarkable_reason(self) -> str | None:
        """Why this record cannot be marked for deletion (None when it can)."""
        if self.held:
            return "it is held by a process"
        if self.in_use:
            return "a descendant of it is in use"
        if self.has_children:
            return "it has children (prune them first)"
        return None


@dataclass(frozen=True, slots=True)
class TotalsView:
    total: int = 0
    reclaimable: int = 0
    in_use: int = 0
    shared: int = 0
    records: int = 0
    disk_free: int = 0
    disk_total: int = 0


@dataclass(frozen=True, slots=True)
class StoreView:
    """Every visible record and the tree's shape (children sorted by nothing: the UI sorts)."""

    rows: Mapping[str, RecordView]
    children: Mapping[str | None, tuple[str, ...]]
    totals: TotalsView
    read_only: bool = False

    def roots(self) -> tuple[str, ...]:
        return self.children.get(None, ())

    def child_ids(self, record_id: str | None) -> tuple[str, ...]:
        return self.children.get(record_id, ())

    def ancestors(self, record_id: str) -> list[str]:
        chain: list[str] = []
        row = self.rows.get(record_id)
        while row is not None and row.parent is not None and row.parent not in chain:
            chain.append(row.parent)
            row = self.rows.get(row.parent)
        return chain


@dataclass(frozen=True, slots=True)
class Delta:
    """What one change did to the view."""

    view: StoreView
    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    reparented: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed or self.reparented)


@dataclass(frozen=True, slots=True)
class HolderView:
    id: int
    record: str
    pid: int
    host: str
    since: float
    alive: bool
    mine: bool  # this dashboard process
    counts_use: bool


@dataclass(frozen=True, slots=True)
class DetailsView:
    record: RecordView
    chain: tuple[tuple[str, str, int], ...]  # (id, description, size) from the parent up
    upper: str | None
    lowers: tuple[str, ...]
    holders: tuple[HolderView, ...]
    in_use_because: str | None  # a descendant id making it in use (when not held itself)
    prune_frees: int  # bytes a prune of this record alone would free now (0: refused)
    prune_refused: str | None
    subtree_size: int  # this record and all its descendants
    subtree_count: int


@dataclass(frozen=True, slots=True)
class PlanRow:
    id: str
    description: str
    size: int
    shared: bool
    mutable: bool
    last_used_at: float | None


@dataclass(frozen=True, slots=True)
class PrunePlan:
    """A dry run: what would go, and the bytes it would actually free."""

    rows: tuple[PlanRow, ...]
    refused: tuple[tuple[str, str], ...] = ()  # (id, reason)

    @property
    def freed(self) -> int:
        return sum(r.size for r in self.rows if not r.shared and r.size > 0)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.rows)


def plan_row(info: UsageInfo) -> PlanRow:
    """The view row of a record a prune removed (or would remove)."""
    last = info.last_used_at.timestamp() if info.last_used_at else None
    return PlanRow(info.id, info.description, info.size, info.shared, info.mutable, last)


# ------------------------------------------------------------------------- the service
