"""Tests for ``cachetui.core.usage.measure``: equality with ``du``, and the C-scenarios.

Real files in ``tmp_path``; monkeypatching only injects EACCES faults, vanishing entries
and a foreign ``st_dev`` (a real tmpfs mount is also tried when running as root).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cachetui.core import measurepool, usage
from cachetui.core.fsops import remove_tree
from cachetui.core.usage import MeasureIssue, Measurement, measure

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def du(path: Path | bytes, *, one_fs: bool = False, apparent: bool = False) -> int:
    args = ["du", "-s", "--block-size=1", *(["-x"] if one_fs else []), os.fsdecode(path)]
    if apparent:
        args.insert(1, "--apparent-size")
    return int(subprocess.run(args, check=True, capture_output=True).stdout.split()[0])


def blocks(path: Path | bytes) -> int:
    return os.lstat(path).st_blocks * 512


def fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def make_chain(top: Path, depth: int, *, comb: bool = False) -> None:
    """A ``depth``-deep chain of ``d`` directories built through dir fds (no long paths).

    With ``comb`` every level also holds a leaf directory ``x`` with a file, so each
    ancestor has a pending sibling while the walk is deep below it.
    """
    fd = os.open(top, DIR_FLAGS)
    try:
        for _ in range(depth):
            if comb:
                os.mkdir("x", dir_fd=fd)
                leaf = os.open("x/f", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
                os.write(leaf, b"x" * 10)
                os.close(leaf)
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("bottom", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
        os.write(leaf, b"y" * 5000)
        os.close(leaf)
    finally:
        os.close(fd)


def build_hazards(top: Path, outside: Path) -> None:
    """The hazard layer: symlinks, hard links, a FIFO, odd names (not the deep chain)."""
    top.mkdir()
    outside.mkdir()
    (outside / "canary").write_bytes(b"c" * 1_000_000)
    (top / "etc").mkdir()
    (top / "etc" / "plain").write_bytes(b"p" * 10_000)
    linked = top / "etc" / "linked"
    linked.write_bytes(b"l" * 1_048_576)
    (top / "other").mkdir()
    os.link(linked, top / "other" / "linked2")
    os.link(linked, top / "linked3")
    with open(top / "sparse", "wb") as fh:
        fh.truncate(1 << 30)
        fh.seek(1 << 20)
        fh.write(b"s" * 4096)
    os.mkfifo(top / "fifo")
    os.symlink(outside, top / "to-outside")
    os.symlink(outside / "canary", top / "to-canary")
    os.symlink("/", top / "evil")
    weird = os.fsencode(top) + b"/\xff\n\xfe weird\nname"
    os.mkdir(weird)
    with open(weird + b"/\x80file\n", "wb") as fh:
        fh.write(b"w" * 3000)
    (top / ("n" * 255)).write_bytes(b"n" * 7000)


@pytest.fixture
def hazards(tmp_path: Path) -> Path:
    top = tmp_path / "layer"
    build_hazards(top, tmp_path / "outside")
    return top


def test_equals_du_on_hazard_tree(hazards: Path) -> None:
    result = measure(hazards, workers=1)
    assert result == Measurement(du(hazards), result.files, (), du(hazards, apparent=True))
    # the 1 GiB sparse file: far more apparent bytes than allocated ones, as du says
    assert result.apparent_size > (1 << 30) > result.size
    assert result.complete
    # etc, plain, linked(+2 links counted once), other, sparse, fifo, 3 links, weird dir
    # and its file, the 255-byte name.
    assert result.files == 12
    assert (hazards.parent / "outside" / "canary").stat().st_size == 1_000_000


def test_sparse_file_counts_allocated_blocks(tmp_path: Path) -> None:
    with open(tmp_path / "sparse", "wb") as fh:
        fh.truncate(1 << 30)
        fh.write(b"s" * 4096)
    result = measure(tmp_path)
    assert result.size == du(tmp_path) < 1 << 20


def test_hard_links_counted_once(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a" * 1_048_576)
    os.link(tmp_path / "a", tmp_path / "b")
    os.link(tmp_path / "a", tmp_path / "c")
    result = measure(tmp_path)
    assert result.size == du(tmp_path) == blocks(tmp_path) + blocks(tmp_path / "a")
    assert result.files == 1


def test_bytes_path_accepted(hazards: Path) -> None:
    assert measure(os.fsencode(hazards)).size == du(hazards)


def test_deep_chain(tmp_path: Path) -> None:
    top = tmp_path / "deep"
    top.mkdir()
    make_chain(top, 5000)
    try:
        expected = du(top)
        assert measure(top, workers=1) == Measurement(expected, 5001, (), du(top, apparent=True))
        assert measure(top).size == expected
    finally:
        remove_tree(top)


def test_deep_comb_reopens_evicted_directories(tmp_path: Path) -> None:
    top = tmp_path / "comb"
    top.mkdir()
    make_chain(top, 1500, comb=True)
    try:
        result = measure(top, workers=1)
        assert result.size == du(top)
        assert result.complete
        assert result.files == 1500 * 3 + 1
    finally:
        remove_tree(top)


def build_wide(top: Path, dirs: int = 40, files: int = 20, *, links: bool = True) -> None:
    top.mkdir()
    for i in range(dirs):
        sub = top / f"dir{i:03d}" / "inner"
        sub.mkdir(parents=True)
        for j in range(files):
            (sub / f"f{j}").write_bytes(b"z" * (j * 500))
        if i and links:  # hard links spread across directories, so across workers
            os.link(top / "dir000" / "inner" / "f19", sub / "link")


def _no_fork() -> int:
    raise AssertionError("measure() forked")


def test_parallel_walk_equals_du_and_dedups_links_across_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "wide"
    build_wide(top)
    sequential = measure(top, workers=1)
    monkeypatch.setattr(usage, "PARALLEL_THRESHOLD", 30)
    monkeypatch.setattr(os, "fork", _no_fork)
    assert measurepool.available(2, timeout=120) == 2
    before = measurepool.requests()
    parallel = measure(top, workers=3)
    assert measurepool.requests() - before == 2, "the walk was not shared with two helpers"
    assert parallel == sequential
    assert parallel.size == du(top)
    assert parallel.apparent_size == du(top, apparent=True)


def test_parallel_walk_passes_directories_whose_names_are_not_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "odd"
    top.mkdir()
    for i in range(12):
        sub = os.path.join(bytes(top), b"dir-\xff\xfe-%d" % i)
        os.mkdir(sub)
        for j in range(10):
            with open(os.path.join(sub, b"f\xe9%d" % j), "wb") as fh:
                fh.write(b"y" * 3000)
    monkeypatch.setattr(usage, "PARALLEL_THRESHOLD", 5)
    assert measurepool.available(1, timeout=120) == 1
    before = measurepool.requests()
    result = measure(top, workers=2)
    assert measurepool.requests() > before
    assert result.complete
    assert result.size == du(top)
    assert result.files == 12 * 11


def test_parallel_helper_death_falls_back_to_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper killed in the middle of a request: the tree is measured again alone."""
    top = tmp_path / "wide"
    build_wide(top, dirs=10)
    monkeypatch.setattr(usage, "PARALLEL_THRESHOLD", 10)
    assert measurepool.available(1, timeout=120) == 1
    killed: list[int] = []
    real_reply = measurepool.Helper.reply

    def kill_then_reply(self: measurepool.Helper) -> bytes:
        self.proc.kill()
        self.proc.wait()
        killed.append(self.proc.pid)
        return real_reply(self)

    monkeypatch.setattr(measurepool.Helper, "reply", kill_then_reply)
    assert measure(top, workers=2).size == du(top)
    assert killed, "no helper was asked"
    monkeypatch.undo()
    # The dead helper was dropped: a new one serves the next walk.
    monkeypatch.setattr(usage, "PARALLEL_THRESHOLD", 10)
    assert measurepool.available(1, timeout=120) == 1
    before = measurepool.requests()
    assert measure(top, workers=2).size == du(top)
    assert measurepool.requests() > before


