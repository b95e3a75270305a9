"""Rendering GC lists, tier-by-tier results and run history for the command line.

Pure functions over the core's values (``PruneOptions``, ``TierResult``, ``Kept``,
``GCRunInfo``) and the ``PolicyList`` a file was read into: they return lines of text
or JSON-ready dicts. Nothing here does I/O or decides anything; the reasons shown are
the core's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from cachetui.core import GCRunInfo, Kept, PruneOptions, TierResult
from cachetui.gcpolicy.lint import describe_duration
from cachetui.gcpolicy.model import PolicyList
from cachetui.output import format_table, prune_header, prune_row, rfc3339, usage_json
from cachetui.units import format_bytes_buildx, format_duration_ago

__all__ = [
    "KEPT_ORDER",
    "describe_policy",
    "history_json",
    "kept_json",
    "policy_json",
    "render_history",
    "render_kept",
    "render_policy",
    "render_tier",
    "tier_json",
    "tier_summary",
]

KEPT_ORDER = (
    "held",
    "mounted",
    "keep-duration",
    "parent",
    "filter",
    "type",
    "shared",
    "limit",
    "changed",
)
"""Reasons in the order the CLI and the dashboard list them."""


def _size(value: int) -> str:
    return format_bytes_buildx(value) if value else "-"


def describe_policy(options: PruneOptions, fmt: Callable[[int], str] = format_bytes_buildx) -> str:
    """One line: ``all, type==source.local | type==exec.cachemount, keep 48h, max used 512MB``
    (sizes written by ``fmt``)."""
    parts: list[str] = []
    if options.all:
        parts.append("all")
    if options.filters:
        parts.append(" | ".join(options.filters))
    if options.keep_seconds:
        parts.append(f"keep {describe_duration(options.keep_seconds)}")
    for label, value in (
        ("reserved", options.reserved_space),
        ("max used", options.max_used_space),
        ("min free", options.min_free_space),
    ):
        if value:
            parts.append(f"{label} {fmt(value)}")
    return ", ".join(parts) if parts else "everything unused"


def render_policy(policy: PolicyList) -> list[str]:
    """``gc --show-policy``: where the list comes from and one row per tier."""
    rows = []
    for number, tier in enumerate(policy.tiers, start=1):
        opts = tier.options
        rows.append(
            (
                str(number),
                str(tier.line) if tier.line is not None else "-",
                "yes" if opts.all else "no",
                " | ".join(opts.filters) or "-",
                describe_duration(opts.keep_seconds) if opts.keep_seconds else "-",
                _size(opts.reserved_space),
                _size(opts.max_used_space),
                _size(opts.min_free_space),
            )
        )
    header = ("TIER", "LINE", "ALL", "FILTERS", "KEEP", "RESERVED", "MAX USED", "MIN FREE")
    lines = [f"{policy.source} ({policy.kind})"]
    if not rows:
        return [*lines, "no tiers: GC removes nothing"]
    return [*lines, *format_table(header, rows)]


def policy_json(policy: PolicyList) -> dict[str, Any]:
    return {
        "source": policy.source,
        "kind": policy.kind,
        "tiers": [
            {
                "tier": number,
                "name": tier.name,
                "line": tier.line,
                "all": tier.options.all,
                "filters": list(tier.options.filters),
                "keep_duration": tier.options.keep_seconds,
                "reserved_space": tier.options.reserved_space,
                "max_used_space": tier.options.max_used_space,
                "min_free_space": tier.options.min_free_space,
            }
            for number, tier in enumerate(policy.tiers, start=1)
        ],
        "problems": [
            {"severity": p.severity, "line": p.line, "message": p.message} for p in policy.problems
        ],
    }


def _ago(moment: float, now: float) -> str:
    return format_duration_ago(max(now - moment, 0)) + " ago"


def render_kept(
    reason: Kept,
    now: float,
    tier: TierResult | None = None,
    fmt: Callable[[int], str] = format_bytes_buildx,
) -> str:
    """A reason in words: ``keep-duration: used within the keep duration (2 hours ago)``;
    with its ``tier``, a met limit shows the total and the limit (written by ``fmt``)."""
    text = f"{reason.kind}: {reason.text}"
    if reason.kind == "limit" and tier is not None and tier.limit is not None:
        text += f" ({fmt(tier.total_after)} ≤ {fmt(max(tier.limit, 0))})"
    if reason.since is not None:
        if reason.kind == "parent" and reason.by is not None:
            text += f" (newest use below: {_ago(reason.since, now)}, {reason.by})"
        else:
            text += f" ({_ago(reason.since, now)})"
    return text


def tier_summary(tier: TierResult, *, dry_run: bool) -> str:
    """``would remove 3 records (12MB); total after: 40MB (limit 50MB)``."""
    verb = "would remove" if dry_run else "removed"
    count = len(tier.removed)
    noun = "record" if count == 1 else "records"
    limit = "" if tier.limit is None else f" (limit {format_bytes_buildx(max(tier.limit, 0))})"
    return (
        f"{verb} {count} {noun} ({format_bytes_buildx(tier.removed_bytes)}); "
        f"total after: {format_bytes_buildx(tier.total_after)}{limit}"
    )


def render_tier(
    tier: TierResult, now: float, *, dry_run: bool, listed: int | None = 20
) -> list[str]:
    """One tier of ``gc --dry-run``: header, what goes, the totals, and why the rest
    stays (counts by reason, then up to ``listed`` records with theirs; None lists all)."""
    lines = [f"Tier {tier.index + 1}: {describe_policy(tier.policy)}"]
    if tier.removed:
        lines.append("  " + prune_header())
        lines.extend("  " + prune_row(info, now) for info in tier.removed)
    lines.append("  " + tier_summary(tier, dry_run=dry_run))
    if tier.kept:
        counts = Counter(reason.kind for reason in tier.kept.values())
        order = sorted(counts, key=lambda k: KEPT_ORDER.index(k) if k in KEPT_ORDER else 99)
        lines.append(f"  {len(tier.kept)} stay: " + ", ".join(f"{counts[k]} {k}" for k in order))
        texts = {(reason.kind, reason.text) for reason in tier.kept.values()}
        if len(texts) == 1 and next(iter(texts))[0] == "limit":
            first = next(iter(tier.kept.values()))
            lines.append(f"    every one: {render_kept(first, now, tier)}")
            return lines
        ranked = sorted(
            tier.kept.items(),
            key=lambda item: (
                KEPT_ORDER.index(item[1].kind) if item[1].kind in KEPT_ORDER else 99,
                item[0],
            ),
        )
        shown = ranked if listed is None else ranked[:listed]
        for record_id, reason in shown:
            lines.append(f"    {record_id}  {render_kept(reason, now, tier)}")
        if len(shown) < len(ranked):
            lines.append(f"    ... and {len(ranked) - len(shown)} more (--verbose lists all)")
    return lines


def kept_json(reason: Kept) -> dict[str, Any]:
    since = datetime.fromtimestamp(reason.since, UTC) if reason.since is not None else None
    return {"reason": reason.kind, "text": reason.text, "since": rfc3339(since), "by": reason.by}


def tier_json(tier: TierResult, *, dry_run: bool) -> dict[str, Any]:
    """One JSON object per tier (a line of ``gc --format json``)."""
    return {
        "tier": tier.index + 1,
        "dry_run": dry_run,
        "policy": describe_policy(tier.policy),
        "records": len(tier.removed),
        "bytes": tier.removed_bytes,
        "total_before": tier.total_before,
        "total_after": tier.total_after,
        "limit": tier.limit,
        "removed": [usage_json(info) for info in tier.removed],
        "kept": {record_id: kept_json(reason) for record_id, reason in sorted(tier.kept.items())},
    }


def render_history(runs: Sequence[GCRunInfo]) -> list[str]:
    """``gc --history``: one row per run, newest first."""
    if not runs:
        return ["no GC run recorded"]
    rows = [
        (
            rfc3339(datetime.fromtimestamp(run.started_at, UTC)) or "",
            run.trigger,
            str(run.records),
            format_bytes_buildx(run.bytes),
            f"{run.duration:.2f}s",
            "interrupted" if run.interrupted else "done",
            run.policy,
        )
        for run in runs
    ]
    return format_table(
        ("STARTED", "TRIGGER", "RECORDS", "BYTES", "DURATION", "RESULT", "POLICY"), rows
    )


def history_json(run: GCRunInfo) -> dict[str, Any]:
    return {
        "started_at": rfc3339(datetime.fromtimestamp(run.started_at, UTC)),
        "duration": run.duration,
        "policy": run.policy,
        "trigger": run.trigger,
        "tiers": run.tiers,
        "records": run.records,
        "bytes": run.bytes,
        "interrupted": run.interrupted,
        "pid": run.pid,
        "host": run.host,
    }
