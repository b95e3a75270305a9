"""Deleting retired layers in the background of a prune, then their tombstoned rows.

Deletion is bound by the disk, selection and tombstoning by SQLite. The purger lets them
overlap: a batch's ``rm-*`` trees are removed on worker threads (the syscalls release the
GIL) while prune verifies and tombstones the next batch. A batch is reported only once
its trees are gone and its rows deleted, in the order the batches were submitted, so
``on_prune`` never announces bytes that were not freed.

A tree that cannot be removed leaves its record tombstoned (finished at the next open or
by ``doctor --fix``); the first such error is raised once the prune has drained.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from cachetui.core import fsops
from cachetui.core.crashpoints import crash_point
from cachetui.core.errors import SnapshotError
from cachetui.core.recordstore import RecordStore
from cachetui.core.snapshots import DirectorySnapshotter

__all__ = ["Purger"]

Item = TypeVar("Item")
THREADS = 8


@dataclass(slots=True)
class _Batch(Generic[Item]):
    items: Sequence[Item]
    retired: Sequence[tuple[str, Path | None]]
    futures: list[tuple[Path, Future[None]]]


class Purger(Generic[Item]):
    """Removes submitted batches on a thread pool; ``drain`` yields them, oldest first."""

    def __init__(
        self, snapshots: DirectorySnapshotter, records: RecordStore, *, threads: int = THREADS
    ) -> None:
        self._snapshots = snapshots
        self._records = records
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[_Batch[Item]] = deque()
        self.error: SnapshotError | None = None
        #: ``(record id, reason, mount point)`` of each tree the remover stopped at
        #: because a filesystem was mounted in it while it worked (after prune looked):
        #: a refusal like prune's own, not an error; the record stays marked removed
        #: (its layer partly emptied) until the operator unmounts it.
        self.refused: list[tuple[str, str, str]] = []

    def submit(self, items: Sequence[Item], retired: Sequence[tuple[str, Path | None]]) -> None:
        """Start deleting a committed batch's retired trees."""
        paths = [path for _, path in retired if path is not None]
        futures: list[tuple[Path, Future[None]]] = []
        if paths:
            self._snapshots.check_root()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="purge")
            futures = [(path, self._pool.submit(fsops.remove_tree, path)) for path in paths]
        self._pending.append(_Batch(items, retired, futures))

    def drain_items(self, keep: int = 0) -> list[Item]:
        """Finish the oldest batches until at most ``keep`` remain; returns their items
        (all of them: a caller that stops half way loses nothing)."""
        return list(self.drain(keep))

    def drain(self, keep: int = 0) -> Iterator[Item]:
        """Finish the oldest batches until at most ``keep`` remain; yields their items."""
        while len(self._pending) > keep:
            batch = self._pending.popleft()
            failed: set[Path] = set()
            for path, future in batch.futures:
                try:
                    future.result()
                except SnapshotError as err:
                    failed.add(path)
                    mounted = self._snapshots.mount_refusals({path.name})
                    if path.name in mounted:
                        point, reason = mounted[path.name]
                        rid = next(r for r, p in batch.retired if p == path)
                        self.refused.append((rid, reason, point))
                    else:
                        self.error = self.error or err
            done = [rid for rid, path in batch.retired if path is None or path not in failed]
            if done:
                self._records.drop_tombstoned(done)
                crash_point("prune:removed")
            failed_ids = {rid for rid, path in batch.retired if path in failed}
            yield from (item for item in batch.items if _item_id(item) not in failed_ids)

    def close(self) -> None:
        """Stop the workers. Call after draining; batches still pending (the prune failed
        on the way) finish their trees and rows, unreported."""
        for _ in self.drain():
            pass
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _item_id(item: object) -> str:
    return str(getattr(item, "id", item))
