"""Measuring a snapshot's disk usage: the one place the core sizes a layer directory.

:func:`measure` returns what ``du -s -x --block-size=1 <dir>`` reports, so a
record's size can be checked with a tool every operator has:

- the sum of ``st_blocks * 512`` over the directory itself and every entry below it,
  from ``lstat`` only: symlinks are never followed (a link counts its own blocks) and no
  file is ever opened (FIFOs, sockets and devices are safe);
- an inode with several hard links (``st_nlink > 1``) is counted once per call, by
  ``(st_dev, st_ino)``;
- a directory on another filesystem (a mount point) is neither counted nor entered, as
  ``du -x`` does (plain ``du -s`` would cross into it and count the mounted tree). It is
  reported as a ``foreign-device`` finding;
- a mount point on the *same* filesystem (a bind mount: same ``st_dev``, which fools
  ``du -x``) is told apart by its mount id and is not entered either: a ``mount-point``
  finding. A measured path that is itself a mount point is not measured at all;
- problems never raise: they come back as :class:`MeasureIssue` values, and
  :attr:`Measurement.complete` says whether ``size`` is exact or only a lower bound.

The walk is iterative and goes through directory fds (``openat`` with ``O_NOFOLLOW``),
so 5,000-deep chains and names that are not UTF-8 work. Small trees are walked in the
calling thread. Once a tree turns out large (more than ``PARALLEL_THRESHOLD`` entries)
and ``workers > 1``, the directories still to visit are shared with helper processes
(:mod:`cachetui.core.measurepool`) through a pipe used as a work queue: each helper gets
the open directory fds, walks the tasks it takes, and returns its sizes and its multiply
linked inodes; the caller walks too and merges (hard links de-duplicated across
workers). Processes, not threads: each entry costs a short ``fstatat`` plus Python work
under the GIL, and two threads measured slower than one (GIL hand-offs on every stat),
while two processes roughly halve the wall time. The helpers are started by exec, never
by ``fork()``: measuring runs in the dashboard, whose other threads make a fork unsafe.
A helper still starting is not waited for (the walk goes on alone and shares later); a
helper lives as long as the calling process, so later walks pay no start-up. If a helper
fails, the tree is measured again in the calling process.
"""

from __future__ import annotations

import errno
import os
import pickle
import stat
import struct
from dataclasses import dataclass

from cachetui.core import measurepool
from cachetui.core.fdpath import DIR_FLAGS, FdPath, Node
from cachetui.core.fsops import mount_identity

__all__ = ["INCOMPLETE_KINDS", "PARALLEL_THRESHOLD", "MeasureIssue", "Measurement", "measure"]

#: Entries seen before the walk considers sharing the rest with helper processes. Low,
#: because a ready helper costs one message (no fork, no start-up): from about 10,000
#: entries on, sharing the rest early is what keeps ``measure`` near ``du``'s time.
PARALLEL_THRESHOLD = 1000
#: Issue kinds after which ``size`` is only a lower bound.
# A size with one of these findings is a lower bound (or nothing at all): never cached.
INCOMPLETE_KINDS = frozenset(
    {
        "unreadable",
        "foreign-device",
        "mount-point",
        "symlinked-root",
        "error",
        "missing",
        "not-a-directory",
    }
)
#: The most tasks put in the work queue pipe at once (4 bytes each, below 64 KiB).
_MAX_TASKS = 16000
_TASK = struct.Struct("=I")


@dataclass(frozen=True, slots=True)
class MeasureIssue:
    """Something :func:`measure` could not count, or chose not to.

    ``kind`` is one of ``unreadable`` (permission or I/O error: the entry or subtree is
    missing from the size), ``foreign-device`` (a mount point: not counted, not entered),
    ``mount-point`` (a mount of the same filesystem, such as a bind mount: not counted,
    not entered; on the measured path itself: nothing measured),
    ``symlinked-root`` (the measured path is a symlink: nothing measured), ``missing``
    (the measured path does not exist), ``not-a-directory`` (the measured path is a file:
    its own blocks are the size) or ``error`` (a worker failed).
    """

    path: str
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class Measurement:
    """The allocated bytes of a tree, the number of entries counted, and any findings.

    ``files`` counts every entry below the root (directories, links and special files
    included; a hard-linked inode once), not the root itself.
    """

    size: int
    files: int
    findings: tuple[MeasureIssue, ...] = ()
    #: The sum of the entries' lengths (``du -s --apparent-size --block-size=1``): what
    #: the files hold, beside what they take on disk (sparse files take less, small
    #: files more).
    apparent_size: int = 0

    @property
    def complete(self) -> bool:
        """True when ``size`` is exact: no finding makes it a lower bound."""
        return not any(f.kind in INCOMPLETE_KINDS for f in self.findings)