def test_a_stopped_helper_fails_its_request_at_once_and_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A helper stopped (SIGSTOP) in the middle of a request never answers: the request
    fails as soon as the stop is seen, far within the reply timeout, the tree is measured
    in-process, and the stopped helper is killed and replaced."""
    top = tmp_path / "wide"
    build_wide(top, dirs=10)
    monkeypatch.setattr(usage, "PARALLEL_THRESHOLD", 10)
    assert measurepool.available(1, timeout=120) == 1
    stopped: list[measurepool.Helper] = []
    real_request = measurepool.Helper.request

    def request_then_stop(self: measurepool.Helper, header: bytes, fds: list[int]) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)  # a real stop, as a debugger or ^Z does
        deadline = time.monotonic() + 30
        while measurepool.process_state(self.proc.pid) != "T":
            assert time.monotonic() < deadline, "the helper did not stop"
            time.sleep(0.01)
        stopped.append(self)
        real_request(self, header, fds)

    failures: list[str] = []
    real_reply = measurepool.Helper.reply

    def reply_noting_failure(self: measurepool.Helper) -> bytes:
        try:
            return real_reply(self)
        except measurepool.HelperError as err:
            failures.append(str(err))
            raise

    monkeypatch.setattr(measurepool.Helper, "request", request_then_stop)
    monkeypatch.setattr(measurepool.Helper, "reply", reply_noting_failure)
    started = time.monotonic()
    assert measure(top, workers=2).size == du(top)
    elapsed = time.monotonic() - started
    assert stopped, "no helper was asked"
    # The failure says once what happened, not wrapped in a second "helper failed".
    assert failures and failures[0].startswith("a measuring helper is stopped"), failures
    assert failures[0].count("a measuring helper") == 1, failures
    assert elapsed < measurepool.REPLY_TIMEOUT / 5, f"waited {elapsed:.0f}s for a stopped helper"
    assert stopped[0].proc.poll() is not None  # killed, not left stopped
    monkeypatch.undo()
    monkeypatch.setattr(usage, "PARALLEL_THRESHOLD", 10)
    assert measurepool.available(1, timeout=120) == 1
    before = measurepool.requests()
    assert measure(top, workers=2).size == du(top)
    assert measurepool.requests() > before  # a new helper serves the next walk


def test_a_helper_stopped_while_idle_is_replaced_before_it_is_lent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = tmp_path / "wide"
    build_wide(top, dirs=10)
    monkeypatch.setattr(usage, "PARALLEL_THRESHOLD", 10)
    assert measurepool.available(1, timeout=120) == 1
    (idle,) = measurepool.borrow(1)
    measurepool.give_back([idle])
    os.kill(idle.proc.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 30
    while measurepool.process_state(idle.proc.pid) != "T":
        assert time.monotonic() < deadline, "the helper did not stop"
        time.sleep(0.01)
    started = time.monotonic()
    assert measure(top, workers=2).size == du(top)
    assert time.monotonic() - started < measurepool.REPLY_TIMEOUT / 5
    assert idle.proc.poll() is not None  # dropped and killed, never lent
    assert measurepool.available(1, timeout=120) == 1
    (fresh,) = measurepool.borrow(1)
    measurepool.give_back([fresh])
    assert fresh is not idle and fresh.proc.pid != idle.proc.pid


MEASURE_WITH_THREADS = """
import os, sys, threading, time
forks = []
os.register_at_fork(before=lambda: forks.append(1))
from cachetui.core import measurepool, usage

