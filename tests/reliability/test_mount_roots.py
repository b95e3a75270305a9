"""Deleting paths against a mount whose root is the directory handed to the remover,
with the kernel answer of Linux older than 5.8 (no ``STATX_ATTR_MOUNT_ROOT``).

The bind mounts and the canary outside the store are real; only the attribute probe is
patched to answer as an old kernel does (mount id known, "mount root" never reported):
that is the one fault that cannot be caused for real on this kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cachetui.core import CacheManager, SnapshotError, fsops
from tests.mounting import canary, canary_intact, mount
from tests.reliability.workers import child_env

__all__ = ["canary", "mount"]  # fixtures, used by name


@pytest.fixture
def old_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """``mount_identity`` as statx+fdinfo answer on a kernel < 5.8: never a mount root."""
    real = fsops.mount_identity

    def probe(fd: int) -> tuple[int | None, bool]:
        return real(fd)[0], False

    monkeypatch.setattr(fsops, "mount_identity", probe)


def _only(rid: str) -> list[str]:
    return ["--filter", f"id=={rid}", "--force"]


def _dry(rid: str) -> list[str]:
    return ["--dry-run", "--filter", f"id=={rid}"]


def _crashed_prune(root: Path) -> str:
    """A real store whose prune died after its commit: one ``rm-<id>`` left behind."""
    cm = CacheManager.open(root)
    ref = cm.new(retain=True)
    upper = ref.mount().upper
    assert upper is not None
    (upper / "own").write_bytes(b"o" * 4096)
    ref.release()
    rid = ref.id
    cm.close()
    done = subprocess.run(
        [sys.executable, "-m", "cachetui", "prune", "--root", str(root), *_only(rid)],
        env={**child_env(), "CACHETUI_CRASH_AT": "prune:committed"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 137, done.stderr
    assert (root / "snapshots" / f"rm-{rid}").is_dir()
    return rid


def test_remover_refuses_a_mounted_top_on_an_old_kernel(
    tmp_path: Path, canary: Path, mount: Callable[..., None], old_kernel: None
) -> None:
    top = tmp_path / "top"
    top.mkdir()
    mount(canary, top)
    with pytest.raises(SnapshotError, match="is a mount point"):
        fsops.remove_tree(top)
    canary_intact(canary)
    # a tmpfs (another device) at the top as well
    other = tmp_path / "other"
    other.mkdir()
    mount(None, other)
    (other / "keep").write_bytes(b"k")
    with pytest.raises(SnapshotError, match="is a mount point"):
        fsops.remove_tree(other)
    assert (other / "keep").read_bytes() == b"k"


def test_remover_still_removes_a_plain_tree_on_an_old_kernel(
    tmp_path: Path, old_kernel: None
) -> None:
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f").write_bytes(b"x")
    fsops.remove_tree(tree)
    assert not tree.exists()


@pytest.mark.parametrize("prefix", ["rm-", "new-"])
def test_open_and_doctor_leave_a_mounted_leftover_on_an_old_kernel(
    tmp_path: Path, canary: Path, mount: Callable[..., None], old_kernel: None, prefix: str
) -> None:
    root = tmp_path / "store"
    rid = _crashed_prune(root)
    snapshots = root / "snapshots"
    if prefix == "rm-":
        name = f"rm-{rid}"
    else:
        name = "new-0123456789abcdef"
        (snapshots / name).mkdir()
    target = snapshots / name
    mount(canary, target)
    # plain doctor (read-only: the open finishes nothing) names it as mounted
    cm = CacheManager.open(root, read_only=True)
    try:
        found = {(f.kind, f.subject): f for f in cm.doctor()}
    finally:
        cm.close()
    assert ("mounted-layer", name) in found, found
    assert "itself a mount point" in found[("mounted-layer", name)].message
    assert ("leftover", name) not in found
    # a writable open (which finishes crashes) and doctor --fix leave it and say so
    cm = CacheManager.open(root)
    try:
        fixed = cm.doctor(fix=True)
    finally:
        cm.close()
    canary_intact(canary)
    assert fsops.mounts_below(target) == [os.path.realpath(target)]
    kinds = {(f.kind, f.subject, f.fixed) for f in fixed}
    assert ("mounted-layer", name, False) in kinds, fixed
    canary_intact(canary)


def test_release_of_an_unfinalized_commit_refuses_a_mounted_layer_up_front(
    tmp_path: Path, canary: Path, mount: Callable[..., None]
) -> None:
    """Releasing the last handle of a commit never finalized removes its layer: with a
    filesystem mounted in it, nothing is marked removed nor deleted, and the refusal
    names the mount (the handle stays held: unmount, then release again)."""
    root = tmp_path / "store"
    with CacheManager.open(root) as cm:
        ref = cm.new()
        upper = ref.mount().upper
        assert upper is not None
        (upper / "own").write_bytes(b"o" * 4096)
        (upper / "mnt").mkdir()
        imm = ref.commit()
        mount(canary, upper / "mnt")
        with pytest.raises(SnapshotError, match=f"{upper / 'mnt'} is mounted inside its layer"):
            imm.release()
        canary_intact(canary)
        assert (upper / "own").read_bytes() == b"o" * 4096
        assert [u.id for u in cm.disk_usage()] == [imm.id]
        assert not [f for f in cm.doctor() if f.kind == "tombstone"]
        subprocess.run(["umount", str(upper / "mnt")], check=True)
        imm.release()  # unmounted: the release goes through
        assert cm.disk_usage() == []
        assert not upper.exists()
    canary_intact(canary)


@pytest.mark.parametrize("where", ["inside", "top"])
def test_a_mount_that_appears_after_prune_looked_is_a_refusal(
    tmp_path: Path,
    canary: Path,
    mount: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """Between prune's mount check and the removal (its batch committed, the layers
    renamed ``rm-*``) a filesystem is mounted in one layer: that record is refused like
    the others (kept, live), the prune goes on with the rest and ends in PruneRefused."""
    from cachetui.core import PruneOptions, PruneRefused
    from cachetui.core import prune as prune_module

    root = tmp_path / "store"
    cm = CacheManager.open(root)
    ids = []
    for _ in range(3):
        ref = cm.new(retain=True)
        upper = ref.mount().upper
        assert upper is not None
        (upper / "own").write_bytes(b"o" * 4096)
        (upper / "sub").mkdir()
        ref.release()
        ids.append(ref.id)
    victim = ids[1]
    snapshots = root / "snapshots"
    real = prune_module.crash_point

    def hook(name: str) -> None:
        if name == "prune:committed" and (snapshots / f"rm-{victim}").is_dir():
            target = snapshots / f"rm-{victim}"
            mount(canary, target / "sub" if where == "inside" else target)
        real(name)

    monkeypatch.setattr(prune_module, "crash_point", hook)
    with pytest.raises(PruneRefused, match=f"refusing to prune {victim}") as refused:
        cm.prune(PruneOptions(all=True))
    canary_intact(canary)
    assert sorted(u.id for u in refused.value.removed) == sorted(set(ids) - {victim})
    assert [rid for rid, _ in refused.value.refusals] == [victim]
    if where == "inside":
        # kept as it was: live, its layer under its own name, its own file intact
        assert "is mounted inside its layer" in str(refused.value)
        assert str(snapshots / victim / "sub") in str(refused.value)
        assert [u.id for u in cm.disk_usage()] == [victim]
        assert (snapshots / victim / "own").read_bytes() == b"o" * 4096
        assert sorted(os.listdir(snapshots)) == [victim]
    else:
        # the mount sits on the renamed directory itself: it cannot get its name back,
        # so its record stays marked removed and nothing under it is touched
        assert (snapshots / f"rm-{victim}" / "canary").read_bytes() == canary.joinpath(
            "canary"
        ).read_bytes()
    cm.close()
    canary_intact(canary)


def test_doctor_fix_never_forgets_a_broken_record_with_a_mount_in_its_layer(
    tmp_path: Path, canary: Path, mount: Callable[..., None]
) -> None:
    """A chain whose root layer is missing: doctor --fix forgets the broken records,
    but not one whose layer has a filesystem mounted in it (nor the ancestors it needs):
    that one is reported once, as needing the operator, and its directory stays its."""
    import shutil

    root = tmp_path / "store"
    with CacheManager.open(root) as cm:
        chain = []
        parent = None
        for i in range(3):
            ref = cm.new(parent)
            upper = ref.mount().upper
            assert upper is not None
            (upper / f"f{i}").write_bytes(b"d" * 4096)
            imm = ref.commit()
            imm.finalize()
            chain.append(imm.id)
            parent = imm
    first, middle, last = chain
    snapshots = root / "snapshots"
    shutil.rmtree(snapshots / first)
    (snapshots / middle / "mnt").mkdir()
    mount(canary, snapshots / middle / "mnt")
    with CacheManager.open(root) as cm:
        found = cm.doctor(fix=True)
    canary_intact(canary)
    about = {(f.kind, f.subject, f.fixed) for f in found}
    assert [f.kind for f in found if f.subject == middle] == ["mounted-layer"], found
    assert ("missing-layer", first, False) in about
    assert ("broken", last, True) in about  # nothing mounted there: forgotten
    # the forgotten record's layer goes to lost+found (never deleted); the kept one stays
    assert [f.subject for f in found if f.kind == "unknown-dir"] == [last]
    assert (snapshots / middle / "f1").read_bytes() == b"d" * 4096
    with CacheManager.open(root) as cm:
        assert not cm.read_only
        assert {u.id: u.health for u in cm.disk_usage()} == {first: "missing", middle: "broken"}
    canary_intact(canary)


def test_dry_run_names_the_only_candidate_a_mount_keeps(
    tmp_path: Path, canary: Path, mount: Callable[..., None]
) -> None:
    """The outsider's repro: a dry run whose only candidate is kept by a mount says so
    (it used to print only "Would free 0B")."""
    root = tmp_path / "store"
    with CacheManager.open(root) as cm:
        ref = cm.new(retain=True)
        upper = ref.mount().upper
        assert upper is not None
        (upper / "mnt").mkdir()
        ref.release()
    mount(canary, upper / "mnt")
    done = subprocess.run(
        [sys.executable, "-m", "cachetui", "prune", "--root", str(root), *_dry(ref.id)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"would refuse to prune {ref.id}: {upper / 'mnt'} is mounted" in done.stderr
    canary_intact(canary)


def test_a_mount_that_appears_while_the_layer_is_removed_is_a_refusal(
    tmp_path: Path, canary: Path, mount: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The remover itself stops at a mount made after every check (here: just as the
    removal of that tree starts): the prune goes on with the rest and ends in
    PruneRefused naming it, rather than stopping with a bare SnapshotError."""
    from cachetui.core import PruneOptions, PruneRefused

    root = tmp_path / "store"
    cm = CacheManager.open(root)
    ids = []
    for _ in range(3):
        ref = cm.new(retain=True)
        upper = ref.mount().upper
        assert upper is not None
        (upper / "sub").mkdir()
        ref.release()
        ids.append(ref.id)
    victim = ids[0]
    real = fsops.remove_tree

    def racing(path: str | os.PathLike[str]) -> None:
        if os.path.basename(path) == f"rm-{victim}":
            mount(canary, Path(path) / "sub")
        real(path)

    monkeypatch.setattr(fsops, "remove_tree", racing)
    with pytest.raises(PruneRefused, match=f"refusing to prune {victim}: .*/sub is mounted"):
        cm.prune(PruneOptions(all=True))
    canary_intact(canary)
    assert sorted(os.listdir(root / "snapshots")) == [f"rm-{victim}"]
    cm.close()
    canary_intact(canary)
