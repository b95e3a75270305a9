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

from cachetui.core.errors import InvalidError, LockedError
from cachetui.core.ids import validate_id
from cachetui.core.operations import RecordOperations
from cachetui.core.recordstore import HolderRow
from cachetui.core.refs import MutableRef
from cachetui.core.types import CacheMount, RecordType, Sharing, check_labels

__all__ = ["POLL_SECONDS", "MetadataOperations"]

#: How often a ``locked`` acquisition looks again (BuildKit polls every 100 ms).
POLL_SECONDS = 0.1


class MetadataOperations:
    """The manager's calls for labels and cache mounts, over its record operations."""

    def __init__(self, operations: RecordOperations) -> None:
        self._ops = operations
        self.records = operations.records

    # -- labels -------------------------------------------------------------------------

    def labels(self, record_id: str) -> dict[str, str]:
        """A record's labels."""
        validate_id(record_id)
        with self.records.read():
            self.records.live_record(record_id)
            found, _ = self.records.metadata((record_id,))
        return dict(found.get(record_id, ()))

    def set_labels(
        self, record_id: str, labels: Mapping[str, str | None], *, replace: bool = False
    ) -> dict[str, str]:
        """Add or change labels on a record (and its pair half); a None value removes
        that label; ``replace`` drops every label not given. Returns the labels now.

        Setting labels never counts as a use and needs no handle.
        """
        validate_id(record_id)
        changes = check_labels(labels, removals=True)
        records = self.records
        with records.write():
            row = records.live_record(record_id)
            ids = [record_id]
            pending = records.immutable_of(record_id)
            partner = row.equal_mutable or (pending.id if pending is not None else None)
            if partner is not None:
                ids.append(partner)
            for rid in ids:
                records.change_labels(rid, changes, replace=replace)
            found, _ = records.metadata((record_id,))
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
        records = self.records
        with records.write():
            blocking: HolderRow | None = None
            for record_id, mode in records.cache_mount_records(identity.cache_id):
                partner = records.immutable_of(record_id)
                held = records.live_holders(record_id)
                if partner is not None:
                    held += records.live_holders(partner.id)
                if not held:
                    # Free: take it exclusively (this drops a free pending commit).
                    return self._ops.take_mutable(record_id), None
                if request is Sharing.SHARED and mode == Sharing.SHARED and partner is None:
                    return self._ops.share_mutable(record_id), None
                blocking = blocking or held[0]
            if request is Sharing.LOCKED and blocking is not None:
                return None, blocking
            ref = self._ops.new(
                description=description or f"cached mount {identity.target or identity.cache_id}",
                record_type=RecordType.EXEC_CACHEMOUNT,
                retain=True,
                labels=labels,
                cache_mount=identity,
            )
            return ref, None
