"""``gc --dry-run`` tier by tier against a hand-computed expectation, and the real run.

The scenario is in ``seed.py``. By hand, with S(x) the size of x's layer and T the total:

* tier 1 (source.local | exec.cachemount, keep 48h, no space limit) removes M then L1
  (older first); L2 stays by keep-duration (used 1 hour ago); B, C, R1 and R2 are not
  matched by the filter (asked before the keep duration), I is internal, H is held.
* tier 2 (keep 60d, cap T1 - S(R1)) removes R1 (the oldest candidate), then the cap is
  met: R2 stays by the limit; B stays by keep-duration (used 30 days ago), so do C, L2.
* tier 3 (all, cap T2 - S(I) - S(R2)) removes I, then R2 (re-ranked after each
  removal); C and L2 stay by the limit; B is the parent of C (newest use below: C, 1 hour
  ago); H is held.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from cachetui.core import CacheManager, PruneOptions
from cachetui.core.store import SCHEMA_VERSION
from tests.gc.seed import DAY, HOUR, POLICY_TOML, open_seeded

EXPECTED_REMOVED = [["M", "L1"], ["R1"], ["I", "R2"]]
EXPECTED_KEPT = [
    {
        "B": "filter",
        "C": "filter",
        "L2": "keep-duration",
        "R1": "filter",
        "R2": "filter",
        "I": "type",
        "H": "held",
    },
    {
        "B": "keep-duration",
        "C": "keep-duration",
        "L2": "keep-duration",
        "R2": "limit",
        "I": "type",
        "H": "held",
    },
    {"B": "parent", "C": "limit", "L2": "limit", "H": "held"},
]


def _limits(sizes: dict[str, int]) -> tuple[int, int]:
    total = sum(sizes.values())
    after1 = total - sizes["M"] - sizes["L1"]
    tier2 = after1 - sizes["R1"]
    tier3 = tier2 - sizes["I"] - sizes["R2"]
    return tier2, tier3


def _policies(sizes: dict[str, int]) -> list[PruneOptions]:
    tier2, tier3 = _limits(sizes)
    return [
        PruneOptions(
            filters=("type==source.local", "type==exec.cachemount"), keep_duration=48 * HOUR
        ),
        PruneOptions(keep_duration=60 * DAY, max_used_space=tier2),
        PruneOptions(all=True, max_used_space=tier3),
    ]


@pytest.fixture
def seeded(tmp_path: Path):
    now = time.time()
    cm, _clock, ids, held = open_seeded(tmp_path / "store", now)
    names = {v: k for k, v in ids.items()}
    sizes = {names[info.id]: info.size for info in cm.disk_usage()}
    yield cm, ids, names, sizes
    for ref in held:
        ref.release()
    cm.close()


def test_dry_run_tier_by_tier_matches_the_hand_computed_plan(seeded) -> None:
    cm, ids, names, sizes = seeded
    total = sum(sizes.values())
    result = cm.gc_plan(_policies(sizes))
    assert result.dry_run and not result.interrupted
    assert [[names[i.id] for i in tier.removed] for tier in result.tiers] == EXPECTED_REMOVED
    assert [{names[k]: r.kind for k, r in tier.kept.items()} for tier in result.tiers] == (
        EXPECTED_KEPT
    )
    running = total
    for tier, removed in zip(result.tiers, EXPECTED_REMOVED, strict=True):
        assert tier.total_before == running
        running -= sum(sizes[n] for n in removed)
        assert tier.total_after == running
    tier2, tier3 = _limits(sizes)
    assert [t.limit for t in result.tiers] == [None, tier2, tier3]
    # The reasons carry the use that keeps a record, and for a parent the descendant's.
    kept = result.tiers[1].kept
    assert kept[ids["B"]].since == pytest.approx(cm.now() - 30 * DAY)
    parent = result.tiers[2].kept[ids["B"]]
    assert parent.by == ids["C"] and parent.since == pytest.approx(cm.now() - HOUR)
    # "Why is this still here?" for one record, tier by tier.
    assert [(i, r.kind if r else None) for i, r in result.fate(ids["R2"])] == [
        (0, "filter"),
        (1, "limit"),
        (2, None),
    ]
    assert [r.kind for _, r in result.fate(ids["H"]) if r] == ["held"] * 3
    # A dry run touched nothing.
    assert {names[i.id] for i in cm.disk_usage()} == set(sizes)


def test_the_real_run_removes_what_the_dry_run_showed(seeded) -> None:
    cm, ids, names, sizes = seeded
    plan = cm.gc_plan(_policies(sizes))
    done = cm.gc_plan(_policies(sizes), dry_run=False)
    assert [[i.id for i in t.removed] for t in done.tiers] == [
        [i.id for i in t.removed] for t in plan.tiers
    ]
    assert [t.total_after for t in done.tiers] == [t.total_after for t in plan.tiers]
    left = {names[i.id] for i in cm.disk_usage()}
    assert left == {"B", "C", "L2", "H"}
    for name in ("M", "L1", "R1", "I", "R2"):
        assert not (cm.root / "snapshots" / ids[name]).exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["cachetui", *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


def test_cli_dry_run_json_and_table(seeded, tmp_path: Path) -> None:
    cm, ids, names, sizes = seeded
    tier2, tier3 = _limits(sizes)
    policy = tmp_path / "gc.toml"
    policy.write_text(POLICY_TOML.format(tier2=tier2, tier3=tier3))
    done = _cli(
        "gc", "--root", str(cm.root), "--policy", str(policy), "--dry-run", "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    tiers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [[names[r["id"]] for r in t["removed"]] for t in tiers] == EXPECTED_REMOVED
    assert [{names[k]: v["reason"] for k, v in t["kept"].items()} for t in tiers] == EXPECTED_KEPT
    assert [t["limit"] for t in tiers] == [None, tier2, tier3]
    assert tiers[2]["kept"][ids["B"]]["by"] == ids["C"]

    table = _cli("gc", "--root", str(cm.root), "--policy", str(policy), "--dry-run")
    assert table.returncode == 0, table.stderr
    text = table.stdout
    assert "Tier 1: type==source.local | type==exec.cachemount, keep 48h" in text
    assert "would remove 2 records" in text and "would remove 1 record " in text
    assert f"{ids['B']}  parent: a parent of 1 record that stay" in text
    assert f"{ids['H']}  held: held by pid {os.getpid()}" in text
    # Nothing was removed, and nothing recorded as a run.
    assert {names[i.id] for i in cm.disk_usage()} == set(sizes)
    assert cm.gc_history() == []


def test_cli_real_run_prints_each_tier_and_records_the_run(seeded, tmp_path: Path) -> None:
    cm, ids, names, sizes = seeded
    tier2, tier3 = _limits(sizes)
    policy = tmp_path / "gc.toml"
    policy.write_text(POLICY_TOML.format(tier2=tier2, tier3=tier3))
    done = _cli("gc", "--root", str(cm.root), "--policy", str(policy))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    tier_lines = [i for i, line in enumerate(lines) if line.startswith("Tier ")]
    assert len(tier_lines) == 3
    assert lines[-1].startswith("Total: 5 records")
    for name in EXPECTED_REMOVED[2]:
        assert any(line.strip().startswith(ids[name]) for line in lines[tier_lines[2] :])
    assert {names[i.id] for i in cm.disk_usage()} == {"B", "C", "L2", "H"}
    (run,) = cm.gc_history()
    assert (run.records, run.trigger, run.policy) == (5, "manual", str(policy))
    assert run.bytes == sum(sizes[n] for tier in EXPECTED_REMOVED for n in tier)
    history = _cli("gc", "--root", str(cm.root), "--history", "--format", "json")
    assert json.loads(history.stdout)["records"] == 5


def test_cli_refuses_a_bad_policy_file_with_its_line(seeded, tmp_path: Path) -> None:
    cm = seeded[0]
    policy = tmp_path / "buildkitd.toml"
    policy.write_text('[[worker.oci.gcpolicy]]\n  all = true\n  keepduration = "1h"\n')
    done = _cli("gc", "--root", str(cm.root), "--policy", str(policy), "--dry-run")
    assert done.returncode == 2
    assert f"{policy}:3: error: unknown key 'keepduration'" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_show_policy_prints_the_default_list(seeded) -> None:
    cm = seeded[0]
    done = _cli("gc", "--root", str(cm.root), "--show-policy", "--format", "json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["kind"] == "default" and len(shown["tiers"]) == 4
    assert shown["tiers"][3]["all"] is True
    assert [t["keep_duration"] for t in shown["tiers"]] == [48 * HOUR, 60 * DAY, 0, 0]


def test_gc_lock_refuses_a_second_run(seeded) -> None:
    from cachetui.core.errors import LockedError
    from cachetui.core.gclock import GCLock

    cm = seeded[0]
    with GCLock(cm.root):
        done = _cli("gc", "--root", str(cm.root))
        assert done.returncode == 1
        assert f"another GC run holds {cm.root / 'gc.lock'} (pid {os.getpid()}" in done.stderr
        with pytest.raises(LockedError):
            GCLock(cm.root).acquire()
    GCLock(cm.root).acquire()  # released: free again


def test_first_landing_store_gains_the_run_history_with_nothing_lost(tmp_path: Path) -> None:
    """The store written by the first landing (schema 1, no gc_run table): a read-only
    open reads it as it is, a writable open adds the history table, and GC runs record."""
    import shutil

    from cachetui.core.types import GCRunInfo

    root = tmp_path / "store"
    shutil.copytree(Path(__file__).parent.parent / "core" / "fixtures" / "store_v1", root)
    with CacheManager.open(root, read_only=True) as ro:
        assert ro.store.schema_version == 1
        assert ro.gc_history() == []
        before = ro.disk_usage()
    with CacheManager.open(root) as cm:
        assert cm.store.schema_version == SCHEMA_VERSION >= 3  # the history came with 3
        assert cm.disk_usage() == before
        cm.record_gc_run(GCRunInfo(1.0, 0.5, "default", "manual", 4, 0, 0))
        assert [run.policy for run in cm.gc_history()] == ["default"]
