"""What lies below a record: its effective age, and its whole chain pruned as one.

A record's **chain** here is the record with every record below it (its subtree). What a
whole-chain prune does is decided once, here, for every screen and script:

* **The chain plan** (``plan_chain``): which records a whole-chain prune removes, in the
  order prune removes them (leaves first), the bytes that really go (shared records go
  from the cache but free nothing), and what stops it: a record inside held by a live
  process, or (for an exact set) a child that was not asked for. ``prune_chain`` refuses
  a stopped chain before removing anything, then prunes exactly the planned records;
  prune's own re-checks inside each write still let a holder that appears meanwhile win.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cachetui.core import prune as pruning
from cachetui.core.context import StoreContext
from cachetui.core.effective_age import below
from cachetui.core.errors import InvalidError, LockedError
from cachetui.core.ids import validate_id
from cachetui.core.records import prune_refusal, record_states
from cachetui.core.state import StoreState
from cachetui.core.types import UsageInfo

__all__ = ["ChainPlan", "plan_chain", "prune_chain"]


@dataclass(frozen=True, slots=True)
class ChainPlan:
    """A whole-chain prune, planned against the store now (nothing is touched).

    ``ids`` are every record of the chain: in prune's own removal order (leaves first)
    when it can go, children before parents otherwise. ``rows`` are what would be
    removed, in that order (empty when ``blockers`` stop it). ``blockers`` name each
    record that stops the chain, with the reason; ``missing`` the ids asked for that are
    not in the store (any more).
    """

    ids: tuple[str, ...]
    rows: tuple[UsageInfo, ...]
    blockers: tuple[tuple[str, str], ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def refusal(self) -> str | None:
        """Why the chain cannot go, in words (None when it can)."""
        if not self.blockers:
            return None
        record_id, reason = self.blockers[0]
        more = len(self.blockers) - 1
        also = f" (and {more} more record{'s' if more != 1 else ''})" if more else ""
        return f"{record_id} inside the chain: {reason}{also}"

    @property
    def freed(self) -> int:
        """The bytes that really go: shared records leave the cache but free nothing."""
        return sum(max(info.size, 0) for info in self.rows if not info.shared)

    @property
    def shared_bytes(self) -> int:
        """The bytes of shared records in the chain (removed from the cache, not freed)."""
        return sum(max(info.size, 0) for info in self.rows if info.shared)


def _visible_id(state: StoreState, record_id: str) -> str | None:
    """The record shown for ``record_id`` (itself, or the shown half of its pair)."""
    row = state.rows.get(record_id)
    if row is None or row.deleted:
        return None
    if state.is_visible(row):
        return row.id
    partner = state.partner(row)
    if partner is not None and not partner.deleted and state.is_visible(partner):
        return partner.id
    return None


def _post_order(state: StoreState, roots: Iterable[str], chain: set[str]) -> list[str]:
    """The chain's records, children before parents (siblings by id: stable)."""
    order: list[str] = []
    placed: set[str] = set()
    for root in sorted(roots):
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            record_id, done = stack.pop()
            if done:
                if record_id not in placed:
                    placed.add(record_id)
                    order.append(record_id)
                continue
            if record_id in placed:
                continue
            stack.append((record_id, True))
            row = state.rows[record_id]
            kids = {_visible_id(state, c) for c in below(state, row)}
            for child in sorted((k for k in kids if k in chain), reverse=True):
                if child not in placed:
                    stack.append((child, False))
    return order


def plan_chain(
    context: StoreContext,
    ids: Iterable[str],
    *,
    descendants: bool = True,
    state: StoreState | None = None,
) -> ChainPlan:
    """Plan the prune of ``ids`` as one chain (see ``CacheManager.plan_chain``)."""
    if isinstance(ids, str):
        raise InvalidError(f"invalid ids {ids!r}: expected a collection of record ids")
    asked = [validate_id(i) for i in ids]
    state = state if state is not None else context.state()
    missing: list[str] = []
    chain: set[str] = set()
    for record_id in asked:
        shown = _visible_id(state, record_id)
        if shown is None:
            missing.append(record_id)
        else:
            chain.add(shown)
    roots = set(chain)
    if descendants:
        stack = list(chain)
        while stack:
            row = state.rows[stack.pop()]
            for child in below(state, row):
                shown = _visible_id(state, child)
                if shown is not None and shown not in chain:
                    chain.add(shown)
                    stack.append(shown)
    blockers: list[tuple[str, str]] = []
    for record_id in sorted(chain):
        row = state.rows[record_id]
        if state.node_held(row):
            blockers.append((record_id, prune_refusal(state, row) or "it is held"))
            continue
        if not descendants:
            outside = sorted(
                shown
                for shown in (_visible_id(state, c) for c in below(state, row))
                if shown is not None and shown not in chain
            )
            if outside:
                more = f" and {len(outside) - 1} more" if len(outside) > 1 else ""
                blockers.append(
                    (record_id, f"its child {outside[0]}{more} is not part of the chain")
                )
    tops = {r for r in roots if not (set(_ancestors(state, r)) & chain)}
    order = _post_order(state, tops, chain)
    if blockers or not chain:
        return ChainPlan(tuple(order), (), tuple(blockers), tuple(missing))
    refused: list[tuple[str, str]] = []
    rows = tuple(pruning.prune(context, (), ids=order, dry_run=True, refused=refused))
    went = {info.id for info in rows}
    if len(went) != len(chain):
        # The rule prune applies said no to some: name them with prune's own reason (a
        # mount inside a layer), and the records above them with why they stay.
        because = dict(refused)
        states = record_states(context)
        for record_id in order:
            if record_id in went:
                continue
            reason = because.get(record_id)
            if reason is None:
                current = states.get(record_id)
                reason = current.refusal if current is not None else None
            blockers.append((record_id, reason or "prune would keep it"))
        return ChainPlan(tuple(order), (), tuple(blockers), tuple(missing))
    return ChainPlan(tuple(info.id for info in rows), rows, (), tuple(missing))


def _ancestors(state: StoreState, record_id: str) -> list[str]:
    """The visible records above ``record_id`` (cycle-safe)."""
    found: list[str] = []
    row = state.rows.get(record_id)
    seen = {record_id}
    while row is not None and row.parent is not None and row.parent not in seen:
        seen.add(row.parent)
        shown = _visible_id(state, row.parent)
        if shown is None:
            break
        found.append(shown)
        row = state.rows.get(shown)
    return found


def prune_chain(
    context: StoreContext,
    ids: Iterable[str],
    *,
    descendants: bool = True,
    on_prune: pruning.OnPrune | None = None,
) -> list[UsageInfo]:
    """Prune ``ids`` as one chain, leaves first, or nothing (see ``CacheManager.prune_chain``)."""
    state = context.state()
    plan = plan_chain(context, ids, descendants=descendants, state=state)
    if plan.blockers:
        record_id = plan.blockers[0][0]
        message = f"cannot prune the chain: {plan.refusal}; nothing was removed"
        row = state.rows.get(record_id)
        if row is not None and state.node_held(row):
            raise LockedError(record_id, message)
        raise InvalidError(message)
    if not plan.ids:
        return []
    return pruning.prune(context, (), ids=plan.ids, on_prune=on_prune)
