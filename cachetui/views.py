"""The dashboard's view values: what a service hands to the screens.

The rows themselves are the core's ``RecordState`` values (one per record, with the
usage row, holders, health and the prune refusal), so a row, the details pane and a
refusal can never disagree. Around them:

* ``StoreView``: every visible record, the tree's shape, the core's totals, and which
  records this dashboard pins;
* ``Delta``: what a change did to the view (rows changed, added, removed, reparented);
* ``DetailsView``: one record's value plus its parent chain and mount paths;
* ``PrunePlan`` and ``PlanRow``: a dry run, or what a prune removed, kept and found gone;
* ``ReleaseResult``: what a force release did.

Plain frozen dataclasses: safe to pass from a worker thread to the UI thread. A second
service (another store, a fleet) builds the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cachetui.core import HolderInfo, RecordState, Totals, UsageInfo
from cachetui.subtree import Subtrees

__all__ = [
    "Brief",
    "Delta",
    "DetailsView",
    "PlanRow",
    "PrunePlan",
    "ReleaseResult",
    "StoreView",
    "plan_row",
    "state_words",
]


class Brief(Protocol):
    """The fields a sort reads (a ``RecordState`` has them; so has the core's cheaper
    ``RecordBrief``)."""

    @property
    def size(self) -> int: ...
    @property
    def last_used_at(self) -> float | None: ...
    @property
    def usage_count(self) -> int: ...
    @property
    def description(self) -> str: ...


def state_words(row: RecordState, pinned: bool = False) -> tuple[str, ...]:
    """The state words shown for a record (never colour only)."""
    words = []
    if row.health != "ok":
        words.append(row.health)
    if row.in_use:
        words.append("in use")
    if row.mutable:
        words.append("mutable")
    if row.retain:
        words.append("retained")
    if row.pending_commit:
        words.append("pending")
    if pinned:
        words.append("pinned")
    return tuple(words)


@dataclass(frozen=True, slots=True)
class StoreView:
    """Every visible record and the tree's shape (children unsorted: the UI sorts)."""

    rows: Mapping[str, RecordState]
    children: Mapping[str | None, tuple[str, ...]]
    totals: Totals
    read_only: bool = False
    pinned: frozenset[str] = field(default_factory=frozenset)  # held by this dashboard
    #: Subtree totals; summed on first use when the builder did not provide them (a
    #: service that keeps them up to date by deltas passes them in).
    subtrees: Subtrees | None = field(default=None, compare=False, repr=False)

    @property
    def trees(self) -> Subtrees:
        """Every record's subtree size and count (each summed when first asked for)."""
        subtrees = self.subtrees
        if subtrees is None:
            subtrees = Subtrees.lazy(self.children, lambda i: self.brief(i).size)
            # a cache of a value derived from the frozen fields, not a change of them
            object.__setattr__(self, "subtrees", subtrees)
        return subtrees

    def subtree_size(self, record_id: str) -> int:
        """The bytes of the record and everything below it."""
        return self.trees.size(record_id)

    def subtree_count(self, record_id: str) -> int:
        """How many records the subtree holds (the record itself included)."""
        return self.trees.count(record_id)

    def roots(self) -> tuple[str, ...]:
        return self.children.get(None, ())

    def child_ids(self, record_id: str | None) -> tuple[str, ...]:
        return self.children.get(record_id, ())

    def parent_of(self, record_id: str) -> str | None:
        """The record above it (None for a root or an unknown id), without building the
        record's whole value when the rows can say it cheaply."""
        rows = self.rows
        cheap = getattr(rows, "parent_of", None)
        if cheap is not None:
            return cheap(record_id) if record_id in rows else None
        row = rows.get(record_id)
        return row.parent if row is not None else None

    def brief(self, record_id: str) -> Brief:
        """What sorting needs of a record (its size, last use, usage count and name),
        without building its whole value when the rows can say it cheaply."""
        rows = self.rows
        cheap = getattr(rows, "brief", None)
        return cheap(record_id) if cheap is not None else rows[record_id]

    def ancestors(self, record_id: str) -> list[str]:
        chain: list[str] = []
        parent = self.parent_of(record_id)
        while parent is not None and parent not in chain:
            chain.append(parent)
            parent = self.parent_of(parent)
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
class DetailsView:
    """One record's value, with its chain and mounts. The state, the holders and the
    prune refusal are the record's own (the same value the row shows)."""

    record: RecordState
    chain: tuple[tuple[str, str, int], ...]  # (id, description, size) from the parent up
    upper: str | None
    lowers: tuple[str, ...]
    mine: frozenset[int]  # holder ids that are this dashboard's
    pinned: bool
    subtree_size: int  # this record and all its descendants
    subtree_count: int
    #: The record below whose use is this one's effective age (None: its own use).
    effective: RecordState | None = None

    @property
    def holders(self) -> tuple[HolderInfo, ...]:
        return self.record.holders

    @property
    def in_use_because(self) -> str | None:
        return self.record.in_use_via

    @property
    def prune_refused(self) -> str | None:
        return self.record.refusal

    @property
    def prune_frees(self) -> int:
        """Bytes a prune of this record alone would free now (0: refused or shared)."""
        r = self.record
        return 0 if r.refusal or r.shared else max(r.size, 0)


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
    """A dry run or a prune: what goes (or went), what stays and why, what was gone."""

    rows: tuple[PlanRow, ...]
    refused: tuple[tuple[str, str], ...] = ()  # (id, reason)
    gone: tuple[str, ...] = ()  # asked for, but already removed (by someone else)
    #: A whole-chain prune: the records marked with everything below them (tops first).
    #: Then ``rows`` are leaves first, and any ``refused`` record stops the whole chain.
    chains: tuple[str, ...] = ()

    @property
    def freed(self) -> int:
        return sum(r.size for r in self.rows if not r.shared and r.size > 0)

    @property
    def shared_bytes(self) -> int:
        """Bytes of shared records in the plan: they leave the cache but free nothing."""
        return sum(r.size for r in self.rows if r.shared and r.size > 0)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.rows)


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """What a force release did on one record, said exactly."""

    record: str
    released: tuple[HolderInfo, ...]  # holder rows dropped
    already_gone: tuple[int, ...]  # holder ids that had released it themselves
    still_held_by: tuple[HolderInfo, ...]  # live holders left afterwards (new ones)
    record_gone: bool = False

    def message(self) -> str:
        rid = self.record[:12]
        if self.record_gone:
            return f"{rid} is gone: nothing to release"
        parts = []
        if self.released:
            who = ", ".join(h.where for h in self.released)
            parts.append(f"force-released {rid} (dropped the hold of {who})")
        if self.already_gone:
            n = len(self.already_gone)
            parts.append(f"{n} hold{'s' if n != 1 else ''} had already been released")
        if self.still_held_by:
            who = ", ".join(h.where for h in self.still_held_by)
            parts.append(f"still held: {who} took a new hold since")
        elif not self.released:
            parts.append(f"{rid} is no longer held")
        return "; ".join(parts)


def plan_row(info: UsageInfo) -> PlanRow:
    """The view row of a record a prune removed (or would remove)."""
    last = info.last_used_at.timestamp() if info.last_used_at else None
    return PlanRow(info.id, info.description, info.size, info.shared, info.mutable, last)
