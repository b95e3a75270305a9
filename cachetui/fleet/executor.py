"""Running one request on the host: checking its shape, then the dashboard's own calls.

Each kind goes through ``CacheService`` exactly as the local dashboard's action does
(``prune_ids``, ``plan_prune``, ``prune_policy``, ``plan_policy``, ``commit``, ``hold``,
``release``, ``force_release``). A malformed payload is refused with a message naming
what is wrong; the agent never crashes on one. A prune by ids re-checks, inside the
write that would remove each record, the state the operator confirmed: a record used
since then stays, reported as "used since you confirmed". Ids already gone report as
gone (a request run twice finds its work done).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from cachetui.core import ID_PATTERN, CacheError, PruneOptions, RecordRow
from cachetui.service import CacheService
from cachetui.views import PlanRow, PrunePlan

__all__ = ["USED_SINCE", "MalformedRequest", "execute"]

USED_SINCE = "used since you confirmed"
_POLICY_KEYS = frozenset(
    {"all", "filters", "keep_duration", "reserved_space", "max_used_space", "min_free_space"}
)
Progress = Callable[[dict[str, Any]], None]


class MalformedRequest(ValueError):
    """The request row cannot be run as written (its message says why)."""


def _ids(value: object, what: str = "ids") -> list[str]:
    if not isinstance(value, list) or not value:
        raise MalformedRequest(f"{what} must be a non-empty list of record ids")
    for item in value:
        if not isinstance(item, str) or not ID_PATTERN.fullmatch(item):
            raise MalformedRequest(f"{what}: {item!r} is not a record id")
    return list(dict.fromkeys(value))


def _id(payload: Mapping[str, Any]) -> str:
    value = payload.get("id")
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise MalformedRequest(f"id: {value!r} is not a record id")
    return value


def _flag(payload: Mapping[str, Any], key: str) -> bool:
    value = payload.get(key, False)
    if not isinstance(value, bool):
        raise MalformedRequest(f"{key} must be true or false, not {value!r}")
    return value


def _confirmed(payload: Mapping[str, Any]) -> dict[str, tuple[float | None, int]]:
    raw = payload.get("confirmed", {})
    if not isinstance(raw, dict):
        raise MalformedRequest("confirmed must map record ids to their confirmed state")
    out: dict[str, tuple[float | None, int]] = {}
    for record_id, state in raw.items():
        if not isinstance(state, dict):
            raise MalformedRequest(f"confirmed[{record_id!r}] must be an object")
        last, count = state.get("last_used_at"), state.get("usage_count", 0)
        if last is not None and not isinstance(last, int | float):
            raise MalformedRequest(f"confirmed[{record_id!r}].last_used_at: {last!r}")
        if not isinstance(count, int) or isinstance(count, bool):
            raise MalformedRequest(f"confirmed[{record_id!r}].usage_count: {count!r}")
        out[record_id] = (None if last is None else float(last), count)
    return out


def _policy(payload: Mapping[str, Any]) -> PruneOptions:
    raw = payload.get("policy")
    if not isinstance(raw, dict):
        raise MalformedRequest("policy must be an object of prune options")
    unknown = set(raw) - _POLICY_KEYS
    if unknown:
        raise MalformedRequest(f"policy: unknown option(s) {', '.join(sorted(unknown))}")
    filters = raw.get("filters", [])
    if not isinstance(filters, list) or not all(isinstance(f, str) for f in filters):
        raise MalformedRequest("policy.filters must be a list of strings")
    try:
        return PruneOptions(
            all=bool(raw.get("all", False)),
            filters=tuple(filters),
            keep_duration=raw.get("keep_duration", 0),
            reserved_space=raw.get("reserved_space", 0),
            max_used_space=raw.get("max_used_space", 0),
            min_free_space=raw.get("min_free_space", 0),
        )
    except (CacheError, TypeError, ValueError) as err:
        raise MalformedRequest(f"policy: {err}") from None


def _row(plan_row: PlanRow) -> dict[str, Any]:
    return {
        "id": plan_row.id,
        "size": plan_row.size,
        "description": plan_row.description,
        "shared": plan_row.shared,
        "mutable": plan_row.mutable,
        "last_used_at": plan_row.last_used_at,
    }


def _plan_result(plan: PrunePlan, *, dry_run: bool, **extra: Any) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "removed": [_row(r) for r in plan.rows],
        "freed": plan.freed,
        "refused": [list(item) for item in plan.refused],
        **extra,
    }


class _Progress:
    """on_prune -> a progress report at most every ``interval`` seconds."""

    def __init__(self, report: Progress | None, total: int | None, interval: float = 0.2) -> None:
        self.report = report
        self.total = total
        self.interval = interval
        self.done = 0
        self.freed = 0
        self._last = 0.0

    def __call__(self, row: PlanRow) -> None:
        self.done += 1
        if not row.shared and row.size > 0:
            self.freed += row.size
        now = time.monotonic()
        if self.report is not None and now - self._last >= self.interval:
            self._last = now
            self.report({"done": self.done, "total": self.total, "freed": self.freed})


def _prune_ids(
    service: CacheService, payload: Mapping[str, Any], progress: Progress | None
) -> dict[str, Any]:
    ids = _ids(payload.get("ids"))
    dry_run = _flag(payload, "dry_run")
    confirmed = _confirmed(payload)
    present = set(service.load().rows)
    gone = [i for i in ids if i not in present]
    wanted = [i for i in ids if i in present]
    if dry_run:
        return _plan_result(service.plan_prune(wanted), dry_run=True, gone=gone)
    used_since: set[str] = set()

    def recheck(row: RecordRow) -> bool:
        expected = confirmed.get(row.id)
        if expected is None:
            return True
        if (row.last_use, row.usage_count) != expected:
            used_since.add(row.id)
            return False
        return True

    tracker = _Progress(progress, len(wanted))
    plan = service.prune_ids(wanted, tracker, recheck)
    removed = set(plan.ids)
    after = service.load()
    refused: list[list[str]] = []
    for record_id in wanted:
        if record_id in removed:
            continue
        if record_id in used_since:
            reason = USED_SINCE
        elif record_id not in after.rows:
            gone.append(record_id)
            continue
        else:
            reason = after.rows[record_id].refusal or "it cannot be pruned now"
        refused.append([record_id, reason])
    result = _plan_result(plan, dry_run=False, gone=gone)
    result["refused"] = refused
    return result


def _prune_policy(
    service: CacheService, payload: Mapping[str, Any], progress: Progress | None
) -> dict[str, Any]:
    options = _policy(payload)
    if _flag(payload, "dry_run"):
        return _plan_result(service.plan_policy(options), dry_run=True)
    return _plan_result(service.prune_policy(options, _Progress(progress, None)), dry_run=False)


def execute(
    service: CacheService,
    kind: str,
    payload: object,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run one request; returns its result. ``MalformedRequest`` or ``CacheError`` when
    it cannot run (the caller records the message as the request's error)."""
    if not isinstance(payload, dict):
        raise MalformedRequest(f"payload must be a JSON object, not {type(payload).__name__}")
    if kind == "prune_ids":
        return _prune_ids(service, payload, progress)
    if kind == "prune_policy":
        return _prune_policy(service, payload, progress)
    if kind == "commit":
        return {"id": _id(payload), "committed": service.commit(_id(payload))}
    if kind == "hold":
        return {"id": service.hold(_id(payload))}
    if kind == "release":
        return {"id": _id(payload), "released": service.release(_id(payload))}
    if kind == "force_release":
        raw = payload.get("holder_ids")
        if (
            not isinstance(raw, list)
            or not raw
            or not all(isinstance(h, int) and not isinstance(h, bool) for h in raw)
        ):
            raise MalformedRequest("holder_ids must be a non-empty list of integers")
        return {"released": service.force_release_holders(raw)}
    raise MalformedRequest(f"unknown request kind {kind!r}")
