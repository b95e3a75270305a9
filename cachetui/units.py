"""Sizes and durations at the CLI/UI boundary: parsing user text, formatting for display.

This module owns:

* ``parse_size``: ``512MB``, ``10GiB``, ``1.5GB``, ``20%`` (of the disk) into bytes;
* ``parse_duration``: ``48h``, ``1h30m``, ``7d``, ``1.5h`` into seconds (a unit is required);
* ``format_bytes_buildx``: ``docker buildx du``'s sizes (go-units ``HumanSize``);
* ``format_duration_ago``: go-units ``HumanDuration`` (callers append " ago").

Every parse error is an ``InvalidError`` whose message names what was being parsed and
the text as given. Nothing here does I/O.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from cachetui.core import InvalidError

__all__ = [
    "MAX_BYTES",
    "MAX_DURATION",
    "format_bytes_buildx",
    "format_duration_ago",
    "parse_duration",
    "parse_size",
]

MAX_DURATION = (2**63 - 1) / 1e9
"""The longest duration ``parse_duration`` accepts, in seconds (Go's ``time.Duration``, ~292 y)."""

MAX_BYTES = 2**63 - 1
"""The largest size ``parse_size`` accepts (a signed 64-bit integer, as in BuildKit)."""

# Lower-cased unit -> multiplier. Decimal for kB..TB, binary for KiB..TiB.
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_UNITS_HELP = "use B, kB, MB, GB, TB, KiB, MiB, GiB, TiB or %"
_MAX_NUMBER_CHARS = 64  # far beyond any real size or duration; keeps int() conversion cheap
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_SIZE_RE = re.compile(rf"(?P<num>{_NUMBER})[ \t]*(?P<unit>.*)", re.DOTALL)


def _fail(what: str, text: str, reason: str) -> InvalidError:
    return InvalidError(f"invalid {what} '{text}': {reason}")


def parse_size(text: str, *, disk_total: int | None = None, what: str = "size") -> int:
    """Bytes from a size string.

    Units are case-insensitive: ``B`` (or none) bytes; ``kB MB GB TB`` decimal (1000);
    ``KiB MiB GiB TiB`` binary (1024); ``%`` of ``disk_total`` (required then; at most
    100 %). A space may separate number and unit. Fractions are allowed with a unit and
    truncated to whole bytes (``1.5kB`` is 1500); a fractional plain byte count is an
    error. Negative, empty, non-numeric, over ``MAX_BYTES`` or unknown units raise
    ``InvalidError`` naming ``what`` and ``text``.
    """
    if not isinstance(text, str):
        raise InvalidError(f"invalid {what} {text!r}: expected a string")
    body = text.strip()
    if not body:
        raise _fail(what, text, "empty")
    if body.startswith("-"):
        raise _fail(what, text, "must not be negative")
    match = _SIZE_RE.fullmatch(body)
    if match is None:
        raise _fail(what, text, "not a number")
    if len(match["num"]) > _MAX_NUMBER_CHARS:
        raise _fail(what, text, "too many digits")
    number = Fraction(match["num"])
    unit = match["unit"]
    if unit == "%":
        if disk_total is None:
            raise _fail(what, text, "a percentage needs the disk size, which is unknown")
        if number > 100:
            raise _fail(what, text, "a percentage must be at most 100%")
        return int(number * disk_total / 100)
    multiplier = _SIZE_UNITS.get(unit.lower())
    if multiplier is None:
        raise _fail(what, text, f"unknown unit '{unit}' ({_SIZE_UNITS_HELP})")
    value = number * multiplier
    if multiplier == 1 and value.denominator != 1:
        raise _fail(what, text, "a byte count must be a whole number")
    result = int(value)
    if result > MAX_BYTES:
        raise _fail(what, text, "too large")
    return result


_DURATION_UNITS: dict[str, Fraction] = {
    "ns": Fraction(1, 10**9),
    "us": Fraction(1, 10**6),
    "µs": Fraction(1, 10**6),
    "ms": Fraction(1, 10**3),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
    "d": Fraction(86400),
    "w": Fraction(7 * 86400),
}
_DURATION_UNITS_HELP = "use ms, s, m, h, d or w, e.g. 90s, 1h30m, 7d"
_DURATION_PART_RE = re.compile(rf"[ \t]*(?P<num>{_NUMBER})[ \t]*(?P<unit>[^\s0-9.]*)")


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Seconds from a duration string.

    Go-style components, summed: ``90s``, ``30m``, ``48h``, ``7d``, ``1w``, ``1h30m``,
    ``1.5h`` (also ``ms``, ``us``, ``ns``). Units are lower-case (``m`` is minutes). Every
    number needs a unit, as in ``buildx`` (only ``0`` may stand alone). Negative, empty,
    unit-less, unknown units, garbage, or more than ``MAX_DURATION`` raise
    ``InvalidError`` naming ``what`` and ``text``.
    """
    if not isinstance(text, str):
        raise InvalidError(f"invalid {what} {text!r}: expected a string")
    body = text.strip()
    if not body:
        raise _fail(what, text, "empty")
    if body.startswith("-"):
        raise _fail(what, text, "must not be negative")
    total = Fraction(0)
    pos = 0
    parts = 0
    while pos < len(body):
        match = _DURATION_PART_RE.match(body, pos)
        if match is None:
            raise _fail(what, text, f"not a duration ({_DURATION_UNITS_HELP})")
        unit = match["unit"]
        if unit == "":
            if parts == 0 and match.end() == len(body) and Fraction(match["num"]) == 0:
                return 0.0  # "0" needs no unit, as in Go's time.ParseDuration
            # buildx refuses a bare number too: 10 seconds and 10 hours are both likely
            number = match["num"]
            raise _fail(
                what,
                text,
                f"missing unit: write {number}s, {number}m or {number}h (units: ms, s, m, h, d, w)",
            )
        factor = _DURATION_UNITS.get(unit)
        if factor is None:
            raise _fail(what, text, f"unknown unit '{unit}' ({_DURATION_UNITS_HELP})")
        if len(match["num"]) > _MAX_NUMBER_CHARS:
            raise _fail(what, text, "too many digits")
        total += Fraction(match["num"]) * factor
        parts += 1
        pos = match.end()
    try:
        seconds = float(total)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise _fail(what, text, "too large (at most about 292 years)")
    return seconds


_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def format_bytes_buildx(n: float) -> str:
    """``docker buildx du``'s size: go-units ``HumanSize`` (``%.4g`` and a decimal unit)."""
    size = float(n)
    i = 0
    while size >= 1000.0 and i < len(_DECIMAL_UNITS) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{_DECIMAL_UNITS[i]}"


def format_duration_ago(seconds: float) -> str:
    """go-units ``HumanDuration``: "Less than a second", "About an hour", "2 weeks", ...

    Thresholds exactly as go-units; a negative (or NaN) duration counts as 0 and a huge
    one as Go's largest ``time.Duration``. No " ago": callers append it.
    """
    d = float(seconds)
    if not d > 0:  # negative or NaN
        d = 0.0
    d = min(d, MAX_DURATION)
    secs = int(d)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(d / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(d / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(d / 3600) // 24 // 365} years"
