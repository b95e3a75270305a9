"""Sizes and durations as BuildKit's and Docker's daemons read them from their files.

Not cachetui's own ``parse_size``: the daemons read ``"512MB"`` with go-units'
``RAMInBytes``, which is **binary** (512 MiB), and a percentage with BuildKit's
``DiskSpace.AsBytes``, rounded up to a decimal GB. Reading a file as its daemon does is
the point of a preview, so these follow the Go code, and refuse what it would refuse or,
worse, silently read as 0.
"""

from __future__ import annotations

import re

from cachetui.core import DiskStat, InvalidError, percent_of_disk
from cachetui.units import parse_duration

__all__ = ["go_duration", "percentage", "ram_in_bytes"]

_RAM = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_GO_DURATION = re.compile(
    r"^(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h)(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))*$"
)


def ram_in_bytes(text: str, *, what: str) -> int:
    """go-units ``RAMInBytes``: ``512MB`` is 512 * 2**20; ``InvalidError`` when it is not
    a size (BuildKit would read such a value as 0 without a word)."""
    match = _RAM.match(text.strip())
    if match is None or match.group(1).count(".") > 1:
        raise InvalidError(
            f"invalid {what} {text!r}: not a size (e.g. 512MB, 10GB, or a byte count); "
            "the daemon would read it as 0"
        )
    unit = (match.group(2) or "").lower()
    return int(float(match.group(1)) * _BINARY.get(unit, 1))


def percentage(text: str, dstat: DiskStat | None, *, what: str) -> int:
    """BuildKit's ``N%`` of the disk, in bytes (rounded up to a decimal GB)."""
    body = text.strip()[:-1].strip()
    if not body.isdigit():
        raise InvalidError(f"invalid {what} {text!r}: a percentage is a whole number, e.g. 20%")
    value = int(body)
    if value > 100:
        raise InvalidError(f"invalid {what} {text!r}: a percentage above 100% of the disk")
    return percent_of_disk(dstat, value)


def go_duration(value: object, *, what: str) -> float:
    """BuildKit's ``Duration``: an integer number of seconds or a Go duration string
    (``48h``, ``1h30m``; Go has no ``d``: BuildKit refuses ``7d``)."""
    if isinstance(value, bool):
        raise InvalidError(f"invalid {what} {value!r}: expected seconds or a duration like 48h")
    if isinstance(value, int):
        if value < 0:
            raise InvalidError(f"invalid {what} {value!r}: must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise InvalidError(f"invalid {what} {value!r}: expected seconds or a duration like 48h")
    text = value.strip()
    if text.isdigit():
        return float(text)
    if not _GO_DURATION.match(text):
        hint = ""
        if re.search(r"\d[dw]", text):
            hint = " (Go durations have no days or weeks: write 168h for 7d)"
        raise InvalidError(f"invalid {what} {value!r}: not a Go duration{hint}")
    return parse_duration(text, what=what)
