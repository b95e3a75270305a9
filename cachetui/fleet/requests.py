"""The request queue: operators send requests to a store's agent; the agent runs them.

A request row (``fleet_request``) names its store, a ``kind`` and a JSON ``payload``:

* ``prune_ids``: ``{"ids": [...], "confirmed": {id: {"last_used_at": float|null,
  "usage_count": int, "holders": int}}, "dry_run": bool}``: the state the operator saw
  and confirmed; the agent refuses a record whose state changed ("used since you
  confirmed") inside the write transaction that would remove it;
* ``prune_policy``: ``{"policy": {"all", "filters", "keep_duration", "reserved_space",
  "max_used_space", "min_free_space"}, "dry_run": bool}``;
* ``commit``, ``hold``, ``release``: ``{"id": ...}``;
* ``force_release``: ``{"holder_ids": [...]}``.

States: ``pending`` -> ``taken`` -> ``done`` | ``failed``; ``pending`` -> ``expired``
when no agent took it before ``expires_at`` (default ``DEFAULT_TTL`` = 60 s after it was
sent, by the server's clock). The agent takes a request with ``FOR UPDATE SKIP LOCKED``;
a request still ``taken`` when its store's agent starts was taken by an agent that died,
and is run again (every kind is safe to run twice: a pruned id reports as gone). Progress
and the result are written back, each with a notification in the same transaction.

Senders use ``submit()`` then ``wait()``, which LISTENs for the request's notifications
instead of polling.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import peewee

from cachetui.fleet import replica_store as replica
from cachetui.fleet.reader import (
    FleetError,
    FleetReader,
    FleetRecord,
    Listener,
    OfflineError,
    RequestInfo,
)
from cachetui.fleet.schema import CHANNEL, REQUEST_CHANNEL

__all__ = [
    "DEFAULT_TTL",
    "KINDS",
    "TakenRequest",
    "confirmation",
    "expire_due",
    "finish",
    "report_progress",
    "submit",
    "take",
    "wait",
]

DEFAULT_TTL = 60.0
KINDS = frozenset({"prune_ids", "prune_policy", "commit", "hold", "release", "force_release"})


@dataclass(frozen=True, slots=True)
class TakenRequest:
    id: int
    kind: str
    payload: Any  # as stored: the agent checks its shape before using it
    attempts: int
    rerun: bool  # it was taken before, by an agent that died


def confirmation(records: Iterable[FleetRecord]) -> dict[str, dict[str, Any]]:
    """The ``confirmed`` payload of a ``prune_ids`` request: each record's state as the
    operator saw it on screen (the agent refuses a record that changed since)."""
    return {r.id: {"last_used_at": r.last_used_at, "usage_count": r.usage_count} for r in records}


def submit(
    db: peewee.PostgresqlDatabase,
    store: str,
    kind: str,
    payload: dict[str, Any],
    *,
    ttl: float = DEFAULT_TTL,
) -> int:
    """Queue a request and wake its store's agent (one transaction); returns its id."""
    with replica.transaction(db):
        request_id = replica.insert_request(db, store, kind, payload, ttl)
        replica.notify(db, REQUEST_CHANNEL, store)
        _announce(db, store, request_id, "pending")
    return request_id


def _announce(db: peewee.PostgresqlDatabase, store: str, request_id: int, state: str) -> None:
    replica.notify(db, CHANNEL, {"store": store, "kind": "request", "id": request_id,
                                 "state": state})  # fmt: skip


def expire_due(db: peewee.PostgresqlDatabase, store: str | None = None) -> list[int]:
    """Mark pending requests past their deadline as expired; returns their ids."""
    with replica.transaction(db):
        expired = replica.expire_requests(db, store)
        for request_id, request_store in expired:
            _announce(db, request_store, request_id, "expired")
    return [request_id for request_id, _ in expired]


def take(db: peewee.PostgresqlDatabase, store: str) -> TakenRequest | None:
    """The oldest request for ``store`` that can run now, marked taken (or None)."""
    with replica.transaction(db):
        claimed = replica.claim_request(db, store)
        if claimed is None:
            return None
        request_id, kind, payload, state, attempts = claimed
        _announce(db, store, request_id, "taken")
    return TakenRequest(request_id, kind, payload, attempts + 1, state == "taken")


def report_progress(
    db: peewee.PostgresqlDatabase, store: str, request_id: int, progress: dict[str, Any]
) -> None:
    with replica.transaction(db):
        replica.set_request_progress(db, request_id, progress)
        _announce(db, store, request_id, "taken")


def finish(
    db: peewee.PostgresqlDatabase,
    store: str,
    request_id: int,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Write the outcome: ``done`` with a result, or ``failed`` with an error."""
    state = "failed" if error is not None else "done"
    with replica.transaction(db):
        replica.finish_request(db, request_id, state, result, error)
        _announce(db, store, request_id, state)


def wait(
    reader: FleetReader,
    listener: Listener,
    request_id: int,
    *,
    on_progress: Callable[[RequestInfo], None] | None = None,
    timeout: float | None = None,
) -> RequestInfo:
    """Block until the request is finished (done, failed or expired); LISTEN, no polling.

    The listener must have been created before ``submit`` so no notification is missed.
    Past its deadline a request nobody took is marked expired here. ``timeout`` bounds the
    wait for a taken request (``FleetError`` when it passes).
    """
    started = time.monotonic()
    seen_progress: object = None
    while True:
        info = reader.request(request_id)
        if info is None:
            raise FleetError(f"request {request_id} vanished from the fleet database")
        if info.finished:
            return info
        if info.progress is not None and info.progress != seen_progress and on_progress:
            seen_progress = info.progress
            on_progress(info)
        if info.state == "pending":
            left = info.expires_at - reader.server_now()
            if left <= 0:
                expire_due(reader.db, info.store)
                continue
            wake = min(left + 0.05, 5.0)
        else:
            # a taken request: its agent reports progress and the result; every few
            # seconds make sure the agent is still alive to do so
            store = reader.store(info.store)
            if store is not None and not store.online:
                raise OfflineError(
                    f"request {request_id} was taken but store {info.store} went "
                    f"{store.status}; its agent finishes it when it runs again"
                )
            wake = 5.0
        if timeout is not None:
            remaining = timeout - (time.monotonic() - started)
            if remaining <= 0:
                raise FleetError(f"request {request_id} is still {info.state} after {timeout:g}s")
            wake = min(wake, remaining)
        for note in listener.wait(wake):
            if note.kind == "request" and note.payload.get("id") == request_id:
                break
