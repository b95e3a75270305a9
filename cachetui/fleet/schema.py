"""The fleet's PostgreSQL schema: tables, versions and in-place migrations, notifications.

Tables (every replica row is keyed by its store's name):

* ``fleet_meta``: ``schema_version``;
* ``fleet_store``: one row per store (host agent): where it runs, its heartbeat (server
  clock, epoch seconds), disk total/free, totals, last GC, ``version`` (bumped by every
  publish: replica rows carry the version that wrote them);
* ``fleet_record``: the store's visible records, as its own dashboard shows them;
* ``fleet_holder``: the holders (pid, host, alive) of the store's records;
* ``fleet_request``: the queue of requests to the agents (see ``requests``);
* ``fleet_gc_run``: each GC run an agent made (when, why, records, bytes freed).

The statements themselves, the migrations included, are the named operations of
``cachetui.fleet.replica_store``. Migrations are ordered steps, each run once in its own
transaction under an advisory lock, so several agents starting together migrate once; a
database newer than this code is refused. Changes are announced with ``pg_notify``
inside the transaction that made them (listeners never see a change before it is
committed):

* channel ``CHANNEL`` (``cachetui_fleet``), payload JSON ``{"store", "kind", ...}`` with
  ``kind`` one of ``records`` (with ``version``, ``deleted`` ids or ``"reload": true``
  when the ids would not fit, and ``holders``: whether the holders changed too),
  ``store`` (heartbeat, totals, registration), ``request`` (with ``id`` and ``state``)
  and ``gc``;
* channel ``REQUEST_CHANNEL`` (``cachetui_request``), payload the store's name: wakes the
  agent of that store when a request for it is queued.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CHANNEL",
    "MAX_NOTIFY_IDS",
    "REQUEST_CHANNEL",
    "SCHEMA_VERSION",
    "records_payload",
]

SCHEMA_VERSION = 1
CHANNEL = "cachetui_fleet"
REQUEST_CHANNEL = "cachetui_request"
# pg_notify payloads must stay under 8000 bytes: ids beyond this become "reload".
MAX_NOTIFY_IDS = 200


def records_payload(
    store: str, version: int, deleted: list[str], *, holders: bool = True
) -> dict[str, Any]:
    """The ``records`` notification: the ids removed, or ``reload`` when too many, and
    whether the store's holders changed (a listener re-reads them only then; a payload
    without the key means they may have)."""
    payload: dict[str, Any] = {
        "store": store,
        "kind": "records",
        "version": version,
        "holders": holders,
    }
    if len(deleted) > MAX_NOTIFY_IDS:
        payload["reload"] = True
    else:
        payload["deleted"] = deleted
    return payload
