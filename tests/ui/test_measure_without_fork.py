"""The dashboard's measuring path never forks: a file written under a layer reaches the
service through the change feed's threads, and the service re-measures the layer with
helper processes started by exec, not with ``fork()`` from its threaded process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DASHBOARD_PATH = """
import os, queue, subprocess, sys, threading
forks = []
os.register_at_fork(before=lambda: forks.append(1))

from cachetui.core import CacheManager, ChangeSet, measurepool, usage
from cachetui.service import CacheService

usage.PARALLEL_THRESHOLD = 30  # a small tree counts as large, so the walk is shared
root = sys.argv[1]
with CacheManager.open(root) as cm:
    layer = cm.new(description="big layer")  # held by this process: its live size shows
    upper = layer.mount().upper
    service = CacheService(root)
    service.load()
    changes = queue.Queue()
    service.start_watching(changes.put)  # the feed's and the liveness ticker's threads
    assert threading.active_count() >= 3, threading.enumerate()
    assert measurepool.available(1, timeout=120) == 1
    for i in range(30):
        sub = upper / f"dir{i:02d}"
        sub.mkdir()
        for j in range(20):
            (sub / f"f{j}").write_bytes(b"x" * (j * 700))
    # Apply what the feed reports, as the dashboard does, until the new size shows.
    size = 0
    while size == 0:
        delta = service.apply(changes.get(timeout=60))
        if layer.id in delta.changed:
            size = delta.view.rows[layer.id].size
    service.close()
    du = subprocess.run(["du", "-s", "--block-size=1", str(upper)], capture_output=True)
    print(size, int(du.stdout.split()[0]), measurepool.requests(), len(forks))
    layer.release()
"""


def test_the_dashboard_measures_a_written_layer_without_forking(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", DASHBOARD_PATH, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    assert "use of fork()" not in out.stderr  # Python 3.12+ warns when a threaded process forks
    size, du, requests, forks = (int(x) for x in out.stdout.split())
    assert size == du > 30 * 20 * 700  # the size on screen is what du reports
    assert requests >= 1, "the layer was not measured with a helper"
    assert forks == 0
