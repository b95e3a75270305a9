"""How values read on screen: sizes, ages, times, state colours (pure functions)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import humanize

from cachetui.core import CacheError, LockedError, NotFoundError, is_valid_time
from cachetui.output import escape
from cachetui.units import format_bytes_buildx

__all__ = [
    "STATE_STYLES",
    "ago",
    "clock_time",
    "describe_error",
    "escape",
    "records",
    "size",
    "timestamp",
]


def describe_error(err: BaseException) -> str:
    """One line saying why a store call failed, for a notification."""
    if isinstance(err, LockedError):
        return f"{err.id} is locked: another process holds it"
    if isinstance(err, NotFoundError):
        return f"not found: {err} (it may have been pruned meanwhile)"
    if isinstance(err, CacheError | OSError):
        return str(err) or type(err).__name__
    return f"{type(err).__name__}: {err}"


STATE_STYLES = {
    "in use": "bold dark_orange",
    "mutable": "cyan",
    "retained": "magenta",
    "pending": "italic dodger_blue2",
    "pinned": "bold green",
    "requested": "bold italic dodger_blue2",
    "missing": "bold red",
    "broken": "bold red",
}


def size(n: int) -> str:
    """Bytes as the command line shows them (``docker buildx du``'s ``57.75MB``): one
    format for the screen and the CLI, so a number can be compared across them."""
    return format_bytes_buildx(max(n, 0))


def records(n: int) -> str:
    """``1 record``, ``2 records``."""
    return f"{n} record{'s' if n != 1 else ''}"


def ago(epoch: float | None, now: float) -> str:
    if epoch is None:
        return "never"
    if not is_valid_time(epoch):
        return "unknown"  # a stored time that is not one (doctor reports it)
    return humanize.naturaltime(
        datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None),
        when=datetime.fromtimestamp(now, UTC).replace(tzinfo=None),
    )


def timestamp(epoch: float) -> str:
    if not is_valid_time(epoch):
        return "unknown"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def clock_time(epoch: float) -> str:
    """``HH:MM:SS`` UTC (the fleet's times come from the server's clock)."""
    return time.strftime("%H:%M:%S", time.gmtime(epoch))
