"""A GC list applied tier by tier, with the reason each remaining record stays.

``run_gc`` drives ``prune.prune`` (the one selection routine, for the real run and the
dry run alike) and, after each tier, asks that tier's own rules (``_Pass.mismatch``,
holders, children, the space limit) why every record left is still there. Nothing here
decides what a policy removes: it only records what ``prune`` decided and reads the same
picture of the store that the decision was made on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cachetui.core import prune as pruning
from cachetui.core.context import StoreContext
from cachetui.core.diskusage import disk_usage, totals
from cachetui.core.effective_age import Moment, newest_below, newest_in_subtrees
from cachetui.core.errors import PruneInterrupted, PruneRefused
from cachetui.core.policy import DiskStat, disk_stat
from cachetui.core.state import RecordRow, StoreState
from cachetui.core.types import GCResult, Kept, PruneOptions, TierResult, UsageInfo

__all__ = ["StopRequested", "run_gc"]


class StopRequested(Exception):
    """Raised from ``on_prune`` when ``stop()`` says so: the run ends between batches."""


def _held_text(state: StoreState, row: RecordRow) -> str:
    ids = {row.id}
    if row.equal_mutable is not None:
        ids.add(row.equal_mutable)
    partner = state.immutable_of.get(row.id)
    if partner is not None:
        ids.add(partner)
    holders = [h for h in state.holders if h.alive and h.record in ids]
    if not holders:
        return "held by a live process"
    first = holders[0]
    more = f" and {len(holders) - 1} more" if len(holders) > 1 else ""
    return f"held by pid {first.pid} on {first.host}{more}"


def _limit_met() -> Kept:
    # The numbers are in the tier's own result (total_after, limit).
    return Kept("limit", "the space limit is met")


def _explain(done: pruning.TierDone, total_after: int) -> dict[str, Kept]:
    """Why each visible record is still there after the tier ``done``."""
    work = done.work
    state = work.state
    reasons: dict[str, Kept] = {}
    newest: dict[str, Moment] | None = None  # computed once, when a parent needs it
    limit = done.limit
    freed = sum(info.size for info in done.removed if not info.shared)
    # A tier whose limit was met before it began removes nothing, whatever else holds.
    idle = limit is not None and not done.removed and total_after + freed <= limit
    mounted = {rid: reason for rid, reason, _point in done.run.refusals}
    for row in state.visible():
        if state.node_held(row):
            reasons[row.id] = Kept("held", _held_text(state, row))
            continue
        if idle:
            reasons[row.id] = _limit_met()
            continue
        mismatch = work.mismatch(row)
        if mismatch is not None:
            reasons[row.id] = mismatch
            continue
        if state.has_children(row):
            kids = len(state.child_ids(row.id))
            if newest is None:
                newest = newest_in_subtrees(state)
            # The effective age: the newest use below, the one that keeps the parent.
            moment = newest_below(state, row.id, newest)
            noun = "record" if kids == 1 else "records"
            reasons[row.id] = Kept(
                "parent",
                f"a parent of {kids} {noun} that stay",
                since=moment[0] if moment else None,
                by=moment[1] if moment else None,
            )
            continue
        if row.id in mounted:
            reasons[row.id] = Kept("mounted", mounted[row.id])
            continue
        if row.id in work.skipped:
            reasons[row.id] = Kept("changed", "used or held by another process during the run")
            continue
        if limit is not None:
            reasons[row.id] = _limit_met()
        else:
            reasons[row.id] = Kept("changed", "the run stopped before its turn")
    return reasons


def run_gc(
    context: StoreContext,
    policies: Sequence[PruneOptions],
    *,
    dry_run: bool = False,
    explain: bool = True,
    on_prune: Callable[[UsageInfo], None] | None = None,
    on_tier: Callable[[TierResult], None] | None = None,
    stop: Callable[[], bool] | None = None,
    disk: DiskStat | None = None,
) -> GCResult:
    """Apply ``policies`` once, in order, and report each tier (see ``GCResult``).

    With ``dry_run`` nothing is touched and each tier sees the store as the earlier
    tiers would have left it. ``stop`` is polled after each removed record; when it
    returns True the run finishes the batch under way and returns with
    ``interrupted=True``. ``explain=False`` skips the per-record reasons (cheaper for
    unattended runs). ``disk`` stands in for the store's filesystem (free space).
    """
    tiers: list[TierResult] = []
    policies = list(policies)

    def tier_done(done: pruning.TierDone) -> None:
        after = done.work.total_size()
        freed = sum(info.size for info in done.removed if not info.shared)
        result = TierResult(
            index=done.index,
            policy=policies[done.index],
            removed=tuple(done.removed),
            total_before=after + freed,
            total_after=after,
            limit=done.limit,
            kept=_explain(done, after) if explain else {},
        )
        tiers.append(result)
        if on_tier is not None:
            on_tier(result)

    def each(info: UsageInfo) -> None:
        if on_prune is not None:
            on_prune(info)
        if stop is not None and stop():
            raise StopRequested()

    refused: list[tuple[str, str]] = []
    try:
        pruning.prune(
            context,
            policies,
            dry_run=dry_run,
            on_prune=each,
            on_tier=tier_done,
            disk=disk,
            refused=refused,
        )
    except PruneRefused:
        pass  # every tier ran; ``refused`` names each record kept, and why
    except PruneInterrupted as err:
        if not isinstance(err.__cause__, StopRequested):
            raise
        done_ids = {info.id for tier in tiers for info in tier.removed}
        partial = tuple(info for info in err.removed if info.id not in done_ids)
        index = len(tiers)
        if index < len(policies):
            now = totals(disk_usage(context), disk_stat(context.root))
            after = now.total - now.shared
            freed = sum(info.size for info in partial if not info.shared)
            tiers.append(
                TierResult(
                    index=index,
                    policy=policies[index],
                    removed=partial,
                    total_before=after + freed,
                    total_after=after,
                    limit=None,
                )
            )
        return GCResult(
            tiers=tuple(tiers), dry_run=dry_run, interrupted=True, refused=tuple(refused)
        )
    return GCResult(tiers=tuple(tiers), dry_run=dry_run, refused=tuple(refused))
