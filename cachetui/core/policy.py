"""Prune and GC policy arithmetic: BuildKit's keep-bytes table, deletion ranking, defaults.

This module owns the pure decisions of a space-limited prune, independent of the store:

* ``calculate_keep_bytes``: BuildKit's ``calculateKeepBytes``, value for value;
* ``keep_limit`` / ``should_stop``: how cachetui turns that value into a stop rule
  (GC mode stops **at or below** the limit, a deliberate fix of BuildKit's strict ``<``);
* ``rank_for_deletion`` / ``score_for_deletion``: BuildKit's modern ``sortDeleteRecords``
  (least recently and least frequently used first), with ties broken by id;
* ``default_gc_policies``: BuildKit's four default GC tiers for a given disk;
* ``DiskStat`` / ``disk_stat``: the only I/O here, one ``os.statvfs`` call.

How the manager uses it, per policy: ``limit = keep_limit(total, dstat, opts)``. When
``limit is None`` there is no space option: every matching candidate goes, in batches.
Otherwise it is GC mode: each round ranks the current candidates, removes the first one
and subtracts its size, until ``should_stop(total, limit)`` or no candidate is left.
A limit of 0 in GC mode means "prune down to 0 bytes": every non-empty
candidate goes, which is BuildKit's "delete all matching" for that edge, except that
zero-byte records already at the limit stay.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

from cachetui.core.errors import InvalidError
from cachetui.core.types import PruneOptions

__all__ = [
    "DEFAULT_CAP",
    "DISK_SPACE_FREE_PERCENTAGE",
    "DISK_SPACE_MAX_BYTES",
    "DISK_SPACE_MAX_PERCENTAGE",
    "DISK_SPACE_RESERVE_BYTES",
    "DISK_SPACE_RESERVE_PERCENTAGE",
    "EASILY_REPRODUCIBLE_FILTERS",
    "Candidate",
    "DiskStat",
    "calculate_keep_bytes",
    "default_gc_policies",
    "disk_stat",
    "keep_limit",
    "percent_of_disk",
    "rank_for_deletion",
    "score_for_deletion",
    "should_stop",
]

# BuildKit cmd/buildkitd/config/gcpolicy_unix.go and gcpolicy.go (decimal GB, as there).
DISK_SPACE_RESERVE_PERCENTAGE = 10
DISK_SPACE_RESERVE_BYTES = 10 * 10**9
DISK_SPACE_FREE_PERCENTAGE = 20
DISK_SPACE_MAX_PERCENTAGE = 80
DISK_SPACE_MAX_BYTES = 100 * 10**9
DEFAULT_CAP = 2 * 10**9
"""What a percentage becomes when the disk size is unknown (BuildKit ``defaultCap``)."""

_TIER1_MAX_USED = 512 * 10**6  # BuildKit: 512 * 1e6, decimal MB
_HOUR = 3600.0
_DAY = 24 * _HOUR

EASILY_REPRODUCIBLE_FILTERS: tuple[str, ...] = (
    "type==source.local",
    "type==exec.cachemount",
    "type==source.git.checkout",
)
"""Tier 1 filters, OR-ed (BuildKit's fixed form, b69e279bc; before it, one AND-ed string)."""


@dataclass(frozen=True, slots=True)
class DiskStat:
    """Size of the filesystem holding the store: ``total`` and ``free`` bytes (for non-root)."""

    total: int
    free: int


def disk_stat(path: str | os.PathLike[str]) -> DiskStat:
    """``DiskStat`` of the filesystem holding ``path`` (``os.statvfs``)."""
    st = os.statvfs(path)
    return DiskStat(total=st.f_frsize * st.f_blocks, free=st.f_frsize * st.f_bavail)


def calculate_keep_bytes(total_size: int, dstat: DiskStat | None, opts: PruneOptions) -> int:
    """BuildKit's ``calculateKeepBytes``, exactly (``TestCalculateKeepBytes``).

    Returns 0 when no space option is set (BuildKit: "no cap, delete all matching").
    With only ``min_free_space`` and enough free space the result is ``total_size``
    (BuildKit ac123b493), which with ``should_stop`` removes nothing. When more must be
    freed than the cache holds, ``total - excess`` is negative and the final
    ``max(keep, reserved)`` makes it ``reserved_space`` (0 if unset), never negative.
    ``dstat`` is needed only when ``min_free_space`` is set; omitting it then is
    ``InvalidError``.
    """
    if not opts.has_space_limit:
        return 0
    keep = opts.max_used_space
    if opts.min_free_space:
        if dstat is None:
            raise InvalidError("min_free_space needs the disk's free space (dstat is None)")
        excess = opts.min_free_space - dstat.free
        if excess > 0:
            keep = total_size - excess if keep == 0 else min(keep, total_size - excess)
        elif keep == 0:
            keep = total_size
    return max(keep, opts.reserved_space)


def keep_limit(total_size: int, dstat: DiskStat | None, opts: PruneOptions) -> int | None:
    """The byte limit of a GC-mode prune, or None when ``opts`` sets no space option.

    Unlike the bare ``calculate_keep_bytes`` result, 0 here is a real limit ("prune down to
    0 bytes"), not "no limit"; this removes BuildKit's ambiguity (where a computed 0
    switches to "delete all").
    """
    if not opts.has_space_limit:
        return None
    return calculate_keep_bytes(total_size, dstat, opts)


def should_stop(total: int, keep_bytes: int | None) -> bool:
    """True when a GC-mode prune is done: ``total`` is **at or below** ``keep_bytes``.

    Our deviation from BuildKit, which stops only strictly below (and so
    removes one record too many at exactly the limit).
    ``keep_bytes=None`` (no space option, see ``keep_limit``) never stops on size.
    """
    if keep_bytes is None:
        return False
    return total <= keep_bytes


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the ranking needs to know about one prunable record.

    ``last_used_at`` is Unix epoch seconds, None when never used.
    """

    id: str
    last_used_at: float | None
    usage_count: int
    size: int = 0


def _exact_scores(candidates: Sequence[Candidate]) -> list[tuple[Candidate, Fraction]]:
    items = list(candidates)
    if not items:
        return []
    n = len(items)

    # 1. recency index: never used first; +1 on each strictly later timestamp.
    by_time = sorted(
        range(n),
        key=lambda i: (items[i].last_used_at is not None, items[i].last_used_at or 0.0),
    )
    last_idx = [0] * n
    index = 1
    latest: float | None = None
    for i in by_time:
        t = items[i].last_used_at
        if t is not None and (latest is None or t > latest):
            latest = t
            index += 1
        last_idx[i] = index
    max_last = index

    # 2. usage index: running count starts at 0; +1 each time the count changes.
    by_count = sorted(range(n), key=lambda i: items[i].usage_count)
    usage_idx = [0] * n
    index = 1
    count = 0
    for i in by_count:
        if items[i].usage_count != count:
            count = items[i].usage_count
            index += 1
        usage_idx[i] = index
    max_usage = index

    # The score last/max_last + usage/max_usage over their common denominator: exact
    # integer numerators sort as the fractions would, without a Fraction per comparison.
    numerators = [last_idx[i] * max_usage + usage_idx[i] * max_last for i in range(n)]
    order = sorted(range(n), key=lambda i: (numerators[i], items[i].id))
    denominator = max_last * max_usage
    return [(items[i], Fraction(numerators[i], denominator)) for i in order]


def score_for_deletion(candidates: Sequence[Candidate]) -> list[tuple[Candidate, float]]:
    """Each candidate with BuildKit's deletion score, in deletion order (lowest first).

    Score = recency index / max recency index + usage index / max usage index (BuildKit's
    ``sortDeleteRecords``).
    Scores are compared exactly (as fractions), ties broken by id ascending.
    """
    return [(c, float(score)) for c, score in _exact_scores(candidates)]


def rank_for_deletion(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Candidates in deletion order: BuildKit's ``sortDeleteRecords``, ties by id.

    The indexes are relative to the set given, so GC mode must re-rank after every
    removal (BuildKit deletes one record per round).
    """
    return [c for c, _ in _exact_scores(candidates)]


def percent_of_disk(dstat: DiskStat | None, percentage: int) -> int:
    """BuildKit's ``DiskSpace.AsBytes`` for a percentage: rounded **up** to a decimal GB.

    ``(total * pct / 100 // 2**30 + 1) * 1e9``; 2e9 (``DEFAULT_CAP``) when the disk size is
    unknown (None or a total of 0); 0 for 0 %.
    """
    if percentage == 0:
        return 0
    if dstat is None or dstat.total == 0:
        return DEFAULT_CAP
    avail = dstat.total * percentage // 100
    return (avail // (1 << 30) + 1) * 10**9


def default_gc_policies(
    dstat: DiskStat | None, worker: PruneOptions | None = None
) -> list[PruneOptions]:
    """BuildKit's default GC policy list (``DefaultGCPolicy``, unix constants).

    ``worker`` carries the worker's configured space options (its reserved, max used and
    min free bytes); when it sets none, as BuildKit does, the detected defaults apply:
    reserved = min(10 % of disk, 10 GB), min free = 20 % of disk, max used = min(80 % of
    disk, 100 GB), percentages converted by ``percent_of_disk``.

    1. the easily reproducible types (OR-ed), unused for 48 h, above 512 MB (512e6 bytes);
    2. anything unused for 60 days, under the worker space options;
    3. the worker space options alone (unshared build cache under the cap);
    4. the same with ``all=True`` (internal, frontend and shared records too).
    """
    if worker is not None and worker.has_space_limit:
        return _default_tiers(
            PruneOptions(
                reserved_space=worker.reserved_space,
                max_used_space=worker.max_used_space,
                min_free_space=worker.min_free_space,
            )
        )
    reserved = percent_of_disk(dstat, DISK_SPACE_RESERVE_PERCENTAGE)
    if reserved > DISK_SPACE_RESERVE_BYTES:
        reserved = DISK_SPACE_RESERVE_BYTES
    max_used = percent_of_disk(dstat, DISK_SPACE_MAX_PERCENTAGE)
    if max_used > DISK_SPACE_MAX_BYTES:
        max_used = DISK_SPACE_MAX_BYTES
    min_free = percent_of_disk(dstat, DISK_SPACE_FREE_PERCENTAGE)
    return _default_tiers(
        PruneOptions(reserved_space=reserved, max_used_space=max_used, min_free_space=min_free)
    )


def _default_tiers(worker: PruneOptions) -> list[PruneOptions]:
    return [
        PruneOptions(
            filters=EASILY_REPRODUCIBLE_FILTERS,
            keep_duration=48 * _HOUR,
            max_used_space=_TIER1_MAX_USED,
        ),
        replace(worker, keep_duration=60 * _DAY),
        worker,
        replace(worker, all=True),
    ]
