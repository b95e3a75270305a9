"""Effective age: the newest use anywhere in a record's subtree, itself included.

A parent used long ago stays as long as a child used an hour ago stays (a record with
children is never pruned), which puzzles people reading keep-duration tiers: this is the
moment that explains it. A never-used record counts from its creation, as
``keep_duration`` does. Computed once per picture of the store, in one pass, for the
details pane, the GC plan's "why is it still here" and every other reader.
"""

from __future__ import annotations

from cachetui.core.state import RecordRow, StoreState

__all__ = ["Moment", "below", "newest_below", "newest_in_subtrees", "use_moment"]

#: (epoch seconds, record id): a moment and the record it belongs to.
Moment = tuple[float, str]


def use_moment(row: RecordRow) -> float:
    """The moment a keep duration looks at: the last use, or the creation if never used."""
    if row.usage_count and row.last_used_at is not None:
        return row.last_used_at
    return row.created_at


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
    root and keep their own moment.
    """
    rows = state.rows
    # use_moment, inlined: this runs over every record at every load.
    newest: dict[str, Moment] = {
        rid: (
            row.last_used_at
            if row.usage_count and row.last_used_at is not None
            else row.created_at,
            rid,
        )
        for rid, row in rows.items()
        if not row.deleted
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
            order.extend(kids)
        i += 1
    for rid in reversed(order):
        parent = rows[rid].parent
        if parent is not None:
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
