"""``cachetui gc --watch`` as real processes: a store another process keeps filling,
two watchers on one store, SIGTERM and SIGKILL mid-run, and the metrics endpoint."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cachetui.core import CacheManager

LIMIT = 160_000  # bytes: about twenty 8 kB records


def _watch(root: Path, policy: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["cachetui", "gc", "--watch", "--root", str(root), "--policy", str(policy), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return out, err


def _total(root: Path) -> int:
    with CacheManager.open(root, read_only=True) as cm:
        return sum(info.size for info in cm.disk_usage() if not info.shared)


def _fill(root: Path, count: int, size: int = 4096) -> None:
    with CacheManager.open(root) as cm:
        for i in range(count):
            with cm.new(description=f"seed {i}") as layer:
                (layer.mount().upper / "data").write_bytes(b"x" * size)
                ref = layer.commit()
            ref.finalize()
            ref.release()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    root = tmp_path / "store"
    CacheManager.open(root).close()
    policy = tmp_path / "gc.toml"
    policy.write_text(f'[[tier]]\nall = true\nmax-used-space = "{LIMIT}"\n')
    yield root, policy


def test_watch_keeps_a_filling_store_within_the_limit_without_overlapping_runs(
    store: tuple[Path, Path],
) -> None:
    root, policy = store
    # Two watchers on one store: the GC lock must keep their runs apart.
    watchers = [_watch(root, policy, "--interval", "0.2s") for _ in range(2)]
    filler = subprocess.Popen(
        [sys.executable, "-m", "tests.gc.filler", str(root), "120", "4096"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        out, _ = filler.communicate(timeout=240)
        assert "done" in out
        filled_at = time.time()
        # Wait for a run that started after the last record was written.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with CacheManager.open(root, read_only=True) as cm:
                runs = cm.gc_history(None)
            if any(run.started_at > filled_at for run in runs):
                break
            time.sleep(0.1)
        else:
            pytest.fail("no GC run after the filler finished")
    finally:
        outputs = [_stop(w) for w in watchers]
        if filler.poll() is None:
            filler.kill()
    for watcher, (stdout, stderr) in zip(watchers, outputs, strict=True):
        assert watcher.returncode == 0, stderr
        assert stdout.rstrip().endswith("stopped")
        assert "Traceback" not in stderr
    assert _total(root) <= LIMIT
    with CacheManager.open(root, read_only=True) as cm:
        runs = sorted(cm.gc_history(None), key=lambda run: run.started_at)
        left = len(cm.disk_usage())
    assert sum(run.records for run in runs) == 120 - left  # every removal is on record
    assert sum(run.records for run in runs) > 0
    for earlier, later in itertools.pairwise(runs):
        # The lock is held from before a run's start until after it is recorded.
        assert later.started_at >= earlier.started_at + earlier.duration - 1e-3, (earlier, later)


def _removing(proc: subprocess.Popen[str]) -> str:
    """Read the watcher's output until it prints the first removed record."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if line.startswith("  "):
            return seen
    pytest.fail(f"the watcher removed nothing: {seen!r}")


