"""Subtree totals of the ref tree, kept up to date by deltas.

A record's subtree is the record and every record below it. Its total size and record
count are what the dashboard's subtree columns and sort show, and what the details pane
says. They are summed once, bottom up, when a view is built; after that a size change of
one record walks up its ancestors adding the difference (a few dict writes, not a pass
over 100,000 records).

``Layered`` is the copy-on-write mapping that makes that cheap while every view stays an
immutable value: a new view shares its predecessor's base mapping and carries only the
entries that changed on top.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["Layered", "Subtrees"]

K = TypeVar("K")
V = TypeVar("V")

#: Above this many replaced entries a plain base is merged with them (the copy of the
#: top on every change would otherwise grow without bound).
FLATTEN_AT = 4096


class Layered(Mapping[K, V], Generic[K, V]):
    """A read-only mapping: ``base`` with some of its values replaced.

    ``replaced`` returns a new mapping and leaves this one as it was, so a value handed
    to another thread never changes under it. Only existing keys can be replaced: the
    keys, the length and the order are the base's.
    """

    __slots__ = ("_base", "_top")

    def __init__(self, base: Mapping[K, V], top: Mapping[K, V] | None = None) -> None:
        self._base = base
        self._top: Mapping[K, V] = top or {}

    def __getitem__(self, key: K) -> V:
        top = self._top
        if key in top:
            return top[key]
        return self._base[key]

    def get(self, key: K, default: V | None = None) -> V | None:  # type: ignore[override]
        top = self._top
        if key in top:
            return top[key]
        return self._base.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._base

    def __iter__(self) -> Iterator[K]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)

    @property
    def base(self) -> Mapping[K, V]:
        return self._base

    # The cheap reads of a lazy base (the core's ``RecordStates``), passed through; a
    # replaced value answers for itself.

    def parent_of(self, key: K) -> object:
        top = self._top
        if key in top:
            return top[key].parent  # type: ignore[attr-defined]
        cheap = getattr(self._base, "parent_of", None)
        return cheap(key) if cheap is not None else self._base[key].parent  # type: ignore[attr-defined]

    def brief(self, key: K) -> object:
        top = self._top
        if key in top:
            return top[key]
        cheap = getattr(self._base, "brief", None)
        return cheap(key) if cheap is not None else self._base[key]

    def is_built(self, key: K) -> bool:
        if key in self._top:
            return True
        check = getattr(self._base, "is_built", None)
        return bool(check(key)) if check is not None else True

    def replaced(self, changes: Mapping[K, V]) -> Layered[K, V]:
        """A new mapping with ``changes`` on top (keys absent from the base are ignored)."""
        top = dict(self._top)
        base = self._base
        for key, value in changes.items():
            if key in base:
                top[key] = value
        if len(top) > FLATTEN_AT and type(base) is dict:
            return Layered({**base, **top})
        return Layered(base, top)


class Subtrees:
    """Subtree size (bytes, negative sizes counted as 0) and record count per record."""

    __slots__ = ("_count", "_size")

    def __init__(self, size: Mapping[str, int], count: Mapping[str, int]) -> None:
        self._size = size
        self._count = count

    @classmethod
    def build(
        cls,
        children: Mapping[str | None, Iterable[str]],
        size_of: Callable[[str], int],
        parents: Mapping[str, str | None] | None = None,
    ) -> Subtrees:
        """Sum every subtree bottom up, in one pass over the tree from its roots
        (``parents``, when the caller has them, saves deriving them again).

        Records that no root reaches (a damaged parent loop) count only themselves when
        asked: the tree never shows them.
        """
        order: list[str] = list(children.get(None, ()))
        derived: dict[str, str | None] | None = None
        if parents is None:
            parent: Mapping[str, str | None] = (derived := {})
        else:
            parent = parents
        get = children.get
        index = 0
        while index < len(order):  # breadth first: parents before their children
            kids = get(order[index])
            if kids:
                # Each record is listed under one parent, and a loop is never reached
                # from a root: every record is visited once.
                if derived is not None:
                    for kid in kids:
                        derived[kid] = order[index]
                order.extend(kids)
            index += 1
        size = {record_id: max(size_of(record_id), 0) for record_id in order}
        count = dict.fromkeys(order, 1)
        # Children before their parents: the reverse of the breadth-first order. A
        # plain dict's lookups are the cheapest (this loop runs once per record).
        above_of = parent if type(parent) is dict else dict(parent)
        above_get = above_of.get
        for record_id in reversed(order):
            above = above_get(record_id)
            if above is not None:
                size[above] += size[record_id]
                count[above] += count[record_id]
        return cls(size, count)

    def size(self, record_id: str) -> int:
        return self._size.get(record_id, 0)

    def count(self, record_id: str) -> int:
        return self._count.get(record_id, 1)

    def resized(
        self, deltas: Mapping[str, int], ancestors: Callable[[str], Iterable[str]]
    ) -> Subtrees:
        """The totals after some records' own sizes changed by ``deltas`` (bytes, in the
        clamped sense: the change of ``max(size, 0)``): each record and its ancestors."""
        changes: dict[str, int] = {}
        current = self._size
        for record_id, delta in deltas.items():
            if not delta or record_id not in current:
                continue
            for target in (record_id, *ancestors(record_id)):
                if target in current:
                    changes[target] = changes.get(target, current[target]) + delta
        if not changes:
            return self
        base = current if isinstance(current, Layered) else Layered(current)
        return Subtrees(base.replaced(changes), self._count)
