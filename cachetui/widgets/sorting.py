"""The tree's sorts: which keys choose them, what they compare, and which way they run.

Each sort has a natural direction (biggest, newest, most used first; names A to Z) and
is reversed by pressing its key again, as in ncdu and gdu. Siblings are compared with a
key built from the view, ties broken by id, so the order is total and stable, and a row
whose value changes can be put back in its place by bisection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import total_ordering
from typing import Any

from cachetui.views import StoreView

__all__ = ["SORTS", "Sort", "SortSpec", "sort_key", "sort_spec"]


@dataclass(frozen=True, slots=True)
class SortSpec:
    """One sort: its name, its key, how the header and help say it, and its key."""

    kind: str  # "subtree", "size", "last used", "uses", "name"
    key: str  # the key that chooses it (again: reverses it)
    label: str  # the totals bar's word for it
    help: str
    descending: bool  # the natural direction puts the biggest values first
    value: Callable[[StoreView, str], tuple[Any, ...]]  # ascending in the natural order


def _subtree(view: StoreView, record_id: str) -> tuple[Any, ...]:
    return (-view.subtree_size(record_id), record_id)


def _size(view: StoreView, record_id: str) -> tuple[Any, ...]:
    return (-view.brief(record_id).size, record_id)


def _last_used(view: StoreView, record_id: str) -> tuple[Any, ...]:
    last = view.brief(record_id).last_used_at
    return (last is None, -(last or 0.0), record_id)


def _uses(view: StoreView, record_id: str) -> tuple[Any, ...]:
    return (-view.brief(record_id).usage_count, record_id)


def _name(view: StoreView, record_id: str) -> tuple[Any, ...]:
    return ((view.brief(record_id).description or "~").lower(), record_id)


SORTS: tuple[SortSpec, ...] = (
    SortSpec(
        "subtree", "s", "subtree", "sort by subtree size (the record and all below)", True, _subtree
    ),
    SortSpec("size", "S", "own size", "sort by the record's own size", True, _size),
    SortSpec("last used", "M", "last used", "sort by last use (newest first)", True, _last_used),
    SortSpec("uses", "C", "usage count", "sort by usage count (most used first)", True, _uses),
    SortSpec("name", "n", "name", "sort by description (A to Z)", False, _name),
)

_BY_KIND = {spec.kind: spec for spec in SORTS}


def sort_spec(kind: str) -> SortSpec:
    return _BY_KIND[kind]


@dataclass(frozen=True, slots=True)
class Sort:
    """The current sort: a kind, and whether it runs against its natural direction."""

    kind: str = "size"
    reverse: bool = False

    @property
    def spec(self) -> SortSpec:
        return _BY_KIND[self.kind]

    @property
    def descending(self) -> bool:
        """Whether the biggest value comes first on screen (the header's ▼)."""
        return self.spec.descending != self.reverse

    @property
    def arrow(self) -> str:
        return "▼" if self.descending else "▲"

    @property
    def label(self) -> str:
        return f"{self.spec.label} {self.arrow}"

    def pressed(self, kind: str) -> Sort:
        """The sort after pressing ``kind``'s key: the same kind flips, another starts
        in its natural direction."""
        if kind == self.kind:
            return Sort(kind, not self.reverse)
        return Sort(kind, False)


@total_ordering
class _Reversed:
    """A key that compares the other way round (for reversed sorts, names included)."""

    __slots__ = ("value",)

    def __init__(self, value: tuple[Any, ...]) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.value == other.value

    def __lt__(self, other: _Reversed) -> bool:
        return other.value < self.value

    def __hash__(self) -> int:
        return hash(self.value)


SortKey = Callable[[str], Any]


def sort_key(sort: Sort, view: StoreView) -> SortKey:
    """A key over record ids for ``sorted`` and ``bisect`` under ``sort``."""
    value = sort.spec.value
    if sort.reverse:
        return lambda record_id: _Reversed(value(view, record_id))
    return lambda record_id: value(view, record_id)
