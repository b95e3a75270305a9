"""The demo store and the live simulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cachetui import demo
from cachetui.core import CacheManager
from tests.conftest import T0, FakeClock


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["cachetui", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def fingerprint(root: Path) -> list[tuple]:
    """Everything about the store except the random ids."""
    with CacheManager.open(root, clock=FakeClock(T0)) as cm:
        rows = cm.disk_usage()
    by_id = {info.id: info for info in rows}

    def parent_desc(info):
        return tuple(by_id[p].description for p in info.parents)

    return sorted(
        (
            info.description,
            info.record_type,
            info.size,
            info.mutable,
            info.usage_count,
            info.created_at,
            info.last_used_at,
            parent_desc(info),
        )
        for info in rows
    )


def test_demo_build_only_makes_a_realistic_store(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    started = time.monotonic()
    result = run("demo", "--build-only", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    assert result.stdout.strip() == str(root)
    du = run("du", "--root", str(root), "--format", "json")
    assert du.returncode == 0, du.stderr
    rows = [json.loads(line) for line in du.stdout.splitlines()]
    types = {row["record_type"] for row in rows}
    assert types == {"regular", "exec.cachemount", "source.local", "frontend", "internal"}
    descriptions = {row["description"] for row in rows}
    assert any("/root/.cache/pip" in d for d in descriptions)
    assert any("/root/.npm" in d for d in descriptions)
    assert "local source for context" in descriptions
    assert "[stage-1 4/5] RUN pip install -r requirements.txt" in descriptions
    by_id = {row["id"]: row for row in rows}
    # A shared base: one debian layer with several children, chains several deep.
    children: dict[str, int] = {}
    for row in rows:
        for parent in row["parents"]:
            children[parent] = children.get(parent, 0) + 1
    debian = next(r for r in rows if "debian:bookworm" in r["description"])
    assert children[debian["id"]] >= 2
    depth = max(_depth(by_id, row["id"]) for row in rows)
    assert depth >= 5
    # Usage spread over weeks; a retained mutable left uncommitted on a regular chain.
    used = sorted(r["last_used_at"] for r in rows if r["last_used_at"])
    assert used[0][:10] != used[-1][:10]
    assert any(r["mutable"] and r["record_type"] == "regular" and r["parents"] for r in rows)
    total = sum(r["size"] for r in rows)
    assert 1_000_000 < total < 20_000_000
    assert run("doctor", "--root", str(root)).returncode == 0


def _depth(by_id: dict, record_id: str) -> int:
    depth = 0
    while by_id[record_id]["parents"]:
        record_id = by_id[record_id]["parents"][0]
        depth += 1
    return depth


def test_demo_refuses_a_non_empty_root(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("mine")
    result = run("demo", "--build-only", "--root", str(tmp_path))
    assert result.returncode == 1
    assert "not empty" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["x"]


def test_build_demo_store_is_deterministic(tmp_path: Path) -> None:
    demo.build_demo_store(tmp_path / "a", clock=FakeClock(T0), seed=7)
    demo.build_demo_store(tmp_path / "b", clock=FakeClock(T0), seed=7)
    first = fingerprint(tmp_path / "a")
    assert first == fingerprint(tmp_path / "b")
    assert len(first) >= 20
    newest = max(row[6] for row in first if row[6] is not None)
    oldest = min(row[5] for row in first)
    assert newest.timestamp() <= T0
    assert T0 - oldest.timestamp() <= 60 * 86400


def test_simulator_is_bounded(tmp_path: Path) -> None:
    root = tmp_path / "sim"
    demo.build_demo_store(root, seed=3)
    demo.run_simulator(root, steps=7, interval=0, seed=1, keep=3)
    with CacheManager.open(root) as cm:
        rows = cm.disk_usage()
        ours = [r for r in rows if r.description.startswith(demo.SIMULATOR_DESCRIPTION_PREFIX)]
        assert 1 <= len(ours) <= 3
        assert not any(r.in_use for r in rows)
        assert cm.doctor() == []


def test_simulator_stops_on_sigterm_and_leaves_a_clean_store(tmp_path: Path) -> None:
    root = tmp_path / "live"
    demo.build_demo_store(root)
    before = {i.id for i in _usage(root)}
    process = demo.start_simulator(root, interval=0.05)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if {i.id for i in _usage(root)} - before:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the simulator changed nothing")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(15)
    assert code == 0
    doctor = run("doctor", "--root", str(root))
    assert doctor.returncode == 0, doctor.stdout
    assert doctor.stdout.strip() == "store is clean"
    assert not any(info.in_use for info in _usage(root))


def test_simulator_module_entry_point(tmp_path: Path) -> None:
    root = tmp_path / "entry"
    build = subprocess.run(
        [sys.executable, "-m", "cachetui.demo", "build", "--root", str(root)],
        capture_output=True,
        timeout=60,
    )
    assert build.returncode == 0, build.stderr
    sim = subprocess.run(
        [
            sys.executable,
            "-m",
            "cachetui.demo",
            "simulate",
            "--root",
            str(root),
            "--steps",
            "2",
            "--interval",
            "0",
        ],
        capture_output=True,
        timeout=60,
    )
    assert sim.returncode == 0, sim.stderr
    assert any(i.description.startswith("[sim ") for i in _usage(root))


def _usage(root: Path):
    with CacheManager.open(root) as cm:
        return cm.disk_usage()
