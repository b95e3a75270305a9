"""The fleet dashboard's view values: a ``StoreView`` whose top-level rows are stores.

``FleetService`` builds these from the replica in PostgreSQL; the widgets read them.
Keys: a store's row is ``"NAME/"`` and a record of it is ``"NAME/ID"`` (record ids never
hold a ``/``), so one tree holds every host's records and an action's key says which
host it goes to. A record row is the core's ``RecordState`` with ``id`` and ``parent``
set to such keys; a store row is a ``StoreRow`` (what the tree shows) beside a
placeholder ``RecordState`` under the same key (so sorting, cursor and marks work the
same for every row). Nothing here imports PostgreSQL.

A loaded store keeps its records packed (``StoreRecords``): one small tuple of the
replica's facts per record id, and the record's ``RecordState`` is built from it when it
is read (a row drawn, the details pane, a refusal), by one rule, so all three agree. A
fleet of 200,000 records then holds 200,000 small tuples, not 200,000 full values and
their 200,000 keys; a subtree's totals are summed when its row is first drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from cachetui.core import HolderInfo, RecordBrief, RecordState
from cachetui.subtree import Subtrees
from cachetui.views import StoreView

__all__ = [
    "FleetChildren",
    "FleetRows",
    "FleetView",
    "Packed",
    "StoreRecords",
    "StoreRow",
    "display_id",
    "pack",
    "refusal",
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
        """A store's total as its agent reports it (its records may not be read yet); a
        record's from its own store's totals (summed once per store, not per fleet)."""
        store = self.stores.get(record_id)
        if store is not None:
            return store.total
        records = self._store_records(record_id)
        if records is None:
            return StoreView.subtree_size(self, record_id)
        return records.trees.size(split_key(record_id)[1])

    def subtree_count(self, record_id: str) -> int:
        store = self.stores.get(record_id)
        if store is not None:
            return store.records
        records = self._store_records(record_id)
        if records is None:
            return StoreView.subtree_count(self, record_id)
        return records.trees.count(split_key(record_id)[1])

    def _store_records(self, key: str) -> StoreRecords | None:
        rows = self.rows
        if not isinstance(rows, FleetRows):
            return None
        records = rows.records.get(split_key(key)[0])
        return records if isinstance(records, StoreRecords) else None


def refusal(held: bool, holders: Sequence[HolderInfo], has_children: bool) -> str | None:
    """Why a record of an online store cannot be pruned (None: it can)."""
    if held:
        live = [h for h in holders if h.alive]
        who = live[0].where if live else "a running process"
        return f"it is held by {who}"
    if has_children:
        return "it has child records (prune them first)"
    return None


#: A loaded record, packed: ``(parent id, flags, type, description, size, created at,
#: last used at, usage count)``; its id is its key in ``StoreRecords.packed``.
Packed = tuple[str | None, int, str, str, int, float, float | None, int]
PARENT: Final = 0
FLAGS: Final = 1
TYPE: Final = 2
DESCRIPTION: Final = 3
SIZE: Final = 4
CREATED: Final = 5
LAST_USED: Final = 6
USES: Final = 7
MUTABLE, IN_USE, HELD, RETAIN, PENDING, SHARED, CHILDREN = (1 << n for n in range(7))


def pack(
    parent: str | None,
    mutable: bool,
    in_use: bool,
    held: bool,
    retain: bool,
    pending_commit: bool,
    record_type: str,
    description: str,
    size: int,
    created_at: float,
    last_used_at: float | None,
    usage_count: int,
    shared: bool,
    has_children: bool,
) -> Packed:
    """One record's facts as the replica holds them, in one tuple (the flags in one int)."""
    flags = (
        mutable * MUTABLE
        | in_use * IN_USE
        | held * HELD
        | retain * RETAIN
        | pending_commit * PENDING
        | shared * SHARED
        | has_children * CHILDREN
    )
    return (parent, flags, record_type, description, size, created_at, last_used_at, usage_count)


