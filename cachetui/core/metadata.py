"""Labels and cache mounts: the metadata that tells records apart.

* **Labels** are ``key=value`` pairs on a record, set when it is created
  (``cm.new(..., labels={...})``) or later (``cm.set_labels``), shown by disk usage and
  selected by the filter key ``label.<key>``.
* **Cache mounts** (``exec.cachemount`` records) carry the identity of the
  ``RUN --mount=type=cache`` they back: cache id, target and sharing mode, set at
  creation. ``cm.get_cache_mount`` acquires one the way BuildKit's mount code does
  (``solver/llbsolver/mounts/mount.go``), across processes:

  - ``shared``: join a record of that cache id held in ``shared`` mode (any number of
    holders at once), else take a free one, else create one;
  - ``private``: take a free record of that cache id, else create a new one (which is
    why several records with one cache id appear);
  - ``locked``: take a free record, else **wait** (polling every 100 ms, as BuildKit)
    until one is free, or raise ``LockedError`` naming the holder once ``timeout``
    seconds have passed (``timeout=0`` refuses at once).

Each acquisition is one ``BEGIN IMMEDIATE`` write, so two processes never both take the
same free record, nor both create the first record of a ``locked`` cache id.

Both live in side tables (``record_label``, ``cache_mount``); triggers in the store copy
them to a lazy commit's immutable and drop them with their record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cachetui.core.errors import InvalidError, LockedError
from cachetui.core.ids import validate_id
from cachetui.core.operations import RecordOperations
from cachetui.core.refs import ImmutableRef, MutableRef
from cachetui.core.state import HolderRow, read_metadata
from cachetui.core.store import Store
from cachetui.core.types import CacheMount, RecordType, Sharing, check_labels

__all__ = ["POLL_SECONDS", "MetadataOperations", "write_metadata"]

#: How often a ``locked`` acquisition looks again (BuildKit polls every 100 ms).
POLL_SECONDS = 0.1


def write_metadata(
    store: Store,
    record_id: str,
    labels: Mapping[str, str | None],
    cache_mount: CacheMount | None,
) -> None:
    """Inside a write: store a new record's labels and cache-mount identity."""
    for key, value in labels.items():
        if value is not None:
            store.execute(
                "INSERT OR REPLACE INTO record_label (record, key, value) VALUES (?, ?, ?)",
                (record_id, key, value),
            )
    if cache_mount is not None:
        store.execute(
            "INSERT OR REPLACE INTO cache_mount (record, cache_id, target, sharing) "
            "VALUES (?, ?, ?, ?)",
            (record_id, cache_mount.cache_id, cache_mount.target, str(cache_mount.sharing)),
        )


def check_new_metadata(
    kind: RecordType, labels: object, cache_mount: object
) -> tuple[dict[str, str | None], CacheMount | None]:
    """Validate ``new``'s ``labels`` and ``cache_mount`` arguments before any write."""
    checked = check_labels({} if labels is None else labels)
    if cache_mount is None:
        return checked, None
    if not isinstance(cache_mount, CacheMount):
        raise InvalidError(f"invalid cache_mount {cache_mount!r}: expected a CacheMount")
    if kind is not RecordType.EXEC_CACHEMOUNT:
        raise InvalidError(
            f"a cache mount identity needs record_type='exec.cachemount', not {kind.value!r}"
        )
    return checked, cache_mount


