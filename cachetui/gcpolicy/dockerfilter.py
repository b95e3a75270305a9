"""Docker's ``key=value`` filters, translated into the containerd language and a keep duration.

What ``docker buildx prune --filter`` and Docker's ``daemon.json`` GC policies accept:

* ``until=<duration>`` and its older name ``unused-for=<duration>`` become the policy's
  keep duration (records used within it stay), not a filter;
* ``id=<x>`` becomes ``id~=<x>`` (buildx matches ids by substring);
* ``key=<v>`` (or ``key==<v>``) becomes ``key==<v>``; ``key!=<v>`` and ``key~=<v>``
  pass through; a bare ``key`` is a presence test (``mutable``);
* the same key given with ``=`` several times is OR-ed (Docker's ``filters.Args``:
  ``type=source.local`` and ``type=exec.cachemount`` select both types), while
  different keys, and repeated ``!=``, are AND-ed. The result is a list of containerd
  filter strings (OR-ed), each the AND of one choice per key.

Every filter produced is parsed by the core's filter language before it is returned, so
a filter that can never match, or an unknown key, is refused here, naming the Docker
text. Nothing here does I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from cachetui.core import FilterSyntaxError, InvalidError, Selector, parse_filters
from cachetui.units import parse_duration

__all__ = ["MAX_COMBINATIONS", "DockerFilter", "translate"]

MAX_COMBINATIONS = 64
"""The most containerd filter strings one set of Docker filters may expand to."""

_DURATION_KEYS = ("until", "unused-for")


@dataclass(frozen=True, slots=True)
class DockerFilter:
    """Docker filters translated: containerd ``filters`` (OR-ed) and ``keep_duration``
    in seconds (0 when neither ``until`` nor ``unused-for`` was given)."""

    filters: tuple[str, ...]
    keep_duration: float


def _split(item: str, what: str) -> tuple[str, str, str]:
    """``(key, op, value)`` of one Docker filter: op is ``=``, ``!=``, ``~=`` or ""."""
    text = item.strip()
    if not text:
        raise InvalidError(f"invalid {what} {item!r}: empty")
    eq = text.find("=")
    if eq < 0:
        return text, "", ""
    key, value = text[:eq], text[eq + 1 :]
    op = "="
    if key.endswith(("!", "~")):
        op, key = key[-1] + "=", key[:-1]
    elif value.startswith("="):  # key==value: the containerd spelling of the same test
        value = value[1:]
    key = key.strip()
    if not key:
        raise InvalidError(f"invalid {what} {item!r}: no key before '{op}'")
    return key, op, value


def translate(items: Sequence[str], *, what: str = "filter") -> DockerFilter:
    """Translate Docker filters (see the module docstring); ``InvalidError`` names ``what``
    and the offending text."""
    keep: float = 0.0
    keep_from: str | None = None
    groups: dict[str, list[Selector]] = {}
    ands: list[Selector] = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidError(f"invalid {what} {item!r}: expected a 'key=value' string")
        key, op, value = _split(item, what)
        if key in _DURATION_KEYS:
            if op != "=":
                raise InvalidError(f"invalid {what} {item!r}: write {key}=<duration>, e.g. 24h")
            if keep_from is not None:
                raise InvalidError(
                    f"invalid {what} {item!r}: {keep_from} was already given "
                    "(until and unused-for set the same keep duration, once)"
                )
            keep = parse_duration(value, what=f"{what} {item!r}")
            keep_from = item
            continue
        try:
            if op == "":
                ands.append(Selector(key, ""))
            elif op == "=" and key == "id":
                groups.setdefault(key, []).append(Selector(key, "~=", value))
            elif op == "=":
                groups.setdefault(key, []).append(Selector(key, "==", value))
            else:
                ands.append(Selector(key, op, value))
        except FilterSyntaxError as err:
            raise InvalidError(f"invalid {what} {item!r}: {err}") from None
    choices = list(groups.values())
    count = 1
    for options in choices:
        count *= len(options)
    if count > MAX_COMBINATIONS:
        raise InvalidError(
            f"invalid {what}: {count} combinations of repeated keys (at most {MAX_COMBINATIONS})"
        )
    filters: list[str] = []
    if choices or ands:
        for combo in itertools.product(*choices):
            filters.append(",".join(str(s) for s in (*combo, *ands)))
    for text in filters:
        try:
            parse_filters([text])
        except FilterSyntaxError as err:
            shown = ", ".join(repr(i) for i in items)
            raise InvalidError(f"invalid {what} {shown}: {err}") from None
    return DockerFilter(filters=tuple(filters), keep_duration=keep)