def _describe(err: OSError) -> str:
    return os.strerror(err.errno) if err.errno else str(err)


class _Walker:
    """Counts entries below directories on the same device as the root."""

    __slots__ = ("apparent", "blocks", "dev", "files", "findings", "link_lengths", "links", "mount")

    def __init__(self, dev: int, mount: int | None) -> None:
        self.dev = dev
        self.mount = mount  # the root's mount id: a directory with another is not entered
        self.blocks = 0  # 512-byte blocks of entries with one link
        self.files = 0  # entries with one link (or directories)
        self.links: dict[tuple[int, int], int] = {}  # (dev, ino) -> blocks, nlink > 1
        self.apparent = 0  # bytes of length of the entries with one link
        self.link_lengths: dict[tuple[int, int], int] = {}  # (dev, ino) -> length
        self.findings: list[tuple[str, str, str]] = []

    def seen(self) -> int:
        return self.files + len(self.links)

    def _scan(self, node: Node, fd: int) -> None:
        """Count the entries of the directory open as ``fd``; list its subdirectories."""
        subdirs: list[str] = []
        blocks = files = apparent = 0
        links = self.links
        dev = self.dev
        s_isdir = stat.S_ISDIR
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # vanished since the listing
                    except OSError as err:
                        path = node.child_path(entry.name)
                        self.findings.append((path, "unreadable", _describe(err)))
                        continue
                    if s_isdir(st.st_mode):
                        if st.st_dev != dev:
                            path = node.child_path(entry.name)
                            self.findings.append(
                                (path, "foreign-device", "another filesystem: not counted")
                            )
                            continue
                        blocks += st.st_blocks
                        apparent += st.st_size
                        files += 1
                        subdirs.append(entry.name)
                    elif st.st_nlink > 1:
                        key = (st.st_dev, st.st_ino)
                        if key not in links:
                            links[key] = st.st_blocks
                            self.link_lengths[key] = st.st_size
                    else:
                        blocks += st.st_blocks
                        apparent += st.st_size
                        files += 1
        except FileNotFoundError:
            pass
        except OSError as err:
            self.findings.append((node.path(), "unreadable", _describe(err)))
        finally:
            self.blocks += blocks
            self.apparent += apparent
            self.files += files
        node.pending = subdirs

    def _open(self, fds: FdPath, parent: Node, parent_fd: int, name: str) -> Node | None:
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                return None  # replaced by a symlink or file since the listing
            self.findings.append((parent.child_path(name), "unreadable", _describe(err)))
            return None
        try:
            st = os.fstat(fd)
            if st.st_dev != self.dev:
                self.findings.append(
                    (parent.child_path(name), "foreign-device", "another filesystem: not entered")
                )
                os.close(fd)
                return None
            if self.mount is not None and mount_identity(fd)[0] != self.mount:
                # Counted by the parent's listing (same st_dev): take it back out.
                self.blocks -= st.st_blocks
                self.apparent -= st.st_size
                self.files -= 1
                self.findings.append(
                    (parent.child_path(name), "mount-point", "a mount point: not entered")
                )
                os.close(fd)
                return None
        except OSError as err:
            os.close(fd)
            self.findings.append((parent.child_path(name), "unreadable", _describe(err)))
            return None
        child = Node(parent, name, fd, (st.st_dev, st.st_ino))
        fds.adopt(child)
        try:
            self._scan(child, fd)
        except BaseException:
            fds.close(child)
            raise
        return child

    def run(self, fds: FdPath, budget: int | None = None) -> bool:
        """Walk depth-first until done (True) or until ``budget`` entries are seen."""
        stack = fds.stack
        while stack:
            node = stack[-1]
            pending = node.pending
            if not pending:
                stack.pop()
                fds.close(node)
                continue
            name = pending.pop()
            try:
                parent_fd = fds.fd(node)
            except FileNotFoundError:
                pending.clear()
                continue
            except OSError as err:
                self.findings.append((node.path(), "unreadable", _describe(err)))
                pending.clear()
                continue
            child = self._open(fds, node, parent_fd, name)
            if not pending:
                fds.close(node)  # its children are all open: its fd is not needed
            if child is not None:
                if child.pending:
                    fds.push(child)
                else:
                    fds.close(child)
            if budget is not None and self.seen() >= budget:
                return not any(n.pending for n in stack)
        return True

    def merge(self, other: tuple[int, int, dict[tuple[int, int], int], list, int, dict]) -> None:
        blocks, files, links, findings, apparent, link_lengths = other
        self.blocks += blocks
        self.files += files
        self.links.update(links)
        self.findings.extend(findings)
        self.apparent += apparent
        self.link_lengths.update(link_lengths)

    def result(self) -> tuple[int, int, dict[tuple[int, int], int], list, int, dict]:
        return (
            self.blocks,
            self.files,
            self.links,
            self.findings,
            self.apparent,
            self.link_lengths,
        )


