"""One open store as the core's operations see it: its rows, its layers, its clock.

``StoreContext`` is the narrow object handed to disk usage, prune, GC, reconcile and the
handle operations instead of the whole manager. It owns the steps that change rows and
layer directories together, so each is written once:

* ``tombstone``: inside a write, mark records removed and rename their layers to
  ``rm-*``, moving them back if the transaction then fails (a failed COMMIT must never
  leave a live record without its layer);
* ``purge``: after the tombstones committed, delete the trees, then the rows;
* ``locate``/``heal``/``require_layers``: find where a record's bytes are, and finish or
  undo what a process that died mid-finalize or mid-removal left on them.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cachetui.core.errors import NotFoundError, StoreError
from cachetui.core.ids import new_id, validate_id
from cachetui.core.recordstore import RecordRow, RecordStore
from cachetui.core.snapshots import TRASH_PREFIX, DirectorySnapshotter
from cachetui.core.state import StoreState, UsagePicture, load_state, load_usage_picture
from cachetui.core.store import Store, data_version
from cachetui.core.timestamps import checked_clock_value

__all__ = ["Clock", "Retired", "StoreContext"]


@dataclass(frozen=True, slots=True)
class _HandedOn:
    """The open's picture, and how to tell that nothing changed since."""

    state: StoreState
    layer_dirs: set[str]
    conn: sqlite3.Connection
    version: int  # PRAGMA data_version then
    changes: int  # the connection's total_changes then


Clock = Callable[[], float]
#: A tombstoned record and where its layer went (None: it had no directory of its own).
Retired = tuple[str, Path | None]


