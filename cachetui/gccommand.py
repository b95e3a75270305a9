"""``cachetui gc``: run a GC list once, preview it tier by tier, show it, show past runs.

The list comes from ``--policy FILE`` (``gcpolicy`` reads it) or is BuildKit's default
list for the disk holding the store. The core does the work (``CacheManager.gc_plan``:
one selection routine for the run and the preview); this module parses flags, takes the
store's GC lock for a real run, records the run in the store, and prints.
``gc --watch`` lives in ``gcwatch`` (which uses this module, never the reverse).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cachetui import gcreport, output
from cachetui.units import format_bytes_buildx

if TYPE_CHECKING:
    from cachetui.core import CacheManager, GCResult, TierResult, UsageInfo
    from cachetui.gcpolicy import PolicyList

__all__ = ["add_parser", "load_list", "run_once", "write_lines"]


def add_parser(subs: Any, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """The ``gc`` subcommand's flags."""
    gc = subs.add_parser(
        "gc",
        parents=parents,
        help="run the GC policy list (or preview it tier by tier)",
        description="Run an ordered GC policy list once, as BuildKit does after builds: "
        "from --policy FILE (buildkitd.toml, daemon.json or cachetui's own TOML), "
        "else BuildKit's default list for this disk.",
    )
    gc.add_argument("--policy", metavar="FILE", help="the policy file to read")
    gc.add_argument(
        "--dry-run",
        action="store_true",
        help="remove nothing: each tier's removals, the total after it, why the rest stays",
    )
    gc.add_argument("--show-policy", action="store_true", help="print the list and exit")
    gc.add_argument("--history", action="store_true", help="show the last GC runs")
    gc.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="dry run: list every record that stays; watch: print each record removed",
    )
    gc.add_argument(
        "--watch", action="store_true", help="keep running: on the interval and on low space"
    )
    gc.add_argument(
        "--interval", metavar="D", default="5m", help="with --watch: time between runs (default 5m)"
    )
    gc.add_argument(
        "--metrics-port",
        metavar="N",
        type=int,
        help="with --watch: serve Prometheus metrics on 127.0.0.1:N",
    )
    return gc


def write_lines(lines: list[str] | str, stream: Any = None) -> None:
    stream = stream or sys.stdout
    if isinstance(lines, str):
        lines = [lines]
    for line in lines:
        stream.write(line + "\n")
    stream.flush()


def load_list(root: Path, policy_file: str | None) -> PolicyList:
    """The list to run: the file's, else BuildKit's defaults for the disk under ``root``.
    Warnings go to stderr, each with its line."""
    from cachetui.core import disk_stat
    from cachetui.gcpolicy import default_policy, load_policy

    dstat = disk_stat(root if root.exists() else root.parent)
    policy = load_policy(policy_file, dstat) if policy_file else default_policy(dstat)
    for problem in policy.problems:
        write_lines(problem.render(policy.source), sys.stderr)
    return policy


def run_once(
    cm: CacheManager,
    policy: PolicyList,
    *,
    trigger: str = "manual",
    on_prune: Callable[[UsageInfo], None] | None = None,
    on_tier: Callable[[TierResult], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> GCResult:
    """One real run of ``policy`` under the GC lock, recorded in the store's history.
    Returns the core's result (what went, whether it was stopped, what was refused).
    ``LockedError`` when another run holds the lock."""
    from cachetui.core import GCLock, GCRunInfo

    with GCLock(cm.root):
        started = time.time()
        clock = time.monotonic()
        result = cm.gc_plan(
            policy.policies,
            dry_run=False,
            explain=False,
            on_prune=on_prune,
            on_tier=on_tier,
            stop=stop,
        )
        duration = time.monotonic() - clock
        records = len(result.removed)
        freed = result.removed_bytes
        cm.record_gc_run(
            GCRunInfo(
                started_at=started,
                duration=duration,
                policy=policy.source,
                trigger=trigger,
                tiers=len(result.tiers),
                records=records,
                bytes=freed,
                interrupted=result.interrupted,
                pid=os.getpid(),
                host=socket.gethostname(),
            )
        )
    return result


def command(args: argparse.Namespace, root: Path, open_store: Callable[..., Any]) -> int:
    """``cachetui gc``; ``open_store(root, read=...)`` opens the store as the CLI does."""
    as_json = args.format == "json"
    if args.history:
        with open_store(root, read=True) as cm:
            runs = cm.gc_history(None if args.verbose else 20)
        if as_json:
            write_lines([json.dumps(gcreport.history_json(run)) for run in runs])
        else:
            write_lines(gcreport.render_history(runs))
        return 0
    policy = load_list(root, args.policy)
    if args.show_policy:
        if as_json:
            write_lines(json.dumps(gcreport.policy_json(policy)))
        else:
            write_lines(gcreport.render_policy(policy))
        return 0
    if args.dry_run:
        with open_store(root, read=True) as cm:
            now = cm.now()
            result = cm.gc_plan(policy.policies, dry_run=True)
        if as_json:
            write_lines([json.dumps(gcreport.tier_json(t, dry_run=True)) for t in result.tiers])
            return 0
        lines = [f"{policy.source}: {len(policy.tiers)} tiers (dry run: nothing is removed)"]
        for tier in result.tiers:
            lines.extend(
                gcreport.render_tier(tier, now, dry_run=True, listed=None if args.verbose else 20)
            )
        lines.append(
            f"Would free: {len(result.removed)} records, "
            f"{format_bytes_buildx(result.removed_bytes)}"
        )
        write_lines(lines)
        return 0
    with open_store(root) as cm:
        now = cm.now()
        shown = {"tier": -1}

        def header(index: int) -> None:
            if shown["tier"] != index and not as_json:
                shown["tier"] = index
                tier = policy.tiers[index].options
                write_lines(f"Tier {index + 1}: {gcreport.describe_policy(tier)}")

        done: list[TierResult] = []

        def on_prune(info: UsageInfo) -> None:
            if not as_json:
                header(len(done))
                write_lines("  " + output.prune_row(info, now))

        def on_tier(tier: TierResult) -> None:
            done.append(tier)
            if as_json:
                write_lines(json.dumps(gcreport.tier_json(tier, dry_run=False)))
                return
            header(tier.index)
            write_lines("  " + gcreport.tier_summary(tier, dry_run=False))

        result = run_once(cm, policy, on_prune=on_prune, on_tier=on_tier)
        if not as_json:
            write_lines(
                f"Total: {len(result.removed)} records, {format_bytes_buildx(result.removed_bytes)}"
            )
    # The rest went; a record kept because a filesystem is mounted in its layer is said on
    # standard error, as prune says it, and the exit status says something was refused.
    for record_id, reason in result.refused:
        sys.stderr.write(f"cachetui: refusing to prune {record_id}: {reason}\n")
    return 1 if result.refused else 0
