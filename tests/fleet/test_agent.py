"""Agents on several hosts (subprocesses with their own roots and names) against a real
PostgreSQL: publishing, requests and their safety rules, the CLI, a clean stop."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from cachetui.core import CacheManager
from cachetui.fleet import requests as queue
from cachetui.fleet.executor import USED_SINCE
from cachetui.fleet.reader import FleetReader, RequestInfo
from cachetui.fleet.url import open_database
from tests.fleet.helpers import AgentProc, assert_converged, cli, converged, make_store, wait_until
from tests.fleet.pgcluster import PASSWORD


def _send(url: str, store: str, kind: str, payload: object, ttl: float = 60) -> RequestInfo:
    """Submit a request and wait for its outcome (LISTEN, as the CLI does)."""
    with FleetReader(url) as fleet, fleet.listen() as listener:
        request_id = queue.submit(fleet.db, store, kind, payload, ttl=ttl)  # type: ignore[arg-type]
        return queue.wait(fleet, listener, request_id, timeout=60)


def _confirmed(url: str, store: str, ids: list[str]) -> dict[str, dict[str, object]]:
    """What an operator confirmed: the records' state as the replica shows it."""
    with FleetReader(url) as fleet:
        return queue.confirmation(r for r in fleet.records(store) if r.id in ids)


def test_two_hosts_publish_every_change_and_converge(fleet_url: str, tmp_path: Path) -> None:
    roots = {name: tmp_path / name for name in ("h1", "h2")}
    ids = {name: make_store(root, 12, prefix=name) for name, root in roots.items()}
    agents = [AgentProc(root, fleet_url, name, log_dir=tmp_path).start() for name, root in
              roots.items()]  # fmt: skip
    try:
        for name, root in roots.items():
            wait_until(lambda r=root, n=name: converged(fleet_url, r, n), f"{name} converged")

        # a prune on the host (the CLI, another process) is published as a deletion
        cli("prune", "--root", str(roots["h1"]), "--force", "--filter", f"id=={ids['h1'][0]}")
        # new records on the other host
        make_store(roots["h2"], 3, prefix="late")
        for name, root in roots.items():
            assert_converged(fleet_url, root, name)
        with FleetReader(fleet_url) as fleet:
            assert ids["h1"][0] not in {r.id for r in fleet.records("h1")}
            assert len(fleet.records("h2")) == 15

        # bytes written into a held mutable layer reach the replica's size
        with CacheManager.open(roots["h1"]) as cm:
            ref = cm.new(description="live")
            wait_until(lambda: converged(fleet_url, roots["h1"], "h1"), "new mutable listed")
            (ref.mount().upper / "blob").write_bytes(b"y" * 200_000)

            def grown() -> bool:
                with FleetReader(fleet_url) as fleet:
                    row = {r.id: r for r in fleet.records("h1")}.get(ref.id)
                    return row is not None and row.size >= 200_000 and row.in_use

            wait_until(grown, "the written size in the replica")
            ref.release()

        # stores: both online, counts as each host has them
        out = json.loads("[" + ",".join(cli("stores", "--fleet-url", fleet_url, "--format",
                                            "json").stdout.split("\n")[:-1]) + "]")  # fmt: skip
        assert {s["store"]: s["online"] for s in out} == {"h1": True, "h2": True}
        table = cli("stores", "--fleet-url", fleet_url).stdout
        assert "2 stores, 2 online" in table
        du = cli("du", "--fleet-url", fleet_url).stdout
        assert du.splitlines()[0].startswith("STORE")
        assert "Fleet:\t2 stores" in du
    finally:
        codes = [agent.stop() for agent in agents]
    assert codes == [0, 0]
    table = cli("stores", "--fleet-url", fleet_url).stdout
    assert "stopped" in table and "0 online" in table
    for agent in agents:
        assert PASSWORD not in agent.log()
        assert "***" in agent.log()


def test_a_second_agent_for_the_same_name_is_refused(fleet_url: str, tmp_path: Path) -> None:
    make_store(tmp_path / "a", 1)
    make_store(tmp_path / "b", 1)
    first = AgentProc(tmp_path / "a", fleet_url, "same", log_dir=tmp_path).start()
    try:
        first.wait_log("synchronised")
        second = cli("agent", "--root", str(tmp_path / "b"), "--fleet-url", fleet_url,
                     "--name", "same", check=False, timeout=60)  # fmt: skip
        assert second.returncode == 1
        assert "another agent is serving store 'same'" in second.stderr
        assert PASSWORD not in second.stderr + second.stdout
    finally:
        assert first.stop() == 0


