"""Mount points inside a layer: never measured, never crossed, never emptied.

A bind mount of a directory on the same filesystem has the same ``st_dev`` as the layer
around it, so only the mount id tells it apart. Each test mounts a real directory that
lives *outside* the store (a canary) into a layer, then measures, prunes and removes,
and checks that every canary byte survives. These need root; under ``CI=true`` (where
the suite runs as root) a refused mount fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cachetui.core import (
    CacheManager,
    Kept,
    PruneInterrupted,
    PruneOptions,
    PruneRefused,
    SnapshotError,
    fsops,
    usage,
)
from tests.mounting import CANARY, canary, canary_intact, mount
from tests.reliability.workers import child_env

__all__ = ["canary", "mount"]  # fixtures, used by name


def _layer(cm: CacheManager, content: int = 8192) -> tuple[str, Path]:
    ref = cm.new(retain=True)
    upper = ref.mount().upper
    assert upper is not None
    (upper / "own").write_bytes(b"o" * content)
    ref.release()
    return ref.id, upper


@pytest.mark.parametrize("kind", ["bind", "tmpfs"])
def test_measure_never_crosses_a_mount(
    cm: CacheManager, canary: Path, mount: Callable[..., None], kind: str
) -> None:
    rid, path = _layer(cm)
    before = cm.snapshots.measure(rid).size
    (path / "mnt").mkdir()
    mount(canary if kind == "bind" else None, path / "mnt")
    if kind == "tmpfs":
        (path / "mnt" / "big").write_bytes(b"t" * 100_000)
    measured = cm.snapshots.measure(rid)
    # The mounted tree, and the directory it covers, count for nothing.
    assert measured.size == before
    expected = "mount-point" if kind == "bind" else "foreign-device"
    assert [(f.path, f.kind) for f in measured.findings] == [(str(path / "mnt"), expected)]
    assert not measured.complete  # never cached: the mount may go away
    # The same walk shared among worker processes agrees.
    assert usage.measure(path, workers=2).size == before
    canary_intact(canary)


@pytest.mark.parametrize("kind", ["bind", "tmpfs"])
def test_prune_refuses_a_layer_with_a_mount_and_names_it(
    cm: CacheManager, canary: Path, mount: Callable[..., None], kind: str
) -> None:
    rid, path = _layer(cm)
    _other, other_path = _layer(cm)
    (path / "sub").mkdir()
    (path / "sub" / "mnt").mkdir()
    mount(canary if kind == "bind" else None, path / "sub" / "mnt")
    if kind == "tmpfs":
        (path / "sub" / "mnt" / "mounted").write_bytes(CANARY)
    with pytest.raises(SnapshotError, match=f"refusing to prune {rid}: .*/sub/mnt is mounted"):
        cm.prune(PruneOptions(all=True))
    # The record with the mount was not touched at all; the other one went.
    assert not other_path.exists()
    assert [u.id for u in cm.disk_usage()] == [rid]
    assert (path / "own").read_bytes() == b"o" * 8192
    if kind == "bind":
        canary_intact(canary)
    else:
        assert (path / "sub" / "mnt" / "mounted").read_bytes() == CANARY
    assert os.listdir(cm.snapshots.dir) == [rid]
    # A dry run does not list it.
    assert cm.prune(PruneOptions(all=True), dry_run=True) == []
    canary_intact(canary)


def test_layer_that_is_itself_a_bind_mount(
    cm: CacheManager, canary: Path, mount: Callable[..., None]
) -> None:
    rid, path = _layer(cm, content=0)
    mount(canary, path)
    assert cm.snapshots.measure(rid).size == 0
    assert {f.kind for f in cm.snapshots.measure(rid).findings} == {"mount-point"}
    with pytest.raises(SnapshotError, match=f"refusing to prune {rid}"):
        cm.prune(PruneOptions(all=True))
    canary_intact(canary)


def test_remover_stops_at_a_bind_mount(
    tmp_path: Path, canary: Path, mount: Callable[..., None]
) -> None:
    """The remover's own check, for a mount that appears after prune looked."""
    tree = tmp_path / "tree"
    (tree / "a" / "mnt").mkdir(parents=True)
    mount(canary, tree / "a" / "mnt")
    with pytest.raises(SnapshotError, match="a directory is mounted there"):
        fsops.remove_tree(tree)
    canary_intact(canary)
    # A mount point at the top is refused before anything is removed.
    top = tmp_path / "top"
    top.mkdir()
    mount(canary, top)
    with pytest.raises(SnapshotError, match="is a mount point"):
        fsops.remove_tree(top)
    canary_intact(canary)