usage.PARALLEL_THRESHOLD = 30
stop = threading.Event()
worker = threading.Thread(target=stop.wait, daemon=True)  # a live thread, as in the dashboard
worker.start()
assert measurepool.available(1, timeout=120) == 1
result = usage.measure(sys.argv[1], workers=2)
stop.set()
print(result.size, measurepool.requests(), len(forks), threading.active_count())
"""


def test_measuring_beside_live_threads_never_forks(tmp_path: Path) -> None:
    """In a process with another thread running, a large walk is shared with helpers
    started by exec, and no ``fork()`` runs: no at-fork hook fires, and Python 3.12 and
    later do not warn "multi-threaded, use of fork()"."""
    top = tmp_path / "wide"
    build_wide(top)
    out = subprocess.run(
        [sys.executable, "-W", "always::DeprecationWarning", "-c", MEASURE_WITH_THREADS, str(top)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    assert "use of fork()" not in out.stderr  # Python 3.12+ warns when a threaded process forks
    size, requests, forks, threads = (int(x) for x in out.stdout.split())
    assert (size, forks) == (du(top), 0)
    assert requests >= 1, "the walk was not shared"
    assert threads == 2


def test_unreadable_subdir_via_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_wide(tmp_path / "t", dirs=3, links=False)
    locked = tmp_path / "t" / "dir001"
    expected = du(tmp_path / "t") - du(locked) + blocks(locked)
    real_open = os.open

    def fake_open(path, flags, mode=0o777, *, dir_fd=None):  # type: ignore[no-untyped-def]
        if path == "dir001" and dir_fd is not None:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", fake_open)
    result = measure(tmp_path / "t", workers=1)
    assert result.size == expected
    assert result.findings == (MeasureIssue(str(locked), "unreadable", os.strerror(errno.EACCES)),)
    assert not result.complete


def test_unreadable_subdir_via_scandir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_wide(tmp_path / "t", dirs=3, links=False)
    locked = tmp_path / "t" / "dir002" / "inner"
    expected = du(tmp_path / "t") - du(locked) + blocks(locked)
    real_scandir = os.scandir

    def fake_scandir(fd):  # type: ignore[no-untyped-def]
        if isinstance(fd, int) and fd_path(fd) == str(locked):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_scandir(fd)

    monkeypatch.setattr(os, "scandir", fake_scandir)
    result = measure(tmp_path / "t", workers=1)
    assert result.size == expected
    assert [(f.path, f.kind) for f in result.findings] == [(str(locked), "unreadable")]
    assert not result.complete


def test_unreadable_entry_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ok").write_bytes(b"o" * 5000)
    (tmp_path / "bad").write_bytes(b"b" * 5000)
    real_scandir = os.scandir

    class Entry:
        def __init__(self, entry: os.DirEntry[str]) -> None:
            self._entry = entry
            self.name = entry.name

        def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
            if self.name == "bad":
                raise PermissionError(errno.EACCES, "Permission denied")
            return self._entry.stat(follow_symlinks=follow_symlinks)

    class Listing:
        def __init__(self, fd: int) -> None:
            with real_scandir(fd) as it:
                self._entries = [Entry(e) for e in it]

        def __enter__(self) -> Iterator[Entry]:
            return iter(self._entries)

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(os, "scandir", Listing)
    result = measure(tmp_path, workers=1)
    assert result.size == blocks(tmp_path) + blocks(tmp_path / "ok")
    assert result.findings[0].path == str(tmp_path / "bad")
    assert not result.complete


def test_vanishing_entries_are_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "stays").write_bytes(b"s" * 5000)
    (tmp_path / "goes").write_bytes(b"g" * 5000)
    (tmp_path / "gonedir").mkdir()
    real_scandir = os.scandir

    class Listing:
        """Lists, then deletes entries before they are stat'ed or opened."""

        def __init__(self, fd: int) -> None:
            with real_scandir(fd) as it:
                self._entries = list(it)
            for name in ("goes", "gonedir"):
                try:
                    os.unlink(name, dir_fd=fd)
                except IsADirectoryError:
                    os.rmdir(name, dir_fd=fd)
                except FileNotFoundError:
                    pass

        def __enter__(self) -> Iterator[os.DirEntry[str]]:
            return iter(self._entries)

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(os, "scandir", Listing)
    result = measure(tmp_path, workers=1)
    assert result.size == blocks(tmp_path) + blocks(tmp_path / "stays")
    assert result.findings == ()
    assert result.complete