def test_requests_are_checked_late_and_safe_twice(fleet_url: str, tmp_path: Path) -> None:
    root = tmp_path / "h1"
    ids = make_store(root, 8)
    agent = AgentProc(root, fleet_url, "h1", log_dir=tmp_path).start()
    try:
        wait_until(lambda: converged(fleet_url, root, "h1"), "first sync")

        # prune by ids with the confirmed state: done; sent again: reported gone
        payload = {"ids": ids[:2], "confirmed": _confirmed(fleet_url, "h1", ids[:2])}
        done = _send(fleet_url, "h1", "prune_ids", payload)
        assert done.state == "done", done.error
        assert done.result is not None
        assert sorted(r["id"] for r in done.result["removed"]) == sorted(ids[:2])
        again = _send(fleet_url, "h1", "prune_ids", payload)
        assert again.state == "done"
        assert again.result is not None
        assert again.result["removed"] == [] and sorted(again.result["gone"]) == sorted(ids[:2])

        # a record used after the operator confirmed it is kept, and says why
        target = ids[2]
        confirmed = _confirmed(fleet_url, "h1", [target])
        time.sleep(0.01)
        with CacheManager.open(root) as cm:
            cm.get(target).release()  # a build used it
        used = _send(fleet_url, "h1", "prune_ids", {"ids": [target], "confirmed": confirmed})
        assert used.state == "done"
        assert used.result is not None
        assert used.result["removed"] == []
        assert used.result["refused"] == [[target, USED_SINCE]]
        with CacheManager.open(root) as cm:
            assert target in {i.id for i in cm.disk_usage()}

        # the dry run is the agent's plan and changes nothing
        plan = _send(fleet_url, "h1", "prune_policy", {"policy": {"all": True}, "dry_run": True})
        assert plan.result is not None and plan.result["dry_run"] is True
        assert len(plan.result["removed"]) == 6
        with CacheManager.open(root) as cm:
            assert len(cm.disk_usage()) == 6

        # malformed rows fail with a message naming the problem; the agent goes on
        bad = {
            "reboot": {},
            "prune_ids": {"ids": ["../../etc"]},
            "commit": {"id": 42},
            "prune_policy": {"policy": {"all": True, "rm_rf": True}},
        }
        for kind, body in bad.items():
            info = _send(fleet_url, "h1", kind, body)
            assert info.state == "failed"
            assert info.error is not None and info.error.startswith("malformed request")
        db = open_database(fleet_url)
        db.execute_sql(
            "INSERT INTO fleet_request (store, kind, payload, expires_at) VALUES "
            "('h1', 'prune_ids', '[1, 2]'::jsonb, extract(epoch from now()) + 60)"
        )
        db.execute_sql("SELECT pg_notify('cachetui_request', 'h1')")
        db.close()
        with FleetReader(fleet_url) as fleet:
            wait_until(lambda: fleet.requests("h1", open_only=True) == [], "malformed row done")
            last = fleet.requests("h1")[-1]
        assert last.state == "failed" and "payload must be a JSON object" in (last.error or "")

        # hold, release and commit go through the dashboard's own calls
        with CacheManager.open(root) as cm:
            free = cm.new(description="free mutable", retain=True)
            free_id = free.id
            free.release()
        keep = ids[3]
        assert _send(fleet_url, "h1", "hold", {"id": keep}).state == "done"

        def held() -> bool:
            with FleetReader(fleet_url) as fleet:
                return any(r.id == keep and r.in_use for r in fleet.records("h1"))

        wait_until(held, "the hold in the replica")
        refused = _send(fleet_url, "h1", "prune_ids", {"ids": [keep]})
        assert refused.result is not None
        [(refused_id, reason)] = refused.result["refused"]
        # the core's own refusal: it names the holding process (the agent's hold)
        assert refused_id == keep and reason.startswith("it is held by pid ")
        released = _send(fleet_url, "h1", "release", {"id": keep})
        assert released.result == {"id": keep, "released": 1}
        committed = _send(fleet_url, "h1", "commit", {"id": free_id})
        assert committed.state == "done", committed.error
        assert_converged(fleet_url, root, "h1")
    finally:
        assert agent.stop() == 0


def test_a_request_nobody_takes_expires(fleet_url: str, tmp_path: Path) -> None:
    root = tmp_path / "h1"
    ids = make_store(root, 2)
    agent = AgentProc(root, fleet_url, "h1", log_dir=tmp_path).start()
    try:
        agent.wait_log("synchronised")
        agent.signal(signal.SIGSTOP)
        info = _send(fleet_url, "h1", "prune_ids", {"ids": ids}, ttl=0.5)
        assert info.state == "expired"
        agent.signal(signal.SIGCONT)
        agent.wait_log("synchronised")
        time.sleep(1.0)  # the agent is running again; it must not take the expired request
        with CacheManager.open(root, read_only=True) as cm:
            assert {i.id for i in cm.disk_usage()} == set(ids)
        with FleetReader(fleet_url) as fleet:
            assert fleet.request(info.id).state == "expired"  # type: ignore[union-attr]
    finally:
        assert agent.stop() == 0