def test_sigterm_stops_the_run_between_batches(store: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = store
    _fill(root, 600)
    policy = tmp_path / "all.toml"
    policy.write_text("[[tier]]\nall = true\n")  # no limit: everything, in batches of 10
    watcher = _watch(root, policy, "--interval", "1h", "--verbose")
    _removing(watcher)
    out, err = _stop(watcher)
    assert watcher.returncode == 0, err
    assert "(stopped)" in out and out.rstrip().endswith("stopped")
    with CacheManager.open(root) as cm:
        (run,) = cm.gc_history()
        left = len(cm.disk_usage())
        assert cm.doctor() == []
    assert run.interrupted
    assert 0 < run.records < 600 and left == 600 - run.records


def test_sigkill_mid_run_leaves_a_store_that_reopens_cleanly(
    store: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = store
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_bytes(b"not the store's")
    _fill(root, 600)
    policy = tmp_path / "all.toml"
    policy.write_text("[[tier]]\nall = true\n")
    watcher = _watch(root, policy, "--interval", "1h", "--verbose")
    _removing(watcher)
    watcher.kill()
    watcher.communicate(timeout=60)
    assert watcher.returncode == -signal.SIGKILL
    with CacheManager.open(root) as cm:  # repairs whatever was half done
        findings = cm.doctor()
        # The kill lands between two removals (a trash directory left) or inside one (its
        # layer renamed, its tombstone never committed: the layer comes back).
        repaired = {"leftover", "rolled-back-removal"}
        assert all(f.fixed and f.kind in repaired for f in findings), findings
        assert 0 < len(cm.disk_usage()) < 600
    # The lock died with its process: the next run goes ahead and finishes the job.
    done = subprocess.run(
        ["cachetui", "gc", "--root", str(root), "--policy", str(policy)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with CacheManager.open(root) as cm:
        assert cm.disk_usage() == []
        assert cm.doctor() == []
    assert sorted(os.listdir(root / "snapshots")) == []
    assert (canary / "keep").read_bytes() == b"not the store's"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
                text = reply.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_metrics_endpoint_and_command(store: tuple[Path, Path]) -> None:
    root, policy = store
    _fill(root, 30)
    with CacheManager.open(root) as cm:
        held = cm.new(description="held", record_type="exec.cachemount")
        (held.mount().upper / "data").write_bytes(b"x" * 4096)
        port = _free_port()
        watcher = _watch(root, policy, "--interval", "1h", "--metrics-port", str(port))
        try:
            deadline = time.monotonic() + 60
            while not cm.gc_history() and time.monotonic() < deadline:
                time.sleep(0.1)
            samples = _scrape(port)
            rows = cm.disk_usage()
        finally:
            _out, err = _stop(watcher)
            held.release()
    assert watcher.returncode == 0, err
    records = {(labels["type"], labels["state"]): v for labels, v in samples["cachetui_records"]}
    assert records[("exec.cachemount", "in_use")] == 1
    assert records[("regular", "reclaimable")] == len(rows) - 1
    sizes = {(labels["type"], labels["state"]): v for labels, v in samples["cachetui_bytes"]}
    assert sum(sizes.values()) == sum(info.size for info in rows)
    assert samples["cachetui_gc_runs_total"] == [({}, 1.0)]
    removed = samples["cachetui_gc_removed_records_total"][0][1]
    assert removed == 31 - len(rows) > 0
    assert samples["cachetui_gc_run_duration_seconds_count"] == [({}, 1.0)]
    assert samples["cachetui_disk_free_bytes"][0][1] > 0
    assert samples["cachetui_reclaimable_bytes"][0][1] == sum(
        info.size for info in rows if not info.in_use
    )
    # The command prints the same families, read from the store by another process.
    printed = subprocess.run(
        ["cachetui", "metrics", "--root", str(root)], capture_output=True, text=True, timeout=60
    )
    assert printed.returncode == 0, printed.stderr
    assert "cachetui_gc_runs_total 1.0" in printed.stdout


def test_low_free_space_starts_a_run_before_the_interval(store: tuple[Path, Path]) -> None:
    root, _ = store
    _fill(root, 5)
    policy = root.parent / "free.toml"
    # 100% of the disk free can never be true: free space is always "too low".
    policy.write_text('[[tier]]\nall = true\nmin-free-space = "100%"\n')
    watcher = _watch(root, policy, "--interval", "1h")
    try:
        deadline = time.monotonic() + 60
        triggers: list[str] = []
        while time.monotonic() < deadline and "low-space" not in triggers:
            with CacheManager.open(root, read_only=True) as cm:
                triggers = [run.trigger for run in cm.gc_history(None)]
            time.sleep(0.1)
    finally:
        out, err = _stop(watcher)
    assert watcher.returncode == 0, err
    assert sorted(triggers) == ["interval", "low-space"]
    assert "when free space <" in out
