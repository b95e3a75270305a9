"""Plain values shared across the core: record types, usage rows, prune options, mounts.

No I/O lives here; everything is a frozen dataclass or an enum.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cachetui.core.errors import InvalidError

__all__ = ["HEALTH_STATES", "Mount", "PruneOptions", "RecordType", "UsageInfo", "to_seconds"]

#: The values of ``UsageInfo.health``.
HEALTH_STATES = ("ok", "missing", "broken")


class RecordType(enum.StrEnum):
    """BuildKit's record types (``cache.recordType``)."""

    REGULAR = "regular"
    INTERNAL = "internal"
    FRONTEND = "frontend"
    SOURCE_LOCAL = "source.local"
    SOURCE_GIT_CHECKOUT = "source.git.checkout"
    EXEC_CACHEMOUNT = "exec.cachemount"

    @classmethod
    def parse(cls, value: object) -> RecordType:
        """Accept an enum member or its string value; anything else is ``InvalidError``."""
        if isinstance(value, cls):
            return value
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return cls(value)
        except ValueError:
            allowed = ", ".join(member.value for member in cls)
            raise InvalidError(
                f"invalid record type {value!r}: expected one of {allowed}"
            ) from None


@dataclass(frozen=True, slots=True)
class Mount:
    """Where a ref's layers live: ``upper`` is writable (None when read-only), ``lowers``
    are read-only layers, nearest first."""

    upper: Path | None
    lowers: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class UsageInfo:
    """One row of disk usage (and of a prune report)."""

    id: str
    mutable: bool
    in_use: bool
    size: int
    parents: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    usage_count: int
    description: str
    record_type: str
    shared: bool
    #: "ok"; "missing" when the record's layer directory is gone (size 0, never
    #: mounted); "broken" when an ancestor's is.
    health: str = "ok"

    @property
    def reclaimable(self) -> bool:
        """BuildKit's RECLAIMABLE column: nobody uses it, directly or through a child."""
        return not self.in_use


def to_seconds(value: float | int | timedelta, *, what: str) -> float:
    """A duration in seconds; a negative or non-numeric value is ``InvalidError``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidError(f"invalid {what} {value!r}: expected seconds or a timedelta")
    else:
        seconds = float(value)
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise InvalidError(f"invalid {what} {value!r}: must not be negative")
    return seconds


def _check_bytes(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidError(f"invalid {what} {value!r}: expected an integer number of bytes")
    if value < 0:
        raise InvalidError(f"invalid {what} {value!r}: must not be negative")


@dataclass(frozen=True, slots=True)
class PruneOptions:
    """One prune policy, as BuildKit's ``PruneInfo``."""

    all: bool = False
    filters: tuple[str, ...] = field(default=())
    keep_duration: float | timedelta = 0
    reserved_space: int = 0
    max_used_space: int = 0
    min_free_space: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.all, bool):  # "no" is truthy: never widen a prune by accident
            raise InvalidError(f"invalid all {self.all!r}: expected True or False")
        if isinstance(self.filters, str):
            object.__setattr__(self, "filters", (self.filters,))
        elif isinstance(self.filters, list | tuple):
            object.__setattr__(self, "filters", tuple(self.filters))
        else:
            raise InvalidError(
                f"invalid filters {self.filters!r}: expected a sequence of filter strings"
            )
        for text in self.filters:
            if not isinstance(text, str):
                raise InvalidError(f"invalid filter {text!r}: expected a string")
        to_seconds(self.keep_duration, what="keep_duration")
        _check_bytes(self.reserved_space, "reserved_space")
        _check_bytes(self.max_used_space, "max_used_space")
        _check_bytes(self.min_free_space, "min_free_space")

    @property
    def keep_seconds(self) -> float:
        """``keep_duration`` in seconds."""
        return to_seconds(self.keep_duration, what="keep_duration")

    @property
    def has_space_limit(self) -> bool:
        """True when any of the three space options is set (GC mode)."""
        return bool(self.reserved_space or self.max_used_space or self.min_free_space)
