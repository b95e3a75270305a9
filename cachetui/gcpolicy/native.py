"""cachetui's own GC policy file: a small TOML list of ``[[tier]]`` tables.

```toml
[[tier]]
name = "easily reproducible"
filters = ["type==source.local", "type==exec.cachemount"]
keep-duration = "48h"
max-used-space = "512MB"

[[tier]]
name = "everything, under the cap"
all = true
max-used-space = "80%"
```

Keys: ``name``, ``all``, ``filters`` (the containerd language, strings OR-ed),
``docker-filters`` (Docker's ``key=value`` form, ``until=24h`` included), ``keep-duration``
(``48h``, ``7d``, or an integer number of seconds), ``reserved-space``,
``max-used-space``, ``min-free-space`` (cachetui's sizes: ``512MB`` is decimal, ``10GiB``
binary, ``20%`` of the disk exactly).
Unknown keys are refused.
"""

from __future__ import annotations

import difflib
from typing import Any

from cachetui.core import DiskStat, InvalidError, PruneOptions, parse_filters
from cachetui.gcpolicy.dockerfilter import translate
from cachetui.gcpolicy.lines import TomlLines
from cachetui.gcpolicy.model import ERROR, Problem, Tier
from cachetui.units import parse_duration, parse_size

__all__ = ["TIER_KEYS", "read"]

TIER_KEYS = (
    "name",
    "all",
    "filters",
    "docker-filters",
    "keep-duration",
    "reserved-space",
    "max-used-space",
    "min-free-space",
)
_SPACE = {"reserved-space", "max-used-space", "min-free-space"}


def _unknown(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    suggestion = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown key {key!r}{suggestion}; known: {', '.join(known)}"


def _strings(value: object, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidError(f"invalid {key} {value!r}: expected a list of strings")
    return list(value)


def read(
    data: dict[str, Any], text: str, dstat: DiskStat | None
) -> tuple[list[Tier], list[Problem]]:
    """The tiers of a cachetui policy file (already parsed as TOML) and its problems."""
    lines = TomlLines(text)
    problems: list[Problem] = []
    for key in data:
        if key != "tier":
            problems.append(
                Problem(ERROR, _unknown(key, ("tier",)), lines.key("", 0, key) or lines.table(key))
            )
    tables = data.get("tier", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        problems.append(Problem(ERROR, "tier must be [[tier]] tables", lines.key("", 0, "tier")))
        return [], problems
    tiers: list[Tier] = []
    disk_total = dstat.total if dstat is not None and dstat.total else None
    for index, table in enumerate(tables):
        line = lines.table("tier", index)
        start = len(problems)
        values: dict[str, Any] = {}
        for key, value in table.items():
            at = lines.key("tier", index, key) or line
            if key not in TIER_KEYS:
                problems.append(Problem(ERROR, _unknown(key, TIER_KEYS), at))
                continue
            try:
                if key == "name":
                    if not isinstance(value, str):
                        raise InvalidError(f"invalid name {value!r}: expected a string")
                    values["name"] = value
                elif key == "all":
                    if not isinstance(value, bool):
                        raise InvalidError(f"invalid all {value!r}: expected true or false")
                    values["all"] = value
                elif key == "filters":
                    texts = _strings(value, key)
                    parse_filters(texts)
                    values["filters"] = tuple(texts)
                elif key == "docker-filters":
                    values["docker"] = translate(_strings(value, key), what="docker-filters")
                elif key == "keep-duration":
                    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                        values["keep"] = float(value)  # a TOML integer: seconds
                    elif not isinstance(value, str):
                        raise InvalidError(f"invalid keep-duration {value!r}: expected e.g. 48h")
                    else:
                        values["keep"] = parse_duration(value, what="keep-duration")
                elif key in _SPACE:
                    if isinstance(value, int) and not isinstance(value, bool):
                        value = str(value)
                    if not isinstance(value, str):
                        raise InvalidError(f"invalid {key} {value!r}: expected e.g. 10GB or 20%")
                    values[key] = parse_size(value, disk_total=disk_total, what=key)
            except InvalidError as err:
                problems.append(Problem(ERROR, str(err), at))
        docker = values.get("docker")
        if docker is not None:
            if "filters" in values and docker.filters:
                problems.append(Problem(ERROR, "give filters or docker-filters, not both", line))
            if docker.keep_duration and "keep" in values:
                problems.append(
                    Problem(
                        ERROR,
                        "keep-duration and docker-filters' until both set the keep duration",
                        line,
                    )
                )
        if any(p.severity == ERROR for p in problems[start:]):
            continue
        filters = values.get("filters", ())
        keep = values.get("keep", 0.0)
        if docker is not None:
            filters = filters or docker.filters
            keep = keep or docker.keep_duration
        options = PruneOptions(
            all=values.get("all", False),
            filters=filters,
            keep_duration=keep,
            reserved_space=values.get("reserved-space", 0),
            max_used_space=values.get("max-used-space", 0),
            min_free_space=values.get("min-free-space", 0),
        )
        tiers.append(Tier(options, name=values.get("name", ""), line=line))
    return tiers, problems