class StoreRecords(Mapping[str, RecordState]):
    """One loaded store's records: ``"NAME/ID"`` -> the record's ``RecordState``, built
    from its packed facts when it is read (``packed``: record id -> ``Packed``).

    A value never changes: a store whose records change gets a new one (sharing what did
    not change: the holders, the tree's shape, the subtree totals). Its parts:

    * ``holders``: record id -> its holders (only records that have some);
    * ``refused``: the reason every record is refused while the store is offline (None:
      each record's own refusal, ``refusal``);
    * a record's parent is the record named by its parent id when that is loaded, else
      the store's row (the tree's shape and the parent in the value say the same);
    * ``edit``: when made from another value's records by writing or deleting a few,
      ``(id of those records, the ids written or deleted)``: what changed since that
      value, without comparing 10,000 records (the id is only compared while that
      dict is alive, so it cannot name another).
    """

    __slots__ = (
        "_keys",
        "_shape",
        "_trees",
        "edit",
        "holders",
        "name",
        "packed",
        "prefix",
        "refused",
    )

    def __init__(
        self,
        name: str,
        packed: Mapping[str, Packed],
        holders: Mapping[str, tuple[HolderInfo, ...]] | None = None,
        refused: str | None = None,
        *,
        shape: Mapping[str | None, tuple[str, ...]] | None = None,
        keys: dict[str | None, tuple[str, ...]] | None = None,
        trees: Subtrees | None = None,
        edit: tuple[int, frozenset[str]] | None = None,
    ) -> None:
        self.name = name
        self.prefix = store_key(name)
        self.packed = packed
        self.holders: Mapping[str, tuple[HolderInfo, ...]] = holders or _NO_HOLDERS
        self.refused = refused
        self._shape = shape
        # the child keys of the rows with many children, made once per shape (the tree
        # asks for a store's top records on every update)
        self._keys: dict[str | None, tuple[str, ...]] = (
            keys if shape is not None and keys is not None else {}
        )
        self._trees = trees
        self.edit = edit

    def replaced(
        self,
        *,
        packed: Mapping[str, Packed] | None = None,
        holders: Mapping[str, tuple[HolderInfo, ...]] | None = None,
        refused: str | bool | None = False,
        reshaped: bool = True,
        trees: Subtrees | None = None,
        edited: Iterable[str] | None = None,
    ) -> StoreRecords:
        """A new value with some parts replaced (``refused=False``: the same reason).
        Unless ``reshaped``, the tree's shape is shared; the subtree totals are shared
        when the records are, else given (``trees``) or summed again when asked.
        ``edited``: the only ids whose records differ between ``packed`` and these."""
        same_records = packed is None
        same_shape = same_records or not reshaped
        return StoreRecords(
            self.name,
            self.packed if packed is None else packed,
            self.holders if holders is None else holders,
            self.refused if refused is False else refused,  # type: ignore[arg-type]
            shape=self._shape if same_shape else None,
            keys=self._keys if same_shape else None,
            trees=self._trees if same_records else trees,
            edit=(id(self.packed), frozenset(edited)) if edited is not None else None,
        )

    # -- the Mapping ------------------------------------------------------------------

    def _id(self, key: object) -> str | None:
        prefix = self.prefix
        if isinstance(key, str) and key.startswith(prefix):
            return key[len(prefix) :]
        return None

    def __getitem__(self, key: str) -> RecordState:
        record_id = self._id(key)
        if record_id is None:
            raise KeyError(key)
        return self.state(record_id)

    def __contains__(self, key: object) -> bool:
        record_id = self._id(key)
        return record_id is not None and record_id in self.packed

    def __iter__(self) -> Iterator[str]:
        prefix = self.prefix
        return (prefix + record_id for record_id in self.packed)

    def __len__(self) -> int:
        return len(self.packed)

    # -- one record ---------------------------------------------------------------------

    def parent_id(self, packed: Packed) -> str | None:
        """The loaded record above (None: the store's row is its parent)."""
        parent = packed[PARENT]
        return parent if parent is not None and parent in self.packed else None

    def parent_key(self, record_id: str) -> str:
        parent = self.parent_id(self.packed[record_id])
        return self.prefix if parent is None else self.prefix + parent

    def brief(self, record_id: str) -> RecordBrief:
        p = self.packed[record_id]
        flags = p[FLAGS]
        in_use, shared = bool(flags & IN_USE), bool(flags & SHARED)
        return RecordBrief(p[SIZE], p[LAST_USED], p[USES], p[DESCRIPTION], in_use, shared)

    def state(self, record_id: str) -> RecordState:
        """The record's one value: what its row, the details pane and a refusal show."""
        p = self.packed[record_id]
        flags = p[FLAGS]
        held, has_children = bool(flags & HELD), bool(flags & CHILDREN)
        holders = self.holders.get(record_id, ())
        return RecordState(
            id=self.prefix + record_id,
            parent=self.parent_key(record_id),
            mutable=bool(flags & MUTABLE),
            in_use=bool(flags & IN_USE),
            size=p[SIZE],
            created_at=p[CREATED],
            last_used_at=p[LAST_USED],
            usage_count=p[USES],
            description=p[DESCRIPTION],
            record_type=p[TYPE],
            shared=bool(flags & SHARED),
            health="ok",
            held=held,
            holders=holders,
            in_use_via=None,
            retain=bool(flags & RETAIN),
            pending_commit=bool(flags & PENDING),
            has_children=has_children,
            layer_id=record_id,
            # the layer is on its host: ``details`` says where from the store's root
            layer_path="",
            refusal=self.refused or refusal(held, holders, has_children),
        )

    # -- the tree -------------------------------------------------------------------------

    @property
    def shape(self) -> Mapping[str | None, tuple[str, ...]]:
        """Parent id (None: the store's row) -> child ids, made on first use."""
        shape = self._shape
        if shape is None:
            lists: dict[str | None, list[str]] = {}
            parent_id = self.parent_id
            for record_id, packed in self.packed.items():
                lists.setdefault(parent_id(packed), []).append(record_id)
            shape = {parent: tuple(ids) for parent, ids in lists.items()}
            self._shape = shape  # a cache of a value derived from the frozen parts
        return shape

    def child_keys(self, record_id: str | None) -> tuple[str, ...] | None:
        ids = self.shape.get(record_id)
        if ids is None:
            return None
        if len(ids) < _KEEP_KEYS:
            prefix = self.prefix
            return tuple(prefix + i for i in ids)
        keys = self._keys.get(record_id)
        if keys is None:
            prefix = self.prefix
            keys = self._keys[record_id] = tuple(prefix + i for i in ids)
        return keys

    def ancestor_ids(self, record_id: str) -> list[str]:
        chain: list[str] = []
        parent = self.parent_id(self.packed[record_id])
        while parent is not None and parent not in chain:
            chain.append(parent)
            parent = self.parent_id(self.packed[parent])
        return chain

    @property
    def trees(self) -> Subtrees:
        """Every record's subtree size and count, by record id, each subtree summed when
        first asked for (the rows drawn: a store of 10,000 is not summed whole)."""
        trees = self._trees
        if trees is None:
            packed = self.packed
            trees = Subtrees.lazy(self.shape, lambda i: packed[i][SIZE])
            self._trees = trees
        return trees

    @property
    def summed(self) -> Subtrees | None:
        """The subtree totals if any were asked for already (None: not yet)."""
        return self._trees