class MetadataOperations(RecordOperations):
    """The manager's calls for labels and cache mounts (``CacheManager`` builds on it)."""

    if TYPE_CHECKING:

        def get_mutable(self, id: str) -> MutableRef: ...
        def new(
            self,
            parent: ImmutableRef | None = None,
            *,
            description: str = "",
            record_type: RecordType | str = RecordType.REGULAR,
            retain: bool = False,
            labels: Mapping[str, str] | None = None,
            cache_mount: CacheMount | None = None,
        ) -> MutableRef: ...

    # -- labels -------------------------------------------------------------------------

    def labels(self, record_id: str) -> dict[str, str]:
        """A record's labels."""
        self._check_usable()
        validate_id(record_id)
        with self._lock, self.store.read():
            self._live_row(record_id)
            found, _ = read_metadata(self.store, (record_id,))
        return dict(found.get(record_id, ()))

    def set_labels(
        self, record_id: str, labels: Mapping[str, str | None], *, replace: bool = False
    ) -> dict[str, str]:
        """Add or change labels on a record (and its pair half); a None value removes
        that label; ``replace`` drops every label not given. Returns the labels now.

        Setting labels never counts as a use and needs no handle.
        """
        self._check_usable()
        validate_id(record_id)
        changes = check_labels(labels, removals=True)
        with self._lock, self.store.write():
            row = self._live_row(record_id)
            ids = [record_id]
            pending = self._immutable_of(record_id)
            partner = row.equal_mutable or (pending.id if pending is not None else None)
            if partner is not None:
                ids.append(partner)
            for rid in ids:
                if replace:
                    self.store.execute("DELETE FROM record_label WHERE record = ?", (rid,))
                for key, value in changes.items():
                    if value is None:
                        self.store.execute(
                            "DELETE FROM record_label WHERE record = ? AND key = ?", (rid, key)
                        )
                    else:
                        self.store.execute(
                            "INSERT OR REPLACE INTO record_label (record, key, value) "
                            "VALUES (?, ?, ?)",
                            (rid, key, value),
                        )
            found, _ = read_metadata(self.store, (record_id,))
        return dict(found.get(record_id, ()))

    # -- cache mounts -------------------------------------------------------------------

    def get_cache_mount(
        self,
        cache_id: str,
        *,
        target: str = "",
        sharing: Sharing | str = Sharing.SHARED,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> MutableRef:
        """A handle on the cache mount ``cache_id``, acquired as BuildKit does for
        ``--mount=type=cache,id=<cache_id>,sharing=<sharing>`` (see the module text).

        A record created here is a retained ``exec.cachemount`` record with this
        identity. ``timeout`` bounds the wait of a ``locked`` acquisition (None waits
        until the holder lets go; 0 refuses at once).

        Raises:
            LockedError: ``locked`` and still held by another holder after ``timeout``.
        """
        self._check_usable()
        identity = CacheMount(cache_id, target, sharing)
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0
        ):
            raise InvalidError(f"invalid timeout {timeout!r}: expected seconds >= 0 or None")
        if not isinstance(description, str):
            raise InvalidError(f"invalid description {description!r}: expected a string")
        check_labels({} if labels is None else labels)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ref, holder = self._try_cache_mount(identity, description, labels)
            if ref is not None:
                return ref
            if deadline is not None and time.monotonic() >= deadline:
                assert holder is not None
                raise LockedError(
                    holder.record,
                    f"cache mount {identity.cache_id!r} ({holder.record}) is locked: held by "
                    f"pid {holder.pid} on {holder.host}; wait for it (a longer timeout) or "
                    "use sharing=private to get a record of its own",
                )
            time.sleep(POLL_SECONDS)

    def _try_cache_mount(
        self, identity: CacheMount, description: str, labels: Mapping[str, str] | None
    ) -> tuple[MutableRef | None, HolderRow | None]:
        """One attempt, in one write: the handle, or (None, a holder to wait for)."""
        request = Sharing.parse(identity.sharing)
        with self._lock, self.store.write():
            candidates = self.store.rows(
                "SELECT r.id, c.sharing FROM cache_mount c JOIN record r ON r.id = c.record "
                "WHERE c.cache_id = ? AND r.mutable = 1 AND r.deleted = 0 "
                "ORDER BY r.created_at, r.id",
                (identity.cache_id,),
            )
            blocking: HolderRow | None = None
            for record_id, mode in candidates:
                partner = self._immutable_of(record_id)
                held = self._live_holders(record_id)
                if partner is not None:
                    held += self._live_holders(partner.id)
                if not held:
                    # Free: take it exclusively (get_mutable drops a free pending commit).
                    return self.get_mutable(record_id), None
                if request is Sharing.SHARED and mode == Sharing.SHARED and partner is None:
                    row = self._live_row(record_id)
                    holder_id = self._add_holder(record_id, counts_use=True)
                    return self._make_ref(MutableRef, row, holder_id), None  # type: ignore[return-value]
                blocking = blocking or held[0]
            if request is Sharing.LOCKED and blocking is not None:
                return None, blocking
            ref = self.new(
                description=description or f"cached mount {identity.target or identity.cache_id}",
                record_type=RecordType.EXEC_CACHEMOUNT,
                retain=True,
                labels=labels,
                cache_mount=identity,
            )
            return ref, None
