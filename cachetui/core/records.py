"""One value per visible record with everything a screen shows about it.

A screen that shows a row, a details pane and a prune refusal must never disagree with
itself, so all three come from the one ``RecordState`` this module computes from one
picture of the store: the usage row (size, in use, shared, last used only if used),
who holds the record (alive or not), retain, a pending commit, children, its layer path,
its health, and the prune eligibility rule with its reason. Prune uses the same rule
(``prune_refusal``), so the reason shown is the reason prune applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from cachetui.core import filters as filter_language
from cachetui.core.context import StoreContext
from cachetui.core.diskusage import Totals, measure_missing, totals_of_sizes
from cachetui.core.effective_age import NewestInSubtrees
from cachetui.core.policy import DiskStat
from cachetui.core.recordstore import RecordRow, RecordStore
from cachetui.core.search import search_words
from cachetui.core.snapshots import real_directories
from cachetui.core.state import StoreState
from cachetui.core.types import CacheMount

__all__ = [
    "HolderInfo",
    "RecordBrief",
    "RecordState",
    "RecordStates",
    "alive_holders",
    "matching_ids",
    "prune_refusal",
    "record_states",
]


@dataclass(frozen=True, slots=True)
class HolderInfo:
    """One holder row of a record (or of its pair half), with its liveness now."""

    id: int
    record: str  # the half it holds
    pid: int
    host: str
    since: float  # epoch seconds
    alive: bool
    counts_use: bool

    @property
    def where(self) -> str:
        return f"pid {self.pid} on {self.host}"


@dataclass(frozen=True, slots=True)
class RecordState:
    """Everything the screens show about one visible record, computed once by the core.

    Times are epoch seconds (cheap to build for 100,000 records); ``last_used_at`` is
    None for a record never used. ``parent`` is the visible record above it (an equal
    pair shows once, so a parent that is a hidden pair half maps to the visible half).
    """

    id: str
    parent: str | None
    mutable: bool
    in_use: bool  # held by a live process, directly or through a descendant
    size: int
    created_at: float
    last_used_at: float | None
    usage_count: int
    description: str
    record_type: str
    shared: bool
    health: str  # "ok", "missing" (its layer is gone), "broken" (an ancestor's is)
    held: bool  # a live holder on it or on its pair half
    holders: tuple[HolderInfo, ...]  # every holder row on either half, alive or not
    in_use_via: str | None  # when in use but not held: the held descendant that makes it so
    retain: bool
    pending_commit: bool  # a lazily committed pair, not finalized yet
    has_children: bool
    layer_id: str
    layer_path: str
    refusal: str | None  # why prune would refuse it now (None: it can go)
    labels: tuple[tuple[str, str], ...] = ()
    cache_mount: CacheMount | None = None
    #: The sum of the files' lengths (``du --apparent-size``); -1 when not measured.
    apparent_size: int = -1
    #: The effective age: the newest use (a never-used record counts from its creation,
    #: as ``keep_duration`` does) of this record or any record below it, and the record
    #: that use belongs to (itself when its own). None where unknown (a fleet's rows).
    effective_at: float | None = None
    effective_by: str | None = None

    @property
    def reclaimable(self) -> bool:
        return not self.in_use

    @property
    def live_holders(self) -> tuple[HolderInfo, ...]:
        return tuple(h for h in self.holders if h.alive)


def prune_refusal(state: StoreState, row: RecordRow) -> str | None:
    """Why prune must not remove ``row`` now (None when it may): the one eligibility rule.

    A record held by a live process (either half of its pair) or with children stays.
    """
    if state.node_held(row):
        halves = _halves(state, row)
        live = [h for h in state.holders if h.alive and h.record in halves]
        who = f"pid {live[0].pid} on {live[0].host}" if live else "a running process"
        return f"it is held by {who}"
    if state.has_children(row):
        kids = len(state.children.get(row.id, ()))
        partner = state.partner(row)
        if partner is not None:
            kids += len(state.children.get(partner.id, ()))
        return f"it has {kids} child record{'s' if kids != 1 else ''} (prune them first)"
    return None


def _halves(state: StoreState, row: RecordRow) -> tuple[str, ...]:
    partner = state.partner(row)
    return (row.id,) if partner is None else (row.id, partner.id)


class RecordBrief(NamedTuple):
    """What sorting and accounting need of a record, without building its full value."""

    size: int
    last_used_at: float | None  # None when never used
    usage_count: int
    description: str
    in_use: bool
    shared: bool


class RecordStates(Mapping[str, RecordState]):
    """One ``RecordState`` per visible record, by id, in the order the rows were read
    (disk usage's when a picture is given, else the table's), each built
    the first time it is asked for.

    Everything that needs the whole store (the visible set, in use, shared, sizes, the
    layers on disk, holders, the effective ages) is computed once, here; a record's own
    value is then a few lookups. A dashboard over 100,000 records builds the values of
    the rows it shows, not of every record. The cheap parts (``parent_of``, ``brief``,
    ``layer_of``) never build a value.
    """

    def __init__(self, context: StoreContext, state: StoreState | None = None) -> None:
        dirs: set[str] | None = None
        if state is None:
            state, dirs = context.picture()  # the open's, when nothing changed since
        self._state = state
        visible = state.visible()
        self._visible = {row.id: row for row in visible}
        self._in_use = state.in_use_ids()
        self._shared = state.shared_ids(context.is_shared)
        self._apparent: dict[str, int] = {}
        self._snapshots = context.snapshots.dir
        # one listing of snapshots/ serves both the sizes and the layers present
        if dirs is None:
            dirs = _layer_dirs(self._snapshots)
        self._present = frozenset(dirs or ())
        # that listing for a whole store, a look at each name for a few
        self._sizes = measure_missing(
            context, state, visible, self._apparent, listing=len(visible) > 64, names=dirs
        )
        self._newest = NewestInSubtrees(state)  # per subtree, as records are read
        holders_of: dict[str, list[HolderInfo]] = {}
        for h in state.holders:
            holders_of.setdefault(h.record, []).append(
                HolderInfo(h.id, h.record, h.pid, h.host, h.created_at, h.alive, h.counts_use)
            )
        self._holders_of = holders_of
        self._via = _in_use_via(state)
        self._health: dict[str, str] = {}
        self._built: dict[str, RecordState] = {}

    # -- the Mapping ---------------------------------------------------------------------

    def __getitem__(self, record_id: str) -> RecordState:
        built = self._built.get(record_id)
        if built is None:
            built = self._build(self._visible[record_id])
            self._built[record_id] = built  # a second thread may build it too: equal
        return built

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._visible

    def __iter__(self) -> Iterator[str]:
        return iter(self._visible)

    def __len__(self) -> int:
        return len(self._visible)

    # -- cheap reads ----------------------------------------------------------------------

    def is_built(self, record_id: str) -> bool:
        return record_id in self._built

    @cached_property
    def parents(self) -> Mapping[str, str | None]:
        """Every visible record's parent (what ``self[record_id].parent`` says)."""
        visible = self._visible
        parents = {rid: row.parent for rid, row in visible.items()}
        # Normally every parent named is visible (checked at C speed); a parent that is
        # a hidden pair half stands for its visible half.
        named = filter(None, parents.values())
        if not all(map(visible.__contains__, named)):
            shown = self._shown
            for rid, parent in parents.items():
                if parent is not None and parent not in visible:
                    parents[rid] = shown(parent)
        return parents

    def parent_of(self, record_id: str) -> str | None:
        """The visible record above it (what ``self[record_id].parent`` says)."""
        return self.parents[record_id]

    def layer_of(self, record_id: str) -> str:
        return self._visible[record_id].layer_id

    def other_layers(self) -> dict[str, str]:
        """Layer directory -> record, for the records whose layer is not named by their
        own id (a pending commit writes into its mutable's directory)."""
        # only a pending commit's immutable names another layer (its mutable's)
        return {
            row.equal_mutable: rid
            for rid, row in self._visible.items()
            if row.equal_mutable is not None and row.equal_mutable != rid
        }

    @property
    def sizes(self) -> Mapping[str, int]:
        """Every visible record's size (what ``self[record_id].size`` says)."""
        return self._sizes

    def size_of(self, record_id: str) -> int:
        return self._sizes[record_id]

    def totals(self, dstat: DiskStat | None = None) -> Totals:
        """The totals block over every visible record (``totals``' rule, from the sizes
        and the in-use and shared sets: no record's value is built)."""
        return totals_of_sizes(self._sizes, self._in_use, self._shared, dstat)

    def brief(self, record_id: str) -> RecordBrief:
        row = self._visible[record_id]
        return RecordBrief(
            self._sizes[record_id],
            row.last_used_at if row.usage_count else None,
            row.usage_count,
            row.description,
            record_id in self._in_use,
            record_id in self._shared,
        )

    def matching(self, filters: str | Sequence[str]) -> frozenset[str]:
        """``matching_ids`` over every record, from the rows themselves: the fields a
        filter sees are cheap reads, so no record's value is built (a filter over
        100,000 records would otherwise build them all, holding the interpreter for
        seconds while the screen waits)."""
        matcher = filter_language.parse_all(filters)
        if not matcher:
            return frozenset(self._visible)
        fields = filter_language.usage_fields
        parents, in_use, shared = self.parents, self._in_use, self._shared
        labels, mounts = self._state.labels, self._state.cache_mounts
        found = []
        for rid, row in self._visible.items():
            parent = parents[rid]
            if matcher.matches(
                fields(
                    id=rid,
                    parents=(parent,) if parent else (),
                    description=row.description,
                    record_type=row.record_type or "regular",
                    in_use=rid in in_use,
                    mutable=row.mutable,
                    shared=rid in shared,
                    labels=labels.get(rid, ()),
                    cache_mount=mounts.get(rid),
                )
            ):
                found.append(rid)
        return frozenset(found)

    def search(self, text: str) -> frozenset[str]:
        """``search_ids`` over every record, from the ids and descriptions (no value
        built)."""
        words = search_words(text)
        if not words:
            return frozenset(self._visible)
        return frozenset(
            rid
            for rid, row in self._visible.items()
            if all(word in f"{rid}\n{row.description}".casefold() for word in words)
        )

    # -- building one value ----------------------------------------------------------------

    def _shown(self, record_id: str | None) -> str | None:
        """The visible record standing for ``record_id`` (itself, or its pair half)."""
        if record_id is None or record_id in self._visible:
            return record_id
        state = self._state
        row = state.rows.get(record_id)
        partner = state.partner(row) if row is not None else None
        return partner.id if partner is not None and partner.id in self._visible else None

    def _health_of(self, row: RecordRow) -> str:
        """ "missing" when its own layer is gone, "broken" when an ancestor's is, else
        "ok" (the chain's verdicts are remembered: a chain is walked once)."""
        if row.layer_id not in self._present:
            return "missing"
        known = self._health
        rows = self._state.rows
        path: list[str] = []
        seen: set[str] = set()
        verdict = "ok"
        current = rows.get(row.parent) if row.parent is not None else None
        while current is not None and current.id not in seen:
            cached = known.get(current.id)
            if cached is not None:
                verdict = cached
                break
            if current.layer_id not in self._present:
                verdict = "broken"
                break
            seen.add(current.id)
            path.append(current.id)
            current = rows.get(current.parent) if current.parent is not None else None
        # every record on the path has the same verdict about the layers above it
        for rid in path:
            known[rid] = verdict
        return verdict

    def _build(self, row: RecordRow) -> RecordState:
        state = self._state
        rid = row.id
        partner = state.partner(row)
        holders = list(self._holders_of.get(rid, ()))
        if partner is not None:
            holders += self._holders_of.get(partner.id, ())
        held = state.node_held(row)
        in_use = rid in self._in_use
        effective = self._newest.get(rid)
        return RecordState(
            id=rid,
            parent=self.parents[rid],
            mutable=row.mutable,
            in_use=in_use,
            size=self._sizes[rid],
            created_at=row.created_at,
            last_used_at=row.last_used_at if row.usage_count else None,
            usage_count=row.usage_count,
            description=row.description,
            record_type=row.record_type or "regular",
            shared=rid in self._shared,
            health=self._health_of(row),
            held=held,
            holders=tuple(sorted(holders, key=lambda h: h.id)),
            in_use_via=None if held or not in_use else self._shown(self._via.get(rid)),
            retain=row.retain or bool(partner and partner.retain),
            pending_commit=partner is not None,
            has_children=state.has_children(row),
            layer_id=row.layer_id,
            layer_path=str(self._snapshots / row.layer_id),
            refusal=prune_refusal(state, row),
            labels=state.labels.get(rid, ()),
            cache_mount=state.cache_mounts.get(rid),
            apparent_size=self._apparent.get(rid, row.apparent_size if row.size >= 0 else -1),
            effective_at=effective[0] if effective is not None else None,
            effective_by=self._shown(effective[1]) if effective is not None else None,
        )


