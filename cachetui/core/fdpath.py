"""Walking a directory tree through directory file descriptors, with a bounded fd count.

This module owns the path of open directories that the core's two tree walkers (the
safe remover in :mod:`cachetui.core.fsops` and the measurer in
:mod:`cachetui.core.usage`) share: each step is opened with ``openat`` and
``O_NOFOLLOW | O_DIRECTORY`` relative to its parent, at most ``FD_CAP`` directories are
held open at once, and a directory closed to stay under the cap is reopened by name and
checked by ``(st_dev, st_ino)`` so a swap during the walk is noticed, never followed.
"""

from __future__ import annotations

import errno
import os

__all__ = ["DIR_FLAGS", "FD_CAP", "PATH_FLAGS", "FdPath", "Node", "PathChanged"]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
PATH_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
#: At most this many directory fds are held open by one walk; deeper ancestors are
#: closed and reopened by name (and checked by ``(st_dev, st_ino)``) when needed again.
FD_CAP = 128


class PathChanged(OSError):
    """A directory on the walk's path was replaced by another one while we walked."""


class Node:
    """One directory on a walk's path: its name in its parent and, maybe, an open fd."""

    __slots__ = ("chmodded", "fd", "ident", "keep", "name", "parent", "pending", "rescans")

    def __init__(
        self, parent: Node | None, name: str, fd: int | None, ident: tuple[int, int] | None
    ) -> None:
        self.parent = parent
        self.name = name
        self.fd = fd
        self.ident = ident
        self.pending: list[str] | None = None
        self.keep = False  # the fd belongs to the caller: never close or evict it
        self.chmodded = False
        self.rescans = 0

    def path(self) -> str:
        """The full path, for messages only (the walk itself never uses paths)."""
        parts: list[str] = []
        node: Node | None = self
        while node is not None:
            parts.append(node.name)
            node = node.parent
        return "/".join(reversed(parts))

    def child_path(self, name: str) -> str:
        return f"{self.path()}/{name}"


class FdPath:
    """The path of directories from a walk's base down to the current one.

    ``stack[0]`` is the base, whose fd is kept open by the caller. At most ``cap`` fds
    are open: when there are more, the shallowest are closed, and :meth:`fd` reopens a
    closed directory from its nearest open ancestor, checking each step's identity.
    """

    __slots__ = ("cap", "nopen", "stack")

    def __init__(self, base: Node, cap: int = FD_CAP) -> None:
        base.keep = True
        self.stack: list[Node] = [base]
        self.cap = cap
        self.nopen = 0

    def adopt(self, node: Node) -> None:
        """Count ``node``'s freshly opened fd."""
        self.nopen += 1

    def push(self, node: Node) -> None:
        self.stack.append(node)
        if self.nopen > self.cap:
            self._evict()

    def close(self, node: Node) -> None:
        if node.fd is not None and not node.keep:
            fd, node.fd = node.fd, None
            self.nopen -= 1
            os.close(fd)

    def close_all(self) -> None:
        for node in self.stack:
            self.close(node)
        self.stack.clear()

    def _evict(self) -> None:
        target = self.cap // 2
        for node in self.stack[1:-1]:
            if self.nopen <= target:
                break
            self.close(node)

    def fd(self, node: Node) -> int:
        """An open fd for ``node``, reopening it (and closed ancestors) if needed.

        Raises ``FileNotFoundError`` when a directory on the way has gone and
        :class:`PathChanged` when one was replaced by a different directory.
        """
        if node.fd is not None:
            return node.fd
        chain: list[Node] = []
        current: Node | None = node
        while current is not None and current.fd is None:
            chain.append(current)
            current = current.parent
        if current is None:  # pragma: no cover - the base is always open
            raise PathChanged(errno.ESTALE, "no open ancestor", node.path())
        parent_fd = current.fd
        assert parent_fd is not None
        for step in reversed(chain):
            new_fd = os.open(step.name, DIR_FLAGS, dir_fd=parent_fd)
            st = os.fstat(new_fd)
            if (st.st_dev, st.st_ino) != step.ident:
                os.close(new_fd)
                raise PathChanged(errno.ESTALE, "directory replaced during the walk", step.path())
            step.fd = new_fd
            self.nopen += 1
            parent_fd = new_fd
        if self.nopen > self.cap:
            self._evict()
        assert node.fd is not None
        return node.fd