class StoreContext:
    """The rows (``records``), the layers (``snapshots``) and the clock of one store."""

    def __init__(
        self,
        root: Path,
        store: Store,
        snapshots: DirectorySnapshotter,
        *,
        clock: Clock,
        is_shared: Callable[[str], bool] | None,
        id_factory: Callable[[], str] | None = None,
    ) -> None:
        self.root = root
        self.store = store
        self.records = RecordStore(store)
        self.snapshots = snapshots
        self.clock = clock
        self.is_shared = is_shared
        self._id_factory = id_factory
        self._handed: _HandedOn | None = None

    @property
    def read_only(self) -> bool:
        """Opened read-only, or opened for a look (``repair=False``), or degraded because
        the database failed its integrity check."""
        return self.store.read_only or bool(self.store.damaged)

    def now(self) -> float:
        """The clock's time, checked: a bad reading raises ``InvalidError``, never a
        timestamp stored that no later read could turn into a date."""
        return checked_clock_value(self.clock())

    def new_id(self) -> str:
        """A fresh record id: from ``id_factory`` when one was injected (deterministic
        tests and screenshots), validated like any id from outside."""
        factory = self._id_factory or new_id
        return validate_id(factory(), what="generated record id")

    def state(self, *, include_deleted: bool = False) -> StoreState:
        """A consistent picture of every record and holder."""
        self._handed = None  # a picture handed on is for the first reader only
        return load_state(self.records, include_deleted=include_deleted)

    def usage_picture(self) -> UsagePicture:
        """Every live record as disk usage reads it, in one consistent read."""
        return load_usage_picture(self.records)

    # -- the open's picture, handed on to the first reader --------------------------------

    def hand_on(self, state: StoreState, layer_dirs: set[str]) -> None:
        """Inside the open's write: keep the picture it checked (every row live) and its
        listing of ``snapshots/`` for the first reader (``picture``), which would
        otherwise read the same rows again (100,000 rows: a few tenths of a second)."""
        conn = self.store.db.connection()
        self._handed = _HandedOn(state, layer_dirs, conn, data_version(conn), conn.total_changes)

    def drop_handed_on(self) -> None:
        self._handed = None

    def picture(self) -> tuple[StoreState, set[str] | None]:
        """A consistent picture of every live record and holder, with the real
        directories under ``snapshots/`` when they come with it (else None: the caller
        lists them). The open's picture is taken when it is still exactly what a read
        now would give: no commit since, by anyone (``PRAGMA data_version`` for other
        connections, ``total_changes`` for this one), and the same holders, alive. The
        rows come in the table's order (a screen orders what it shows itself)."""
        handed, self._handed = self._handed, None
        if handed is not None and self._still_current(handed):
            return handed.state, handed.layer_dirs
        return load_state(self.records, ordered=False), None

    def _still_current(self, handed: _HandedOn) -> bool:
        conn = self.store.db.connection()
        if conn is not handed.conn or conn.total_changes != handed.changes:
            return False  # another thread's connection, or a change of ours
        with self.records.read():
            if data_version(conn) != handed.version:
                return False
            holders = self.records.all_holders()
        return holders == handed.state.holders  # liveness is checked again

    def store_sizes(
        self, sizes: Mapping[str, int], apparent: Mapping[str, int] | None = None
    ) -> None:
        """Cache measured sizes, and their apparent sizes when given (never a use, never
        waiting for the write lock: a read must not block behind another's write)."""
        if not sizes or self.read_only:
            return
        try:
            with self.records.write(wait=False):
                self.records.store_sizes(sizes, apparent or {})
        except StoreError:
            pass  # only a cache: a full disk or a busy store must not fail a read

    # -- where the bytes are: crash shapes of other processes ----------------------------

    def locate(self, row: RecordRow) -> str | None:
        """The name under ``snapshots/`` holding ``row``'s bytes, inside a transaction.

        Normally its layer (a pending commit's is the mutable's). Another process that
        died mid-finalize leaves them under the immutable's name; one that died inside a
        removal's transaction leaves them as ``rm-<id>`` while the row is live. None when
        they are nowhere: the record is "missing".
        """
        candidates = [row.layer_id]
        if row.equal_mutable is not None:
            candidates.append(row.id)
        elif row.mutable:
            partner = self.records.immutable_of(row.id)
            if partner is not None:
                candidates.append(partner.id)
        directory = self.snapshots.dir
        for name in (*candidates, *(f"{TRASH_PREFIX}{c}" for c in candidates)):
            path = directory / name
            if os.path.isdir(path) and not os.path.islink(path):
                return name
        return None

    def heal(self, row: RecordRow) -> RecordRow | None:
        """Inside a write: finish or undo what a dead process left on ``row``'s layer.

        Holding the write lock means no other process is inside a finalize or a removal
        transaction, so these shapes can only be a crash's: a half-finalized pair is
        finished (the mutable row goes: returns the immutable), a removal that never
        committed is rolled back (its layer gets its name again). Returns the row as it
        is now (None if it went).
        """
        name = self.locate(row)
        if name is None or name == row.layer_id:
            return row
        if name.startswith(TRASH_PREFIX):
            self.snapshots.unretire(name[len(TRASH_PREFIX) :])
            return row
        # The bytes sit under the immutable's name: finalize renamed, then died.
        immutable = row if row.equal_mutable is not None else self.records.record(name)
        if immutable is None or immutable.equal_mutable is None:
            return row
        self.records.unpair(immutable.id)
        self.records.drop_record(immutable.equal_mutable)
        return self.records.record(immutable.id)

    def require_layers(self, row: RecordRow) -> None:
        """Inside a write: NotFoundError naming the first missing layer of the chain
        (the record's own, then its ancestors'), healing crash shapes on the way."""
        current: RecordRow | None = row
        seen: set[str] = set()
        while current is not None and current.id not in seen:
            seen.add(current.id)
            healed = self.heal(current)
            if healed is None or self.locate(healed) is None:
                path = self.snapshots.dir / current.layer_id
                if current is row:
                    raise NotFoundError(f"{row.id}: its layer directory {path} is missing")
                raise NotFoundError(
                    f"{row.id}: the layer directory {path} of its ancestor {current.id} is missing"
                )
            if healed.parent is None:
                return
            current = self.records.record(healed.parent)
            if current is None or current.deleted:
                raise NotFoundError(f"{row.id}: its ancestor {healed.parent} has no record")

    # -- removal: tombstone inside the write, purge after it -----------------------------

    def tombstone(self, record_ids: Sequence[str]) -> list[Retired]:
        """Inside a write: mark records removed and move their layers to ``rm-*``.

        The renames happen inside the write; when the transaction rolls back (SQLITE_FULL
        at COMMIT, an error on a later record) the layers are moved back, so a failed
        removal never leaves a live row without its directory.
        """
        retired: list[Retired] = []
        self.records.on_rollback(lambda: self._unretire(retired))
        self.records.tombstone(record_ids)
        for record_id in record_ids:
            # A pending commit's own name is normally empty; after another process died
            # mid-finalize it holds the bytes, which go with the record as asked.
            retired.append((record_id, self.snapshots.retire(record_id)))
        return retired

    def _unretire(self, retired: Sequence[Retired]) -> None:
        for record_id, path in retired:
            if path is not None:
                self.snapshots.unretire(record_id)

    def purge(self, retired: Sequence[Retired]) -> list[str]:
        """After the tombstones committed: delete the trees, then the rows. Returns the
        records finished; raises the first tree that could not be removed."""
        paths = [path for _, path in retired if path is not None]
        failures = self.snapshots.purge(paths)
        failed_paths = {str(path) for path, _ in failures}
        done = [rid for rid, path in retired if path is None or str(path) not in failed_paths]
        self.records.drop_tombstoned(done)
        if failures:
            raise failures[0][1]
        return done
