"""The fleet's values: what the replica holds, as the reader and the dashboards see it.

``StoreInfo`` (one store's row, with ``online``, ``age`` and ``status`` by the server's
clock), ``FleetRecord`` (a replicated record), ``FleetHolder``, ``RequestInfo``,
``GcRunInfo`` and ``Notification``. Plain frozen values, no database: the named
operations (``replica_store``) build them, ``reader`` hands them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cachetui.core import RecordState

__all__ = [
    "OFFLINE_AFTER",
    "FleetHolder",
    "FleetRecord",
    "GcRunInfo",
    "Notification",
    "RequestInfo",
    "StoreInfo",
    "format_age",
]

#: A store whose heartbeat is older than this (seconds) is offline.
OFFLINE_AFTER = 10.0


def format_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


@dataclass(frozen=True, slots=True)
class StoreInfo:
    name: str
    host: str
    root: str
    agent_version: str
    agent_pid: int
    started_at: float | None
    heartbeat_at: float | None
    stopped_at: float | None
    synced_at: float | None
    disk_total: int
    disk_free: int
    records: int
    total: int
    reclaimable: int
    in_use: int
    shared: int
    last_gc_at: float | None
    last_gc_freed: int | None
    last_gc_records: int | None
    last_error: str
    version: int
    now: float  # the server's clock when read

    @property
    def age(self) -> float:
        """Seconds since the last heartbeat (how old what is known about the store is)."""
        return self.now - self.heartbeat_at if self.heartbeat_at is not None else float("inf")

    @property
    def online(self) -> bool:
        return self.stopped_at is None and self.age <= OFFLINE_AFTER

    @property
    def status(self) -> str:
        if self.online:
            return "online"
        if self.stopped_at is not None:
            return f"stopped {format_age(self.now - self.stopped_at)} ago"
        if self.heartbeat_at is None:
            return "offline (never heard from)"
        return f"offline for {format_age(self.age)}"

    def offline_reason(self) -> str | None:
        """Why an action on this store is refused now (None when it is online)."""
        if self.online:
            return None
        return (
            f"store {self.name} is {self.status}: its records are as of "
            f"{format_age(self.age)} ago and no action can reach it"
        )


@dataclass(frozen=True, slots=True)
class FleetRecord:
    store: str
    id: str
    parent: str | None
    mutable: bool
    in_use: bool
    held: bool
    retain: bool
    pending_commit: bool
    record_type: str
    description: str
    size: int
    created_at: float
    last_used_at: float | None
    usage_count: int
    shared: bool
    has_children: bool
    version: int

    @property
    def reclaimable(self) -> bool:
        return not self.in_use

    def view(self) -> RecordState:
        """The dashboard's row for this record. The replica carries the core's facts
        (held, children), not the holders or the layer, so the refusal is said from those
        facts and the health is the agent's to report."""
        if self.held:
            refusal: str | None = "it is held by a running process"
        elif self.has_children:
            refusal = "it has child records (prune them first)"
        else:
            refusal = None
        return RecordState(
            id=self.id,
            parent=self.parent,
            mutable=self.mutable,
            in_use=self.in_use,
            size=self.size,
            created_at=self.created_at,
            last_used_at=self.last_used_at,
            usage_count=self.usage_count,
            description=self.description,
            record_type=self.record_type,
            shared=self.shared,
            health="ok",
            held=self.held,
            holders=(),
            in_use_via=None,
            retain=self.retain,
            pending_commit=self.pending_commit,
            has_children=self.has_children,
            layer_id=self.id,
            layer_path="",
            refusal=refusal,
        )


@dataclass(frozen=True, slots=True)
class FleetHolder:
    store: str
    id: int
    record: str
    pid: int
    host: str
    created_at: float
    alive: bool


@dataclass(frozen=True, slots=True)
class RequestInfo:
    id: int
    store: str
    kind: str
    payload: dict[str, Any]
    state: str  # pending, taken, done, failed, expired
    created_at: float
    expires_at: float
    taken_at: float | None
    finished_at: float | None
    attempts: int
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "expired")


@dataclass(frozen=True, slots=True)
class GcRunInfo:
    id: int
    store: str
    trigger: str
    started_at: float
    finished_at: float
    records: int
    freed: int
    error: str


@dataclass(frozen=True, slots=True)
class Notification:
    channel: str
    payload: dict[str, Any]

    @property
    def store(self) -> str:
        return str(self.payload.get("store", ""))

    @property
    def kind(self) -> str:
        return str(self.payload.get("kind", ""))
