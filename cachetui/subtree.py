"""Subtree totals of the ref tree, kept up to date by deltas.

A record's subtree is the record and every record below it. Its total size and record
count are what the dashboard's subtree columns and sort show, and what the details pane
says. A subtree is summed the first time it is asked for (a screen asks about the rows
it shows, so opening 100,000 records sums a few small subtrees, not the whole store);
after that a size change of one record walks up its ancestors adding the difference
where the total is known (a few dict writes, not a pass over 100,000 records).

``Layered`` is the copy-on-write mapping that makes that cheap while every view stays an
immutable value: a new view shares its predecessor's base mapping and carries only the
entries that changed on top.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

from cachetui.core import matching_ids, search_ids

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

    def matching(self, filters: str | Sequence[str]) -> frozenset[str]:
        """The base's cheap ``matching`` (see ``RecordStates``), the replaced values
        matched again themselves (they are full values)."""
        return self._again(getattr(self._base, "matching", None), matching_ids, filters)

    def search(self, text: str) -> frozenset[str]:
        """The base's cheap ``search``, the replaced values searched themselves."""
        return self._again(getattr(self._base, "search", None), search_ids, text)

    def _again(
        self,
        cheap: Callable[[Any], frozenset[str]] | None,
        full: Callable[[Iterable[Any], Any], frozenset[str]],
        query: Any,
    ) -> frozenset[str]:
        if cheap is None:
            return full(self.values(), query)
        top = self._top
        return frozenset((cheap(query) - top.keys()) | full(top.values(), query))

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
    """Subtree size (bytes, negative sizes counted as 0) and record count per record.

    ``lazy`` sums a subtree the first time it is asked for (a screen asks about the
    rows it shows: opening 100,000 records sums a few dozen small subtrees, not the
    whole store); ``build`` sums every subtree at once. Both answer the same, and
    ``resized`` keeps either up to date by deltas. A value never changes what it
    answers: what it sums later comes from the sizes it was made from.
    """

    __slots__ = ("_base", "_children", "_count", "_own", "_size", "_size_of", "_top")

    def __init__(
        self,
        children: Mapping[str | None, Iterable[str]],
        size_of: Callable[[str], int],
        *,
        own: dict[str, int] | None = None,
        base: Mapping[str, int] | None = None,
        top: dict[str, int] | None = None,
        count: dict[str, int] | None = None,
    ) -> None:
        self._children = children
        self._size_of = size_of
        #: Own sizes (clamped) changed since the sizes ``size_of`` reads.
        self._own: dict[str, int] = own if own is not None else {}
        #: Subtree sizes known when this value was made (``top`` over ``base``, a
        #: snapshot: never written again).
        self._base: Mapping[str, int] = base if base is not None else {}
        self._top: dict[str, int] = top if top is not None else {}
        #: Subtree sizes this value summed itself.
        self._size: dict[str, int] = {}
        #: Record counts: they depend only on the tree's shape, which every value
        #: resized from one another shares, so they share this dict.
        self._count: dict[str, int] = count if count is not None else {}

    @classmethod
    def lazy(
        cls, children: Mapping[str | None, Iterable[str]], size_of: Callable[[str], int]
    ) -> Subtrees:
        """Totals summed per subtree when first asked for (no pass over the store)."""
        return cls(children, size_of)

    @classmethod
    def build(
        cls,
        children: Mapping[str | None, Iterable[str]],
        size_of: Callable[[str], int],
    ) -> Subtrees:
        """Sum every subtree bottom up, in one pass over the tree from its roots.

        Records that no root reaches (a damaged parent loop) are summed when asked, as
        ``lazy`` does: the tree never shows them.
        """
        order: list[str] = list(children.get(None, ()))
        parent: dict[str, str] = {}
        get = children.get
        for record_id in order:  # breadth first: parents before their children
            kids = get(record_id)
            if kids:
                # Each record is listed under one parent, and a loop is never reached
                # from a root: every record is visited once.
                for kid in kids:
                    parent[kid] = record_id
                order.extend(kids)
        size = {record_id: max(size_of(record_id), 0) for record_id in order}
        count = dict.fromkeys(order, 1)
        above_get = parent.get
        for record_id in reversed(order):  # children before their parents
            above = above_get(record_id)
            if above is not None:
                size[above] += size[record_id]
                count[above] += count[record_id]
        return cls(children, size_of, base=size, count=count)

    def _known(self, record_id: str) -> int | None:
        """The subtree size if known to this value, else None."""
        found = self._size.get(record_id)
        if found is None:
            found = self._top.get(record_id)
            if found is None:
                found = self._base.get(record_id)
        return found

    def _own_size(self, record_id: str) -> int:
        changed = self._own.get(record_id)
        return changed if changed is not None else max(self._size_of(record_id), 0)

    def _sum(self, record_id: str) -> None:
        """Sum ``record_id``'s subtree (what is known already is not summed again)."""
        children, count, size = self._children, self._count, self._size
        known = self._known
        pending: set[str] = set()  # on the way down: a loop (damage) is not followed
        stack: list[tuple[str, bool]] = [(record_id, False)]
        while stack:
            node, ready = stack.pop()
            kids = children.get(node, ())
            if ready:
                total, records = self._own_size(node), 1
                for kid in kids:
                    kid_size = known(kid)
                    if kid_size is not None and kid in count:
                        total += kid_size
                        records += count[kid]
                size[node] = total
                count[node] = records
                pending.discard(node)
                continue
            if node in pending or (known(node) is not None and node in count):
                continue
            pending.add(node)
            stack.append((node, True))
            stack.extend(
                (kid, False)
                for kid in kids
                if kid not in pending and (known(kid) is None or kid not in count)
            )

    def size(self, record_id: str) -> int:
        found = self._known(record_id)
        if found is None or record_id not in self._count:
            self._sum(record_id)
            found = self._size.get(record_id, 0)
        return found

    def count(self, record_id: str) -> int:
        found = self._count.get(record_id)
        if found is None:
            self._sum(record_id)
            found = self._count.get(record_id, 1)
        return found

    def resized(
        self, deltas: Mapping[str, int], ancestors: Callable[[str], Iterable[str]]
    ) -> Subtrees:
        """The totals after some records' own sizes changed by ``deltas`` (bytes, in the
        clamped sense: the change of ``max(size, 0)``): each record and its ancestors
        move by the difference where their total is known; the others are summed from
        the new sizes when asked."""
        if not any(deltas.values()):
            return self
        own = dict(self._own)
        changes: dict[str, int] = {}
        for record_id, delta in deltas.items():
            if not delta:
                continue
            own[record_id] = self._own_size(record_id) + delta
            for target in (record_id, *ancestors(record_id)):
                current = changes.get(target)
                if current is None:
                    current = self._known(target)
                if current is not None:
                    changes[target] = current + delta
        # What this value knows, copied (it may sum more later, from its own sizes).
        top = {**self._top, **self._size, **changes}
        base = self._base
        if len(top) > FLATTEN_AT:
            base, top = {**base, **top}, {}
        return Subtrees(
            self._children, self._size_of, own=own, base=base, top=top, count=self._count
        )
