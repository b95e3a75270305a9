"""Effective age: the newest use anywhere in a record's subtree, itself included.

A parent used long ago stays as long as a child used an hour ago stays (a record with
children is never pruned), which puzzles people reading keep-duration tiers: this is the
moment that explains it. A never-used record counts from its creation, as
``keep_duration`` does. Computed once per picture of the store, in one pass, for the
details pane, the GC plan's "why is it still here" and every other reader.
"""

from __future__ import annotations

from cachetui.core.state import RecordRow, StoreState

__all__ = [
    "Moment",
    "NewestInSubtrees",
    "below",
    "newest_below",
    "newest_in_subtrees",
]

#: (epoch seconds, record id): a moment and the record it belongs to.
Moment = tuple[float, str]


def below(state: StoreState, row: RecordRow) -> list[str]:
    """The ids of the records right below ``row`` (either half of its pair)."""
    kids = list(state.children.get(row.id, ()))
    partner = state.partner(row)
    if partner is not None:
        kids.extend(state.children.get(partner.id, ()))
    return kids


def newest_in_subtrees(state: StoreState) -> dict[str, Moment]:
    """For every record (both halves of a pair), the newest use in its subtree, itself
    included, and whose it is (a tie keeps the record's own use).

    Two passes over the store, no recursion (chains can be thousands deep): parents
    before children from the roots down, then each record's moment pushed to its parent
    from the leaves up. Records on a loop in damaged metadata are never reached from a
    root and keep their own moment; a record whose parent row is missing or removed
    (damaged metadata) is a root.
    """
    rows = state.rows
    # The last use, else the creation: RecordRow.age_from, the one home of that rule.
    newest: dict[str, Moment] = {
        rid: (row.age_from, rid) for rid, row in rows.items() if not row.deleted
    }
    for mutable_id, immutable_id in state.immutable_of.items():
        # One pair is one record on screen: both halves carry the newer of the two.
        a, b = newest.get(mutable_id), newest.get(immutable_id)
        if a is not None and b is not None:
            newest[mutable_id] = newest[immutable_id] = max(a, b, key=lambda m: m[0])
    children = state.children
    order = [
        rid
        for rid, row in rows.items()
        if rid in newest and (row.parent is None or row.parent not in newest)
    ]
    i = 0
    while i < len(order):
        kids = children.get(order[i])
        if kids:
            order.extend(kid for kid in kids if kid in newest)
        i += 1
    for rid in reversed(order):
        parent = rows[rid].parent
        if parent is not None and parent in newest:  # else a root: no live parent row
            mine, theirs = newest[rid], newest[parent]
            if mine[0] > theirs[0]:
                newest[parent] = mine
    return newest


def newest_below(state: StoreState, record_id: str, newest: dict[str, Moment]) -> Moment | None:
    """The newest use among the records below ``record_id`` (not itself), from the
    ``newest_in_subtrees`` map; None for a leaf."""
    row = state.rows.get(record_id)
    if row is None:
        return None
    best: Moment | None = None
    for child in below(state, row):
        candidate = newest.get(child)
        if candidate is not None and (best is None or candidate[0] > best[0]):
            best = candidate
    return best


class NewestInSubtrees:
    """``newest_in_subtrees(state)``, computed per record when asked: the same values
    (ties settled the same way), but only for the subtrees of the records read. A screen
    over 100,000 records asks about the rows it shows, not about every record.

    One walk down a record's subtree (no recursion), each result remembered.
    """

    def __init__(self, state: StoreState) -> None:
        self._state = state
        self._memo: dict[str, Moment] = {}
        self._reached: dict[str, bool] = {}

    def _raw(self, rid: str) -> Moment:
        return (self._state.rows[rid].age_from, rid)

    def _live(self, rid: str | None) -> bool:
        if rid is None:
            return False
        row = self._state.rows.get(rid)
        return row is not None and not row.deleted

    def _own(self, rid: str) -> Moment:
        """Its own moment, a pair's halves carrying the newer of the two (the mutable's
        on a tie)."""
        state = self._state
        row = state.rows[rid]
        if rid in state.immutable_of:  # the mutable half
            other = state.immutable_of[rid]
            if self._live(other):
                a, b = self._raw(rid), self._raw(other)
                return a if a[0] >= b[0] else b
        elif (
            row.equal_mutable is not None
            and state.immutable_of.get(row.equal_mutable) == rid
            and self._live(row.equal_mutable)
        ):
            a, b = self._raw(row.equal_mutable), self._raw(rid)
            return a if a[0] >= b[0] else b
        return self._raw(rid)

    def _reachable(self, rid: str) -> bool:
        """Whether walking up from it ends at a root (not on or under a parent loop)."""
        known = self._reached
        path: list[str] = []
        seen: set[str] = set()
        current: str | None = rid
        verdict = False
        while current is not None:
            cached = known.get(current)
            if cached is not None:
                verdict = cached
                break
            if current in seen:  # a loop: damaged metadata
                verdict = False
                break
            seen.add(current)
            path.append(current)
            parent = self._state.rows[current].parent
            if not self._live(parent):
                verdict = True
                break
            current = parent
        for node in path:
            known[node] = verdict
        return verdict

    def get(self, rid: str) -> Moment | None:
        """The newest moment in ``rid``'s subtree and whose it is (None: no such record)."""
        memo = self._memo
        found = memo.get(rid)
        if found is not None:
            return found
        if not self._live(rid):
            return None
        if not self._reachable(rid):
            memo[rid] = self._own(rid)
            return memo[rid]
        children = self._state.children
        stack: list[tuple[str, bool]] = [(rid, False)]
        while stack:
            node, done = stack.pop()
            if node in memo:
                continue
            kids = children.get(node, ())
            if not done:
                stack.append((node, True))
                stack.extend((kid, False) for kid in kids if kid not in memo)
                continue
            best = self._own(node)
            for kid in reversed(kids):  # as the pass from the leaves up meets them
                moment = memo[kid]
                if moment[0] > best[0]:
                    best = moment
            memo[node] = best
        return memo[rid]
