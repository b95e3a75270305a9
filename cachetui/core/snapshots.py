"""The layered directory snapshotter: ``root/snapshots/<id>/``, one directory per layer.

A layer holds only what was written into it; its parents are separate directories, so
sizes add up without double counting (as overlayfs). Directory names are validated ids,
never caller text. Staging names keep every step atomic:

* prepare: ``mkdir new-<random>``, then ``rename`` to ``<id>`` inside the metadata
  transaction that inserts the row;
* finalize: ``rename <mutable id> -> <immutable id>`` inside the transaction that drops the
  mutable row (a crash in between is the "half-finalized pair" that reconcile repairs);
* remove: ``rename <id> -> rm-<id>`` inside the transaction that writes the tombstone,
  then the safe remover deletes ``rm-<id>`` after the commit.

Removal never follows a symlink or crosses into another filesystem (``fsops.remove_tree``).
The store's own directories (``snapshots/``, ``lost+found/``) must be real directories:
a symbolic link in their place is refused at open, so no staging, trash or repair step
ever works inside a link's target. ``doctor --fix`` never deletes a directory that no row
names: it moves it to ``<root>/lost+found/`` (``move_to_lost_found``), through directory
file descriptors opened without following links.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from collections.abc import Iterable
from operator import attrgetter, methodcaller
from pathlib import Path

from cachetui.core import fsops, usage
from cachetui.core.errors import SnapshotError, StoreError
from cachetui.core.ids import ID_PATTERN, validate_id

__all__ = [
    "LOST_FOUND",
    "STAGING_PREFIX",
    "TRASH_PREFIX",
    "DirectorySnapshotter",
    "check_own_directories",
    "mount_refusal",
]

STAGING_PREFIX = "new-"
TRASH_PREFIX = "rm-"
#: Where ``doctor --fix`` moves directories that no record names (under the store root).
LOST_FOUND = "lost+found"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def mount_refusal(layer: str, point: str) -> str:
    """Why a layer with a filesystem mounted in it is never removed, in the words every
    refusal of it uses (prune, a chain's plan, doctor): removing it would delete the
    mounted files, which live outside the store."""
    if os.path.realpath(layer) == os.path.realpath(point):
        return f"its layer {point} is itself a mount point (unmount it first)"
    return f"{point} is mounted inside its layer (unmount it first)"


def check_own_directories(root: Path) -> None:
    """Refuse a store whose ``snapshots/`` or ``lost+found/`` is not a real directory.

    A symbolic link there would make staging, trash and repair work in the link's target,
    somewhere the store does not own; refusing is simpler to trust than following.
    """
    for name in ("snapshots", LOST_FOUND):
        path = root / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise StoreError(f"cannot inspect {path}: {os.strerror(err.errno or 0)}") from err
        if stat.S_ISLNK(st.st_mode):
            raise StoreError(
                f"{path} is a symbolic link (to {os.readlink(path)!r}): cachetui never "
                "follows links for its own directories; replace it with the real "
                "directory, or point --root at the real store"
            )
        if not stat.S_ISDIR(st.st_mode):
            raise StoreError(f"{path} is not a directory: the store cannot use it")


def check_own_files(db_path: Path) -> None:
    """Refuse a store whose ``metadata.db`` or SQLite's ``-wal``/``-shm`` beside it is a
    hard link or a file mounted from elsewhere: SQLite writes them (even a look writes
    its WAL index), and would write a file outside the store through either."""
    for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        try:
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as err:
            if err.errno == errno.ELOOP:
                continue  # a symlink: SQLite refuses it with its own words
            raise StoreError(f"cannot inspect {path}: {os.strerror(err.errno or 0)}") from err
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                continue
            problem = fsops.foreign_file(fd, path.parent)
        finally:
            os.close(fd)
        if problem is not None:
            raise StoreError(
                f"{path} {problem}: cachetui will not write through it "
                "(give the store its own copy of the file)"
            )


def _os_error(action: str, path: Path | str, err: OSError) -> SnapshotError:
    reason = os.strerror(err.errno) if err.errno else str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "disk full (no space left on device)"
    return SnapshotError(f"cannot {action} {path}: {reason}", path=str(path))


def list_entries(directory: Path) -> tuple[set[str], set[str]]:
    """Every name directly under ``directory``, and the real directories among them, in
    one directory read. Only a real directory holds a layer's bytes: a layer replaced by
    a symlink (opening it is refused) must count as missing, never as a healthy layer.
    Raises ``OSError`` as ``os.scandir`` does."""
    with os.scandir(directory) as listing:
        entries = list(listing)
    names = set(map(_NAME, entries))  # at C speed: 100,000 layers are read at every open
    if all(map(_REAL_DIR, entries)):  # the usual case: nothing but layer directories
        return names, names.copy()
    dirs = {entry.name for entry in entries if entry.is_dir(follow_symlinks=False)}
    return names, dirs


_NAME = attrgetter("name")
_REAL_DIR = methodcaller("is_dir", follow_symlinks=False)


def real_directories(directory: Path) -> set[str]:
    """``list_entries``'s real directories alone (one set, not two: 100,000 layers)."""
    with os.scandir(directory) as listing:
        entries = list(listing)
    if all(map(_REAL_DIR, entries)):  # the usual case, at C speed
        return set(map(_NAME, entries))
    return {entry.name for entry in entries if entry.is_dir(follow_symlinks=False)}


class DirectorySnapshotter:
    """Layer directories under ``<root>/snapshots``."""

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self.dir = root / "snapshots"
        if read_only:  # look, never create; destructive calls are refused by the store
            self._identity = self._stat_identity() if self.dir.is_dir() else (0, 0)
            return
        try:
            self.dir.mkdir(exist_ok=True)
        except OSError as err:
            raise _os_error("create", self.dir, err) from err
        self._identity = self._stat_identity()

    def _stat_identity(self) -> tuple[int, int]:
        st = os.stat(self.dir)
        return (st.st_dev, st.st_ino)

    def check_root(self) -> None:
        """Refuse destructive work if ``snapshots/`` was swapped since open: a
        symlink put there would point every removal outside the store."""
        try:
            current = self._stat_identity()
        except OSError as err:
            raise _os_error("check", self.dir, err) from err
        if current != self._identity:
            raise SnapshotError(
                f"{self.dir} changed identity since the store was opened; refusing to modify it",
                path=str(self.dir),
            )

    # -- paths --------------------------------------------------------------------------

    def path(self, snapshot_id: str) -> Path:
        """The layer directory of a record (the id is validated first)."""
        return self.dir / validate_id(snapshot_id)

    def exists(self, snapshot_id: str) -> bool:
        return os.path.isdir(self.path(snapshot_id)) and not os.path.islink(self.path(snapshot_id))

    def names(self) -> list[str]:
        """Every entry directly under ``snapshots/``."""
        try:
            return os.listdir(self.dir)
        except FileNotFoundError:
            return []

    # -- prepare ------------------------------------------------------------------------

    def stage(self) -> Path:
        """Create an empty staging directory for a new layer."""
        self.check_root()
        staged = self.dir / f"{STAGING_PREFIX}{secrets.token_hex(8)}"
        try:
            os.mkdir(staged, 0o755)
        except OSError as err:
            raise _os_error("prepare a layer in", self.dir, err) from err
        return staged

    def activate(self, staged: Path, snapshot_id: str) -> Path:
        """Give a staged directory its final name."""
        final = self.path(snapshot_id)
        try:
            os.rename(staged, final)
        except OSError as err:
            raise _os_error("activate layer", final, err) from err
        return final

    def discard(self, path: Path) -> None:
        """Remove a staging or just-renamed directory after a failed prepare."""
        fsops.remove_tree(path)

    # -- finalize -----------------------------------------------------------------------

    def rename_layer(self, from_id: str, to_id: str) -> None:
        self.check_root()  # never rename through a swapped snapshots/ directory
        source, target = self.path(from_id), self.path(to_id)
        try:
            os.rename(source, target)
        except OSError as err:
            raise _os_error(f"commit layer {from_id} as", target, err) from err

    # -- remove -------------------------------------------------------------------------

    def trash_path(self, snapshot_id: str) -> Path:
        return self.dir / f"{TRASH_PREFIX}{validate_id(snapshot_id)}"

    def retire(self, snapshot_id: str) -> Path | None:
        """Rename a layer to ``rm-<id>`` (a missing layer is fine: nothing to free)."""
        self.check_root()  # refuse before the tombstone commits, not after
        source, target = self.path(snapshot_id), self.trash_path(snapshot_id)
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return target if os.path.lexists(target) else None
        except OSError as err:
            raise _os_error("retire layer", source, err) from err
        return target

    def unretire(self, snapshot_id: str) -> None:
        """Undo ``retire`` after the metadata transaction failed."""
        try:
            os.rename(self.trash_path(snapshot_id), self.path(snapshot_id))
        except FileNotFoundError:
            return

    def purge(self, paths: list[Path]) -> list[tuple[Path, SnapshotError]]:
        """Delete retired trees; returns the ones that could not be removed."""
        if not paths:
            return []
        self.check_root()
        # mountinfo first (one read): a mounted tree is refused by name, whatever the
        # kernel tells the remover about mount roots
        mounted = self.mount_refusals({p.name for p in paths if p.parent == self.dir})
        refused = [
            (p, SnapshotError(f"refusing to remove {p}: {mounted[p.name][1]}", path=str(p)))
            for p in paths
            if p.parent == self.dir and p.name in mounted
        ]
        if refused:
            skip = {p for p, _ in refused}
            return refused + self.purge([p for p in paths if p not in skip])
        if len(paths) == 1:
            try:
                fsops.remove_tree(paths[0])
            except SnapshotError as err:
                return [(paths[0], err)]
            return []
        return [(Path(p), e) for p, e in fsops.remove_trees(paths)]

    def mount_refusals(self, snapshot_ids: set[str]) -> dict[str, tuple[str, str]]:
        """For each of these layers that has a mount point inside it (or is one): the
        first such point and the reason it is not removed (``mount_refusal``)."""
        return {
            layer: (points[0], mount_refusal(str(self.dir / layer), points[0]))
            for layer, points in self.mounts_in(snapshot_ids).items()
        }

    def mounts_in(self, snapshot_ids: set[str]) -> dict[str, list[str]]:
        """The mount points inside each of these layers (only layers that have one).

        Removing such a layer would delete another filesystem's files, or those of a
        bind-mounted directory outside the store, so callers refuse it up front.
        """
        points = fsops.mounts_below(self.dir)
        if not points:
            return {}
        base = os.path.realpath(self.dir)
        found: dict[str, list[str]] = {}
        for point in points:
            first = os.path.relpath(point, base).split(os.sep, 1)[0]
            if first in snapshot_ids:
                found.setdefault(first, []).append(point)
        return found

    def leftovers(self) -> list[str]:
        """Staging and trash names (``new-*``, ``rm-*``) currently on disk."""
        return [name for name in self.names() if name.startswith((STAGING_PREFIX, TRASH_PREFIX))]

    def unknown(self, known: set[str], names: Iterable[str] | None = None) -> list[str]:
        """Entries that are neither a known layer nor a staging name (``lost+found``, an
        ext4 disk's own directory when ``snapshots/`` is a mount point, is not one)."""
        return [
            name
            for name in (self.names() if names is None else names)
            if name not in known
            and name != LOST_FOUND
            and not name.startswith(STAGING_PREFIX)
            and not name.startswith(TRASH_PREFIX)
        ]

    @staticmethod
    def locate(candidates: Iterable[str], names: set[str]) -> str | None:
        """The first directory name that holds a record's bytes, among ``candidates``
        (its layer, then where a crashed finalize or removal left them), or None."""
        ordered = list(candidates)
        for name in ordered:
            if name in names:
                return name
        for name in ordered:
            if f"{TRASH_PREFIX}{name}" in names:
                return f"{TRASH_PREFIX}{name}"
        return None

    def move_to_lost_found(self, name: str, *, older_than: float) -> Path | None:
        """Move ``snapshots/<name>`` to ``<root>/lost+found/`` (never deletes a byte).

        Works through directory fds opened with ``O_NOFOLLOW``, so neither directory is
        followed if it became a link. Returns the new path, or None when the entry is
        gone or changed at or after ``older_than`` (someone is using it right now).
        Raises ``SnapshotError`` when it cannot be moved (another filesystem, ...).
        """
        self.check_root()
        lost = self.dir.parent / LOST_FOUND
        try:
            os.mkdir(lost, 0o700)
        except FileExistsError:
            pass
        except OSError as err:
            raise _os_error("create", lost, err) from err
        src_fd = os.open(self.dir, _DIR_FLAGS)
        try:
            try:
                dst_fd = os.open(lost, _DIR_FLAGS)
            except OSError as err:
                raise _os_error("open", lost, err) from err
            try:
                try:
                    st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
                except FileNotFoundError:
                    return None
                if max(st.st_ctime, st.st_mtime) >= older_than:
                    return None
                target = name
                while True:
                    try:
                        os.stat(target, dir_fd=dst_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        break
                    target = f"{name}.{time.time_ns()}"
                try:
                    os.rename(name, target, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
                except OSError as err:
                    raise _os_error(f"move {name} to", lost, err) from err
                return lost / target
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)

    @staticmethod
    def looks_like_layer(name: str) -> bool:
        return ID_PATTERN.fullmatch(name) is not None

    # -- measure ------------------------------------------------------------------------

    def measure(self, snapshot_id: str) -> usage.Measurement:
        """Allocated bytes of one layer, as ``du -s --block-size=1`` (never follows links)."""
        return usage.measure(self.path(snapshot_id))

    def measure_name(self, name: str) -> usage.Measurement:
        """``measure`` for a name found under ``snapshots/`` (a layer or its ``rm-*``)."""
        if "/" in name or name in ("", ".", ".."):
            raise SnapshotError(f"invalid layer directory name {name!r}", path=name)
        return usage.measure(self.dir / name)
