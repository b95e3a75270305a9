"""Timestamps: what may be written, and how a bad one already stored is read.

Every timestamp the manager writes comes from its clock and is checked here first: a
clock that returns ``inf``, ``nan``, ``1e20`` or a negative number raises
:class:`~cachetui.core.errors.InvalidError` instead of storing a value that no
``datetime`` can hold. A value already in the store that is not a valid time (a
hand-edited ``created_at='yesterday'``, a row written by an older build) must never crash
a read: rows carry :data:`UNREADABLE` in its place (an infinitely recent time, so
``keep_duration`` keeps such a record rather than deleting it as "old"), ``UsageInfo``
shows :data:`UNKNOWN_TIME`, and ``doctor`` reports the row (``RecordStore.bad_timestamps``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from cachetui.core.errors import InvalidError

__all__ = [
    "MAX_EPOCH",
    "UNKNOWN_TIME",
    "UNREADABLE",
    "checked_clock_value",
    "is_valid",
    "to_datetime",
]

#: The last second of year 9999: the largest time a ``datetime`` can show.
MAX_EPOCH = 253_402_300_799.0
#: What a row carries in place of a stored timestamp that is not a valid time.
UNREADABLE = math.inf
#: What ``UsageInfo`` shows for such a timestamp (outputs render it as "unknown").
UNKNOWN_TIME = datetime(1, 1, 1, tzinfo=UTC)

_fromtimestamp = datetime.fromtimestamp


def is_valid(value: Any) -> bool:
    """Whether ``value`` is an epoch time a ``datetime`` can hold (0 to year 9999)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0.0 <= value <= MAX_EPOCH  # False for nan


def checked_clock_value(value: Any) -> float:
    """The clock's reading as a float, or ``InvalidError`` naming the bad value."""
    try:
        # float() also takes a Decimal or a numpy float; never a string or a bool.
        as_float = math.nan if isinstance(value, bool | str | bytes) else float(value)
    except (TypeError, ValueError, OverflowError):
        as_float = math.nan
    if is_valid(as_float):
        return as_float
    raise InvalidError(
        f"invalid clock reading {value!r}: expected Unix epoch seconds between 0 and "
        f"{MAX_EPOCH:.0f} (the year 9999)"
    )


def to_datetime(value: float) -> datetime:
    """A UTC ``datetime`` for a stored time; :data:`UNKNOWN_TIME` when it is not one."""
    try:
        return _fromtimestamp(value, UTC)
    except (OverflowError, ValueError, OSError, TypeError):
        return UNKNOWN_TIME
