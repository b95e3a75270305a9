"""A consistent in-memory picture of the store: records, live holders, children, pairs.

Disk usage, prune selection, reconcile and doctor all reason over this picture, loaded in
one read (plain tuples, not model objects: 100,000 records load in a fraction of a second).
It comes in two forms: ``StoreState``, one ``RecordRow`` per record (what prune, reconcile
and the dashboard change and walk), and ``UsagePicture``, disk usage's row tuples as
SQLite returns them (one object per record, not two). ``RecordGraph``, their common
base, owns the two BuildKit rules that every view shares, over record ids:

* **pair visibility**: an equal pair shows once, as the immutable while it is held and as
  the mutable otherwise;
* **in use**: a record is in use when a live process holds it (or its pair half), or when
  any descendant is in use.
"""

from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from operator import itemgetter

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
    "RecordGraph",
    "RecordRow",
    "StoreState",
    "UsagePicture",
    "UsageTuple",
    "count_live",
    "holder_rows_alive",
    "load_state",
    "load_usage_picture",
    "paused_gc",
]


class paused_gc:  # lower case: used as the function it was, ``with paused_gc():``
    """Pause the cyclic collector while building many acyclic objects at once.

    100,000 rows otherwise trigger dozens of full collections for nothing. A class, not
    a generator: leaving it allocates nothing, so the collector does not run on the
    spot over the objects just built (a caller that keeps them meets it at its next
    allocation; one that lets them go frees them without a collection).
    """

    __slots__ = ("_was_enabled",)

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: object
    ) -> None:
        if self._was_enabled:
            gc.enable()


class RecordGraph(ABC):
    """The two rules every view shares, over record ids (see the module docstring).

    A picture gives the links between its records (the hooks below); the rules are
    written once, here, whichever form the picture holds its rows in: ``StoreState``
    (one ``RecordRow`` per record) or ``UsagePicture`` (disk usage's row tuples).
    """

    #: Live holders per record id.
    live: dict[str, int]
    #: The live pending-commit immutable of each mutable that has one.
    immutable_of: dict[str, str]

    # -- what a picture gives ------------------------------------------------------------

    @abstractmethod
    def is_live(self, record_id: str) -> bool:
        """Whether the record has a row that is not tombstoned."""

    @abstractmethod
    def has_row(self, record_id: str) -> bool:
        """Whether the record has a row in the picture (tombstoned ones included, when
        the picture holds them)."""

    @abstractmethod
    def parent_of(self, record_id: str) -> str | None:
        """The parent a record's row names (the record has a row)."""

    @abstractmethod
    def mutable_of(self, record_id: str) -> str | None:
        """The mutable a pending commit's row names (``equal_mutable``), else None."""

    @abstractmethod
    def pending_commits(self) -> Iterable[tuple[str, str]]:
        """``(immutable, mutable)`` of every live pending commit."""

    @abstractmethod
    def visible_ids(self) -> Iterable[str]:
        """The ids ``hidden_ids`` leaves of the live records, in the picture's order."""

    @abstractmethod
    def live_ids_outside(self, names: set[str]) -> Iterable[str]:
        """The live records whose id is not among ``names``."""

    @abstractmethod
    def parents_live(self) -> bool:
        """Whether every parent a live row names has a live row."""

    # -- pairs and holders --------------------------------------------------------------

    def held_directly(self, record_id: str) -> bool:
        return self.live.get(record_id, 0) > 0

    def held_through(self, record_id: str, equal_mutable: str | None) -> bool:
        """Held through either half of its pair (``equal_mutable``: its row's)."""
        if self.held_directly(record_id):
            return True
        if equal_mutable is not None and self.held_directly(equal_mutable):
            return True
        partner = self.immutable_of.get(record_id)
        return partner is not None and self.held_directly(partner)

    def node_held(self, row: RecordRow) -> bool:
        """Held through either half of its pair."""
        return self.held_through(row.id, row.equal_mutable)

    def partner_id(self, record_id: str) -> str | None:
        """The other half of the record's pair, when it has a row."""
        other = self.mutable_of(record_id) or self.immutable_of.get(record_id)
        return other if other is not None and self.has_row(other) else None

    def hidden_halves(self) -> set[str]:
        """The pair halves not shown: the mutable while its immutable is held, else the
        immutable (computed from the few pairs, not by visiting every record)."""
        hidden: set[str] = set()
        for mutable_id, immutable_id in self.immutable_of.items():
            if self.is_live(mutable_id) and self.held_directly(immutable_id):
                hidden.add(mutable_id)
            else:
                hidden.add(immutable_id)
        return hidden

    def hidden_ids(self) -> set[str]:
        """The live records not shown: the hidden pair halves, and a pending commit
        whose mutable has no row."""
        hidden = self.hidden_halves()
        for immutable_id, mutable_id in self.pending_commits():
            if not self.has_row(mutable_id):
                hidden.add(immutable_id)
        return hidden

    # -- derived sets -------------------------------------------------------------------

    def in_use_ids(self) -> set[str]:
        """Records held by a live process, plus every ancestor of one (both pair halves)."""
        in_use: set[str] = set()
        for record_id, count in self.live.items():
            if count <= 0 or not self.has_row(record_id):
                continue
            self._mark_up(record_id, in_use)
        return in_use

    def _mark_up(self, record_id: str | None, marked: set[str]) -> None:
        while record_id is not None and record_id not in marked:
            if not self.is_live(record_id):
                return
            marked.add(record_id)
            partner = self.partner_id(record_id)
            if partner is not None:
                marked.add(partner)
            record_id = self.parent_of(record_id)

    def shared_ids(self, is_shared: Callable[[str], bool] | None) -> set[str]:
        """Records the checker reports shared, with all their ancestors."""
        shared: set[str] = set()
        if is_shared is None:
            return shared
        for record_id in self.visible_ids():
            if record_id not in shared and is_shared(record_id):
                self._mark_up(record_id, shared)
        return shared

    def layers_present(self, names: set[str]) -> bool:
        """Whether every live record's layer is among ``names`` (the real directories
        under ``snapshots/``) and every live parent has a live row: then every record's
        health is "ok" (set operations, instead of a walk per record)."""
        # Records whose id names no directory: normally only the pending commits (their
        # layer is the mutable's); a set difference finds them without a loop in Python.
        for record_id in self.live_ids_outside(names):
            mutable = self.mutable_of(record_id)
            if mutable is None or mutable not in names:
                return False
        return self.parents_live()