def test_mounts_below_reads_escaped_names(tmp_path: Path, mount: Callable[..., None]) -> None:
    odd = tmp_path / "with space\nand newline"
    odd.mkdir()
    mount(None, odd)
    assert fsops.mounts_below(tmp_path) == [str(odd)]
    assert fsops.mounts_below(tmp_path / "elsewhere") == []


def test_mounts_below_sees_mounts_unmounts_and_renames_made_between_two_asks(
    tmp_path: Path, mount: Callable[..., None]
) -> None:
    """A mount, an unmount or a rename above a mount point made between two asks is seen
    by the second."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    assert fsops.mounts_below(tmp_path) == []
    mount(None, first)
    assert fsops.mounts_below(tmp_path) == [str(first)]
    assert fsops.mounts_below(tmp_path) == [str(first)]  # unchanged: no new read needed
    # Another process mounts and unmounts: this one's table follows.
    subprocess.run(["mount", "-t", "tmpfs", "none", str(second)], check=True)
    try:
        assert fsops.mounts_below(tmp_path) == [str(first), str(second)]
    finally:
        subprocess.run(["umount", str(second)], check=True)
    assert fsops.mounts_below(tmp_path) == [str(first)]
    # Renaming a directory above a mount point moves the mount without any mount event
    # (a prune renames a layer to its trash name): the next ask sees the new path.
    layer = tmp_path / "layer"
    (layer / "sub").mkdir(parents=True)
    mount(None, layer / "sub")
    assert fsops.mounts_below(layer) == [str(layer / "sub")]
    moved = tmp_path / "rm-layer"
    layer.rename(moved)
    assert fsops.mounts_below(moved) == [str(moved / "sub")]
    assert fsops.mounts_below(layer) == []


def test_cli_prune_names_the_mount(
    cm: CacheManager, canary: Path, mount: Callable[..., None]
) -> None:
    rid, path = _layer(cm)
    (path / "mnt").mkdir()
    mount(canary, path / "mnt")
    cm.close()
    done = subprocess.run(
        [sys.executable, "-m", "cachetui", "prune", "--all", "--force", "--root", str(cm.root)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"cachetui: refusing to prune {rid}: {path / 'mnt'} is mounted inside its layer "
        "(unmount it first)"
    ]
    canary_intact(canary)
    du = subprocess.run(
        [sys.executable, "-m", "cachetui", "du", "--format", "json", "--root", str(cm.root)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert du.returncode == 0 and rid in du.stdout


def _chain(cm: CacheManager) -> tuple[str, str, Path]:
    """A parent with one child; returns (parent id, child id, the child's layer)."""
    base = cm.new(retain=True)
    (base.mount().upper / "base").write_bytes(b"b" * 4096)  # type: ignore[operator]
    parent = base.commit()
    parent.finalize()
    base.release()
    child = cm.new(parent, retain=True)
    path = child.mount().upper
    assert path is not None
    (path / "own").write_bytes(b"c" * 4096)
    child.release()
    parent.release()
    return parent.id, child.id, path


def test_a_chain_plan_names_the_mount_as_prune_does(
    cm: CacheManager, canary: Path, mount: Callable[..., None]
) -> None:
    """The core's chain plan gives prune's own reason (the mount point), never a vague
    one, and a chain prune removes nothing."""
    parent, child, path = _chain(cm)
    (path / "mnt").mkdir()
    mount(canary, path / "mnt")
    plan = cm.plan_chain([parent])
    reason = f"{path / 'mnt'} is mounted inside its layer (unmount it first)"
    assert plan.rows == ()
    assert plan.blockers[0] == (child, reason)
    assert plan.refusal is not None and plan.refusal.startswith(f"{child} inside the chain: ")
    assert reason in plan.refusal
    # prune's own refusal uses the same words
    with pytest.raises(SnapshotError) as refused:
        cm.prune(ids=[child])
    assert str(refused.value) == f"refusing to prune {child}: {reason}"
    with pytest.raises(Exception, match="mounted inside its layer"):
        cm.prune_chain([parent])
    assert {u.id for u in cm.disk_usage()} >= {parent, child}
    canary_intact(canary)


def test_a_chain_plan_names_a_layer_that_is_a_mount_point(
    cm: CacheManager, canary: Path, mount: Callable[..., None]
) -> None:
    parent, child, path = _chain(cm)
    mount(canary, path)
    plan = cm.plan_chain([parent])
    assert plan.blockers[0] == (
        child,
        f"its layer {path} is itself a mount point (unmount it first)",
    )
    canary_intact(canary)


def _doctor(root: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cachetui", "doctor", *flags, "--root", str(root)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )


def test_doctor_reports_a_layer_that_is_a_mount_point_and_fix_leaves_it(
    cm: CacheManager, canary: Path, mount: Callable[..., None]
) -> None:
    """Prune refuses such a layer, so doctor must not call the store clean; ``--fix``
    neither moves nor removes anything across the mount: it says the operator must act."""
    rid, path = _layer(cm, content=0)
    mount(canary, path)
    cm.close()
    reason = f"its layer {path} is itself a mount point (unmount it first)"
    look = _doctor(cm.root, "--format", "json")
    assert look.returncode == 1, look.stdout + look.stderr
    found = [json.loads(line) for line in look.stdout.splitlines()]
    assert [(f["kind"], f["subject"], f["fixed"]) for f in found] == [("mounted-layer", rid, False)]
    assert reason in found[0]["message"] and "operator must unmount" in found[0]["message"]
    fix = _doctor(cm.root, "--fix")
    assert fix.returncode == 1, fix.stdout + fix.stderr
    assert "store is clean" not in fix.stdout
    assert "mounted-layer" in fix.stdout and rid in fix.stdout
    assert os.listdir(cm.root / "snapshots") == [rid]
    assert not (cm.root / "lost+found").exists()
    assert fsops.mounts_below(path) == [str(path)]  # still mounted
    canary_intact(canary)
    with CacheManager.open(cm.root) as again:
        assert [u.id for u in again.disk_usage()] == [rid]


def test_doctor_fix_does_not_move_a_directory_without_a_record_that_holds_a_mount(
    cm: CacheManager, canary: Path, mount: Callable[..., None]
) -> None:
    stray = cm.snapshots.dir / "0123456789abcdefghijklmno"
    (stray / "mnt").mkdir(parents=True)
    mount(canary, stray / "mnt")
    old = os.stat(stray).st_mtime - 3600
    os.utime(stray, (old, old))  # older than the fix: it would be moved if it could go
    cm.close()
    fix = _doctor(cm.root, "--fix", "--format", "json")
    found = [json.loads(line) for line in fix.stdout.splitlines()]
    assert [(f["kind"], f["subject"], f["fixed"]) for f in found] == [
        ("unknown-dir", stray.name, False)
    ], fix.stderr
    assert "a filesystem is mounted in it" in found[0]["message"]
    assert fsops.mounts_below(stray) == [str(stray / "mnt")]
    assert not (cm.root / "lost+found" / stray.name).exists()
    canary_intact(canary)


def test_doctor_fix_says_an_unremovable_leftover_once(
    cm: CacheManager, canary: Path, mount: Callable[..., None]
) -> None:
    """Opening to fix and the fix itself both try to remove a crash's leftover; one that
    cannot go (a directory is mounted in it) is one line of the report, not two."""
    rid, _path = _layer(cm)
    leftover = cm.snapshots.dir / "new-0123456789abcdefghijklmno"
    (leftover / "mnt").mkdir(parents=True)
    mount(canary, leftover / "mnt")
    cm.close()
    fix = _doctor(cm.root, "--fix")
    assert fix.returncode == 1, fix.stderr
    lines = fix.stdout.splitlines()
    assert lines[0].split() == ["KIND", "SUBJECT", "FIXED", "MESSAGE"]
    assert len(lines) == 2, fix.stdout
    assert lines[1].split()[:3] == ["mounted-layer", leftover.name, "no"]
    assert f"{leftover / 'mnt'} is mounted inside its layer" in lines[1]
    canary_intact(canary)
    assert sorted(os.listdir(cm.snapshots.dir)) == sorted([rid, leftover.name])


def test_prune_goes_on_past_every_mounted_layer_and_reports_each(
    cm: CacheManager, canary: Path, mount: Callable[..., None]
) -> None:
    """As BuildKit skips what it cannot release: the mounted layers stay, every other
    record goes, and the refusal lists each record kept (and what went)."""
    kept_bind, bind_path = _layer(cm)
    kept_tmpfs, tmpfs_path = _layer(cm)
    others = [_layer(cm) for _ in range(3)]
    (bind_path / "mnt").mkdir()
    mount(canary, bind_path / "mnt")
    mount(None, tmpfs_path)
    (tmpfs_path / "mounted").write_bytes(CANARY)
    with pytest.raises(PruneRefused) as refused:
        cm.prune(PruneOptions(all=True))
    assert sorted(info.id for info in refused.value.removed) == sorted(r for r, _ in others)
    assert sorted(refused.value.refusals) == sorted(
        [
            (kept_bind, f"{bind_path / 'mnt'} is mounted inside its layer (unmount it first)"),
            (kept_tmpfs, f"its layer {tmpfs_path} is itself a mount point (unmount it first)"),
        ]
    )
    assert "(and 1 more record)" in str(refused.value)
    assert sorted(u.id for u in cm.disk_usage()) == sorted([kept_bind, kept_tmpfs])
    for _rid, path in others:
        assert not path.exists()
    assert (bind_path / "own").read_bytes() == b"o" * 8192
    assert (tmpfs_path / "mounted").read_bytes() == CANARY
    canary_intact(canary)
    # A dry run lists neither, and says why when asked.
    why: list[tuple[str, str]] = []
    assert cm.prune(PruneOptions(all=True), dry_run=True, refused=why) == []
    assert sorted(why) == sorted(refused.value.refusals)


def test_a_stopped_prune_still_says_what_a_mount_kept(
    cm: CacheManager, canary: Path, mount: Callable[..., None]
) -> None:
    """Stopped by its callback after the first removal: the record a mount kept is in the
    interruption and in the caller's ``refused`` list (gc reports it from there)."""
    kept, path = _layer(cm)
    others = [_layer(cm) for _ in range(3)]
    (path / "mnt").mkdir()
    mount(canary, path / "mnt")

    class Stop(Exception):
        pass

    def stop(_info: object) -> None:
        raise Stop

    why: list[tuple[str, str]] = []
    with pytest.raises(PruneInterrupted) as stopped:
        cm.prune(PruneOptions(all=True), on_prune=stop, refused=why)
    reason = f"{path / 'mnt'} is mounted inside its layer (unmount it first)"
    assert stopped.value.refusals == [(kept, reason)]
    assert why == [(kept, reason)]
    assert {info.id for info in stopped.value.removed} <= {rid for rid, _ in others}
    assert kept in {u.id for u in cm.disk_usage()}
    canary_intact(canary)


def test_cli_prune_removes_the_rest_and_exits_1_naming_each_mount(
    cm: CacheManager, canary: Path, mount: Callable[..., None]
) -> None:
    kept, path = _layer(cm)
    others = [_layer(cm) for _ in range(2)]
    (path / "mnt").mkdir()
    mount(canary, path / "mnt")
    cm.close()
    preview = subprocess.run(
        [sys.executable, "-m", "cachetui", "prune", "--all", "--dry-run", "--root", str(cm.root)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    done = subprocess.run(
        [sys.executable, "-m", "cachetui", "prune", "--all", "--force", "--root", str(cm.root)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"cachetui: refusing to prune {kept}: {path / 'mnt'} is mounted inside its layer "
        "(unmount it first)"
    ]
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "RECLAIMABLE"]
    assert preview.returncode == 0, preview.stderr
    assert kept not in preview.stdout
    assert preview.stderr.strip().splitlines() == [
        f"cachetui: would refuse to prune {kept}: {path / 'mnt'} is mounted inside its layer "
        "(unmount it first)"
    ]
    listed = sorted(line.split()[0].rstrip("*") for line in lines[1:-1])  # * marks a mutable
    assert listed == sorted(r for r, _ in others)
    assert lines[-1].startswith("Total:")
    for _rid, other in others:
        assert not other.exists()
    assert os.listdir(cm.snapshots.dir) == [kept]
    canary_intact(canary)


def test_gc_goes_past_a_mounted_layer_and_says_why_it_stays(
    cm: CacheManager, canary: Path, mount: Callable[..., None], tmp_path: Path
) -> None:
    """A GC run is a prune: the mounted layer stays with its reason (in the dry run's
    "why is it still here" too), the rest goes, the run is recorded, exit status 1."""
    kept, path = _layer(cm)
    others = [_layer(cm) for _ in range(2)]
    (path / "mnt").mkdir()
    mount(canary, path / "mnt")
    reason = f"{path / 'mnt'} is mounted inside its layer (unmount it first)"
    plan = cm.gc_plan([PruneOptions(all=True)])
    assert plan.refused == ((kept, reason),)
    assert plan.fate(kept) == [(0, Kept("mounted", reason))]
    cm.close()
    policy = tmp_path / "gc.toml"
    policy.write_text('[[tier]]\nname = "everything"\nall = true\n')
    done = subprocess.run(
        [sys.executable, "-m", "cachetui", "gc", "--policy", str(policy), "--root", str(cm.root)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [f"cachetui: refusing to prune {kept}: {reason}"]
    assert "Total: 2 records" in done.stdout
    for _rid, other in others:
        assert not other.exists()
    assert os.listdir(cm.snapshots.dir) == [kept]
    canary_intact(canary)
    with CacheManager.open(cm.root) as again:
        (run,) = again.gc_history()
        assert run.records == 2


def test_gc_watch_keeps_watching_past_a_mounted_layer(
    cm: CacheManager, canary: Path, mount: Callable[..., None], tmp_path: Path
) -> None:
    kept, path = _layer(cm)
    _other, other_path = _layer(cm)
    mount(canary, path)
    cm.close()
    policy = tmp_path / "gc.toml"
    policy.write_text('[[tier]]\nname = "everything"\nall = true\n')
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cachetui",
            "gc",
            "--watch",
            "--interval",
            "1s",
            "--policy",
            str(policy),
            "--root",
            str(cm.root),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert watcher.stdout is not None
        runs: list[str] = []
        deadline = time.monotonic() + 120
        while len(runs) < 2 and time.monotonic() < deadline:  # a second run: still watching
            line = watcher.stdout.readline()
            if not line:
                break
            if ": removed " in line:
                runs.append(line)
    finally:
        if watcher.poll() is None:
            watcher.send_signal(signal.SIGTERM)
        _out, err = watcher.communicate(timeout=60)
    assert len(runs) == 2, err
    mounted = f"kept {kept}: its layer {path} is itself a mount point (unmount it first)"
    assert "removed 1 records" in runs[0] and mounted in runs[0]
    assert "removed 0 records" in runs[1] and mounted in runs[1]
    assert watcher.returncode == 0, err
    assert not other_path.exists()
    canary_intact(canary)
