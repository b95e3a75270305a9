"""Docker's ``daemon.json``: the ``builder.gc`` section.

Read as the Docker daemon reads it for its embedded BuildKit:

* ``builder.gc.policy``: a list of tiers with ``all``, ``filter`` (Docker's
  ``key=value`` strings, or the ``{"key": {"value": true}}`` object form), ``keepDuration``,
  ``reservedSpace`` (older name ``keepStorage``), ``maxUsedSpace``, ``minFreeSpace``
  (go-units sizes such as ``"10GB"``, which are binary). In ``filter``, ``until`` and
  ``unused-for`` set the keep duration and a repeated key is OR-ed (see
  ``dockerfilter``);
* no ``policy``: BuildKit's default list with ``defaultReservedSpace`` (older name
  ``defaultKeepStorage``), ``defaultMaxUsedSpace`` and ``defaultMinFreeSpace``;
* ``enabled: false``: the daemon runs no GC (a warning).

Go's JSON decoder matches keys case-insensitively, so ``KeepStorage`` and
``keepStorage`` are the same key here too. Unknown keys in ``builder.gc`` and in a tier
are refused.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from cachetui.core import DiskStat, InvalidError, PruneOptions, default_gc_policies
from cachetui.gcpolicy.dockerfilter import translate
from cachetui.gcpolicy.lines import JsonPath, json_key_lines
from cachetui.gcpolicy.model import ERROR, WARNING, Problem, Tier
from cachetui.gcpolicy.sizes import go_duration, percentage, ram_in_bytes

__all__ = ["GC_KEYS", "TIER_KEYS", "read"]

GC_KEYS = (
    "enabled",
    "policy",
    "defaultKeepStorage",
    "defaultReservedSpace",
    "defaultMaxUsedSpace",
    "defaultMinFreeSpace",
)
TIER_KEYS = (
    "all",
    "filter",
    "keepDuration",
    "keepStorage",
    "reservedSpace",
    "maxUsedSpace",
    "minFreeSpace",
)


def _canonical(key: str, known: tuple[str, ...]) -> str | None:
    for name in known:
        if name.lower() == key.lower():
            return name
    return None


def _key_of(data: object, name: str) -> str | None:
    """The key spelling ``data`` uses for ``name`` (Go matches JSON keys without case)."""
    if not isinstance(data, dict):
        return None
    for key in data:
        if isinstance(key, str) and key.lower() == name:
            return key
    return None


def _unknown(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    suggestion = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown key {key!r}{suggestion}; known: {', '.join(known)}"


def _size(value: object, dstat: DiskStat | None, *, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidError(f'invalid {what} {value!r}: expected a size such as "10GB"')
    if isinstance(value, int):
        if value < 0:
            raise InvalidError(f"invalid {what} {value!r}: must not be negative")
        return value
    if value.strip().endswith("%"):
        return percentage(value, dstat, what=what)
    if not value.strip():
        return 0
    return ram_in_bytes(value, what=what)


def _filter_items(value: object) -> list[str]:
    """Docker's filter in either JSON form, as ``key=value`` strings."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, dict):
        items: list[str] = []
        for key, values in value.items():
            if not isinstance(values, dict):
                raise InvalidError(
                    f'invalid filter {value!r}: expected {{"key": {{"value": true}}}}'
                )
            items.extend(f"{key}={v}" for v, on in values.items() if on)
        return items
    raise InvalidError(f'invalid filter {value!r}: expected a list of "key=value" strings')


