"""The fleet's commands: ``agent``, ``stores``, ``du --fleet-url`` and ``prune --fleet-url``.

``cli.py`` parses the arguments and calls these. Every message that names the fleet
database masks its password. A store that is offline (no heartbeat for 10 s) is listed
with the age of what is known of it; a prune aimed at it is refused with that reason.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from cachetui import output
from cachetui.core import InvalidError, UsageInfo
from cachetui.fleet.reader import FleetReader, FleetRecord, StoreInfo, format_age
from cachetui.units import format_bytes_buildx, parse_duration

__all__ = ["cmd_agent", "cmd_du", "cmd_prune", "cmd_stores", "usage_info"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _out(stream: TextIO, lines: Sequence[str] | str) -> None:
    for line in [lines] if isinstance(lines, str) else lines:
        stream.write(line + "\n")
    stream.flush()


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def usage_info(record: FleetRecord) -> UsageInfo:
    """A replica row as the core's ``UsageInfo`` (what ``du`` prints)."""
    return UsageInfo(
        record.id,
        record.mutable,
        record.in_use,
        record.size,
        (record.parent,) if record.parent else (),
        _when(record.created_at),
        _when(record.last_used_at) if record.last_used_at is not None else None,
        record.usage_count,
        record.description,
        record.record_type,
        record.shared,
    )


# -- agent ---------------------------------------------------------------------------------


def cmd_agent(args: argparse.Namespace, root: Path) -> int:
    from cachetui.fleet.agent import Agent, AgentConfig, AgentError

    interval = parse_duration(args.gc_interval, what="--gc-interval")
    config = AgentConfig(root=root, url=args.fleet_url, gc_interval=interval)
    if args.name is not None:
        if not args.name.strip():
            raise InvalidError("--name must not be empty")
        config.name = args.name.strip()
    if args.gc_policy is not None:
        config.gc_policies, config.gc_source = _load_policy(Path(args.gc_policy), root)
    agent = Agent(config)

    def stop(signum: int, frame: object) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return agent.run()
    except AgentError as err:
        _out(sys.stderr, f"cachetui: {err}")
        return EXIT_FAILURE


def _load_policy(path: Path, root: Path) -> tuple[list[Any], str]:
    """The GC list from a policy file: the same reader as ``cachetui gc --policy``."""
    from cachetui import gcpolicy
    from cachetui.core import disk_stat

    policy = gcpolicy.load_policy(path, disk_stat(root))
    for problem in policy.problems:  # warnings, with their lines, as `cachetui gc` shows them
        _out(sys.stderr, problem.render(policy.source))
    return policy.policies, str(path)


# -- stores --------------------------------------------------------------------------------


def _store_json(store: StoreInfo) -> dict[str, Any]:
    return {
        "store": store.name,
        "host": store.host,
        "root": store.root,
        "online": store.online,
        "status": store.status,
        "age": round(store.age, 1) if store.heartbeat_at is not None else None,
        "records": store.records,
        "total": store.total,
        "reclaimable": store.reclaimable,
        "disk_total": store.disk_total,
        "disk_free": store.disk_free,
        "last_gc_at": output.rfc3339(_when(store.last_gc_at)) if store.last_gc_at else None,
        "last_gc_freed": store.last_gc_freed,
        "agent_version": store.agent_version,
    }


def cmd_stores(args: argparse.Namespace) -> int:
    with FleetReader(args.fleet_url) as fleet:
        stores = fleet.stores()
    if args.format == "json":
        _out(sys.stdout, [json.dumps(_store_json(s)) for s in stores])
        return EXIT_OK
    rows = []
    for s in stores:
        free = f"{100 * s.disk_free / s.disk_total:.0f}%" if s.disk_total else "-"
        if s.last_gc_at:
            freed = format_bytes_buildx(s.last_gc_freed or 0)
            gc = f"{format_age(s.now - s.last_gc_at)} ago, {freed}"
        else:
            gc = "never"
        rows.append(
            (
                s.name,
                s.status,
                str(s.records),
                format_bytes_buildx(s.total),
                format_bytes_buildx(s.reclaimable),
                f"{format_bytes_buildx(s.disk_free)} ({free})",
                gc,
            )
        )
    header = ("STORE", "STATUS", "RECORDS", "TOTAL", "RECLAIMABLE", "DISK FREE", "LAST GC")
    lines = output.format_table(header, rows)
    online = sum(1 for s in stores if s.online)
    lines.append("")
    lines.append(f"{len(stores)} stores, {online} online")
    _out(sys.stdout, lines)
    return EXIT_OK


# -- du ------------------------------------------------------------------------------------


def _targets(fleet: FleetReader, names: Sequence[str]) -> list[StoreInfo]:
    stores = {s.name: s for s in fleet.stores()}
    unknown = [n for n in names if n not in stores]
    if unknown:
        known = ", ".join(stores) or "none"
        raise InvalidError(f"--store {unknown[0]}: no such store in the fleet (known: {known})")
    return [stores[n] for n in names] if names else list(stores.values())