@dataclass
class StoreState(RecordGraph):
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
    #: Rows whose ``deleted`` is neither 0 nor 1 (damage), with the stored value: hidden
    #: from every live read and never a tombstone either (the open check reports them).
    odd_deleted: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        count_live(self.holders, self.live)
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

    # -- the links, from the rows -------------------------------------------------------

    def is_live(self, record_id: str) -> bool:
        row = self.rows.get(record_id)
        return row is not None and not row.deleted

    def has_row(self, record_id: str) -> bool:
        return record_id in self.rows

    def parent_of(self, record_id: str) -> str | None:
        return self.rows[record_id].parent

    def mutable_of(self, record_id: str) -> str | None:
        row = self.rows.get(record_id)
        return row.equal_mutable if row is not None else None

    def pending_commits(self) -> list[tuple[str, str]]:
        return [
            (row.id, row.equal_mutable)
            for row in self.rows.values()
            if row.equal_mutable is not None and not row.deleted
        ]

    def visible_ids(self) -> list[str]:
        return [row.id for row in self.visible()]

    def live_ids_outside(self, names: set[str]) -> list[str]:
        rows = self.rows
        return [rid for rid in rows.keys() - names if not rows[rid].deleted]

    def parents_live(self) -> bool:
        rows = self.rows
        if self.parent_ids is not None:
            return self.parent_ids <= rows.keys()  # every parent named has a live row
        for row in rows.values():
            parent = row.parent
            if parent is not None and not row.deleted:
                above = rows.get(parent)
                if above is None or above.deleted:
                    return False
        return True

    # -- pairs and holders --------------------------------------------------------------

    def is_visible(self, row: RecordRow) -> bool:
        if row.deleted:
            return False
        if row.equal_mutable is not None:  # the immutable half: shown only while held
            return self.held_directly(row.id) and row.equal_mutable in self.rows
        partner = self.immutable_of.get(row.id)
        return partner is None or not self.held_directly(partner)

    def visible(self) -> list[RecordRow]:
        """One row per record, an equal pair once (same rule as ``is_visible``)."""
        hidden = self.hidden_ids()
        return [row for row in self.rows.values() if not row.deleted and row.id not in hidden]

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

    def chain(self, record_id: str) -> list[str]:
        """The parent chain from the record up (cycle-safe)."""
        seen: list[str] = []
        current: str | None = record_id
        while current is not None and current not in seen:
            seen.append(current)
            row = self.rows.get(current)
            current = row.parent if row else None
        return seen


