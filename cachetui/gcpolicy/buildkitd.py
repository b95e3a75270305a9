"""BuildKit's ``buildkitd.toml``: the ``[[worker.oci.gcpolicy]]`` (or containerd) list.

Read as ``cmd/buildkitd`` reads it (``config.GCPolicy`` and ``getGCPolicy``):

* per tier: ``all``, ``filters`` (containerd strings, OR-ed), ``keepDuration`` (integer
  seconds or a Go duration), ``reservedSpace``, ``maxUsedSpace``, ``minFreeSpace`` (a
  byte count, a go-units size such as ``"512MB"``, which is binary, or ``"N%"`` of the
  disk), and the deprecated ``keepBytes``, which becomes ``reservedSpace`` when that is
  not set (a floor that, alone, also caps);
* no ``gcpolicy`` tables: BuildKit's default list, built from the worker's
  ``reservedSpace``/``maxUsedSpace``/``minFreeSpace`` (or deprecated ``gckeepstorage``)
  when set, else from the disk;
* ``gc = false`` on the worker: buildkitd runs no GC at all (a warning: ``cachetui gc``
  runs the list when asked).

Unknown keys inside a gcpolicy table are refused (a misspelt ``keepduration`` would
silently keep nothing); the rest of the daemon's configuration is not ours to check.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from typing import Any

from cachetui.core import DiskStat, InvalidError, PruneOptions, default_gc_policies, parse_filters
from cachetui.gcpolicy.lines import TomlLines
from cachetui.gcpolicy.model import ERROR, WARNING, Problem, Tier
from cachetui.gcpolicy.sizes import go_duration, percentage, ram_in_bytes

__all__ = ["POLICY_KEYS", "WORKERS", "read"]

WORKERS = ("oci", "containerd")
POLICY_KEYS = (
    "all",
    "filters",
    "keepDuration",
    "keepBytes",
    "reservedSpace",
    "maxUsedSpace",
    "minFreeSpace",
)
_SPACE_KEYS = ("reservedSpace", "maxUsedSpace", "minFreeSpace")


def disk_space(value: object, dstat: DiskStat | None, *, what: str) -> int:
    """BuildKit's ``DiskSpace``: bytes, a go-units size, or ``N%`` of the disk."""
    if isinstance(value, bool):
        raise InvalidError(f"invalid {what} {value!r}: expected bytes, a size or a percentage")
    if isinstance(value, int):
        if value < 0:
            raise InvalidError(f"invalid {what} {value!r}: must not be negative")
        return value
    if not isinstance(value, str):
        raise InvalidError(f"invalid {what} {value!r}: expected bytes, a size or a percentage")
    if value.strip().endswith("%"):
        return percentage(value, dstat, what=what)
    if not value.strip():
        return 0
    return ram_in_bytes(value, what=what)