def test_cli_prune_through_the_fleet(fleet_url: str, tmp_path: Path) -> None:
    roots = {name: tmp_path / name for name in ("h1", "h2")}
    for name, root in roots.items():
        make_store(root, 4, prefix=name)
    agents = [AgentProc(r, fleet_url, n, log_dir=tmp_path).start() for n, r in roots.items()]
    try:
        for agent in agents:
            agent.wait_log("synchronised")
        dry = cli("prune", "--fleet-url", fleet_url, "--all-stores", "--dry-run",
                  "--format", "json").stdout  # fmt: skip
        planned = [json.loads(line) for line in dry.splitlines()]
        assert sorted({p["store"] for p in planned}) == ["h1", "h2"] and len(planned) == 8
        for root in roots.values():
            with CacheManager.open(root, read_only=True) as cm:
                assert len(cm.disk_usage()) == 4
        picked = cli("du", "--fleet-url", fleet_url, "--filter", "description==h21",
                     "--format", "json").stdout  # fmt: skip
        assert [json.loads(line)["store"] for line in picked.splitlines()] == ["h2"]
        typo = cli("du", "--fleet-url", fleet_url, "--filter", "colour==red", check=False)
        assert typo.returncode == 2 and "colour" in typo.stderr
        typo = cli("prune", "--fleet-url", fleet_url, "--all-stores", "--force",
                   "--filter", "colour==red", check=False)  # fmt: skip
        assert typo.returncode == 2 and "colour" in typo.stderr
        usage = cli("prune", "--fleet-url", fleet_url, "--store", "h1", check=False)
        assert usage.returncode == 2 and "--force" in usage.stderr
        done = cli("prune", "--fleet-url", fleet_url, "--store", "h1", "--force",
                   "--filter", "description==h11")  # fmt: skip
        assert "h1:" in done.stdout and "Total:" in done.stdout
        with CacheManager.open(roots["h1"], read_only=True) as cm:
            assert [i.description for i in cm.disk_usage()].count("h11") == 0
            assert len(cm.disk_usage()) == 3
        unknown = cli("prune", "--fleet-url", fleet_url, "--store", "nope", "--force",
                      check=False)  # fmt: skip
        assert unknown.returncode == 2 and "no such store" in unknown.stderr
        bad = cli("du", "--fleet-url", "mysql://u:" + PASSWORD + "@h/x", check=False)
        assert bad.returncode == 2 and PASSWORD not in bad.stderr
    finally:
        for agent in agents:
            assert agent.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGINT])
def test_sigint_stops_cleanly_too(fleet_url: str, tmp_path: Path, signum: int) -> None:
    make_store(tmp_path / "h", 1)
    agent = AgentProc(tmp_path / "h", fleet_url, "h", log_dir=tmp_path).start()
    agent.wait_log("synchronised")
    agent.signal(signum)
    assert agent.proc is not None and agent.proc.wait(30) == 0
    assert "stopped" in agent.log()


def test_gc_runs_on_schedule_and_is_recorded(fleet_url: str, tmp_path: Path) -> None:
    make_store(tmp_path / "h", 2)
    agent = AgentProc(tmp_path / "h", fleet_url, "h", log_dir=tmp_path)
    agent.start("--gc-interval", "1s")
    try:
        agent.wait_log("synchronised")
        with FleetReader(fleet_url) as fleet:
            runs = wait_until(lambda: fleet.gc_runs("h"), "a scheduled GC run")
            assert runs[0].trigger == "schedule" and runs[0].error == ""
            assert runs[0].records == 0  # nothing is old enough for the default list
            store = fleet.store("h")
            assert store is not None and store.last_gc_at is not None
        row = json.loads(cli("stores", "--fleet-url", fleet_url, "--format", "json").stdout)
        assert row["last_gc_at"] is not None and row["last_gc_freed"] == 0
    finally:
        assert agent.stop() == 0
    bad = cli("agent", "--root", str(tmp_path / "h"), "--fleet-url", fleet_url,
              "--gc-interval", "soon", check=False)  # fmt: skip
    assert bad.returncode == 2 and "--gc-interval" in bad.stderr


def test_gc_policy_file_drives_the_agents_gc(fleet_url: str, tmp_path: Path) -> None:
    """``--gc-policy`` reads the same files as ``cachetui gc --policy``: a tier that takes
    everything empties the host's store, and the run is recorded with what it removed."""
    make_store(tmp_path / "h", 2)
    policy = tmp_path / "gc.toml"
    policy.write_text('[[tier]]\nname = "everything"\nall = true\n')
    agent = AgentProc(tmp_path / "h", fleet_url, "h", log_dir=tmp_path)
    agent.start("--gc-interval", "1s", "--gc-policy", str(policy))
    try:
        agent.wait_log("synchronised")
        with FleetReader(fleet_url) as fleet:
            runs = wait_until(
                lambda: [r for r in fleet.gc_runs("h") if r.records], "a GC run that removed"
            )
            assert runs[0].records == 2 and runs[0].error == ""
    finally:
        assert agent.stop() == 0
    with CacheManager.open(tmp_path / "h", read_only=True) as cm:
        assert cm.disk_usage() == []
