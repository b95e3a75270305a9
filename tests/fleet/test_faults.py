"""Faults, for real: the PostgreSQL server killed mid-sync and mid-request, an agent
killed mid-request and restarted, an agent stopped past the heartbeat limit. Nothing is
lost on any host, and the replica converges to every host's own ``du``."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from cachetui.core import CacheManager
from cachetui.fleet import requests as queue
from cachetui.fleet.reader import FleetReader, OfflineError
from tests.fleet.helpers import (
    AgentProc,
    assert_converged,
    cli,
    converged,
    local_du,
    make_store,
    wait_until,
)
from tests.fleet.pgcluster import PgCluster


def _ids(root: Path) -> set[str]:
    with CacheManager.open(root, read_only=True) as cm:
        return {info.id for info in cm.disk_usage()}


def test_server_killed_mid_sync_then_back(pg: PgCluster, fleet_url: str, tmp_path: Path) -> None:
    hosts = {name: tmp_path / name for name in ("h1", "h2")}
    for name, root in hosts.items():
        make_store(root, 250 if name == "h1" else 30, prefix=name, size=10)
    before = {name: local_du(root) for name, root in hosts.items()}
    agents = [AgentProc(r, fleet_url, n, log_dir=tmp_path).start() for n, r in hosts.items()]
    try:
        agents[0].wait_log("serving")  # registered: the snapshot is being written now
        pg.kill()
        time.sleep(1.0)
        # the hosts go on without the server: a build adds records meanwhile
        make_store(hosts["h2"], 5, prefix="offline")
        pg.start()
        for name, root in hosts.items():
            assert_converged(fleet_url, root, name)
    finally:
        codes = [agent.stop() for agent in agents]
    assert codes == [0, 0]
    assert local_du(hosts["h1"]) == before["h1"]  # nothing lost on the host
    assert before["h2"] <= local_du(hosts["h2"])


def test_server_killed_mid_request_then_back(pg: PgCluster, fleet_url: str, tmp_path: Path) -> None:
    root = tmp_path / "h1"
    ids = make_store(root, 300, size=10)
    doomed, kept = ids[:250], ids[250:]
    agent = AgentProc(root, fleet_url, "h1", log_dir=tmp_path).start()
    try:
        wait_until(lambda: converged(fleet_url, root, "h1"), "first sync")
        with FleetReader(fleet_url) as fleet, fleet.listen() as listener:
            request_id = queue.submit(fleet.db, "h1", "prune_ids", {"ids": doomed})
            # the first progress report: the agent is pruning now
            wait_until(
                lambda: any(
                    n.kind == "request" and n.payload.get("id") == request_id
                    and n.payload.get("state") == "taken"
                    for n in listener.wait(0.5)
                ),
                "the agent to take the request",
            )  # fmt: skip
        pg.kill()
        time.sleep(1.0)
        pg.start()
        with FleetReader(fleet_url) as fleet:
            info = wait_until(
                lambda: (r := fleet.request(request_id)) is not None and r.finished and r,
                "the request's outcome after the outage",
            )
        assert info.state == "done", info.error
        removed = {r["id"] for r in info.result["removed"]} | set(info.result["gone"])
        assert removed == set(doomed)
        assert _ids(root) == set(kept)  # exactly what was asked, nothing else
        assert_converged(fleet_url, root, "h1")
    finally:
        assert agent.stop() == 0


def test_agent_killed_mid_request_finishes_it_when_restarted(
    fleet_url: str, tmp_path: Path
) -> None:
    root = tmp_path / "h1"
    ids = make_store(root, 60, size=10)
    doomed, kept = ids[:45], ids[45:]
    agent = AgentProc(root, fleet_url, "h1", log_dir=tmp_path)
    # dies like a SIGKILL after the first batch of the prune is committed
    agent.start(crash_at="prune:committed")
    try:
        wait_until(lambda: converged(fleet_url, root, "h1"), "first sync")
        with FleetReader(fleet_url) as fleet:
            request_id = queue.submit(fleet.db, "h1", "prune_ids", {"ids": doomed})
        assert agent.proc is not None
        assert agent.proc.wait(60) == 137
        with FleetReader(fleet_url) as fleet, fleet.listen() as listener:
            info = fleet.request(request_id)
            assert info is not None and info.state == "taken"
            # whoever waits for it learns, once the store is offline, why nothing comes
            with pytest.raises(OfflineError, match=r"was taken but store h1 went offline"):
                queue.wait(fleet, listener, request_id, timeout=60)
        agent.start()  # the restarted agent finds the request it had taken
        agent.wait_log("running again after a restart")
        with FleetReader(fleet_url) as fleet:
            info = wait_until(
                lambda: (r := fleet.request(request_id)) is not None and r.finished and r,
                "the re-run request's outcome",
            )
        assert info.state == "done", info.error
        assert info.attempts == 2
        removed = {r["id"] for r in info.result["removed"]} | set(info.result["gone"])
        assert removed == set(doomed)
        assert info.result["gone"]  # the first run's batch reports as already gone
        assert _ids(root) == set(kept)
        assert_converged(fleet_url, root, "h1")
    finally:
        assert agent.stop() == 0


def test_agent_stopped_past_the_heartbeat_limit(fleet_url: str, tmp_path: Path) -> None:
    root = tmp_path / "h1"
    ids = make_store(root, 5)
    agent = AgentProc(root, fleet_url, "h1", log_dir=tmp_path).start()
    try:
        wait_until(lambda: converged(fleet_url, root, "h1"), "first sync")
        agent.signal(signal.SIGSTOP)
        with FleetReader(fleet_url) as fleet:
            wait_until(lambda: not fleet.store("h1").online, "h1 offline", timeout=30)  # type: ignore[union-attr]
        stores = cli("stores", "--fleet-url", fleet_url).stdout
        assert "offline for" in stores
        # its records stay listed, with the age of what is known
        du = cli("du", "--fleet-url", fleet_url).stdout
        assert sum(line.startswith("h1 ") for line in du.splitlines()) == 5
        assert "(offline for" in du
        # and actions on it are refused with that reason
        refused = cli("prune", "--fleet-url", fleet_url, "--store", "h1", "--force",
                      check=False)  # fmt: skip
        assert refused.returncode == 1
        assert "refused: store h1 is offline for" in refused.stderr
        # a build goes on while the agent is stopped
        with CacheManager.open(root) as cm:
            cm.get(ids[0]).release()
        agent.signal(signal.SIGCONT)
        with FleetReader(fleet_url) as fleet:
            wait_until(lambda: fleet.store("h1").online, "h1 online again")  # type: ignore[union-attr]
        assert_converged(fleet_url, root, "h1")
        assert _ids(root) == set(ids)
    finally:
        assert agent.stop() == 0


def test_threads_read_and_write_at_once_after_a_server_restart(
    pg: PgCluster, fleet_url: str, tmp_path: Path
) -> None:
    """Every thread keeps its own connection (the dashboard's workers come from a pool);
    after a restart each is dead, and each thread's first read, and first request sent,
    must still succeed."""
    import concurrent.futures

    root = tmp_path / "h1"
    make_store(root, 3, size=10)
    agent = AgentProc(root, fleet_url, "h1", log_dir=tmp_path).start()
    try:
        agent.wait_log("synchronised")
        with FleetReader(fleet_url) as fleet, concurrent.futures.ThreadPoolExecutor(4) as pool:
            barrier = __import__("threading").Barrier(4)

            def read() -> int:
                barrier.wait(10)  # four threads, four connections
                return len(fleet.records("h1"))

            def send() -> int:
                barrier.wait(10)
                return queue.submit(fleet.db, "ghost", "hold", {"id": "x"}, ttl=600)

            assert list(pool.map(lambda _: read(), range(4))) == [3, 3, 3, 3]
            pg.stop()
            pg.start()
            # no retry here: the first write on every thread goes through (its dead
            # connection fails at BEGIN, before anything was sent, and is replaced)
            sent = list(pool.map(lambda _: send(), range(4)))
            assert len(set(sent)) == 4
            assert sorted(r.id for r in fleet.requests("ghost")) == sorted(sent)
            pg.stop()
            pg.start()
            # and the first read on every thread answers
            assert list(pool.map(lambda _: read(), range(4))) == [3, 3, 3, 3]
            assert [s.name for s in fleet.stores()] == ["h1"]
    finally:
        agent.stop()
