"""Record ids: generated, never chosen by callers, validated at every boundary.

An id is 25 characters of ``[a-z0-9]`` (BuildKit's ``identity.NewID``: about 129 random
bits in base 36). Anything else is rejected before it can reach a path or a query.
"""

from __future__ import annotations

import re
import secrets

from cachetui.core.errors import InvalidError

__all__ = ["ID_LENGTH", "ID_PATTERN", "new_id", "validate_id"]

ID_LENGTH = 25
ID_PATTERN = re.compile(r"[a-z0-9]{25}")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id() -> str:
    """A fresh random record id."""
    value = secrets.randbits(129)
    chars = []
    for _ in range(ID_LENGTH):
        value, digit = divmod(value, 36)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def validate_id(value: object, *, what: str = "record id") -> str:
    """Return ``value`` if it is a well-formed id, else raise ``InvalidError`` naming it."""
    if not isinstance(value, str):
        raise InvalidError(f"invalid {what} {value!r}: expected a string")
    if ID_PATTERN.fullmatch(value) is None:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise InvalidError(f"invalid {what} {shown!r}: expected {ID_LENGTH} characters of [a-z0-9]")
    return value