_NO_HOLDERS: Mapping[str, tuple[HolderInfo, ...]] = MappingProxyType({})
#: From this many children on, a row's child keys are kept (with the tree's shape).
_KEEP_KEYS = 32


class FleetRows(Mapping[str, RecordState]):
    """A fleet view's rows without one big copy: the stores' rows, and each loaded store's
    own ``StoreRecords``. A view never changes: a store whose records change gets a new
    one, and the stores that did not change share theirs with the view before (a row
    update then costs its store, not 200,000 rows)."""

    __slots__ = ("_len", "records", "stores")

    def __init__(
        self, stores: Mapping[str, RecordState], records: Mapping[str, StoreRecords]
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
        return records.state(record_id)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        name, _, record_id = key.partition("/")
        if not record_id:
            return key in self.stores
        records = self.records.get(name)
        return records is not None and record_id in records.packed

    def __iter__(self) -> Iterator[str]:
        yield from self.stores
        for records in self.records.values():
            yield from records

    def __len__(self) -> int:
        return self._len

    # the cheap reads ``StoreView`` asks for (sorting, depth): no value is built

    def parent_of(self, key: str) -> str | None:
        name, _, record_id = key.partition("/")
        if not record_id:
            return None
        return self.records[name].parent_key(record_id)

    def brief(self, key: str) -> RecordBrief | RecordState:
        name, _, record_id = key.partition("/")
        if not record_id:
            return self.stores[key]
        return self.records[name].brief(record_id)


class FleetChildren(Mapping["str | None", tuple[str, ...]]):
    """A fleet view's tree shape: the stores at the top, then each loaded store's own
    shape (made from its ``StoreRecords``), shared between views like ``FleetRows``."""

    __slots__ = ("shapes", "top")

    def __init__(self, top: tuple[str, ...], shapes: Mapping[str, StoreRecords]) -> None:
        self.top = top
        self.shapes = shapes

    def _lookup(self, key: object) -> tuple[str, ...] | None:
        if key is None:
            return self.top
        if not isinstance(key, str):
            return None
        name, _, record_id = key.partition("/")
        records = self.shapes.get(name)
        if records is None:
            return None
        return records.child_keys(record_id or None)

    def __getitem__(self, key: str | None) -> tuple[str, ...]:
        found = self._lookup(key)
        if found is None:
            raise KeyError(key)
        return found

    def get(self, key: str | None, default: tuple[str, ...] | None = None) -> tuple[str, ...]:  # type: ignore[override]
        found = self._lookup(key)
        return found if found is not None else default  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        return self._lookup(key) is not None

    def __iter__(self) -> Iterator[str | None]:
        yield None
        for records in self.shapes.values():
            prefix = records.prefix
            for parent in records.shape:
                yield prefix if parent is None else prefix + parent

    def __len__(self) -> int:
        return 1 + sum(len(r.shape) for r in self.shapes.values())
