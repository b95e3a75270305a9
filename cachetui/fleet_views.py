"""The fleet dashboard's view values: a ``StoreView`` whose top-level rows are stores.

``FleetService`` builds these from the replica in PostgreSQL; the widgets read them.
Keys: a store's row is ``"NAME/"`` and a record of it is ``"NAME/ID"`` (record ids never
hold a ``/``), so one tree holds every host's records and an action's key says which
host it goes to. A record row is the core's ``RecordState`` with ``id`` and ``parent``
set to such keys; a store row is a ``StoreRow`` (what the tree shows) beside a
placeholder ``RecordState`` under the same key (so sorting, cursor and marks work the
same for every row). Nothing here imports PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cachetui.core import RecordState
from cachetui.views import StoreView

__all__ = [
    "FleetChildren",
    "FleetRows",
    "FleetView",
    "StoreRow",
    "display_id",
    "split_key",
    "store_key",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})


def store_key(name: str) -> str:
    return f"{name}/"


def split_key(key: str) -> tuple[str, str]:
    """``(store, record id)``; the record id is ``""`` for a store's own row."""
    store, _, record_id = key.partition("/")
    return store, record_id


def display_id(key: str) -> str:
    """What the id column shows: the record id (a store row shows its name)."""
    store, _, record_id = key.partition("/")
    return record_id or store


@dataclass(frozen=True, slots=True)
class StoreRow:
    """One store (one host's agent) as the fleet screen shows it."""

    key: str
    name: str
    host: str
    root: str
    agent_version: str
    online: bool
    status: str  # "online", "offline for 42s", "stopped 3m ago"
    since: float | None  # when it went offline / stopped (server clock), None when online
    age: float  # seconds since its last heartbeat
    records: int
    total: int
    reclaimable: int
    in_use: int
    shared: int
    disk_total: int
    disk_free: int
    last_gc_at: float | None
    last_gc_freed: int | None
    last_gc_records: int | None
    last_error: str

    @property
    def free_fraction(self) -> float:
        return self.disk_free / self.disk_total if self.disk_total > 0 else 0.0

    def offline_reason(self) -> str | None:
        if self.online:
            return None
        return f"host {self.name} is {self.status}: no action can reach it"


@dataclass(frozen=True, slots=True)
class FleetView(StoreView):
    """A ``StoreView`` of a fleet: stores at the top, records loaded per store."""

    stores: Mapping[str, StoreRow] = field(default_factory=lambda: MappingProxyType({}))
    unloaded: frozenset[str] = frozenset()  # store keys whose records are not read yet
    pending: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # key -> "prune sent"
    stale_since: float | None = None  # the fleet database went away at (local clock)

    def subtree_size(self, record_id: str) -> int:
        """A store's total as its agent reports it (its records may not be read yet)."""
        store = self.stores.get(record_id)
        return store.total if store is not None else StoreView.subtree_size(self, record_id)

    def subtree_count(self, record_id: str) -> int:
        store = self.stores.get(record_id)
        return store.records if store is not None else StoreView.subtree_count(self, record_id)


class FleetRows(Mapping[str, RecordState]):
    """A fleet view's rows without one big copy: the stores' rows, and each loaded store's
    own dict of records. A view never changes: a store whose records change gets a new
    dict, and the stores that did not change share theirs with the view before (a row
    update then costs its store, not 200,000 rows)."""

    __slots__ = ("_len", "records", "stores")

    def __init__(
        self, stores: Mapping[str, RecordState], records: Mapping[str, Mapping[str, RecordState]]
    ) -> None:
        self.stores = stores
        self.records = records
        self._len = len(stores) + sum(len(r) for r in records.values())

    def __getitem__(self, key: str) -> RecordState:
        if not isinstance(key, str):
            raise KeyError(key)
        name, _, record_id = key.partition("/")
        if not record_id:
            return self.stores[key]
        records = self.records.get(name)
        if records is None:
            raise KeyError(key)
        return records[key]

    def __iter__(self) -> Iterator[str]:
        yield from self.stores
        for records in self.records.values():
            yield from records

    def __len__(self) -> int:
        return self._len


class FleetChildren(Mapping["str | None", tuple[str, ...]]):
    """A fleet view's tree shape: the stores at the top, then each loaded store's own
    shape (parent key -> child keys), shared between views like ``FleetRows``."""

    __slots__ = ("shapes", "top")

    def __init__(
        self, top: tuple[str, ...], shapes: Mapping[str, Mapping[str, tuple[str, ...]]]
    ) -> None:
        self.top = top
        self.shapes = shapes

    def __getitem__(self, key: str | None) -> tuple[str, ...]:
        if key is None:
            return self.top
        if not isinstance(key, str):
            raise KeyError(key)
        shape = self.shapes.get(key.partition("/")[0])
        if shape is None:
            raise KeyError(key)
        return shape[key]

    def __iter__(self) -> Iterator[str | None]:
        yield None
        for shape in self.shapes.values():
            yield from shape

    def __len__(self) -> int:
        return 1 + sum(len(s) for s in self.shapes.values())
