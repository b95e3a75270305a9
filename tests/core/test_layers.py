"""Layer directories: exact ``du`` sizes and removal that never leaves the snapshot."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cachetui.core import CacheManager, PruneOptions


def du_bytes(path: Path) -> int:
    out = subprocess.run(
        ["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[0])


def test_a_layer_with_links_sparse_fifo_and_outside_symlink_measures_as_du(
    cm: CacheManager, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    canary = outside / "canary.txt"
    canary.write_bytes(b"keep me" * 1000)

    m = cm.new(retain=True)
    upper = m.mount().upper
    assert upper is not None
    (upper / "data.bin").write_bytes(os.urandom(64 * 1024))
    os.link(upper / "data.bin", upper / "hardlink-1")
    (upper / "sub").mkdir()
    os.link(upper / "data.bin", upper / "sub" / "hardlink-2")
    with open(upper / "sparse.img", "wb") as fh:
        fh.truncate(1 << 30)
        fh.seek(1 << 20)
        fh.write(b"z" * 4096)
    os.mkfifo(upper / "pipe")
    os.symlink(outside, upper / "to-outside")

    expected = du_bytes(upper)
    assert m.size() == expected
    s = m.commit()
    s.finalize()
    assert s.size() == expected
    s.release()
    (row,) = cm.disk_usage()
    assert row.size == expected

    removed = cm.prune(PruneOptions(all=True))
    assert [r.id for r in removed] == [s.id]
    assert not (cm.snapshots.dir / s.id).exists()
    assert canary.read_bytes() == b"keep me" * 1000


def test_sizes_add_up_without_double_counting(cm: CacheManager) -> None:
    base = cm.new(retain=True)
    (base.mount().upper / "base").write_bytes(b"b" * 100_000)
    b = base.commit()
    child = cm.new(b, retain=True)
    mount = child.mount()
    assert mount.lowers == (cm.snapshots.path(b.id),)
    assert not any(mount.upper.iterdir())  # nothing copied from the parent
    (mount.upper / "child").write_bytes(b"c" * 10_000)
    total = sum(r.size for r in cm.disk_usage())
    assert total == du_bytes(cm.snapshots.path(b.id)) + du_bytes(mount.upper)


def test_immutable_mount_is_read_only_and_lists_its_chain(cm: CacheManager) -> None:
    a = cm.new(retain=True)
    s = a.commit()
    pending = s.mount()
    assert pending.upper is None and pending.lowers == (cm.snapshots.path(a.id),)
    s.finalize()
    child = cm.new(s, retain=True)
    c = child.commit()
    c.finalize()
    mount = c.mount()
    assert mount.upper is None
    assert mount.lowers == (cm.snapshots.path(c.id), cm.snapshots.path(s.id))


def test_a_missing_layer_is_never_cached_as_empty(cm: CacheManager) -> None:
    m = cm.new(retain=True)
    (m.mount().upper / "f").write_bytes(b"x" * 50_000)
    s = m.commit()
    s.finalize()
    layer = cm.snapshots.path(s.id)
    moved = layer.with_name("elsewhere")
    layer.rename(moved)
    assert s.size() == 0
    moved.rename(layer)
    assert s.size() == du_bytes(layer)
    assert cm.disk_usage()[0].size == du_bytes(layer)