def _drain(walker: _Walker, queue_fd: int, tasks: list[tuple[int, str, str]]) -> None:
    """Take task indices from the queue pipe until it is empty; walk each task."""
    while True:
        data = os.read(queue_fd, _TASK.size)
        if not data:
            return
        while len(data) < _TASK.size:  # pragma: no cover - pipe reads of 4 bytes are whole
            more = os.read(queue_fd, _TASK.size - len(data))
            if not more:
                return
            data += more
        (index,) = _TASK.unpack(data)
        parent_fd, name, parent_path = tasks[index]
        base = Node(None, parent_path, parent_fd, None)
        base.pending = [name]
        walker.run(FdPath(base))


def serve_helper(fd: int) -> None:
    """A measuring helper process's main loop (``measurepool`` starts it by exec)."""
    measurepool.serve(fd, walk_request)


def walk_request(
    request: tuple[int, int | None, list[str], list[tuple[int, str]]], fds: list[int]
) -> tuple:
    """A helper's part of a shared walk (run in the helper process).

    ``fds[0]`` is the task queue pipe, ``fds[1:]`` the directories named by ``paths``;
    each task is ``(directory index, name)``. Returns the helper's counts for ``merge``.
    """
    dev, mount, paths, tasks = request
    walker = _Walker(dev, mount)
    _drain(walker, fds[0], [(fds[1 + i], name, paths[i]) for i, name in tasks])
    return walker.result()


