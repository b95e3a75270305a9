"""Handles on records: ``ImmutableRef`` and ``MutableRef``.

A handle is what callers hold and release. Each one is a holder row in the store naming
this process, so other processes see the record in use. The record state itself lives in
the store; handles only remember their record id, their holder row and whether they have
been released or committed. The work is done by the store's record operations
(``HandleOperations``: ``operations.RecordOperations``), not by the handle.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Protocol

from cachetui.core.errors import InvalidError
from cachetui.core.types import Mount

__all__ = ["HandleOperations", "ImmutableRef", "MutableRef", "Ref"]


class HandleOperations(Protocol):
    """What a handle asks of its store (each call is one transaction there)."""

    @property
    def root(self) -> Path: ...
    def mount(self, ref: Ref) -> Mount: ...
    def size(self, ref: Ref) -> int: ...
    def set_retain(self, record_id: str, value: bool) -> None: ...
    def release(self, ref: Ref) -> None: ...
    def clone(self, ref: ImmutableRef) -> ImmutableRef: ...
    def finalize(self, record_id: str) -> None: ...
    def commit(self, ref: MutableRef) -> ImmutableRef: ...


class Ref:
    """Common behaviour of both handle kinds."""

    mutable: bool = False

    def __init__(
        self,
        operations: HandleOperations,
        record_id: str,
        holder_id: int,
        *,
        parent_id: str | None,
        description: str,
        record_type: str,
    ) -> None:
        self._ops = operations
        self._id = record_id
        self._holder_id = holder_id
        self._parent_id = parent_id
        self._description = description
        self._record_type = record_type
        self._released = False

    def __repr__(self) -> str:
        state = " released" if self._released else ""
        return f"<{type(self).__name__} {self._id}{state}>"

    @property
    def id(self) -> str:
        return self._id

    @property
    def parent_id(self) -> str | None:
        return self._parent_id

    @property
    def description(self) -> str:
        return self._description

    @property
    def record_type(self) -> str:
        return self._record_type

    @property
    def released(self) -> bool:
        return self._released

    @property
    def holder_id(self) -> int:
        return self._holder_id

    def _check_open(self, action: str) -> None:
        if self._released:
            raise InvalidError(f"cannot {action} {self._id}: the handle was released")

    def mount(self) -> Mount:
        self._check_open("mount")
        return self._ops.mount(self)

    def size(self) -> int:
        self._check_open("measure")
        return self._ops.size(self)

    def set_retain(self, value: bool = True) -> None:
        self._check_open("set retain on")
        self._ops.set_retain(self._id, value)

    def release(self) -> None:
        """Give the handle back; a second call is a no-op."""
        if self._released:
            return
        self._ops.release(self)
        self._released = True

    def __enter__(self) -> Ref:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class ImmutableRef(Ref):
    """A handle on a committed (read-only) record."""

    mutable = False

    def __enter__(self) -> ImmutableRef:
        return self

    def clone(self) -> ImmutableRef:
        """One more handle on the same record; it does not count as a use."""
        self._check_open("clone")
        return self._ops.clone(self)

    def finalize(self) -> None:
        """Make a lazy commit permanent; a no-op when there is no equal mutable."""
        self._check_open("finalize")
        self._ops.finalize(self._id)


class MutableRef(Ref):
    """The exclusive handle on a writable record."""

    mutable = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._committed = False

    def __enter__(self) -> MutableRef:
        return self

    @property
    def committed(self) -> bool:
        return self._committed

    def commit(self) -> ImmutableRef:
        """Lazy commit: a new immutable record paired with this one.

        The immutable owns this handle from now on: releasing this handle afterwards is a
        no-op, and the mutable is let go when the immutable's last handle is released.
        """
        if self._committed:
            raise InvalidError(f"cannot commit {self._id}: the handle was already committed")
        self._check_open("commit")
        ref = self._ops.commit(self)
        self._committed = True
        return ref

    def release(self) -> None:
        if self._committed:  # owned by the immutable now
            self._released = True
            return
        super().release()
