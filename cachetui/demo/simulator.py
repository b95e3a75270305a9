"""A live simulated build, run in its own process beside a dashboard.

``run_simulator`` is a build that runs on its own in another process (``python -m
cachetui.demo simulate --root DIR``, or ``start_simulator``), so a dashboard opened on the
store moves: it grows a mutable layer, commits it, holds a cache mount now and then, and
removes its own old results so the store never grows without bound. SIGTERM stops it
cleanly.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from cachetui.core import CacheError, CacheManager, ImmutableRef, MutableRef, PruneOptions

__all__ = [
    "SIMULATOR_DESCRIPTION_PREFIX",
    "run_simulator",
    "start_simulator",
    "stop_simulator",
]

_KB = 1024

SIMULATOR_DESCRIPTION_PREFIX = "[sim "
"""Every record the simulator creates has a description starting with this."""


class _Stop:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True


def run_simulator(
    root: Path,
    *,
    steps: int | None = None,
    interval: float = 0.5,
    seed: int | None = None,
    keep: int = 4,
) -> None:
    """A build that keeps running: grow a layer, commit it, use a cache mount, tidy up.

    Runs ``steps`` builds (forever if None), sleeping ``interval`` seconds between file
    writes. Stops cleanly on SIGTERM or SIGINT (handles released, no half-made layer).
    Keeps at most ``keep`` of its own committed results; older ones are pruned.
    """
    stop = _Stop()
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, stop)
        except ValueError:  # not the main thread: rely on steps
            pass
    rng = random.Random(seed)
    try:
        with CacheManager.open(root) as cm:
            step = 0
            while not stop.requested and (steps is None or step < steps):
                step += 1
                _one_build(cm, rng, step, interval, stop, keep)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _sleep(seconds: float, stop: _Stop) -> None:
    deadline = time.monotonic() + seconds
    while not stop.requested:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def _base(cm: CacheManager) -> ImmutableRef | None:
    """The demo's python dependency layer if present, else any finalized regular record."""
    state = cm.state()
    rows = [
        row
        for row in state.visible()
        if not row.mutable and row.equal_mutable is None and row.record_type == "regular"
    ]
    preferred = [row for row in rows if "pip install" in row.description]
    for row in preferred + sorted(rows, key=lambda r: r.created_at):
        try:
            return cm.get(row.id)
        except CacheError:
            continue
    return None


def _one_build(
    cm: CacheManager, rng: random.Random, step: int, interval: float, stop: _Stop, keep: int
) -> None:
    base = _base(cm)
    mount: MutableRef | None = None
    layer: MutableRef | None = None
    try:
        if rng.random() < 0.6:
            mount = _cache_mount(cm)
        # The build number, not a step of N: the simulator runs builds without end.
        description = f"{SIMULATOR_DESCRIPTION_PREFIX}build {step}] RUN make build"
        layer = cm.new(base, description=description)
        upper = layer.mount().upper
        assert upper is not None
        for i in range(rng.randint(3, 6)):
            if stop.requested:
                break
            (upper / f"out-{i}.o").write_bytes(rng.randbytes(rng.randint(16, 128) * _KB))
            if mount is not None:
                mupper = mount.mount().upper
                assert mupper is not None
                (mupper / f"sim-{step % 4}-{i}").write_bytes(rng.randbytes(8 * _KB))
            _sleep(interval, stop)
        if stop.requested:
            return
        committed = layer.commit()
        committed.finalize()
        committed.set_retain(True)
        committed.release()
        layer = None
    except (CacheError, OSError):
        # Someone force-released one of this build's holds (the dashboard's `u`), or
        # pruned its layer once it was free: a real build step would fail here. This one
        # gives the step up and goes on with the next build, so the demo keeps moving.
        pass
    finally:
        for ref in (layer, mount, base):
            if ref is not None:
                try:
                    ref.release()
                except CacheError:
                    pass
    _tidy(cm, keep)


def _cache_mount(cm: CacheManager) -> MutableRef | None:
    description = "cached mount /root/.cache/sim from exec /bin/sh -c make build"
    for row in cm.state().visible():
        if row.mutable and row.description == description:
            try:
                return cm.get_mutable(row.id)
            except CacheError:
                return None
    return cm.new(description=description, record_type="exec.cachemount", retain=True)


def _tidy(cm: CacheManager, keep: int) -> None:
    """Remove all but the newest ``keep`` simulator results, and cap the cache mount."""
    rows = sorted(
        (
            row
            for row in cm.state().visible()
            if row.description.startswith(SIMULATOR_DESCRIPTION_PREFIX) and not row.mutable
        ),
        key=lambda row: (row.created_at, row.id),
    )
    for row in rows[: max(len(rows) - keep, 0)]:
        try:
            cm.prune(PruneOptions(filters=(f"id=={row.id}",)))
        except CacheError:
            pass


def start_simulator(root: Path, *, interval: float = 0.5) -> subprocess.Popen[bytes]:
    """Start ``run_simulator`` in a new process (stop it with ``stop_simulator``)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cachetui.demo",
            "simulate",
            "--root",
            os.fspath(root),
            "--interval",
            str(interval),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_simulator(process: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
    """SIGTERM the simulator and wait for it (kill it if it does not stop in time)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
