"""The GC run history keeps the newest runs: recording one drops the oldest beyond
``GC_RUNS_KEPT`` in the same write, and what goes is still counted by the metrics (a
Prometheus counter never goes down). Real SQLite file, real ``cachetui metrics``."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from cachetui.core import CacheManager, GCRunInfo
from cachetui.core.recordstore import GC_RUNS_KEPT
from tests.reliability.workers import child_env

EXTRA = 7


def _run(n: int) -> GCRunInfo:
    return GCRunInfo(
        started_at=1_700_000_000.0 + n,
        duration=0.5,
        policy="default",
        trigger="interval",
        tiers=4,
        records=n % 3,
        bytes=1000 * n,
    )


def test_recording_a_run_keeps_the_newest_and_the_totals(tmp_path: Path) -> None:
    root = tmp_path / "store"
    runs = [_run(n) for n in range(GC_RUNS_KEPT + EXTRA)]
    with CacheManager.open(root) as cm:
        for run in runs:
            cm.record_gc_run(run)
        history = cm.gc_history(None)
        assert len(history) == GC_RUNS_KEPT
        assert history[0] == runs[-1] and history[-1] == runs[EXTRA]  # newest first
        totals = cm.gc_totals()
        assert totals.runs == len(runs)
        assert totals.records == sum(r.records for r in runs)
        assert totals.bytes == sum(r.bytes for r in runs)
        assert totals.duration == sum(r.duration for r in runs)
        assert totals.last_started_at == runs[-1].started_at
    # The table itself holds no more than that (trimmed in the write, not when read).
    db = sqlite3.connect(root / "metadata.db")
    try:
        ((count, oldest),) = db.execute("SELECT count(*), min(started_at) FROM gc_run")
    finally:
        db.close()
    assert count == GC_RUNS_KEPT and oldest == runs[EXTRA].started_at
    printed = subprocess.run(
        [sys.executable, "-m", "cachetui", "metrics", "--root", str(root)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    samples = dict(
        line.rsplit(" ", 1) for line in printed.stdout.splitlines() if not line.startswith("#")
    )
    assert float(samples["cachetui_gc_runs_total"]) == len(runs)
    assert float(samples["cachetui_gc_removed_bytes_total"]) == sum(r.bytes for r in runs)
    assert float(samples["cachetui_gc_run_duration_seconds_count"]) == len(runs)


def test_a_store_with_no_runs_has_zero_totals(tmp_path: Path) -> None:
    with CacheManager.open(tmp_path / "store") as cm:
        assert cm.gc_history(None) == []
        totals = cm.gc_totals()
        assert (totals.runs, totals.records, totals.bytes, totals.last_started_at) == (0, 0, 0, 0)