def test_symlinked_root(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "canary").write_bytes(b"c" * 100_000)
    link = tmp_path / "snap"
    link.symlink_to(target)
    result = measure(link)
    assert result.size == 0
    assert [f.kind for f in result.findings] == ["symlinked-root"]
    assert not result.complete
    assert (target / "canary").exists()


def test_root_replaced_by_symlink_between_lstat_and_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    snap = tmp_path / "snap"
    snap.mkdir()
    real_lstat = os.lstat
    swapped: list[bool] = []

    def swapping_lstat(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        st = real_lstat(path, *args, **kwargs)
        if os.fsdecode(path) == str(snap) and not swapped:
            swapped.append(True)
            snap.rmdir()
            snap.symlink_to(target)
        return st

    monkeypatch.setattr(os, "lstat", swapping_lstat)
    result = measure(snap)
    assert (result.size, [f.kind for f in result.findings]) == (0, ["symlinked-root"])


def test_missing_root(tmp_path: Path) -> None:
    result = measure(tmp_path / "nope")
    assert (result.size, result.files, [f.kind for f in result.findings]) == (0, 0, ["missing"])
    assert not result.complete  # nothing was measured: never cache it as 0


def test_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"f" * 9000)
    result = measure(tmp_path / "f")
    assert result.size == du(tmp_path / "f")
    assert [f.kind for f in result.findings] == ["not-a-directory"]


def test_foreign_device_via_fstat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = tmp_path / "t"
    build_wide(top, dirs=3, links=False)
    mnt = top / "dir001"
    expected = du(top) - du(mnt) + blocks(mnt)
    real_fstat = os.fstat

    def fake_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        if fd_path(fd) == str(mnt):
            fields = list(st)
            fields[2] = st.st_dev + 1  # st_dev
            return os.stat_result(fields)
        return st

    monkeypatch.setattr(os, "fstat", fake_fstat)
    result = measure(top, workers=1)
    assert result.size == expected
    assert [(f.path, f.kind) for f in result.findings] == [(str(mnt), "foreign-device")]
    assert not result.complete


def test_real_mount_is_not_crossed(tmp_path: Path, mount_tmpfs: Callable[[Path], None]) -> None:
    top = tmp_path / "t"
    build_wide(top, dirs=2)
    mnt = top / "mnt"
    mnt.mkdir()
    mount_tmpfs(mnt)
    (mnt / "inside").write_bytes(b"i" * 400_000)
    result = measure(top, workers=1)
    assert result.size == du(top, one_fs=True) < du(top)
    assert [(f.path, f.kind) for f in result.findings] == [(str(mnt), "foreign-device")]


def test_finding_and_measurement_are_frozen() -> None:
    m = Measurement(1, 1, (MeasureIssue("p", "vanished", "gone"),))
    assert m.complete
    with pytest.raises(AttributeError):
        m.size = 2  # type: ignore[misc]