#: One live record as disk usage reads it (``RecordStore.usage_rows``), values as stored:
#: id, mutable (0/1), cached size (-1: unknown), parent, created_at, last_used_at,
#: usage_count, description, record type (None for "regular"), cached apparent size. A
#: stored time that is not one stays as it is: ``UsageInfo`` reads it as unknown.
UsageTuple = tuple[str, int, int, str | None, float, float | None, int, str, str | None, int]


class UsagePicture(RecordGraph):
    """Every live record as disk usage's row tuples, largest first, with the holders,
    pairs and metadata read in the same transaction: one Python object per record
    (the tuple SQLite returns) where ``StoreState`` builds a ``RecordRow`` besides."""

    def __init__(
        self,
        rows: list[UsageTuple],
        pending: list[tuple[str, str]],
        holders: list[HolderRow],
        labels: dict[str, tuple[tuple[str, str], ...]],
        cache_mounts: dict[str, CacheMount],
    ) -> None:
        self.rows = rows
        #: The live ids (a set: comparing two sets is the fastest test of 100,000 names).
        self.ids = set(map(itemgetter(0), rows))
        self.pending = pending
        self._mutable_of = dict(pending)
        self.immutable_of = {mutable: immutable for immutable, mutable in pending}
        self.holders = holders
        self.live = count_live(holders, {})
        self.labels = labels
        self.cache_mounts = cache_mounts
        #: Rows whose size must be measured now (unknown, or a held mutable's live
        #: size), read in the same transaction by ``load_usage_picture``.
        self.unsure: list[RecordRow] = []

    @cached_property
    def by_id(self) -> dict[str, UsageTuple]:
        """Each row by its id (built on first use: walks up from a held record)."""
        return dict(zip(map(itemgetter(0), self.rows), self.rows, strict=True))

    def is_live(self, record_id: str) -> bool:
        return record_id in self.ids

    has_row = is_live  # only live rows are read

    def parent_of(self, record_id: str) -> str | None:
        return self.by_id[record_id][3]

    def mutable_of(self, record_id: str) -> str | None:
        return self._mutable_of.get(record_id)

    def pending_commits(self) -> list[tuple[str, str]]:
        return self.pending

    def visible_ids(self) -> Iterator[str]:
        hidden = self.hidden_ids()
        return (rid for rid in map(itemgetter(0), self.rows) if rid not in hidden)

    def live_ids_outside(self, names: set[str]) -> set[str]:
        if self.ids <= names:  # the usual answer, without building a set
            return set()
        return self.ids - names

    def parents_live(self) -> bool:
        parents = set(map(itemgetter(3), self.rows))
        parents.discard(None)
        return parents <= self.ids

    def held_nodes(self) -> set[str]:
        """The live records ``held_through`` either half of their pair (a handful)."""
        held = {rid for rid, count in self.live.items() if count > 0}
        through = {imm for imm, mutable in self.pending if mutable in held}
        through.update(mutable for mutable, imm in self.immutable_of.items() if imm in held)
        return (held | through) & self.ids


def count_live(holders: Iterable[HolderRow], live: dict[str, int]) -> dict[str, int]:
    """``live``, counting each live holder's record once per holder."""
    for holder in holders:
        if holder.alive:
            live[holder.record] = live.get(holder.record, 0) + 1
    return live


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
    odd_deleted: dict[str, object] = {}
    with paused_gc():
        for (rid, parent, mutable, equal, retain, text, kind, created, last, count, size,
             deleted, pending, apparent) in record_rows:  # fmt: skip
            if deleted:
                any_deleted = True
                if deleted != 1:  # damage: neither live nor a tombstone
                    odd_deleted[rid] = deleted
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
        odd_deleted=odd_deleted,
    )


def load_usage_picture(records: RecordStore) -> UsagePicture:
    """Every live record in disk usage's row shape, in one consistent read, with the
    rows whose size must be measured now also read in full (``UsagePicture.unsure``)."""
    with records.read(), paused_gc():
        labels, cache_mounts = records.metadata()
        picture = UsagePicture(
            records.usage_rows(),
            records.pending_commits(),
            records.all_holders(),
            labels,
            cache_mounts,
        )
        rows = picture.rows
        held = picture.held_nodes()
        # largest first: an unknown size is last, or first when the stored value was
        # garbage (text, or more than the disk holds: see ``Store.limit_sizes``)
        unknown = bool(rows) and (rows[-1][2] < 0 or rows[0][2] < 0)
        if held or unknown:
            found = {row.id: row for row in records.records_by_id(held)}
            if unknown:
                found.update((row.id, row) for row in records.unsized_records())
            picture.unsure = [
                row
                for row in found.values()
                if row.size < 0 or (row.mutable and picture.node_held(row))
            ]
    return picture