def _unknown(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    lower = {k.lower(): k for k in known}
    hint = close[0] if close else lower.get(key.lower())
    suggestion = f" (did you mean {hint}?)" if hint else ""
    return f"unknown key {key!r}{suggestion}; known: {', '.join(known)}"


def _decode_error(source: str, err: tomllib.TOMLDecodeError) -> Problem:
    match = re.search(r"line (\d+)", str(err))
    return Problem(ERROR, f"not valid TOML: {err}", int(match.group(1)) if match else None)


def _tier(
    table: dict[str, Any],
    index: int,
    path: str,
    lines: TomlLines,
    dstat: DiskStat | None,
    problems: list[Problem],
) -> Tier | None:
    start = len(problems)
    line = lines.table(path, index)

    def at(key: str) -> int | None:
        found = lines.key(path, index, key)
        return found if found is not None else line

    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in POLICY_KEYS:
            problems.append(Problem(ERROR, _unknown(key, POLICY_KEYS), at(key)))
            continue
        what = f"{key}"
        try:
            if key == "all":
                if not isinstance(value, bool):
                    raise InvalidError(f"invalid all {value!r}: expected true or false")
                values["all"] = value
            elif key == "filters":
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise InvalidError(f"invalid filters {value!r}: expected a list of strings")
                parse_filters(value)
                values["filters"] = tuple(value)
            elif key == "keepDuration":
                values["keep_duration"] = go_duration(value, what=what)
            else:
                values[key] = disk_space(value, dstat, what=what)
        except InvalidError as err:
            message = str(err)
            if key == "filters" and "can never match" in message:
                message += (
                    " (the strings of one filter are AND-ed: list each type as its own "
                    'string, e.g. filters = ["type==source.local", "type==exec.cachemount"])'
                )
            problems.append(Problem(ERROR, message, at(key)))
    if "keepBytes" in values:
        if "reservedSpace" in values:
            problems.append(
                Problem(
                    WARNING,
                    "keepBytes is ignored: reservedSpace is set (keepBytes is its old name)",
                    at("keepBytes"),
                )
            )
        else:
            problems.append(
                Problem(
                    WARNING,
                    "keepBytes is deprecated: BuildKit reads it as reservedSpace, a floor "
                    "that acts as a cap only when no other space option is set",
                    at("keepBytes"),
                )
            )
            values["reservedSpace"] = values["keepBytes"]
    if any(p.severity == ERROR for p in problems[start:]):
        return None
    options = PruneOptions(
        all=values.get("all", False),
        filters=values.get("filters", ()),
        keep_duration=values.get("keep_duration", 0),
        reserved_space=values.get("reservedSpace", 0),
        max_used_space=values.get("maxUsedSpace", 0),
        min_free_space=values.get("minFreeSpace", 0),
    )
    return Tier(options, name=f"{path} #{index + 1}", line=line)


def _worker_space(
    worker: dict[str, Any],
    path: str,
    lines: TomlLines,
    dstat: DiskStat | None,
    problems: list[Problem],
) -> PruneOptions | None:
    """The worker-level space options that feed BuildKit's default list."""
    space: dict[str, int] = {}
    for key in (*_SPACE_KEYS, "gckeepstorage"):
        if key not in worker:
            continue
        try:
            space[key] = disk_space(worker[key], dstat, what=f"{path}.{key}")
        except InvalidError as err:
            problems.append(Problem(ERROR, str(err), lines.key(path, 0, key)))
    if not any(space.get(k) for k in _SPACE_KEYS) and space.get("gckeepstorage"):
        space["reservedSpace"] = space["gckeepstorage"]
    if not any(space.get(k) for k in _SPACE_KEYS):
        return None
    return PruneOptions(
        reserved_space=space.get("reservedSpace", 0),
        max_used_space=space.get("maxUsedSpace", 0),
        min_free_space=space.get("minFreeSpace", 0),
    )


def read(
    text: str, source: str, dstat: DiskStat | None, data: dict[str, Any] | None = None
) -> tuple[list[Tier], list[Problem], bool]:
    """The tiers of a ``buildkitd.toml`` text, the problems found, and whether the list
    was configured (False: BuildKit's default list, built for this disk)."""
    problems: list[Problem] = []
    if data is None:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            return [], [_decode_error(source, err)], True
    lines = TomlLines(text)
    workers = data.get("worker", {})
    if not isinstance(workers, dict):
        workers = {}
    configured = [
        name
        for name in WORKERS
        if isinstance(workers.get(name), dict) and "gcpolicy" in workers[name]
    ]
    chosen = "oci"
    if configured:
        chosen = configured[0]
        oci = workers.get("oci", {})
        if len(configured) == 2 and isinstance(oci, dict) and oci.get("enabled") is False:
            chosen = "containerd"
        if len(configured) == 2:
            problems.append(
                Problem(
                    WARNING,
                    f"both workers have a gcpolicy list; this reads worker.{chosen}'s "
                    "(the worker buildkitd runs here decides which one applies)",
                    lines.table(f"worker.{chosen}.gcpolicy", 0),
                )
            )
    elif isinstance(workers.get("containerd"), dict) and not isinstance(workers.get("oci"), dict):
        chosen = "containerd"
    worker = workers.get(chosen, {})
    if not isinstance(worker, dict):
        worker = {}
    path = f"worker.{chosen}"
    if worker.get("gc") is False:
        problems.append(
            Problem(
                WARNING,
                f"{path} has gc = false: buildkitd never runs this list by itself "
                "(cachetui gc runs it when asked)",
                lines.key(path, 0, "gc"),
            )
        )
    policies = worker.get("gcpolicy")
    if policies is None:
        space = _worker_space(worker, path, lines, dstat, problems)
        defaults = [
            Tier(options, name=f"BuildKit default #{i + 1}")
            for i, options in enumerate(default_gc_policies(dstat, space))
        ]
        return defaults, problems, False
    if not isinstance(policies, list) or not all(isinstance(p, dict) for p in policies):
        problems.append(
            Problem(
                ERROR,
                f"{path}.gcpolicy must be [[{path}.gcpolicy]] tables",
                lines.key(path, 0, "gcpolicy"),
            )
        )
        return [], problems, True
    tiers: list[Tier] = []
    for index, table in enumerate(policies):
        tier = _tier(table, index, f"{path}.gcpolicy", lines, dstat, problems)
        if tier is not None:
            tiers.append(tier)
    if not policies:
        problems.append(Problem(WARNING, f"{path}.gcpolicy is empty: GC removes nothing", None))
    return tiers, problems, True
