"""Benchmark: a fleet of 20 stores x 10,000 records on one PostgreSQL server.

Measures, with real ``cachetui agent`` subprocesses against a throwaway cluster started
from the installed server binaries (as the tests do):

* initial sync: each agent's full snapshot of its 10,000 records (goal: under 2 s), and
  for comparison ``psql``'s ``\\copy`` of the same 10,000 rows into a plain table;
* latency: a file written into a held layer on a host -> the new size in the replica,
  seen through LISTEN (median and p95 of ``--writes`` writes; goal: median under 0.3 s),
  with the other agents stopped first (they would share this machine's inotify budget);
* agent idle CPU over ``--idle`` seconds, every agent (goal: under 1% of a core);
* ``cachetui du --fleet-url`` over all 200,000 records (table and JSON), against ``psql``
  selecting the same rows.

    python bench/bench_fleet.py [--stores 20] [--records 10000] [--writes 30] [--idle 10]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import best_of, build_flat_store

from cachetui.core import CacheManager
from cachetui.fleet.reader import FleetReader
from tests.fleet.pgcluster import SUPERUSER, PgCluster, find_bindir

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _wait_log(path: Path, pattern: str, timeout: float = 300) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text(errors="replace")) if path.exists() else None
        if found:
            return found
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {pattern!r} in {path}:\n{path.read_text()}")


def _psql(cluster: PgCluster, db: str, *args: str) -> float:
    psql = cluster.bindir / "psql"
    started = time.perf_counter()
    subprocess.run(
        [
            str(psql),
            "-q",
            "-X",
            "-h",
            str(cluster.sock),
            "-p",
            str(cluster.port),
            "-U",
            SUPERUSER,
            "-d",
            db,
            *args,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "LC_ALL": "C"},
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=20)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--writes", type=int, default=30)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL's server binaries are not installed")
    # SIGTERM (timeout, Ctrl-C) must still stop the agents and the server below
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    cluster = PgCluster(bindir)
    cluster.init()
    cluster.start()
    agents: list[subprocess.Popen[bytes]] = []
    # removed only after the agents stopped: an agent must never see its store vanish
    workdir = tempfile.mkdtemp(prefix="bench-fleet-", dir=Path.home())
    try:
        db = cluster.create_database("bench")
        url = cluster.url(db)
        with contextlib.nullcontext(workdir) as tmp:
            base = Path(tmp)
            roots = [base / f"host{n:02d}" for n in range(args.stores)]
            started = time.perf_counter()
            for root in roots:
                build_flat_store(root, args.records)
            print(
                f"built {args.stores} stores x {args.records} records "
                f"in {time.perf_counter() - started:.1f}s"
            )

            # -- initial sync, one agent at a time --------------------------------------
            syncs, walls = [], []
            for n, root in enumerate(roots):
                log = base / f"agent{n:02d}.log"
                started = time.perf_counter()
                with open(log, "wb") as out:
                    agents.append(
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-m",
                                "cachetui",
                                "agent",
                                "--root",
                                str(root),
                                "--fleet-url",
                                url,
                                "--name",
                                root.name,
                                "--gc-interval",
                                "0",
                            ],
                            env=_env(),
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                        )
                    )
                found = _wait_log(log, r"synchronised (\d+) records \(\d+ written\) in ([\d.]+)s")
                walls.append(time.perf_counter() - started)
                assert int(found.group(1)) == args.records, found.group(0)
                syncs.append(float(found.group(2)))
            # psql's \copy of the same number of rows into a plain table, for comparison
            csv = base / "rows.csv"
            _psql(cluster, db, "-c", "CREATE TABLE copy_probe (LIKE fleet_record INCLUDING ALL)")
            _psql(
                cluster,
                db,
                "-c",
                f"\\copy (SELECT * FROM fleet_record WHERE store = "
                f"'{roots[0].name}') TO '{csv}' WITH CSV",
            )
            copy_time = min(
                _psql(
                    cluster,
                    db,
                    "-c",
                    "TRUNCATE copy_probe",
                    "-c",
                    f"\\copy copy_probe FROM '{csv}' WITH CSV",
                )
                for _ in range(3)
            )
            med_sync = statistics.median(syncs)
            print(
                f"initial sync of {args.records} records: median {med_sync:.3f}s, "
                f"max {max(syncs):.3f}s (agent start to synced: median "
                f"{statistics.median(walls):.2f}s); goal < 2 s"
            )
            print(
                f"  psql \\copy of the same {args.records} rows (incl. psql start): "
                f"{copy_time:.3f}s; ratio agent/psql {med_sync / copy_time:.1f}x"
            )

            # -- idle CPU ---------------------------------------------------------------
            time.sleep(2.0)
            before_cpu = [_cpu_seconds(a.pid) for a in agents]
            time.sleep(args.idle)
            after_cpu = [_cpu_seconds(a.pid) for a in agents]
            shares = [(b - a) / args.idle * 100 for a, b in zip(before_cpu, after_cpu, strict=True)]
            print(
                f"agent idle CPU over {args.idle:.0f}s ({len(agents)} agents): median "
                f"{statistics.median(shares):.2f}% of a core, max {max(shares):.2f}%; "
                "goal < 1%"
            )

            # -- only host00's agent from here on ------------------------------------------
            # 20 agents on one machine share one user's inotify budget (10,000 layer
            # directories each; fs.inotify.max_user_watches is often below 200,000), so a
            # new layer could go unwatched: a real fleet runs one agent per host. The
            # replica keeps every store's 10,000 records.
            for agent in agents[1:]:
                agent.terminate()
            for agent in agents[1:]:
                agent.wait(60)
            with open("/proc/sys/fs/inotify/max_user_watches") as limit:
                print(
                    f"(latency with host00's agent alone: max_user_watches = "
                    f"{limit.read().strip()})"
                )
            # -- file written -> new size in the replica --------------------------------
            root = roots[0]
            with CacheManager.open(root) as cm:
                ref = cm.new(description="bench live layer")
                upper = ref.mount().upper
                assert upper is not None
                with FleetReader(url) as fleet, fleet.listen() as listener:

                    def replica_size() -> int | None:
                        rows = fleet.db.execute_sql(
                            "SELECT size FROM fleet_record WHERE store = %s AND id = %s",
                            (root.name, ref.id),
                        ).fetchone()
                        return None if rows is None else int(rows[0])

                    deadline = time.monotonic() + 60
                    while replica_size() is None and time.monotonic() < deadline:
                        listener.wait(0.5)
                    latencies = []
                    for n in range(args.writes):
                        before = replica_size() or 0
                        started = time.perf_counter()
                        (upper / f"file{n}").write_bytes(os.urandom(64 * 1024))
                        # every notification may be the one: re-read the size on each
                        while time.perf_counter() - started < 10.0:
                            listener.wait(1.0)
                            size = replica_size()
                            if size is not None and size > before:
                                latencies.append(time.perf_counter() - started)
                                break
                        else:
                            raise SystemExit(
                                f"write {n}: the replica's size did not change within 10 s"
                            )
                        time.sleep(0.1)
                ref.release()
            latencies.sort()
            p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
            print(
                f"file written -> replica size ({len(latencies)} writes): median "
                f"{statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms; "
                "goal median < 300 ms"
            )

            # -- du over the whole fleet ---------------------------------------------------
            total = args.stores * args.records
            du_args = [sys.executable, "-m", "cachetui", "du", "--fleet-url", url]

            def du(fmt: str) -> None:
                subprocess.run(
                    [*du_args, "--format", fmt], check=True, env=_env(), stdout=subprocess.DEVNULL
                )

            table = best_of(3, lambda: du("table"))
            as_json = best_of(3, lambda: du("json"))
            plain = min(
                _psql(
                    cluster,
                    db,
                    "-A",
                    "-c",
                    "SELECT * FROM fleet_record ORDER BY size DESC, id, store",
                )
                for _ in range(3)
            )
            print(
                f"cachetui du --fleet-url over {total} records: table {table:.2f}s, "
                f"json {as_json:.2f}s; psql -A of the same rows {plain:.2f}s "
                f"(ratio {table / plain:.1f}x, {as_json / plain:.1f}x)"
            )
    finally:
        for agent in agents:
            agent.terminate()
        for agent in agents:
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
        cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