def cmd_du(args: argparse.Namespace) -> int:
    from cachetui.core import parse_filters, usage_fields

    matcher = parse_filters(args.filter)  # a typo is refused before anything is read
    with FleetReader(args.fleet_url) as fleet:
        targets = _targets(fleet, args.store)
        names = [s.name for s in targets]
        rows = fleet.records() if not args.store else fleet.records_of(names)
        now = fleet.server_now()
    if matcher:
        rows = [
            r
            for r in rows
            if matcher.matches(
                usage_fields(
                    id=r.id,
                    parents=(r.parent,) if r.parent else (),
                    description=r.description,
                    record_type=r.record_type,
                    in_use=r.in_use,
                    mutable=r.mutable,
                    shared=r.shared,
                )
            )
        ]
    if args.format == "json":
        lines = []
        for record in rows:
            item = output.usage_json(usage_info(record))
            lines.append(json.dumps({"store": record.store, **item}))
        _out(sys.stdout, lines)
        return EXIT_OK
    infos = [usage_info(r) for r in rows]
    table = output.format_table(
        ("STORE", *output.DU_HEADER),
        (
            (
                r.store,
                info.id + ("*" if info.mutable else ""),
                "true" if info.reclaimable else "false",
                format_bytes_buildx(info.size) + ("*" if info.shared else ""),
                output.last_accessed(info, now),
                info.record_type,
                output.flags(info),
            )
            for r, info in zip(rows, infos, strict=True)
        ),
    )
    table.append("")
    for store in targets:
        note = "" if store.online else f"  ({store.status}: as of {format_age(store.age)} ago)"
        table.append(
            f"{store.name}: {store.records} records, total {format_bytes_buildx(store.total)}, "
            f"reclaimable {format_bytes_buildx(store.reclaimable)}{note}"
        )
    total = sum(s.total for s in targets)
    reclaimable = sum(s.reclaimable for s in targets)
    table.append(
        f"Fleet:\t{len(targets)} stores, total {format_bytes_buildx(total)}, "
        f"reclaimable {format_bytes_buildx(reclaimable)}"
    )
    _out(sys.stdout, table)
    return EXIT_OK


# -- prune ---------------------------------------------------------------------------------


def _policy_json(args: argparse.Namespace, store: StoreInfo) -> dict[str, Any]:
    from cachetui.units import parse_size

    keep = 0.0
    if args.keep_duration is not None:
        keep = parse_duration(args.keep_duration, what="--keep-duration")
    policy: dict[str, Any] = {"all": bool(args.all), "filters": list(args.filter),
                              "keep_duration": keep}  # fmt: skip
    for flag, key, text in (
        ("--reserved-space", "reserved_space", args.reserved_space),
        ("--max-used-space", "max_used_space", args.max_used_space),
        ("--min-free-space", "min_free_space", args.min_free_space),
    ):
        # a percentage is of the disk holding that store
        policy[key] = 0 if text is None else parse_size(text, disk_total=store.disk_total,
                                                        what=flag)  # fmt: skip
    return policy


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\x1b[2K{message}")
        sys.stderr.flush()


def cmd_prune(args: argparse.Namespace) -> int:
    from cachetui.fleet import requests as queue

    if bool(args.store) == bool(args.all_stores):
        raise InvalidError("prune --fleet-url needs --store NAME (repeatable) or --all-stores")
    if not (args.force or args.dry_run):
        raise InvalidError(
            "prune --fleet-url sends the request without asking: add --force "
            "(or --dry-run to ask the agents for their plan)"
        )
    from cachetui.core import parse_filters

    parse_filters(args.filter)  # a typo is refused here, before any host is asked
    as_json = args.format == "json"
    failed = 0
    with FleetReader(args.fleet_url) as fleet:
        targets = _targets(fleet, [] if args.all_stores else args.store)
        sent: list[tuple[StoreInfo, int]] = []
        with fleet.listen() as listener:  # before sending: no notification is missed
            for store in targets:
                reason = store.offline_reason()
                if reason is not None:
                    _out(sys.stderr, f"cachetui: refused: {reason}")
                    failed += 1
                    continue
                payload = {"policy": _policy_json(args, store), "dry_run": bool(args.dry_run)}
                request_id = queue.submit(fleet.db, store.name, "prune_policy", payload,
                                          ttl=args.expire)  # fmt: skip
                sent.append((store, request_id))
            now = fleet.server_now()
            for store, request_id in sent:

                def on_progress(info: Any, name: str = store.name) -> None:
                    done = (info.progress or {}).get("done", 0)
                    _progress(f"{name}: removed {done} records")

                info = queue.wait(fleet, listener, request_id, on_progress=on_progress)
                _progress("")
                if info.state != "done" or info.result is None:
                    _out(sys.stderr, f"cachetui: {store.name}: request {request_id} "
                                     f"{info.state}: {info.error or 'no result'}")  # fmt: skip
                    failed += 1
                    continue
                _print_result(store.name, info.result, now, as_json=as_json)
    return EXIT_FAILURE if failed else EXIT_OK


def _print_result(store: str, result: dict[str, Any], now: float, *, as_json: bool) -> None:
    removed = result.get("removed", [])
    if as_json:
        _out(sys.stdout, [json.dumps({"store": store, **row}) for row in removed])
        return
    verb = "Would free" if result.get("dry_run") else "Total"
    lines = [f"{store}:"]
    if removed:
        lines.append("  " + output.prune_header())
    for row in removed:
        ago = ""
        if row.get("last_used_at"):
            from cachetui.units import format_duration_ago

            ago = format_duration_ago(now - row["last_used_at"]) + " ago"
        lines.append(f"  {row['id']:<26} {'true':<11} {format_bytes_buildx(row['size']):<9} {ago}")
    for record_id, reason in result.get("refused", []):
        lines.append(f"  kept {record_id}: {reason}")
    lines.append(f"  {verb}:\t{format_bytes_buildx(int(result.get('freed', 0)))}")
    _out(sys.stdout, lines)
