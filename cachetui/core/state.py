"""A consistent in-memory picture of the store: records, live holders, children, pairs.

Disk usage, prune selection, reconcile and doctor all reason over this picture, loaded in
one read (plain tuples, not model objects: 100,000 records load in a fraction of a second).
It owns the two BuildKit rules that every view shares:

* **pair visibility**: an equal pair shows once, as the immutable while it is held and as
  the mutable otherwise;
* **in use**: a record is in use when a live process holds it (or its pair half), or when
  any descendant is in use.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

from cachetui.core.recordstore import (
    HOLDER_COLUMNS,
    HolderRow,
    RecordRow,
    RecordStore,
    holder_rows_alive,
)
from cachetui.core.timestamps import MAX_EPOCH
from cachetui.core.types import CacheMount

__all__ = [
    "HOLDER_COLUMNS",
    "HolderRow",
    "RecordRow",
    "StoreState",
    "holder_rows_alive",
    "load_state",
    "paused_gc",
]


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic collector while building many acyclic objects at once.

    100,000 rows otherwise trigger dozens of full collections for nothing.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class StoreState:
    rows: dict[str, RecordRow]
    holders: list[HolderRow]
    live: dict[str, int] = field(default_factory=dict)
    immutable_of: dict[str, str] = field(default_factory=dict)
    #: Labels by record id, each sorted by key (only records that have any).
    labels: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    #: Cache-mount identity by record id (only ``exec.cachemount`` records given one).
    cache_mounts: dict[str, CacheMount] = field(default_factory=dict)

    #: The parents that live rows name, when only live rows were loaded (else None). A
    #: prune's picture removes children before their parents, so every live row's
    #: parent stays among ``rows`` (and live) while it is used.
    parent_ids: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for holder in self.holders:
            if holder.alive:
                self.live[holder.record] = self.live.get(holder.record, 0) + 1
        if not self.immutable_of:  # given by the loader, which saw every row already
            for row in self.rows.values():
                if row.equal_mutable is not None and not row.deleted:
                    self.immutable_of[row.equal_mutable] = row.id

    @cached_property
    def children(self) -> dict[str, list[str]]:
        """Child ids by parent id (built on first use: disk usage never needs it)."""
        children: dict[str, list[str]] = {}
        for row in self.rows.values():
            if row.parent is not None and not row.deleted:
                children.setdefault(row.parent, []).append(row.id)
        return children

    # -- pairs and holders --------------------------------------------------------------

    def held_directly(self, record_id: str) -> bool:
        return self.live.get(record_id, 0) > 0

    def node_held(self, row: RecordRow) -> bool:
        """Held through either half of its pair."""
        if self.held_directly(row.id):
            return True
        if row.equal_mutable is not None and self.held_directly(row.equal_mutable):
            return True
        partner = self.immutable_of.get(row.id)
        return partner is not None and self.held_directly(partner)

    def is_visible(self, row: RecordRow) -> bool:
        if row.deleted:
            return False
        if row.equal_mutable is not None:  # the immutable half: shown only while held
            return self.held_directly(row.id) and row.equal_mutable in self.rows
        partner = self.immutable_of.get(row.id)
        return partner is None or not self.held_directly(partner)

    def hidden_halves(self) -> set[str]:
        """The pair halves not shown: the mutable while its immutable is held, else the
        immutable (computed from the few pairs, not by visiting every record)."""
        hidden: set[str] = set()
        for mutable_id, immutable_id in self.immutable_of.items():
            mutable = self.rows.get(mutable_id)
            if mutable is not None and not mutable.deleted and self.held_directly(immutable_id):
                hidden.add(mutable_id)
            else:
                hidden.add(immutable_id)
        return hidden

    def visible(self) -> list[RecordRow]:
        """One row per record, an equal pair once (same rule as ``is_visible``)."""
        hidden = self.hidden_halves()
        return [
            row
            for row in self.rows.values()
            if not row.deleted
            and row.id not in hidden
            and (row.equal_mutable is None or row.equal_mutable in self.rows)
        ]

    def partner(self, row: RecordRow) -> RecordRow | None:
        other = row.equal_mutable or self.immutable_of.get(row.id)
        return self.rows.get(other) if other else None

    def has_children(self, row: RecordRow) -> bool:
        if self.children.get(row.id):
            return True
        partner = self.partner(row)
        return partner is not None and bool(self.children.get(partner.id))

    def child_ids(self, record_id: str) -> list[str]:
        return list(self.children.get(record_id, ()))

    # -- derived sets -------------------------------------------------------------------

    def in_use_ids(self) -> set[str]:
        """Records held by a live process, plus every ancestor of one (both pair halves)."""
        in_use: set[str] = set()
        for record_id, count in self.live.items():
            if count <= 0 or record_id not in self.rows:
                continue
            self._mark_up(record_id, in_use)
        return in_use

    def _mark_up(self, record_id: str | None, marked: set[str]) -> None:
        while record_id is not None and record_id not in marked:
            row = self.rows.get(record_id)
            if row is None or row.deleted:
                return
            marked.add(record_id)
            partner = self.partner(row)
            if partner is not None:
                marked.add(partner.id)
            record_id = row.parent

    def shared_ids(self, is_shared: Callable[[str], bool] | None) -> set[str]:
        """Records the checker reports shared, with all their ancestors."""
        shared: set[str] = set()
        if is_shared is None:
            return shared
        for row in self.visible():
            if row.id not in shared and is_shared(row.id):
                self._mark_up(row.id, shared)
        return shared

    def chain(self, record_id: str) -> list[str]:
        """The parent chain from the record up (cycle-safe)."""
        seen: list[str] = []
        current: str | None = record_id
        while current is not None and current not in seen:
            seen.append(current)
            row = self.rows.get(current)
            current = row.parent if row else None
        return seen


def load_state(
    records: RecordStore, *, include_deleted: bool = False, ordered: bool = True
) -> StoreState:
    """Read every record and holder in one consistent snapshot; the rows in disk usage's
    order (largest first, then by id) unless not ``ordered`` (the table's order).

    100,000 rows pass through here for every disk usage: the loop builds each row and
    notes its pair and its parent in one go (``RecordRow.from_values`` inlined)."""
    with records.read():
        record_rows = records.all_records(ordered=ordered)
        holders = records.all_holders()
        labels, cache_mounts = records.metadata()
    rows: dict[str, RecordRow] = {}
    immutable_of: dict[str, str] = {}
    parents: set[str] = set()
    make, add_parent = RecordRow, parents.add
    any_deleted = False
    with paused_gc():
        for (rid, parent, mutable, equal, retain, text, kind, created, last, count, size,
             deleted, pending, apparent) in record_rows:  # fmt: skip
            if deleted:
                any_deleted = True
                if not include_deleted:
                    continue
            row = rows[rid] = make(
                rid,
                parent,
                mutable == 1,
                equal,
                retain == 1,
                text,
                kind,
                created,
                last,
                count,
                size,
                deleted == 1,
                pending == 1,
                apparent,
            )
            if not (
                type(created) is float
                and 0.0 <= created <= MAX_EPOCH
                and (last is None or (type(last) is float and 0.0 <= last <= MAX_EPOCH))
            ):
                row.make_times_readable()
            if parent is not None and not deleted:
                add_parent(parent)
            if equal is not None and not deleted:
                immutable_of[equal] = rid
    return StoreState(
        rows,
        holders,
        immutable_of=immutable_of,
        labels=labels,
        cache_mounts=cache_mounts,
        # every row read is live: the parents they name are known (even when tombstones
        # were asked for, there were none)
        parent_ids=None if include_deleted and any_deleted else frozenset(parents),
    )