def _parallel(walker: _Walker, fds: FdPath, workers: int) -> bool:
    """Share the directories still pending on ``fds`` with up to ``workers - 1`` helpers.

    The caller is one of the workers. Returns False (having changed nothing) when the
    work cannot be shared now (no helper ready yet, or too little to share), so the
    caller carries on alone and may try again later.
    """
    helpers = measurepool.borrow(workers - 1)
    if not helpers:
        return False  # none ready yet (one may be starting): carry on alone for now
    dirs: list[int] = []
    paths: list[str] = []
    tasks: list[tuple[int, str, str]] = []  # (fd, name, path) as _drain takes them
    numbered: list[tuple[int, str]] = []  # (directory index, name) as a helper gets them
    for node in fds.stack:
        if not node.pending:
            continue
        if len(dirs) == measurepool.MAX_FDS:
            break  # one message carries at most this many fds: the rest stays here
        try:
            fd = fds.fd(node)
        except OSError:
            measurepool.give_back(helpers)
            return False
        dirs.append(fd)
        paths.append(node.path())
        for name in node.pending:
            tasks.append((fd, name, paths[-1]))
            numbered.append((len(dirs) - 1, name))
    if len(tasks) < 2:
        measurepool.give_back(helpers)
        return False
    tasks = tasks[:_MAX_TASKS]
    numbered = numbered[:_MAX_TASKS]
    failed = True
    try:
        queue_r, queue_w = os.pipe()
        try:
            try:
                os.write(queue_w, b"".join(_TASK.pack(i) for i in range(len(tasks))))
            finally:
                os.close(queue_w)
            header = pickle.dumps(
                (walker.dev, walker.mount, paths, numbered), protocol=pickle.HIGHEST_PROTOCOL
            )
            for helper in helpers:
                helper.request(header, [queue_r, *dirs])
            # Tasks taken into the queue are no longer pending here.
            taken = {(fd, name) for fd, name, _ in tasks}
            for node in fds.stack:
                if node.pending and node.fd is not None:
                    node.pending = [n for n in node.pending if (node.fd, n) not in taken]
            _drain(walker, queue_r, tasks)
            for helper in helpers:
                walker.merge(pickle.loads(helper.reply()))
        finally:
            os.close(queue_r)
        failed = False
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise ChildProcessError(f"a measuring helper failed: {err}") from err
    finally:
        measurepool.give_back(helpers, failed=failed)
    return True


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def measure(
    path: str | os.PathLike[str] | os.PathLike[bytes] | bytes, *, workers: int | None = None
) -> Measurement:
    """Measure the allocated bytes of the tree at ``path``, as ``du -s -x --block-size=1``.

    :param path: the directory to measure (a snapshot layer).
    :param workers: processes to use for a large tree (default: the CPUs available, at
        most 4); 1 walks in the calling thread only. Small trees are always walked here;
        a large one is shared with helper processes (:mod:`cachetui.core.measurepool`),
        which are never forked from this process.
    :return: a :class:`Measurement`; nothing is raised for filesystem problems.
    """
    root = os.fsdecode(path)
    if workers is None:
        workers = _default_workers()
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        return Measurement(0, 0, (MeasureIssue(root, "missing", "no such file or directory"),))
    except OSError as err:
        return Measurement(0, 0, (MeasureIssue(root, "unreadable", _describe(err)),))
    if stat.S_ISLNK(st.st_mode):
        return Measurement(
            0, 0, (MeasureIssue(root, "symlinked-root", "the path is a symlink: not followed"),)
        )
    if not stat.S_ISDIR(st.st_mode):
        return Measurement(
            st.st_blocks * 512,
            0,
            (MeasureIssue(root, "not-a-directory", "the path is not a directory"),),
            st.st_size,
        )
    try:
        fd = os.open(root, DIR_FLAGS)
    except FileNotFoundError:
        return Measurement(0, 0, (MeasureIssue(root, "missing", "no such file or directory"),))
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            return Measurement(
                0, 0, (MeasureIssue(root, "symlinked-root", "the path is a symlink: not followed"),)
            )
        return Measurement(
            st.st_blocks * 512, 0, (MeasureIssue(root, "unreadable", _describe(err)),)
        )
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            return Measurement(
                0,
                0,
                (MeasureIssue(root, "symlinked-root", "the path was replaced while measured"),),
            )
        mount, is_mount_root = mount_identity(fd)
        if is_mount_root:
            return Measurement(
                0,
                0,
                (MeasureIssue(root, "mount-point", "the path is a mount point: not measured"),),
            )
        walker = _Walker(fst.st_dev, mount)
        base = Node(None, root, fd, (fst.st_dev, fst.st_ino))
        walker._scan(base, fd)
        fds = FdPath(base)
        try:
            budget: int | None = PARALLEL_THRESHOLD if workers > 1 else None
            while not walker.run(fds, budget):
                assert budget is not None
                try:
                    shared = _parallel(walker, fds, workers)
                except ChildProcessError:
                    return measure(root, workers=1)
                # Not shared: ask again after as many entries more (a helper may be
                # ready by then).
                budget = None if shared else budget + PARALLEL_THRESHOLD
        finally:
            fds.close_all()
    finally:
        os.close(fd)
    findings = tuple(MeasureIssue(p, k, m) for p, k, m in walker.findings)
    size = (fst.st_blocks + walker.blocks + sum(walker.links.values())) * 512
    apparent = fst.st_size + walker.apparent + sum(walker.link_lengths.values())
    return Measurement(size, walker.seen(), findings, apparent)
