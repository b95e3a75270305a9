"""``cachetui gc --watch``: keep a store in bounds, unattended.

Runs the list on the interval, and at once when the disk's free space falls below the
list's largest ``minFreeSpace`` (checked every second; after such a run the next one
waits ``min(interval, 60s)``, as BuildKit throttles its own GC to once a minute). Runs never
overlap: each takes the store's GC lock (``core.gclock``), which another process, or a
second watcher, sees; a tick that finds it taken is skipped. Each run is recorded in the
store. SIGTERM or SIGINT stops the run under way between batches and ends the watch.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from cachetui.core import InvalidError, LockedError, UsageInfo, disk_stat
from cachetui.gccommand import load_list, run_once, write_lines
from cachetui.output import prune_row
from cachetui.units import format_bytes_buildx, parse_duration

__all__ = ["watch"]

_POLL = 1.0  # seconds between free-space checks


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def watch(args: argparse.Namespace, root: Path, open_store: Callable[..., Any]) -> int:
    interval = parse_duration(args.interval, what="--interval")
    if interval <= 0:
        raise InvalidError(f"invalid --interval '{args.interval}': must be more than 0")
    policy = load_list(root, args.policy)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    if args.metrics_port is not None:
        from cachetui import metrics

        metrics.serve(root, args.metrics_port)
        write_lines(f"metrics on http://127.0.0.1:{args.metrics_port}/metrics")

    def show(info: UsageInfo) -> None:
        if args.verbose:
            write_lines("  " + prune_row(info, time.time()))

    min_free = policy.min_free_space
    throttle = min(interval, 60.0)
    write_lines(
        f"{_stamp()} watching {root}: {policy.source}, every {args.interval}"
        + (f", and when free space < {format_bytes_buildx(min_free)}" if min_free else "")
    )
    try:
        with open_store(root) as cm:
            last_low = -float("inf")  # when the last run for low free space started
            next_run = time.monotonic()
            while not stop.is_set():
                now = time.monotonic()
                trigger = None
                if now >= next_run:
                    trigger = "interval"
                elif min_free and now - last_low >= throttle and disk_stat(root).free < min_free:
                    trigger = "low-space"
                if trigger is None:
                    stop.wait(max(min(next_run - now, _POLL), 0.01))
                    continue
                try:
                    result = run_once(cm, policy, trigger=trigger, stop=stop.is_set, on_prune=show)
                except LockedError as err:
                    write_lines(f"{_stamp()} {trigger}: skipped, {err}")
                else:
                    note = " (stopped)" if result.interrupted else ""
                    # A layer with a filesystem mounted in it stays; the watch goes on.
                    note += "".join(f"; kept {i}: {why}" for i, why in result.refused)
                    write_lines(
                        f"{_stamp()} {trigger}: removed {len(result.removed)} records, "
                        f"{format_bytes_buildx(result.removed_bytes)}{note}"
                    )
                if trigger == "interval":
                    next_run = time.monotonic() + interval
                else:
                    last_low = now
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    write_lines(f"{_stamp()} stopped")
    return 0
