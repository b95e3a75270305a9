"""Shared helpers for the reliability tests: child processes and whole-store checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from cachetui.core import CacheManager, PruneOptions
from cachetui.core.snapshots import STAGING_PREFIX, TRASH_PREFIX
from tests.reliability.workers import HERE, child_env

#: Findings a crash may leave for doctor to report (not repaired at open).
CRASH_LEFTOVER_KINDS = frozenset({"unknown-dir"})


def run_worker(
    command: str,
    root: Path,
    *args: str,
    crash_at: str | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> tuple[int, list[dict]]:
    """Run a worker to completion (or its crash); returns (exit code, events)."""
    proc = subprocess.run(
        [sys.executable, str(HERE), command, str(root), *args],
        env={**child_env(crash_at), **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode not in (0, 137):
        raise AssertionError(f"worker {command} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.returncode, events


class Child:
    """A worker kept running: read its events one by one, write lines to its stdin."""

    def __init__(self, command: str, root: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), command, str(root), *args],
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def event(self) -> dict:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            err = self.proc.stderr.read()  # type: ignore[union-attr]
            raise AssertionError(f"worker ended early: {err}")
        return json.loads(line)

    def send(self, line: str = "") -> None:
        self.proc.stdin.write(line + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.close()

    def finish(self, timeout: float = 60) -> int:
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        code = self.proc.wait(timeout=timeout)
        self.close()
        return code

    def close(self) -> None:
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def tree(path: Path) -> dict[str, tuple]:
    """Every entry under ``path`` with its type, mode and size (to prove nothing changed)."""
    result: dict[str, tuple] = {}
    if not os.path.lexists(path):
        return result
    top = os.lstat(path)
    result["."] = (top.st_mode, top.st_size if not os.path.isdir(path) else 0)
    if not os.path.isdir(path) or os.path.islink(path):
        return result
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            size = 0 if os.path.isdir(full) else st.st_size
            result[os.path.relpath(full, path)] = (st.st_mode, size, st.st_mtime_ns)
    return result


def check_consistent(
    root: Path,
    *,
    keep: Iterable[tuple[str, str]] = (),
    allowed: frozenset[str] = CRASH_LEFTOVER_KINDS,
) -> list:
    """Reopen ``root`` and assert the crash invariants; returns doctor's unfixed findings.

    Every record is whole (its layer directory exists) or gone; no holder names a missing
    record and no record a missing parent or pair half; no staging or trash directory is
    left; each ``(record id, file name)`` in ``keep`` still has its file; the next prune
    completes and ``doctor(fix=True)`` leaves a clean store.
    """
    with CacheManager.open(root) as cm:
        records = cm.store.rows("SELECT id, parent, equal_mutable, deleted FROM record")
        ids = {rid for rid, *_ in records}
        for rid, parent, equal, deleted in records:
            assert not deleted, f"{rid}: tombstone not finished at open"
            assert parent is None or parent in ids, f"{rid}: parent {parent} has no row"
            assert equal is None or equal in ids, f"{rid}: pair half {equal} has no row"
            if equal is None:
                assert cm.snapshots.path(rid).is_dir(), f"{rid}: layer missing"
        for (record,) in cm.store.rows("SELECT record FROM holder"):
            assert record in ids, f"holder on missing record {record}"
        names = os.listdir(cm.snapshots.dir)
        assert not [n for n in names if n.startswith((STAGING_PREFIX, TRASH_PREFIX))], names
        for rid, name in keep:
            assert rid in ids, f"committed record {rid} lost"
            assert (cm.snapshots.path(rid) / name).is_file(), f"{rid}/{name} lost"
        unfixed = [f for f in cm.doctor() if not f.fixed]
        assert {f.kind for f in unfixed} <= allowed, unfixed
        cm.prune(PruneOptions(all=True))
        cm.doctor(fix=True)
        assert [f for f in cm.doctor() if not f.fixed] == [], cm.doctor()
        for rid, name in keep:
            assert (cm.snapshots.path(rid) / name).is_file(), f"{rid}/{name} lost by prune"
    return unfixed
