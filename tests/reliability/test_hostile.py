"""C. Hostile snapshot contents: measuring terminates with the right size, and pruning
removes only what is inside the snapshot (canaries outside always survive)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from cachetui.core import CacheManager, PruneOptions, SnapshotError, fsops, usage


def du(path: Path) -> int:
    """``du -s --block-size=1`` (allocated bytes, symlinks not followed)."""
    out = subprocess.run(
        ["du", "-s", "--block-size=1", str(path)], capture_output=True, check=True
    ).stdout
    return int(out.split()[0])


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A directory outside the store with a file that must survive every prune."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_bytes(b"alive" * 1000)
    return outside


def layer(cm: CacheManager) -> tuple[str, Path]:
    """A free mutable record and its layer directory (released with retain)."""
    ref = cm.new(retain=True)
    upper = ref.mount().upper
    assert upper is not None
    ref.release()
    return ref.id, upper


def measure_and_prune(cm: CacheManager, rid: str, path: Path) -> int:
    expected = du(path)
    info = {u.id: u for u in cm.disk_usage()}
    assert info[rid].size == expected
    assert [u.id for u in cm.prune(PruneOptions(all=True))] == [rid]
    assert os.listdir(cm.snapshots.dir) == []
    return expected


def test_symlinks_to_root_and_outside_are_not_followed(cm: CacheManager, canary: Path) -> None:
    """Links count their own blocks; prune unlinks them; the targets survive."""
    rid, path = layer(cm)
    os.symlink("/", path / "evil")
    os.symlink(canary, path / "to-dir")
    os.symlink(canary / "canary", path / "to-file")
    os.symlink(path / "missing", path / "dangling")
    measure_and_prune(cm, rid, path)
    assert (canary / "canary").read_bytes() == b"alive" * 1000
    assert os.path.isdir("/etc")


def test_snapshot_dir_replaced_by_symlink(cm: CacheManager, canary: Path) -> None:
    """Measured as 0 with a finding; prune unlinks the link, the target is intact."""
    rid, path = layer(cm)
    os.rmdir(path)
    os.symlink(canary, path)
    measured = cm.snapshots.measure(rid)
    assert measured.size == 0 and [f.kind for f in measured.findings] == ["symlinked-root"]
    assert {u.id: u.size for u in cm.disk_usage()} == {rid: 0}
    cm.prune(PruneOptions(all=True))
    assert not os.path.lexists(path)
    assert os.listdir(canary) == ["canary"]


def test_swap_to_symlink_between_check_and_delete(
    tmp_path: Path, canary: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tree becomes a symlink after the remover's lstat: nothing outside goes."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "x").write_bytes(b"x")
    real_lstat = os.lstat
    swapped = []

    def lstat(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_lstat(path, *args, **kwargs)
        if os.fsdecode(path) == str(victim) and not swapped:
            swapped.append(True)
            os.rename(victim, tmp_path / "moved")
            os.symlink(canary, victim)
        return result

    monkeypatch.setattr(fsops.os, "lstat", lstat)
    fsops.remove_tree(victim)
    assert swapped and not os.path.lexists(victim)
    assert os.listdir(canary) == ["canary"]


def test_fifo_socket_device_and_sparse_file(
    cm: CacheManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lstat`` only (a FIFO is never opened), blocks not apparent size, removed by unlink."""
    rid, path = layer(cm)
    os.mkfifo(path / "fifo")
    monkeypatch.chdir(path)  # AF_UNIX paths are limited to 108 bytes
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("sock")
    sock.close()
    try:
        os.mknod(path / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except OSError:
        pass  # no CAP_MKNOD: the other special files still cover the case
    with open(path / "sparse", "wb") as fh:
        fh.truncate(1 << 30)
        fh.write(b"s" * 4096)
    size = measure_and_prune(cm, rid, path)
    assert size < 1 << 20  # blocks, not the 1 GiB apparent size


def test_hard_links_counted_once(cm: CacheManager) -> None:
    """One inode linked twice in a layer counts once (as du); across layers each
    layer's size counts it (each layer measured on its own, documented double count)."""
    rid, path = layer(cm)
    (path / "a").write_bytes(b"h" * (1 << 20))
    os.link(path / "a", path / "b")
    other_id, other = layer(cm)
    os.link(path / "a", other / "c")
    sizes = {u.id: u.size for u in cm.disk_usage()}
    assert sizes[rid] == du(path) and sizes[rid] < 2 << 20
    assert sizes[other_id] >= 1 << 20
    cm.prune(PruneOptions(all=True))
    assert os.listdir(cm.snapshots.dir) == []


def test_deep_chain(cm: CacheManager) -> None:
    """5,000 nested directories: no RecursionError, no ENAMETOOLONG."""
    rid, path = layer(cm)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(5000):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        with open(os.open("leaf", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as fh:
            fh.write(b"deep")
    finally:
        os.close(fd)
    measure_and_prune(cm, rid, path)


def test_odd_names(cm: CacheManager) -> None:
    """Non-UTF-8, newline and 255-byte names are measured and removed."""
    rid, path = layer(cm)
    raw = os.fsencode(path)
    os.mkdir(raw + b"/" + b"\xff\n" * 10)
    with open(raw + b"/" + b"\xff\n" * 10 + b"/\xfe\xfd", "wb") as fh:
        fh.write(b"n" * 5000)
    (path / ("n" * 255)).write_bytes(b"long")
    (path / "line\nbreak").write_bytes(b"nl")
    measure_and_prune(cm, rid, path)


def test_read_only_subdirectory(cm: CacheManager) -> None:
    """A 0555 directory inside the layer is made writable and removed."""
    rid, path = layer(cm)
    sub = path / "ro"
    sub.mkdir()
    (sub / "f").write_bytes(b"r" * 100)
    sub.chmod(0o555)
    path.chmod(0o555)
    measure_and_prune(cm, rid, path)


def test_files_vanish_during_scan(cm: CacheManager, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry deleted between the listing and its lstat is skipped, no error."""
    rid, path = layer(cm)
    for name in ("keep", "gone"):
        (path / name).write_bytes(b"v" * 8192)
    real_scandir = os.scandir

    class Vanishing:
        def __init__(self, target):  # type: ignore[no-untyped-def]
            self.inner = real_scandir(target)

        def __enter__(self):  # type: ignore[no-untyped-def]
            entries = list(self.inner)
            for entry in entries:
                if entry.name == "gone":
                    os.unlink(path / "gone")
            return iter(entries)

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self.inner.close()

    monkeypatch.setattr(usage.os, "scandir", Vanishing)
    measured = cm.snapshots.measure(rid)
    monkeypatch.undo()
    assert measured.size == du(path)
    assert not [f for f in measured.findings if f.kind == "error"]


def test_foreign_filesystem_inside_a_snapshot(cm: CacheManager) -> None:
    """A tmpfs mounted in a layer: not counted, not entered; prune refuses the record
    up front (nothing of it is touched, the mounted files survive); once unmounted, the
    next prune removes it. (Bind mounts: ``test_mounts.py``.)"""
    rid, path = layer(cm)
    (path / "mnt").mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "none", str(path / "mnt")]).returncode:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root and must be able to mount a tmpfs")
        pytest.skip("cannot mount a tmpfs here")
    try:
        (path / "mnt" / "mounted").write_bytes(b"m" * 10000)
        measured = cm.snapshots.measure(rid)
        assert "foreign-device" in {f.kind for f in measured.findings}
        assert not measured.complete
        with pytest.raises(SnapshotError, match=f"refusing to prune {rid}: .* is mounted"):
            cm.prune(PruneOptions(all=True))
        assert (path / "mnt" / "mounted").is_file()
        assert "tombstone" not in {f.kind for f in cm.doctor()}
    finally:
        subprocess.run(["umount", str(path / "mnt")], check=False)
    assert [u.id for u in cm.prune(PruneOptions(all=True))] == [rid]
    assert cm.disk_usage() == [] and os.listdir(cm.snapshots.dir) == []


def test_cycle_in_parent_chain(cm: CacheManager) -> None:
    """A hand-made cycle: views terminate, doctor names it, prune deletes nothing."""
    ids = []
    for _ in range(2):
        ref = cm.new()
        imm = ref.commit()
        imm.finalize()
        ids.append(imm.id)
        imm.release()
    a, b = ids
    with cm.store.write():
        cm.store.execute("UPDATE record SET parent = ? WHERE id = ?", (b, a))
        cm.store.execute("UPDATE record SET parent = ? WHERE id = ?", (a, b))
    assert {u.id for u in cm.disk_usage()} == {a, b}
    with cm.get(a) as ref:
        assert len(ref.mount().lowers) == 2
    loops = [f.message for f in cm.doctor() if f.kind == "inconsistent"]
    assert any("loops" in message for message in loops)
    assert cm.prune(PruneOptions(all=True)) == []
    assert sorted(os.listdir(cm.snapshots.dir)) == sorted(ids)
    cm.close()
    with CacheManager.open(cm.root) as again:  # reopened: damage, so read-only
        assert again.read_only and [f.kind for f in again.open_findings] == ["degraded"]


def test_snapshots_dir_swapped_while_open(cm: CacheManager, canary: Path) -> None:
    """``snapshots/`` replaced by a symlink after open: destructive work refused."""
    rid, _ = layer(cm)
    real = cm.root / "snapshots.real"
    os.rename(cm.snapshots.dir, real)
    os.symlink(canary, cm.snapshots.dir)
    with pytest.raises(SnapshotError, match="changed identity"):
        cm.prune(PruneOptions(all=True))
    with pytest.raises(SnapshotError, match="changed identity"):
        cm.new()
    assert os.listdir(canary) == ["canary"]
    os.unlink(cm.snapshots.dir)
    os.rename(real, cm.snapshots.dir)
    assert [u.id for u in cm.disk_usage()] == [rid]  # the refused prune changed nothing
    assert [f for f in cm.doctor() if not f.fixed] == []
