"""Safe removal of snapshot trees, and the small filesystem helpers the core shares.

This module owns every destructive filesystem call the core makes on a snapshot tree
(so nothing outside the store can be deleted through a link, a mount or a race):

- :func:`remove_tree` removes a directory tree through directory file descriptors
  (``openat`` with ``O_NOFOLLOW | O_DIRECTORY``). It never follows a symlink (links are
  unlinked, the top included), never descends into another filesystem (it refuses with
  :class:`~cachetui.core.errors.SnapshotError` and leaves that part in place), is
  iterative (5,000-deep chains work: no recursion, no ``ENAMETOOLONG``, bounded open fds),
  handles names that are not UTF-8, makes read-only directories it owns writable and
  retries once, and tolerates another process removing the same tree at the same time.
- :func:`remove_trees` removes many trees from a thread pool and returns the failures.
- :func:`fsync_dir` flushes a directory's entries.
- :func:`mount_identity` and :func:`mounts_below` tell mount points apart. ``st_dev``
  alone cannot: a bind mount of a directory on the same filesystem has the same device
  number, so both walkers also compare the *mount id* of every directory they enter
  (``statx(STATX_MNT_ID)``, or ``mnt_id:`` in ``/proc/self/fdinfo`` on an older libc)
  and never cross into another mount.

It walks with the fd-path helpers of :mod:`cachetui.core.fdpath`, as
:mod:`cachetui.core.usage` does, so both walkers share one discipline.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import stat
import struct
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from cachetui.core.errors import SnapshotError
from cachetui.core.fdpath import DIR_FLAGS, PATH_FLAGS, FdPath, Node

__all__ = [
    "foreign_file",
    "fsync_dir",
    "mount_identity",
    "mounts_below",
    "remove_tree",
    "remove_trees",
]

#: How often one directory may be rescanned when ``rmdir`` finds new entries in it.
_MAX_RESCANS = 5


# -- mount points -------------------------------------------------------------------------

_AT_EMPTY_PATH = 0x1000
_AT_SYMLINK_NOFOLLOW = 0x100
_STATX_MNT_ID = 0x1000
_STATX_ATTR_MOUNT_ROOT = 0x2000
_STATX_SIZE = 256  # sizeof(struct statx), with its spare room
_STATX_HEAD = struct.Struct("=IIQ")  # stx_mask, stx_blksize, stx_attributes
_STATX_U64 = struct.Struct("=Q")
_STATX_ATTRIBUTES_MASK_AT = 56
_STATX_MNT_ID_AT = 144


def _load_statx() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).statx
    except (AttributeError, OSError):  # pragma: no cover - glibc older than 2.28
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_void_p,
    ]
    function.restype = ctypes.c_int
    return function


_statx = _load_statx()


def _fdinfo_mount_id(fd: int) -> int | None:
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as fh:
            for line in fh:
                if line.startswith(b"mnt_id:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def mount_identity(fd: int) -> tuple[int | None, bool]:
    """``(mount id, is the root of a mount)`` of the file open as ``fd``.

    The mount id is None when neither ``statx`` nor ``/proc`` can tell (then callers can
    only compare ``st_dev``); "root of a mount" is False when the kernel does not say.
    """
    if _statx is not None:
        buf = ctypes.create_string_buffer(_STATX_SIZE)
        if _statx(fd, b"", _AT_EMPTY_PATH | _AT_SYMLINK_NOFOLLOW, _STATX_MNT_ID, buf) == 0:
            mask, _blksize, attributes = _STATX_HEAD.unpack_from(buf, 0)
            (known,) = _STATX_U64.unpack_from(buf, _STATX_ATTRIBUTES_MASK_AT)
            root = bool(known & _STATX_ATTR_MOUNT_ROOT and attributes & _STATX_ATTR_MOUNT_ROOT)
            if mask & _STATX_MNT_ID:
                return _STATX_U64.unpack_from(buf, _STATX_MNT_ID_AT)[0], root
            return _fdinfo_mount_id(fd), root
    return _fdinfo_mount_id(fd), False


_OCTAL = re.compile(rb"\\([0-7]{3})")


def _unescape_mountinfo(field: bytes) -> bytes:
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field)


def foreign_file(fd: int, directory: str | os.PathLike[str]) -> str | None:
    """Why the file open as ``fd`` (named in ``directory``) may be someone else's file, or
    None when it is a plain file of that directory alone. A hard link or a file
    bind-mounted at one of the store's names is a regular file too, yet writing it
    writes a file outside the store."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_nlink != 1:
        return f"has {st.st_nlink} hard links (another file's name)"
    parent = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        same_mount = (
            os.fstat(parent).st_dev == st.st_dev
            and mount_identity(parent)[0] == mount_identity(fd)[0]
        )
    finally:
        os.close(parent)
    return None if same_mount else "is a file mounted from elsewhere"