def _tier(
    entry: dict[str, Any],
    index: int,
    lines: dict[JsonPath, int],
    dstat: DiskStat | None,
    problems: list[Problem],
) -> Tier | None:
    base: JsonPath = ("builder", "gc", "policy", index)
    line = lines.get(base)
    start = len(problems)
    values: dict[str, Any] = {}
    where: dict[str, int | None] = {}
    for raw, value in entry.items():
        at = lines.get((*base, raw), line)
        key = _canonical(raw, TIER_KEYS)
        if key is None:
            problems.append(Problem(ERROR, _unknown(raw, TIER_KEYS), at))
            continue
        where[key] = at
        try:
            if key == "all":
                if not isinstance(value, bool):
                    raise InvalidError(f"invalid all {value!r}: expected true or false")
                values["all"] = value
            elif key == "filter":
                values["filter"] = translate(_filter_items(value), what="filter")
            elif key == "keepDuration":
                values["keep"] = go_duration(value, what="keepDuration")
            else:
                values[key] = _size(value, dstat, what=raw)
        except InvalidError as err:
            problems.append(Problem(ERROR, str(err), at))
    keep = values.get("keep", 0.0)
    docker = values.get("filter")
    if docker is not None and docker.keep_duration:
        if "keep" in values:
            problems.append(
                Problem(
                    ERROR,
                    "keepDuration and an until/unused-for filter both set the keep duration",
                    where.get("filter"),
                )
            )
        keep = docker.keep_duration
    reserved = values.get("reservedSpace")
    if "keepStorage" in values:
        if reserved is not None:
            problems.append(
                Problem(
                    WARNING,
                    "keepStorage is ignored: reservedSpace is set (keepStorage is its old name)",
                    where.get("keepStorage"),
                )
            )
        else:
            reserved = values["keepStorage"]
    if any(p.severity == ERROR for p in problems[start:]):
        return None
    options = PruneOptions(
        all=values.get("all", False),
        filters=docker.filters if docker is not None else (),
        keep_duration=keep,
        reserved_space=reserved or 0,
        max_used_space=values.get("maxUsedSpace", 0),
        min_free_space=values.get("minFreeSpace", 0),
    )
    return Tier(options, name=f"builder.gc.policy #{index + 1}", line=line)


def read(text: str, source: str, dstat: DiskStat | None) -> tuple[list[Tier], list[Problem], bool]:
    """The tiers of a ``daemon.json`` text, the problems found, and whether the list was
    configured (False: BuildKit's default list with the daemon's defaults)."""
    problems: list[Problem] = []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        return [], [Problem(ERROR, f"not valid JSON: {err.msg}", err.lineno)], True
    lines = json_key_lines(text)
    builder_key = _key_of(data, "builder")
    builder = data[builder_key] if builder_key is not None else None
    gc_key = _key_of(builder, "gc")
    gc = builder[gc_key] if isinstance(builder, dict) and gc_key is not None else None
    if builder_key != "builder" or gc_key != "gc":  # line map keyed by the canonical names
        lines = {
            tuple(
                "builder"
                if i == 0 and part == builder_key
                else "gc"
                if i == 1 and part == gc_key
                else part
                for i, part in enumerate(path)
            ): n
            for path, n in lines.items()
        }
    if gc is None:
        gc = {}
    if not isinstance(gc, dict):
        problems.append(
            Problem(ERROR, "builder.gc must be an object", lines.get(("builder", "gc")))
        )
        return [], problems, True
    section: dict[str, Any] = {}
    for raw, value in gc.items():
        key = _canonical(raw, GC_KEYS)
        if key is None:
            problems.append(
                Problem(ERROR, _unknown(raw, GC_KEYS), lines.get(("builder", "gc", raw)))
            )
            continue
        section[key] = (raw, value)
    if "enabled" in section and section["enabled"][1] is False:
        problems.append(
            Problem(
                WARNING,
                "builder.gc.enabled is false: the daemon never runs this list by itself "
                "(cachetui gc runs it when asked)",
                lines.get(("builder", "gc", section["enabled"][0])),
            )
        )
    if "policy" not in section:
        space: dict[str, int] = {}
        for key in GC_KEYS[2:]:
            if key in section:
                raw, value = section[key]
                try:
                    space[key] = _size(value, dstat, what=raw)
                except InvalidError as err:
                    problems.append(Problem(ERROR, str(err), lines.get(("builder", "gc", raw))))
        reserved = space.get("defaultReservedSpace") or space.get("defaultKeepStorage", 0)
        worker = PruneOptions(
            reserved_space=reserved,
            max_used_space=space.get("defaultMaxUsedSpace", 0),
            min_free_space=space.get("defaultMinFreeSpace", 0),
        )
        defaults = [
            Tier(options, name=f"BuildKit default #{i + 1}")
            for i, options in enumerate(default_gc_policies(dstat, worker))
        ]
        return defaults, problems, False
    raw, policy = section["policy"]
    if not isinstance(policy, list) or not all(isinstance(p, dict) for p in policy):
        problems.append(
            Problem(
                ERROR,
                "builder.gc.policy must be a list of objects",
                lines.get(("builder", "gc", raw)),
            )
        )
        return [], problems, True
    if raw != "policy":  # the line map is keyed by the spelling in the file
        lines = {
            (*path[:2], "policy", *path[3:]) if path[:3] == ("builder", "gc", raw) else path: n
            for path, n in lines.items()
        }
    tiers: list[Tier] = []
    for index, entry in enumerate(policy):
        tier = _tier(entry, index, lines, dstat, problems)
        if tier is not None:
            tiers.append(tier)
    return tiers, problems, True
