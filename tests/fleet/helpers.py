"""Helpers for the fleet tests: stores with records, agent subprocesses, du comparisons.

Each agent is a real ``cachetui agent`` subprocess with its own root and name, standing
for one build host. ``local_du`` and ``fleet_du`` run the real ``cachetui du`` against
the host's store and against the replica, so "the replica converges to every host's own
du" is checked with the commands a user runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cachetui import output
from cachetui.core import CacheManager
from cachetui.fleet.reader import FleetError, FleetReader
from cachetui.fleet_cli import usage_info

REPO = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "CACHETUI_CRASH_AT"}
    out["PYTHONPATH"] = str(REPO) + os.pathsep + out.get("PYTHONPATH", "")
    out.update(extra)
    return out


def make_store(root: Path, count: int, *, size: int = 3000, prefix: str = "rec") -> list[str]:
    """``count`` finalized records with one file each; returns their ids."""
    ids = []
    with CacheManager.open(root) as cm:
        for n in range(count):
            ref = cm.new(description=f"{prefix}{n}")
            (ref.mount().upper / "data").write_bytes(b"x" * (size + n))
            done = ref.commit()
            done.finalize()
            ids.append(done.id)
            done.release()
    return ids


def wait_until(
    predicate: Callable[[], Any], what: str, timeout: float = 60.0, step: float = 0.05
) -> Any:
    """Tests may poll: the product may not. Generous timeouts, no timed assertions."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def cli(*args: str, timeout: float = 120, extra_env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "cachetui", *args],
        env=env(**(extra_env or {})),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"cachetui {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}"
        )
    return proc


_COMPARED = ("id", "size", "mutable", "in_use", "reclaimable", "shared", "usage_count",
             "last_used_at", "created_at", "description", "record_type", "parents")  # fmt: skip


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(json.dumps(row[k]) for k in _COMPARED)


def local_du(root: Path) -> set[tuple[Any, ...]]:
    """The host's own ``cachetui du --format json`` (the real command, a subprocess)."""
    out = cli("du", "--root", str(root), "--format", "json").stdout
    return {_key(json.loads(line)) for line in out.splitlines() if line.strip()}


def fleet_du(url: str, store: str) -> set[tuple[Any, ...]]:
    """``cachetui du --fleet-url URL --store NAME --format json`` (a subprocess)."""
    out = cli("du", "--fleet-url", url, "--store", store, "--format", "json").stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert all(row["store"] == store for row in rows)
    return {_key(row) for row in rows}


def _local_rows(root: Path) -> set[tuple[Any, ...]]:
    """What ``local_du`` prints, computed in this process (same functions, no startup)."""
    with CacheManager.open(root, read_only=True) as cm:
        return {_key(output.usage_json(info)) for info in cm.disk_usage()}


def _fleet_rows(url: str, store: str) -> set[tuple[Any, ...]] | None:
    try:
        with FleetReader(url) as fleet:
            if fleet.store(store) is None:
                return None
            return {_key(output.usage_json(usage_info(r))) for r in fleet.records(store)}
    except FleetError:
        return None  # the server is down or the schema not there yet


def converged(url: str, root: Path, store: str) -> bool:
    """The replica equals the host's own du (checked in-process: fast enough to poll)."""
    return _fleet_rows(url, store) == _local_rows(root)


def assert_converged(url: str, root: Path, store: str) -> None:
    """Once converged, confirm it with the real commands."""
    wait_until(lambda: converged(url, root, store), f"{store}'s replica to converge")
    assert fleet_du(url, store) == local_du(root)


class AgentProc:
    """One ``cachetui agent`` subprocess (one host)."""

    def __init__(self, root: Path, url: str, name: str, *, log_dir: Path, **extra: str) -> None:
        self.root, self.url, self.name = root, url, name
        self.log_path = log_dir / f"agent-{name}.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.args: list[str] = []

    def start(self, *more: str, crash_at: str | None = None) -> AgentProc:
        extra = dict(self.extra)
        if crash_at is not None:
            extra["CACHETUI_CRASH_AT"] = crash_at
        self.args = ["agent", "--root", str(self.root), "--fleet-url", self.url,
                     "--name", self.name, *more]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cachetui", *self.args],
                env=env(**extra),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, text: str, timeout: float = 60.0, count: int = 1) -> None:
        def seen() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None and self.log().count(text) < count:
                raise AssertionError(f"agent {self.name} exited ({self.proc.returncode}):\n"
                                     f"{self.log()}")  # fmt: skip
            return self.log().count(text) >= count

        wait_until(seen, f"agent {self.name} to log {text!r}", timeout)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()