def mounts_below(path: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below ``path`` (by ``/proc/self/mountinfo``), sorted.

    One read of ``mountinfo`` each time: cheap enough to ask before every removal batch.
    (Not cached: ``poll`` on the file reports mounts and unmounts, but not the rename of
    a directory above a mount point, which moves the mount: a prune does exactly that
    when it renames a layer to its trash name.) Returns an empty list where ``/proc`` is
    not available.
    """
    target = os.fsencode(os.path.realpath(path))
    prefix = target.rstrip(b"/") + b"/"
    found: list[str] = []
    try:
        with open("/proc/self/mountinfo", "rb") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split(b" ", 5)
        if len(fields) < 5:
            continue
        point = _unescape_mountinfo(fields[4])
        if point == target or point.startswith(prefix):
            found.append(os.fsdecode(point))
    return sorted(set(found))


def _error(action: str, path: str, err: OSError) -> SnapshotError:
    reason = os.strerror(err.errno) if err.errno else str(err)
    return SnapshotError(f"cannot {action} {path}: {reason}", path=path)


def _make_writable(fd: int) -> None:
    """``chmod u+rwx`` the directory open as ``fd`` if we own it."""
    st = os.fstat(fd)
    if st.st_uid == os.geteuid() or os.geteuid() == 0:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)


def _make_child_writable(parent_fd: int, name: str) -> bool:
    """``chmod u+rwx`` the directory ``name`` in ``parent_fd`` without following links.

    Goes through an ``O_PATH`` fd and ``/proc/self/fd`` so a swap to a symlink between the
    check and the chmod cannot redirect it. Returns False when it did nothing.
    """
    try:
        fd = os.open(name, PATH_FLAGS, dir_fd=parent_fd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            return False
        if st.st_uid != os.geteuid() and os.geteuid() != 0:
            return False
        os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(st.st_mode) | stat.S_IRWXU)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


class _Gone(Exception):
    """A directory on the remover's path has been removed (by someone else)."""

    def __init__(self, node: Node) -> None:
        super().__init__(node.name)
        self.node = node


class _Remover:
    """Post-order removal of one tree below an open top directory."""

    def __init__(self, top: Node, dev: int, mount: int | None) -> None:
        self.dev = dev
        self.mount = mount
        self.fds = FdPath(top)
        self.top = top
        self.top_gone = False

    def _fd(self, node: Node) -> int:
        try:
            return self.fds.fd(node)
        except FileNotFoundError:
            raise _Gone(node) from None
        except OSError as err:
            raise _error("reopen directory", node.path(), err) from err

    def _unlink(self, node: Node, fd: int, name: str, pending: list[str]) -> None:
        for attempt in (0, 1):
            try:
                os.unlink(name, dir_fd=fd)
                return
            except FileNotFoundError:
                return
            except IsADirectoryError:  # replaced by a directory since the listing
                pending.append(name)
                return
            except PermissionError as err:
                if attempt or node.chmodded:
                    raise _error("remove", node.child_path(name), err) from err
                node.chmodded = True
                try:
                    _make_writable(fd)
                except OSError:
                    raise _error("remove", node.child_path(name), err) from err
            except OSError as err:
                raise _error("remove", node.child_path(name), err) from err

    def _scan(self, node: Node) -> None:
        fd = self._fd(node)
        pending: list[str] = []
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    try:
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        is_dir = False  # let unlink decide (EISDIR puts it back)
                    if is_dir:
                        pending.append(entry.name)
                    else:
                        self._unlink(node, fd, entry.name, pending)
        except FileNotFoundError:
            raise _Gone(node) from None
        except OSError as err:
            raise _error("list", node.path(), err) from err
        node.pending = pending

    def _open_child(self, node: Node, parent_fd: int, name: str) -> Node | None:
        for attempt in (0, 1):
            try:
                fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
                break
            except FileNotFoundError:
                return None
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    # Replaced by a symlink or a file since the listing: unlink, never follow.
                    assert node.pending is not None
                    self._unlink(node, parent_fd, name, node.pending)
                    return None
                if (
                    err.errno in (errno.EACCES, errno.EPERM)
                    and not attempt
                    and _make_child_writable(parent_fd, name)
                ):
                    continue
                raise _error("open directory", node.child_path(name), err) from err
        else:  # pragma: no cover - the loop always breaks, returns or raises
            return None
        try:
            st = os.fstat(fd)
        except OSError as err:
            os.close(fd)
            raise _error("inspect", node.child_path(name), err) from err
        if st.st_dev != self.dev:
            os.close(fd)
            path = node.child_path(name)
            raise SnapshotError(
                f"refusing to remove {path}: it is on another filesystem (a mount point)",
                path=path,
            )
        if self.mount is not None and mount_identity(fd)[0] != self.mount:
            # A bind mount of a directory on the same filesystem: same st_dev, and
            # everything below it belongs to someone else.
            os.close(fd)
            path = node.child_path(name)
            raise SnapshotError(
                f"refusing to remove {path}: a directory is mounted there (a mount point)",
                path=path,
            )
        child = Node(node, name, fd, (st.st_dev, st.st_ino))
        self.fds.adopt(child)
        return child

    def _rmdir(self, node: Node) -> bool:
        """Remove ``node`` from its parent; False when it must be rescanned."""
        parent = node.parent
        assert parent is not None
        for attempt in (0, 1):
            parent_fd = self._fd(parent)
            try:
                os.rmdir(node.name, dir_fd=parent_fd)
                return True
            except FileNotFoundError:
                return True
            except OSError as err:
                if err.errno in (errno.ENOTEMPTY, errno.EEXIST) and node.rescans < _MAX_RESCANS:
                    node.rescans += 1
                    return False
                if err.errno in (errno.EACCES, errno.EPERM) and not attempt:
                    try:
                        _make_writable(parent_fd)
                        continue
                    except OSError:
                        pass
                raise _error("remove directory", node.path(), err) from err
        return True  # pragma: no cover

    def run(self) -> None:
        """Empty the top directory (the caller removes the top itself)."""
        stack = self.fds.stack
        try:
            while stack:
                node = stack[-1]
                try:
                    if node.pending is None:
                        self._scan(node)
                    assert node.pending is not None
                    if node.pending:
                        name = node.pending.pop()
                        child = self._open_child(node, self._fd(node), name)
                        if child is not None:
                            self.fds.push(child)
                        continue
                    if node is self.top:
                        return
                    self.fds.close(node)
                    if self._rmdir(node):
                        stack.pop()
                    else:
                        node.pending = None  # new entries appeared: list it again
                except _Gone as gone:
                    if gone.node is self.top:
                        self.top_gone = True
                    while stack:
                        popped = stack.pop()
                        self.fds.close(popped)
                        if popped is gone.node:
                            break
        finally:
            self.fds.close_all()


def _unlink_path(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise _error("remove", path, err) from err


def _differs_from_parent(fd: int, dev: int, mount: int | None) -> bool:
    """Whether the directory open as ``fd`` is the root of a mount, told by comparing it
    with its parent (``..`` from a mount's root is the directory it is mounted on, in
    the mount below). Kernels older than 5.8 do not report ``STATX_ATTR_MOUNT_ROOT``,
    but a different device or mount id than the parent's says the same on any kernel.
    """
    try:
        parent = os.open("..", DIR_FLAGS, dir_fd=fd)
    except OSError:
        return False  # the root directory, or unreadable: the walk still checks below
    try:
        if os.fstat(parent).st_dev != dev:
            return True
        return mount is not None and mount_identity(parent)[0] != mount
    finally:
        os.close(parent)


def remove_tree(path: str | os.PathLike[str] | os.PathLike[bytes] | bytes) -> None:
    """Remove the directory tree at ``path`` without following symlinks or crossing mounts.

    - ``path`` missing: nothing to do. ``path`` a symlink (or any non-directory): only
      that entry is unlinked; a link's target is never touched.
    - A directory on another filesystem anywhere below ``path`` is refused with
      :class:`SnapshotError` naming it; what has not been removed yet stays in place.
      ``path`` itself being a mount point (its device or mount id differs from its
      parent's) is refused before anything is removed, on any kernel.
    - ``EACCES``/``EPERM`` on a directory we own: ``chmod u+rwx`` and retry once.
    - Entries removed concurrently (another remover on the same tree) are ignored.

    :raises SnapshotError: for any other failure, with the path and the errno text,
        chained from the ``OSError``.
    """
    top_path = os.fsdecode(path)
    for _attempt in range(3):
        try:
            st = os.lstat(top_path)
        except FileNotFoundError:
            return
        except OSError as err:
            raise _error("inspect", top_path, err) from err
        if not stat.S_ISDIR(st.st_mode):
            _unlink_path(top_path)
            return
        try:
            fd = os.open(top_path, DIR_FLAGS)
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                continue  # swapped for a symlink or file since the lstat: look again
            raise _error("open directory", top_path, err) from err
        try:
            fst = os.fstat(fd)
            if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                continue  # swapped since the lstat: look again
            mount, is_mount_root = mount_identity(fd)
            if is_mount_root or _differs_from_parent(fd, fst.st_dev, mount):
                raise SnapshotError(
                    f"refusing to remove {top_path}: it is a mount point", path=top_path
                )
            top = Node(None, top_path, fd, (st.st_dev, st.st_ino))
            while True:
                remover = _Remover(top, st.st_dev, mount)
                remover.run()
                if remover.top_gone:
                    return  # the top itself was removed by someone else
                try:
                    os.rmdir(top_path)
                    return
                except FileNotFoundError:
                    return
                except OSError as err:
                    if err.errno in (errno.ENOTEMPTY, errno.EEXIST) and (
                        top.rescans < _MAX_RESCANS
                    ):
                        top.rescans += 1
                        top.pending = None
                        continue
                    raise _error("remove directory", top_path, err) from err
        except OSError as err:
            raise _error("remove", top_path, err) from err
        finally:
            os.close(fd)
    raise SnapshotError(f"cannot remove {top_path}: it keeps being replaced", path=top_path)


def remove_trees(
    paths: Iterable[str | os.PathLike[str]], *, threads: int = 4
) -> list[tuple[str | os.PathLike[str], SnapshotError]]:
    """Remove many trees with :func:`remove_tree` from a pool of ``threads`` threads.

    Returns the failures as ``(path, error)`` pairs, in the order of ``paths``, instead of
    raising; every other tree is removed.
    """
    items = list(paths)

    def attempt(p: str | os.PathLike[str]) -> SnapshotError | None:
        try:
            remove_tree(p)
        except SnapshotError as err:
            return err
        return None

    if threads <= 1 or len(items) <= 1:
        results = [attempt(p) for p in items]
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="remove") as pool:
            results = list(pool.map(attempt, items))
    return [(p, err) for p, err in zip(items, results, strict=True) if err is not None]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """``fsync`` the directory ``path`` so renames and creations in it are durable.

    :raises SnapshotError: when it cannot be opened or flushed.
    """
    p = os.fsdecode(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise _error("open directory", p, err) from err
    try:
        os.fsync(fd)
    except OSError as err:
        raise _error("fsync", p, err) from err
    finally:
        os.close(fd)
