"""Tests for ``cachetui.core.fsops``: the safe remover (links, mounts,
read-only directories, deep trees, odd names) and helpers.

Real files in ``tmp_path``; monkeypatching only injects EACCES/EIO faults and a foreign
``st_dev`` (a real tmpfs mount is also tried when running as root).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from cachetui.core import fdpath
from cachetui.core.errors import SnapshotError
from cachetui.core.fsops import fsync_dir, remove_tree, remove_trees

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def make_chain(top: Path, depth: int, *, comb: bool = False) -> None:
    """A ``depth``-deep chain of ``d`` directories built through dir fds (no long paths)."""
    fd = os.open(top, DIR_FLAGS)
    try:
        for _ in range(depth):
            if comb:
                os.mkdir("x", dir_fd=fd)
                leaf = os.open("x/f", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
                os.close(leaf)
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("bottom", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)


def build_hazards(top: Path, outside: Path) -> None:
    top.mkdir()
    outside.mkdir(exist_ok=True)
    (outside / "canary").write_bytes(b"canary")
    (top / "etc").mkdir()
    (top / "etc" / "plain").write_bytes(b"p" * 10_000)
    os.link(top / "etc" / "plain", top / "hardlink")
    os.mkfifo(top / "fifo")
    os.symlink(outside, top / "to-outside")
    os.symlink(outside / "canary", top / "etc" / "to-canary")
    os.symlink("/", top / "evil")
    os.symlink("nowhere", top / "dangling")
    weird = os.fsencode(top) + b"/\xff\n\xfe weird\nname"
    os.mkdir(weird)
    with open(weird + b"/\x80file\n", "wb") as fh:
        fh.write(b"w")
    (top / ("n" * 255)).mkdir()
    (top / ("n" * 255) / ("m" * 255)).write_bytes(b"m")


def build_wide(top: Path, dirs: int = 30, files: int = 10) -> None:
    top.mkdir()
    for i in range(dirs):
        sub = top / f"dir{i:03d}" / "inner"
        sub.mkdir(parents=True)
        for j in range(files):
            (sub / f"f{j}").write_bytes(b"z" * j)


def test_removes_everything_and_spares_link_targets(tmp_path: Path) -> None:
    top = tmp_path / "layer"
    outside = tmp_path / "outside"
    build_hazards(top, outside)
    make_chain(top / "etc", 5000)
    remove_tree(top)
    assert not os.path.lexists(top)
    assert (outside / "canary").read_bytes() == b"canary"
    assert os.path.isdir("/etc")


def test_missing_top_is_a_no_op(tmp_path: Path) -> None:
    remove_tree(tmp_path / "nope")
    assert os.listdir(tmp_path) == []


def test_symlinked_top_unlinks_only_the_link(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "canary").write_bytes(b"c")
    link = tmp_path / "snap"
    link.symlink_to(target)
    remove_tree(link)
    assert not os.path.lexists(link)
    assert (target / "canary").read_bytes() == b"c"


def test_file_top_is_unlinked(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"f")
    remove_tree(os.fsencode(tmp_path / "f"))
    assert not (tmp_path / "f").exists()


def test_deep_comb_with_evicted_fds(tmp_path: Path) -> None:
    top = tmp_path / "comb"
    top.mkdir()
    make_chain(top, 1500, comb=True)
    before = len(os.listdir("/proc/self/fd"))
    remove_tree(top)
    assert not top.exists()
    assert len(os.listdir("/proc/self/fd")) == before


def test_read_only_subdir_is_made_writable_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "t"
    (top / "ro").mkdir(parents=True)
    (top / "ro" / "file").write_bytes(b"x")
    os.chmod(top / "ro", 0o555)
    real_unlink = os.unlink
    calls: list[str] = []
    modes: list[int] = []

    def unlink_once_denied(path, *, dir_fd=None):  # type: ignore[no-untyped-def]
        calls.append(path)
        if path == "file" and len(calls) == 1:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        if dir_fd is not None:
            modes.append(stat.S_IMODE(os.fstat(dir_fd).st_mode))
        return real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink_once_denied)
    remove_tree(top)
    assert not top.exists()
    assert calls == ["file", "file"]
    assert modes == [0o755]  # u+rwx added to the 0555 directory before the retry


def test_persistent_eacces_raises_and_leaves_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "t"
    (top / "ro").mkdir(parents=True)
    (top / "ro" / "file").write_bytes(b"x")

    def always_denied(path, *, dir_fd=None):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(os, "unlink", always_denied)
    with pytest.raises(SnapshotError) as info:
        remove_tree(top)
    assert info.value.path == str(top / "ro" / "file")
    assert "Permission denied" in str(info.value)
    assert isinstance(info.value.__cause__, PermissionError)
    assert (top / "ro" / "file").exists()


def test_unopenable_subdir_is_chmodded_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "t"
    (top / "locked").mkdir(parents=True)
    (top / "locked" / "file").write_bytes(b"x")
    os.chmod(top / "locked", 0)
    real_open = os.open
    denied: list[str] = []

    def open_denied_while_mode_0(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if path == "locked" and flags & os.O_DIRECTORY and stat.S_IMODE(os.fstat(fd).st_mode) == 0:
            os.close(fd)
            denied.append(path)
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return fd

    monkeypatch.setattr(os, "open", open_denied_while_mode_0)
    remove_tree(top)
    assert denied == ["locked"]
    assert not top.exists()


def test_eio_becomes_snapshot_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = tmp_path / "t"
    build_wide(top, dirs=2)

    def eio_rmdir(path, *, dir_fd=None):  # type: ignore[no-untyped-def]
        raise OSError(errno.EIO, "Input/output error", path)

    monkeypatch.setattr(os, "rmdir", eio_rmdir)
    with pytest.raises(SnapshotError, match="Input/output error") as info:
        remove_tree(top)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EIO


def test_foreign_device_is_refused_and_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "t"
    build_wide(top, dirs=3)
    mnt = top / "dir001"
    real_fstat = os.fstat

    def fake_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        if fd_path(fd) == str(mnt):
            fields = list(st)
            fields[2] = st.st_dev + 1  # st_dev
            return os.stat_result(fields)
        return st

    monkeypatch.setattr(os, "fstat", fake_fstat)
    with pytest.raises(SnapshotError, match="another filesystem") as info:
        remove_tree(top)
    assert info.value.path == str(mnt)
    assert len(list((mnt / "inner").iterdir())) == 10


def test_real_mount_is_refused(tmp_path: Path, mount_tmpfs: Callable[[Path], None]) -> None:
    top = tmp_path / "t"
    top.mkdir()
    mnt = top / "mnt"
    mnt.mkdir()
    mount_tmpfs(mnt)
    (mnt / "precious").write_bytes(b"p")
    with pytest.raises(SnapshotError) as info:
        remove_tree(top)
    assert info.value.path == str(mnt)
    assert (mnt / "precious").read_bytes() == b"p"


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_removal_of_the_same_tree(tmp_path: Path, round_: int) -> None:
    top = tmp_path / "t"
    build_wide(top, dirs=120, files=15)
    make_chain(top / "dir000", 300, comb=True)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            remove_tree(top)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert not top.exists()


def test_new_entries_during_removal_are_rescanned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "t"
    (top / "sub").mkdir(parents=True)
    real_rmdir = os.rmdir
    added: list[bool] = []

    def rmdir_after_late_write(path, *, dir_fd=None):  # type: ignore[no-untyped-def]
        if path == "sub" and not added:
            added.append(True)
            (top / "sub" / "late").write_bytes(b"late")
        return real_rmdir(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "rmdir", rmdir_after_late_write)
    remove_tree(top)
    assert not top.exists()


def test_remove_trees_returns_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = []
    for i in range(20):
        build_wide(tmp_path / f"s{i}", dirs=2, files=3)
        paths.append(tmp_path / f"s{i}")
    bad = tmp_path / "s7"
    real_unlink = os.unlink

    def unlink(path, *, dir_fd=None):  # type: ignore[no-untyped-def]
        if dir_fd is not None and fd_path(dir_fd).startswith(str(bad) + "/"):
            raise OSError(errno.EIO, "Input/output error", path)
        return real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    failures = remove_trees([*paths, tmp_path / "missing"], threads=4)
    assert [p for p, _ in failures] == [bad]
    assert isinstance(failures[0][1], SnapshotError)
    assert sorted(os.listdir(tmp_path)) == ["s7"]


def test_fsync_dir(tmp_path: Path) -> None:
    fsync_dir(tmp_path)
    with pytest.raises(SnapshotError) as info:
        fsync_dir(tmp_path / "missing")
    assert info.value.path == str(tmp_path / "missing")


def test_fd_cap_is_small() -> None:
    assert fdpath.FD_CAP <= 256