def record_states(context: StoreContext, state: StoreState | None = None) -> dict[str, RecordState]:
    """One ``RecordState`` per visible record, by id (all built), in the order the rows
    were read (see ``RecordStates``)."""
    states = RecordStates(context, state)
    return {record_id: states[record_id] for record_id in states}


def _in_use_via(state: StoreState) -> dict[str, str]:
    """For every record in use through a descendant, one held descendant (the nearest
    found first, ties by id) that makes it so."""
    via: dict[str, str] = {}
    for record_id in sorted(state.live):
        if state.live[record_id] <= 0 or record_id not in state.rows:
            continue
        row = state.rows.get(record_id)
        seen: set[str] = set()
        while row is not None and row.parent is not None and row.parent not in seen:
            seen.add(row.parent)
            parent = state.rows.get(row.parent)
            if parent is None or parent.deleted:
                break
            via.setdefault(parent.id, record_id)
            partner = state.partner(parent)
            if partner is not None:
                via.setdefault(partner.id, record_id)
            row = parent
    return via


def _layer_dirs(snapshots_dir: Path) -> set[str] | None:
    """The real directories under ``snapshots/`` (one directory read, not a stat per
    record); None when it cannot be read: the sizes then read it themselves, and say why."""
    try:
        return real_directories(snapshots_dir)
    except OSError:
        return None


def matching_ids(states: Iterable[RecordState], filters: str | Sequence[str]) -> frozenset[str]:
    """The ids of the records a containerd filter selects (as ``disk_usage`` would).

    Raises ``FilterSyntaxError`` (with ``.position``) when the filter does not parse.
    """
    matcher = filter_language.parse_all(filters)
    if not matcher:
        return frozenset(s.id for s in states)
    fields = filter_language.usage_fields
    return frozenset(
        s.id
        for s in states
        if matcher.matches(
            fields(
                id=s.id,
                parents=(s.parent,) if s.parent else (),
                description=s.description,
                record_type=s.record_type,
                in_use=s.in_use,
                mutable=s.mutable,
                shared=s.shared,
                labels=s.labels,
                cache_mount=s.cache_mount,
            )
        )
    )


def alive_holders(records: RecordStore) -> frozenset[int]:
    """The ids of the holder rows whose process runs now (a cheap read of the holders:
    a dashboard polls it to see a killed holder stop counting within a second)."""
    with records.read():
        holders = records.all_holders()
    return frozenset(h.id for h in holders if h.alive)
